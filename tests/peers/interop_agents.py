"""Agents a node hosts in the interop tests (`class = "tests.peers.interop_agents:X"`)."""

from __future__ import annotations

from aaex_agents import Agent, Context, Message, handler
from aaex_agents.interop import ChatMessage


class Ping(Message, type="tests.interop_ping/1"):
    text: str


class Pong(Message, type="tests.interop_pong/1"):
    text: str


class Chatty(Agent):
    """Answers text with text, and Ping with Pong."""

    @handler
    async def on_chat(self, ctx: Context, msg: ChatMessage) -> ChatMessage | None:
        if msg.text().startswith("echo:"):
            return None
        return ChatMessage.of_text(f"echo: {msg.text()}")

    @handler
    async def on_ping(self, ctx: Context, msg: Ping) -> Pong:
        return Pong(text="pong: " + msg.text)
