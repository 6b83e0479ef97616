"""Capability discovery over the libp2p Kademlia DHT.

Signed, expiring agent records and service ads. Built on `aaex_agents`; the marketplace
builds on it.
"""

__all__: list[str] = []
