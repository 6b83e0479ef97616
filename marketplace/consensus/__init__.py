"""Consensus: what every operator of the market must agree on, kept on an EVM chain.

    chain_config (open_chain) ──► chain_client ──► chain_backends
                                  (embedded py-evm | dev node | any JSON-RPC)
         │
         ├──► chain_encoding (the bytes the contract hashes)     chain_keys (node → account)
         └──► artifact (contracts/consensus.vy, compiled to contracts/consensus.json)

The contract holds stakes, registrations, weight commit-reveal, epoch attestations and
emission; `ChainClient` is the one way to it. Sits between `contracts` and `trade`.
"""

from .artifact import Artifact, load_artifact
from .chain_backends import EMBEDDED, ChainBackend, DevChain, EmbeddedChain, RpcChain, backend_for
from .chain_client import (
    AccountState,
    ChainClient,
    ChainClock,
    ChainParams,
    Phase,
    deploy,
)
from .chain_config import ChainConfig, open_chain
from .chain_encoding import EpochOutputs, capability_id, weights_commitment
from .chain_keys import chain_account
from .errors import ChainError, ChainRefused, ChainUnavailable

__all__ = [
    "EMBEDDED",
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
    "EpochOutputs",
    "Phase",
    "RpcChain",
    "backend_for",
    "capability_id",
    "chain_account",
    "deploy",
    "load_artifact",
    "open_chain",
    "weights_commitment",
]
