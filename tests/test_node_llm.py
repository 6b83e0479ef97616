"""The node's [llm] section: configuration errors, a real node whose agent asks SmolLM2 (no
mocks), the LLM figures in /metrics and status, and an engine that cannot start."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aaex_agents import (
    Agent,
    Context,
    HttpTransport,
    LLMUnavailable,
    Message,
    StaticDirectory,
    handler,
    open_runtime,
)
from aaex_agents.llm import user
from marketplace.node.config import ConfigError, LLMSpec, load_config, parse_config
from marketplace.node.node import Node, open_node

NODE = {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []}


class Verse(Message, type="test_node_llm.verse/1"):
    topic: str


class Line(Message, type="test_node_llm.line/1"):
    text: str
    default_timeout: float


class Poet(Agent):
    @handler
    async def on_verse(self, ctx: Context, msg: Verse) -> Line:
        answer = await ctx.llm.chat([user(f"Write a line about {msg.topic}.")], max_tokens=8)
        return Line(text=answer.text, default_timeout=ctx.llm.default_timeout)


def node_config(tmp_path: Path, llm: dict[str, Any]) -> Any:
    return parse_config({"node": NODE, "llm": llm, "agents": [
        {"name": "poet", "class": f"{Poet.__module__}:Poet"}]}, base=tmp_path)


def closed_port() -> int:
    """A loopback port nothing listens on: bound, then closed, so a connect is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def samples(exposition: str) -> dict[str, float]:
    """Prometheus text -> {"name{labels}": value}."""
    return {name: float(value) for line in exposition.splitlines()
            if line and not line.startswith("#") for name, value in [line.rsplit(" ", 1)]}


@asynccontextmanager
async def asking(node: Node, agent: Agent) -> AsyncIterator[Context]:
    """A buyer runtime that reaches `agent` of `node` over HTTP on loopback."""
    buyer = Agent()
    directory = StaticDirectory({agent.address: list(node.runtime.endpoints)})
    async with open_runtime(buyer, transports=[HttpTransport()], directory=directory) as rt:
        yield rt.context(buyer)


# -- configuration ----------------------------------------------------------------------------
@pytest.mark.parametrize(("llm", "message"), [
    ({"backend": "gpt"}, "llm.backend = 'gpt': write one of 'none', 'llamacpp', 'openai' or"),
    ({"backend": 3}, "llm.backend = 3: write one of 'none'"),
    ({"backend": "openai"}, "llm.base_url = None: the openai backend needs the server's URL"),
    ({"backend": "openai", "base_url": "localhost:8000"}, "llm.base_url = 'localhost:8000'"),
    ({"backend": "vllm"}, "llm.model_path is required for the vllm backend"),
    ({"colour": "red"}, "llm.colour: unknown key; known: backend, base_url"),
    ({"modle": "x"}, "llm.modle: unknown key; did you mean 'model'?"),
    ({"backend": "llamacpp", "base_url": "http://127.0.0.1:8000"},
     "field(s) ['base_url'] do not apply to backend = 'llamacpp'"),
    ({"backend": "openai", "base_url": "http://h:1", "n_threads": 2},
     "field(s) ['n_threads'] do not apply to backend = 'openai'"),
    ({"backend": "llamacpp", "model_path": 5}, "llm.model_path = 5: write a string"),
    ({"backend": "llamacpp", "n_ctx": "big"}, "llm.n_ctx = 'big': write an integer"),
    ({"backend": "llamacpp", "n_ctx": 16}, "llm.n_ctx = 16: must be at least 256"),
    ({"backend": "llamacpp", "n_threads": 0}, "llm.n_threads = 0: must be positive"),
    ({"backend": "llamacpp", "concurrency": True}, "llm.concurrency = True: write an integer"),
    ({"backend": "llamacpp", "concurrency": 0}, "llm.concurrency = 0: must be positive"),
    ({"backend": "llamacpp", "timeout": "1s"}, "llm.timeout = '1s': write a number"),
    ({"backend": "llamacpp", "timeout": 0}, "llm.timeout = 0: must be positive"),
])
def test_bad_llm_config_names_the_field(llm: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"llm": llm}, base=Path("."))
    assert message in str(caught.value)


