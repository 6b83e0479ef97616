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
