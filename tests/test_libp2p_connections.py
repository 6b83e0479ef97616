"""A libp2p host trims idle connections before its resource manager refuses inbound ones.

Real py-libp2p hosts on loopback. py-libp2p's connection manager trims only above 300
connections while its resource manager refuses inbound connections past 256: a node that
everyone dials (a seed) then turned away every newcomer. At N=300 in the discovery bench
the nodes that joined after the 256th had a routing table of one and no lookup succeeded.
"""

from __future__ import annotations

from aaex_agents.transport.libp2p import open_libp2p_host


async def test_idle_connections_are_trimmed_below_the_inbound_connection_cap() -> None:
    async with open_libp2p_host() as host:
        network = host.host.get_network()
        inbound_cap = network._resource_manager.connection_limits.max_established_inbound
        config = network.connection_config
        assert inbound_cap is not None
        assert config.low_watermark < config.high_watermark < inbound_cap
        assert config.min_connections == 0  # no dialling towards a full mesh