def test_llm_section_is_read_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text('[llm]\nbackend = "llamacpp"\n'
                                        'model_path = "models/m.Q4_0.gguf"\ntimeout = 30\n')
    spec = load_config(tmp_path / "node.toml").llm
    assert spec == LLMSpec(backend="llamacpp", model_path=tmp_path / "models/m.Q4_0.gguf",
                           timeout=30.0)
    assert parse_config({}, base=tmp_path).llm.backend == "none"
    # "none" ignores the other fields, so switching the model off is a one-line edit.
    assert parse_config({"llm": {"backend": "none", "base_url": "x"}}, base=tmp_path).llm \
        .backend == "none"


def test_unparsable_section_is_named() -> None:
    with pytest.raises(ConfigError, match="llm = 'llamacpp': write a table"):
        parse_config({"llm": "llamacpp"}, base=Path("."))


# -- nodes ------------------------------------------------------------------------------------
async def test_a_node_without_llm_reports_none_and_no_llm_metrics(tmp_path: Path) -> None:
    async with open_node(parse_config({"node": NODE}, base=tmp_path)) as node:
        assert node.llm is None and node.status()["llm"] is None
        assert "aaex_llm" not in node.metrics_text()


async def test_node_agents_share_the_configured_llamacpp_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the CPU model needs the cpu extra")
    config = node_config(tmp_path, {"backend": "llamacpp", "n_ctx": 512, "timeout": 30,
                                    "n_threads": 1})
    async with open_node(config) as node:
        assert node.llm is not None
        before = samples(node.metrics_text())
        assert before["aaex_llm_requests_total"] == 0
        assert before["aaex_llm_tokens_per_second"] == 0
        poet = next(iter(node.runtime.agents.values()))
        async with asking(node, poet) as ctx:
            line = await ctx.ask(poet.address, Verse(topic="the sea"), reply_type=Line,
                                 timeout=60)
        assert line.text and line.default_timeout == 30.0  # [llm] timeout reaches ctx.llm
        async with aiohttp.ClientSession() as http, \
                http.get(node.admin_url + "/metrics") as response:
            assert response.status == 200
            exposition = await response.text()
        status = node.status()["llm"]
    metrics = samples(exposition)
    assert metrics["aaex_llm_requests_total"] == 1 and metrics["aaex_llm_completed_total"] == 1
    assert 0 < metrics["aaex_llm_completion_tokens_total"] <= 8
    assert metrics["aaex_llm_prompt_tokens_total"] > 0
    assert metrics["aaex_llm_tokens_per_second"] > 0
    assert metrics["aaex_llm_queue_wait_seconds_max"] >= 0
    assert not any(name.startswith("aaex_llm_errors_total") for name in metrics)
    assert "# TYPE aaex_llm_tokens_per_second gauge" in exposition
    assert status["model"] == "SmolLM2-135M-Instruct" and status["quantization"] == "Q4_1"
    assert status["backend"] == "llama.cpp"


async def test_a_missing_model_file_fails_start_up_naming_model_path(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the CPU model needs the cpu extra")
    config = node_config(tmp_path, {"backend": "llamacpp", "model_path": "absent.gguf"})
    with pytest.raises(ConfigError) as caught:
        async with open_node(config):
            pytest.fail("the node started without its model")
    assert f"llm.model_path = '{tmp_path / 'absent.gguf'}'" in str(caught.value)
    assert isinstance(caught.value.__cause__, LLMUnavailable)


async def test_an_unreachable_llm_server_fails_start_up_naming_base_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    config = node_config(tmp_path, {"backend": "openai", "base_url": url})
    with pytest.raises(ConfigError) as caught:
        async with open_node(config):
            pytest.fail("the node started without its model server")
    assert f"llm.base_url = '{url}'" in str(caught.value)
    assert "llm.backend = 'openai'" in str(caught.value)
    assert isinstance(caught.value.__cause__, LLMUnavailable)
