"""Consensus: which sellers validators agree are good, what each earns, and the chain.

    yuma     `yuma_epoch`, one epoch of Yuma consensus (classic or Yuma 3) as a pure function
    params   `YumaParams`, its hyperparameters with subtensor's names and defaults
    fixed    the fixed-point arithmetic (`ONE` = 2**32) that makes every node agree bit for bit
    reveal   commit-reveal of weights checked off chain: a forged or late reveal is a zero row
    chain_config (open_chain) ──► chain_client ──► chain_backends
                                  (embedded py-evm | dev node | any JSON-RPC)
         ├──► chain_encoding (the bytes the contract hashes; its commitment is exported as
         │    `chain_weights_commitment`)     chain_keys (node → account)
         └──► artifact (contracts/consensus.vy, compiled to contracts/consensus.json)
    errors   `EpochInputError`, `ChainError` and its kinds

The contract holds stakes, registrations, weight commit-reveal, epoch attestations and
emission; `ChainClient` is the one way to it. Sits between contracts and trade; imports
nothing else from the marketplace.
"""

from .artifact import Artifact, load_artifact
from .board import Moment, Phase
from .chain_backends import EMBEDDED, ChainBackend, DevChain, EmbeddedChain, RpcChain, backend_for
from .chain_client import (
    AccountState,
    ChainClient,
    ChainClock,
    ChainParams,
    deploy,
)
from .chain_config import ChainConfig, open_chain
from .chain_encoding import EpochOutputs, capability_id
from .chain_encoding import weights_commitment as chain_weights_commitment
from .chain_keys import chain_account
from .errors import ChainError, ChainRefused, ChainUnavailable, EpochInputError
from .fixed import ONE
from .params import YumaParams
from .reveal import (
    Reveal,
    RevealVerdict,
    check_reveal,
    revealed_weights,
    weights_commitment,
)
from .yuma import EpochResult, reset_bonds, yuma_epoch

__all__ = [
    "EMBEDDED",
    "ONE",
    "AccountState",
    "Artifact",
    "ChainBackend",
    "ChainClient",
    "ChainClock",
    "ChainConfig",
    "ChainError",
    "ChainParams",
    "ChainRefused",
    "ChainUnavailable",
    "DevChain",
    "EmbeddedChain",
    "EpochInputError",
    "EpochOutputs",
    "EpochResult",
    "Moment",
    "Phase",
    "Reveal",
    "RevealVerdict",
    "RpcChain",
    "YumaParams",
    "backend_for",
    "capability_id",
    "chain_account",
    "chain_weights_commitment",
    "check_reveal",
    "deploy",
    "load_artifact",
    "open_chain",
    "reset_bonds",
    "revealed_weights",
    "weights_commitment",
    "yuma_epoch",
]
