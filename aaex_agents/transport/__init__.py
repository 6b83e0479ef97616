"""Transports: memory, HTTP (and libp2p with the discovery package)."""

from .base import FrameHandler, Transport
from .http import HttpTransport
from .memory import MemoryNetwork, MemoryTransport

__all__ = ["FrameHandler", "HttpTransport", "MemoryNetwork", "MemoryTransport", "Transport"]
