"""py-libp2p's chatter stays out of an INFO log and comes back at DEBUG."""

from __future__ import annotations

import logging

import pytest

from aaex_agents.transport.libp2p import open_libp2p_host


def _libp2p_below_warning(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, str]]:
    return [r for r in caplog.record_tuples
            if r[0].startswith("libp2p") and r[1] < logging.WARNING]


async def test_py_libp2p_logs_warnings_only_unless_the_application_logs_debug(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with open_libp2p_host():
        logging.getLogger("libp2p.host.basic_host").info("a stream opened")
        # py-libp2p sets this one to INFO itself, at import
        logging.getLogger("libp2p.network.auto_connector").info("connecting to peers")
        logging.getLogger("libp2p.kad_dht.kad_dht").warning("a peer misbehaved")
    assert _libp2p_below_warning(caplog) == []  # nor any real record of starting a host
    assert ("libp2p.kad_dht.kad_dht", logging.WARNING, "a peer misbehaved") \
        in caplog.record_tuples

    caplog.clear()
    caplog.set_level(logging.DEBUG)
    async with open_libp2p_host():
        logging.getLogger("libp2p.host.basic_host").info("a stream opened")
    assert ("libp2p.host.basic_host", logging.INFO, "a stream opened") in caplog.record_tuples


async def test_peers_that_came_and_went_leave_no_warning_in_an_info_log(
        caplog: pytest.LogCaptureFixture) -> None:
    """Short-lived hosts (each `aaex market search` is one) join through a node and leave;
    the node's DHT then tries them in vain. That is churn: at INFO it logs nothing."""
    from discovery.dht import open_discovery
    from discovery.query import Query

    caplog.set_level(logging.INFO)
    async with open_libp2p_host() as node, open_discovery(node) as found:
        for _ in range(3):
            async with open_libp2p_host() as visitor, \
                    open_discovery(visitor, seeds=node.addrs) as searching:
                await searching.lookup(Query("forecast.demand"))
        before = len(caplog.records)
        await found.refresh_routing_table()  # asks its table: the visitors are gone
        await found.lookup(Query("forecast.demand"))
        logged = caplog.records[before:]
    assert [r.getMessage() for r in logged] == []

    caplog.clear()  # at DEBUG, the tries are there
    caplog.set_level(logging.DEBUG)
    async with open_libp2p_host() as node, open_discovery(node) as found:
        async with open_libp2p_host() as visitor, \
                open_discovery(visitor, seeds=node.addrs) as searching:
            await searching.lookup(Query("forecast.demand"))
        await found.refresh_routing_table()
    assert any(r.levelno == logging.DEBUG and "unable to connect to" in r.getMessage()
               for r in caplog.records if r.name.startswith("libp2p.kad_dht"))
