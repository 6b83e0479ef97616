"""A real uAgents 0.26.1 agent for the interop tests, run with the uAgents virtualenv.

    $AAEX_UAGENTS_PYTHON tests/peers/uagents_peer.py '{"seed": "...", "port": 8123,
        "rules": {"agent1...": "http://127.0.0.1:9000/submit"}}'

It cannot share a virtualenv with libp2p, so it imports nothing from this repository. It
runs offline: no Almanac, no Agentverse (a `RulesBasedResolver` maps addresses to
endpoints), and the ~33 s start-up stall (an Almanac status POST retried before anything
else) is skipped by overriding `_update_agent_status`; the test then polls the HEAD
readiness probe before it sends.

It speaks the standard chat protocol (acknowledges every ChatMessage and answers "echo: ..."
unless the text already starts with "echo:") and a Ping/Pong protocol. A test drives it over
loopback HTTP: ``POST /cmd`` makes it send (optionally waiting for the reply, async or sync
mode), ``POST /bench`` times `n` sequential Ping round trips (bench/interop.py), ``GET /log``
lists what it received. Prints one JSON line {"address", "endpoint"} at
start; exits when stdin closes or on SIGTERM.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import uagents.asgi
from uagents import Agent, Context, Model, Protocol
from uagents.resolver import RulesBasedResolver
from uagents_core.contrib.protocols.chat import (
    ChatAcknowledgement,
    ChatMessage,
    TextContent,
    chat_protocol_spec,
)

uagents.asgi.HOST = "127.0.0.1"


class Ping(Model):
    text: str


class Pong(Model):
    text: str


class Cmd(Model):
    to: str
    kind: str  # "chat" | "ping"
    text: str
    wait: bool = True
    sync: bool = False
    timeout: int = 20


class CmdResult(Model):
    status: str
    detail: str = ""
    reply_kind: str | None = None
    reply_text: str | None = None


class Log(Model):
    entries: list[dict[str, Any]]


class BenchCmd(Model):
    to: str
    n: int
    sync: bool = False
    timeout: int = 20


class BenchResult(Model):
    n: int
    ok: int
    seconds: float
    latencies_ms: list[float]


class OfflineAgent(Agent):
    async def _update_agent_status(self, active: bool) -> None:
        """Skip the Almanac status POST (retried for ~33 s when offline)."""


def main() -> None:
    settings = json.loads(sys.argv[1])
    port = int(settings["port"])
    agent = OfflineAgent(
        name=settings.get("name", "uagents-peer"), seed=settings["seed"], port=port,
        resolve=RulesBasedResolver(settings.get("rules", {})),
        agentverse="http://127.0.0.1:9", report_events=False, mark_inactive_on_shutdown=False,
        enable_agent_inspector=False, publish_agent_details=False, log_level="WARNING")
    log: list[dict[str, Any]] = []
    chat = Protocol(spec=chat_protocol_spec)
    pings = Protocol(name="ping", version="1.0.0")

    @chat.on_message(ChatMessage)
    async def on_chat(ctx: Context, sender: str, msg: ChatMessage) -> None:
        log.append({"kind": "chat", "sender": sender, "text": msg.text(),
                    "session": str(ctx.session)})
        await ctx.send(sender, ChatAcknowledgement(acknowledged_msg_id=msg.msg_id))
        if not msg.text().startswith("echo:"):
            await ctx.send(sender, ChatMessage(content=[TextContent(text="echo: " + msg.text())]))

    @chat.on_message(ChatAcknowledgement)
    async def on_ack(ctx: Context, sender: str, msg: ChatAcknowledgement) -> None:
        log.append({"kind": "ack", "sender": sender, "acknowledged": str(msg.acknowledged_msg_id),
                    "session": str(ctx.session)})

    @pings.on_message(Ping, replies={Pong})
    async def on_ping(ctx: Context, sender: str, msg: Ping) -> None:
        log.append({"kind": "ping", "sender": sender, "text": msg.text,
                    "session": str(ctx.session)})
        await ctx.send(sender, Pong(text="pong: " + msg.text))

    @pings.on_message(Pong)
    async def on_pong(ctx: Context, sender: str, msg: Pong) -> None:
        log.append({"kind": "pong", "sender": sender, "text": msg.text,
                    "session": str(ctx.session)})

    agent.include(chat)
    agent.include(pings)

    @agent.on_rest_post("/cmd", Cmd, CmdResult)
    async def command(ctx: Context, cmd: Cmd) -> CmdResult:
        message: Model
        if cmd.kind == "chat":
            message = ChatMessage(content=[TextContent(text=cmd.text)])
            replies: set[type[Model]] = {ChatAcknowledgement, ChatMessage}
        else:
            message = Ping(text=cmd.text)
            replies = {Pong}
        if not cmd.wait:
            status = await ctx.send(cmd.to, message, timeout=cmd.timeout)
            return CmdResult(status=str(status.status.value), detail=status.detail)
        reply, status = await ctx.send_and_receive(cmd.to, message, response_type=replies,
                                                   sync=cmd.sync, timeout=cmd.timeout)
        if reply is None:
            return CmdResult(status="no_reply", detail=status.detail)
        if isinstance(reply, ChatAcknowledgement):
            return CmdResult(status="ok", reply_kind="ack",
                             reply_text=str(reply.acknowledged_msg_id))
        if isinstance(reply, ChatMessage):
            return CmdResult(status="ok", reply_kind="chat", reply_text=reply.text())
        return CmdResult(status="ok", reply_kind="pong", reply_text=getattr(reply, "text", None))

    @agent.on_rest_post("/bench", BenchCmd, BenchResult)
    async def bench(ctx: Context, cmd: BenchCmd) -> BenchResult:
        """`n` sequential Ping -> Pong round trips to `cmd.to`, timed here."""
        latencies: list[float] = []
        ok = 0
        started = time.perf_counter()
        for n in range(cmd.n):
            sent = time.perf_counter()
            reply, _ = await ctx.send_and_receive(cmd.to, Ping(text=str(n)), response_type=Pong,
                                                  sync=cmd.sync, timeout=cmd.timeout)
            latencies.append((time.perf_counter() - sent) * 1000)
            ok += reply is not None
        return BenchResult(n=cmd.n, ok=ok, seconds=time.perf_counter() - started,
                           latencies_ms=latencies)

    @agent.on_rest_get("/log", Log)
    async def read_log(ctx: Context) -> Log:
        return Log(entries=list(log))

    def stop_when_stdin_closes() -> None:
        sys.stdin.read()
        server = agent._server.server
        if server is not None:
            server.should_exit = True

    print(json.dumps({"address": agent.address, "endpoint": f"http://127.0.0.1:{port}/submit",
                      "started": datetime.now(UTC).isoformat()}), flush=True)
    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    agent.run()


if __name__ == "__main__":
    main()
