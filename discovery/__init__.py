"""Capability discovery over the libp2p Kademlia DHT.

Signed, expiring agent records and service ads (`records`), the query language and ranking
(`query`), the capability index a node holds (`index`), and the network side: the DHT
(`dht`), publishing ads (`advertiser`) and routing by address (`directory`). Built on
`aaex_agents`; the marketplace builds on it.

The network side pulls in libp2p (about 1.4 s to import), which reading a record or a query
must not pay for: `Discovery`, `DiscoveryConfig`, `open_discovery`, `Advertiser`, `Listing`,
`open_advertiser` and `DhtDirectory` are imported on first use (PEP 562).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import (
    BadRecordSignature,
    MalformedRecord,
    RecordExpired,
    RecordKeyMismatch,
    RecordRejected,
    StaleRecord,
)
from .query import Query, Utility, parse_where
from .records import AccessPolicy, AgentRecord, PriceModel, ServiceAd, SlaOffer

if TYPE_CHECKING:
    from .advertiser import Advertiser, Listing, open_advertiser
    from .dht import Discovery, DiscoveryConfig, open_discovery
    from .directory import DhtDirectory

_NETWORK = {"Advertiser": "advertiser", "Listing": "advertiser", "open_advertiser": "advertiser",
            "Discovery": "dht", "DiscoveryConfig": "dht", "open_discovery": "dht",
            "DhtDirectory": "directory"}


def __getattr__(name: str) -> Any:
    if name in _NETWORK:
        return getattr(import_module(f".{_NETWORK[name]}", __name__), name)
    raise AttributeError(f"module 'discovery' has no attribute {name!r}")


__all__ = [
    "AccessPolicy",
    "Advertiser",
    "AgentRecord",
    "BadRecordSignature",
    "DhtDirectory",
    "Discovery",
    "DiscoveryConfig",
    "MalformedRecord",
    "Listing",
    "PriceModel",
    "Query",
    "RecordExpired",
    "RecordKeyMismatch",
    "RecordRejected",
    "ServiceAd",
    "SlaOffer",
    "StaleRecord",
    "Utility",
    "open_advertiser",
    "open_discovery",
    "parse_where",
]
