"""The bytes the consensus contract hashes, computed the same way off chain.

A capability is named on chain by the keccak-256 of its name; a weight commitment binds the
capability, the epoch and the validator's address to its weights and salt (so nobody can
post a copy of another validator's commitment); an epoch's outputs hash is what validators
attest and what `distribute` checks before it mints. Each is `keccak256(abi_encode(...))`,
exactly as the contract computes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from aaex_agents.errors import UsageError, quote

MAX_SELLERS = 64
"""The contract's bound on sellers in one reveal and on either side of an epoch's outputs."""


def checked_address(value: str, what: str = "address") -> ChecksumAddress:
    """`value` as a checksummed Ethereum address, or a UsageError naming `what` it was."""
    try:
        return to_checksum_address(value)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{what} {quote(value)} is not an Ethereum address; give 0x and "
                         "40 hex digits, e.g. chain_account(identity).address") from exc


def capability_id(name: str) -> bytes:
    """The 32-byte id of a capability on chain: keccak-256 of its UTF-8 name."""
    if not name:
        raise UsageError("a capability name is needed; e.g. capability_id('llm.chat')")
    return keccak(text=name)


def sorted_weights(weights: Mapping[str, int]) -> tuple[list[str], list[int]]:
    """Sellers in ascending address order with their weights, as the contract requires."""
    if len(weights) > MAX_SELLERS:
        raise UsageError(f"{len(weights)} sellers in one reveal; the contract takes "
                         f"at most {MAX_SELLERS}")
    if any(weight < 0 for weight in weights.values()):
        raise UsageError("weights are non-negative integers")
    order = sorted(weights, key=lambda address: int(checked_address(address, "seller"), 16))
    return [checked_address(a, "seller") for a in order], [int(weights[a]) for a in order]


def weights_commitment(capability: bytes, epoch: int, validator: str,
                       weights: Mapping[str, int], salt: bytes) -> bytes:
    """What `commit_weights` stores and `reveal_weights` must reproduce."""
    sellers, values = sorted_weights(weights)
    return keccak(encode(
        ["bytes32", "uint256", "address", "address[]", "uint256[]", "bytes32"],
        [capability, epoch, checked_address(validator, "validator"), sellers, values, salt]))


@dataclass(frozen=True, kw_only=True)
class EpochOutputs:
    """What one epoch of consensus decided for one capability, as the contract pays it.

    Incentive and dividends are relative shares (any integer scale): the contract splits each
    pool pro rata. The order of the entries is part of the hash, so every node lists them the
    same way (the consensus function's order).
    """

    sellers: tuple[str, ...]
    """Seller addresses, paired with `incentive`."""
    incentive: tuple[int, ...]
    """Each seller's share of the sellers' 41%."""
    validators: tuple[str, ...]
    """Validator addresses, paired with `dividends`."""
    dividends: tuple[int, ...]
    """Each validator's share of the validators' 41%."""

    def __post_init__(self) -> None:
        if len(self.sellers) != len(self.incentive):
            raise UsageError("EpochOutputs: sellers and incentive differ in length")
        if len(self.validators) != len(self.dividends):
            raise UsageError("EpochOutputs: validators and dividends differ in length")
        if max(len(self.sellers), len(self.validators)) > MAX_SELLERS:
            raise UsageError(f"EpochOutputs: at most {MAX_SELLERS} entries a side")
        if any(v < 0 for v in (*self.incentive, *self.dividends)):
            raise UsageError("EpochOutputs: shares are non-negative integers")
        for address in (*self.sellers, *self.validators):
            checked_address(address, "EpochOutputs: entry")

    def as_args(self) -> list[Any]:
        """The four arrays in the contract's argument order."""
        return [[checked_address(a) for a in self.sellers], list(self.incentive),
                [checked_address(a) for a in self.validators], list(self.dividends)]

    def digest(self) -> bytes:
        """The hash validators attest and `distribute` checks."""
        return keccak(encode(["address[]", "uint256[]", "address[]", "uint256[]"],
                             self.as_args()))
