"""One configuration model: every section's errors in one format, agent classes found by file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aaex_agents.errors import UsageError
from aaex_agents.transport.listener import tcp_host_port
from marketplace.node.config import ConfigError, parse_config, split_host_port

SHOPPER = {"name": "shopper", "class": "marketplace:Buyer"}


def error_of(document: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(document, base=Path("."))
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("document", "message"), [
    ({"gatway": {"listen": "127.0.0.1:0"}}, "gatway: unknown key; did you mean 'gateway'?"),
    ({"interopp": {}}, "interopp: unknown key; did you mean 'interop'?"),
    ({"interop": {"lisen": "127.0.0.1:0"}}, "interop.lisen: unknown key; did you mean 'listen'?"),
    ({"interop": {"uagents": {"peer": {}}}},
     "interop.uagents.peer: unknown key; did you mean 'peers'?"),
    ({"gateway": {"agnet": "shopper"}}, "gateway.agnet: unknown key; did you mean 'agent'?"),
])
def test_a_misspelled_section_or_key_is_named_with_the_closest_known_one(
        document: dict[str, Any], message: str) -> None:
    assert error_of(document).startswith(message)


def test_every_section_words_a_bad_listen_address_alike() -> None:
    fixes = set()
    for field, document in [
            ("node.http", {"node": {"http": "nowhere"}}),
            ("node.admin", {"node": {"admin": "nowhere"}}),
            ("gateway.listen", {"gateway": {"listen": "nowhere", "agent": "shopper"},
                                "agents": [SHOPPER]}),
            ("interop.listen", {"interop": {"listen": "nowhere"}})]:
        message = error_of(document)
        assert message.startswith(f"{field} = 'nowhere': ")
        fixes.add(message.removeprefix(f"{field} = 'nowhere': "))
    assert fixes == {'write host:port, e.g. "127.0.0.1:8700"'}


@pytest.mark.parametrize(("value", "parsed"), [
    ("127.0.0.1:8700", ("127.0.0.1", 8700)), ("::1:0", ("::1", 0)), ("localhost", None),
    (":80", None), ("h:65536", None), ("h:-1", None), ("h:", None)])
def test_host_port_is_read_one_way(value: str, parsed: tuple[str, int] | None) -> None:
    host, _, port = value.rpartition(":")
    assert tcp_host_port(f"/ip4/{host}/tcp/{port}") == parsed
    if parsed is None:
        with pytest.raises(UsageError):
            split_host_port(value)
        with pytest.raises(ConfigError, match="write host:port"):
            parse_config({"node": {"http": value}}, base=Path("."))
    else:
        assert split_host_port(value) == parsed
        assert parse_config({"node": {"http": value}}, base=Path(".")).node.http == value


def test_a_missing_agent_module_is_named(tmp_path: Path) -> None:
    config = parse_config({"agents": [{"name": "a", "class": "no_such_module_7f3a:X"}]},
                          base=tmp_path)
    with pytest.raises(ConfigError, match=r"agents\.a\.class: cannot import"):
        config.agents[0].load_class()
