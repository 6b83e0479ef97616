"""One agent, two addresses: the signed binding between ``aaex1...`` and ``agent1...``.

An AAEX agent's uAgents key is derived from its Ed25519 seed (`UAgentsKey.from_identity`),
so it has no new secret. Anyone can check that the two addresses belong together: the
statement naming both is signed by both keys, each key proving it agrees. It travels in the
agent's discovery record and its A2A card.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict

from ..address import public_key_from_address
from ..errors import UsageError
from ..identity import Identity, verify_signature
from .uagents import UAgentsKey, public_key_of, verify_digest

_TAG = b"aaex/uagents-binding/1"


class AddressBinding(BaseModel):
    """The statement "`aaex` and `uagents` are one agent", signed by both keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    aaex: str
    """The agent's AAEX address (Ed25519)."""
    uagents: str
    """Its uAgents address (secp256k1)."""
    ed25519_signature: str
    """Hex of the Ed25519 signature of `statement`."""
    secp256k1_signature: str
    """``sig1...`` signature (as uAgents writes them) of sha256(`statement`)."""

    @staticmethod
    def statement(aaex: str, uagents: str) -> bytes:
        """The bytes both keys sign."""
        return _TAG + b"\x00" + aaex.encode() + b"\x00" + uagents.encode()

    @classmethod
    def create(cls, identity: Identity, key: UAgentsKey | None = None) -> AddressBinding:
        """Sign the binding of `identity` and its derived uAgents key (or `key`)."""
        key = key if key is not None else UAgentsKey.from_identity(identity)
        statement = cls.statement(identity.address, key.address)
        return cls(aaex=identity.address, uagents=key.address,
                   ed25519_signature=identity.sign(statement).hex(),
                   secp256k1_signature=key.sign_digest(hashlib.sha256(statement).digest()))

    def holds(self) -> bool:
        """True when both signatures verify over the statement naming both addresses."""
        try:
            public_key_from_address(self.aaex)
            public_key_of(self.uagents)
            ed_signature = bytes.fromhex(self.ed25519_signature)
        except (UsageError, ValueError):
            return False
        statement = self.statement(self.aaex, self.uagents)
        return (verify_signature(self.aaex, statement, ed_signature)
                and verify_digest(self.uagents, hashlib.sha256(statement).digest(),
                                  self.secp256k1_signature))
