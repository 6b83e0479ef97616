"""One configuration model: every section's errors in one format, agent classes found by file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from aaex_agents.errors import UsageError
from aaex_agents.transport.listener import tcp_host_port
from marketplace.node.config import ConfigError, load_config, parse_config, split_host_port

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


def test_agent_classes_next_to_the_config_load_without_touching_sys_path(
        tmp_path: Path) -> None:
    module = "config_folder_agents_7f3a"
    (tmp_path / f"{module}.py").write_text(
        "from marketplace import Buyer\n\nclass Shopper(Buyer):\n    pass\n")
    package = tmp_path / "config_folder_pkg_7f3a"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "sellers.py").write_text(
        "from marketplace import Buyer\n\nclass Other(Buyer):\n    pass\n")
    (tmp_path / "node.toml").write_text(
        f'[[agents]]\nname = "a"\nclass = "{module}:Shopper"\n\n'
        '[[agents]]\nname = "b"\nclass = "config_folder_pkg_7f3a.sellers:Other"\n')
    before = list(sys.path)
    try:
        config = load_config(tmp_path / "node.toml")
        classes = [spec.load_class() for spec in config.agents]
        assert sys.path == before
        assert [c.__qualname__ for c in classes] == ["Shopper", "Other"]
        assert Path(sys.modules[module].__file__ or "") == tmp_path / f"{module}.py"
    finally:
        for name in [n for n in sys.modules if n.startswith(("config_folder_", module))]:
            del sys.modules[name]


def test_a_missing_agent_module_is_named(tmp_path: Path) -> None:
    config = parse_config({"agents": [{"name": "a", "class": "no_such_module_7f3a:X"}]},
                          base=tmp_path)
    with pytest.raises(ConfigError, match=r"agents\.a\.class: cannot import"):
        config.agents[0].load_class()
