"""The standard chat protocol of uAgents (AgentChatProtocol 0.3.0) as AAEX messages.

The fields are those of ``uagents_core.contrib.protocols.chat``, so the JSON of one is the
JSON of the other; the wire identity differs by design (a chosen name here, a schema digest
there, mapped in `CHAT_SCHEMAS`). An AAEX agent answers text with text::

    class Shop(Agent):
        @handler
        async def on_chat(self, ctx: Context, msg: ChatMessage) -> ChatMessage | None:
            return ChatMessage.of_text(f"you said {msg.text()!r}")

A uAgents peer gets a `ChatAcknowledgement` first (the chat protocol asks every receiver to
acknowledge), then the answer. An agent without a chat handler answers with what it sells.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..model import Message
from .uagents import CHAT_ACK_DIGEST, CHAT_MESSAGE_DIGEST, CHAT_PROTOCOL_DIGEST, SchemaTable


class _Content(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TextContent(_Content):
    """Text, UTF-8; markdown is allowed."""

    type: Literal["text"] = "text"
    text: str
    """The text."""


class Resource(_Content):
    """A resource by reference."""

    uri: str
    """Where it is."""
    metadata: dict[str, str]
    """Its mime_type, role, ..."""


class ResourceContent(_Content):
    """One or more resources; the first is the primary one."""

    type: Literal["resource"] = "resource"
    resource_id: uuid.UUID
    """The resource id."""
    resource: Resource | list[Resource]
    """The resource, or it and its companions (thumbnails, audio tracks)."""


class MetadataContent(_Content):
    """Metadata about the conversation."""

    type: Literal["metadata"] = "metadata"
    metadata: dict[str, str]
    """Key-value pairs."""


class StartSessionContent(_Content):
    """Opens a session."""

    type: Literal["start-session"] = "start-session"


class EndSessionContent(_Content):
    """Closes a session."""

    type: Literal["end-session"] = "end-session"


class StartStreamContent(_Content):
    """Opens a stream."""

    type: Literal["start-stream"] = "start-stream"
    stream_id: uuid.UUID
    """The stream."""


class EndStreamContent(_Content):
    """Closes a stream."""

    type: Literal["end-stream"] = "end-stream"
    stream_id: uuid.UUID
    """The stream."""


AgentContent = Annotated[
    TextContent | ResourceContent | MetadataContent | StartSessionContent | EndSessionContent
    | StartStreamContent | EndStreamContent, Field(discriminator="type")]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class ChatMessage(Message, type="chat.message/1"):
    """A chat message: a list of contents, of which text is the common one."""

    timestamp: datetime.datetime = Field(default_factory=_utc_now)
    """When it was written, UTC."""
    msg_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    """Unique id chosen by the writer; the acknowledgement names it."""
    content: list[AgentContent]
    """What it says."""

    @classmethod
    def of_text(cls, text: str) -> ChatMessage:
        """A message with one text content, stamped now."""
        return cls(content=[TextContent(text=text)])

    def text(self) -> str:
        """All its text contents, joined."""
        return "".join(c.text for c in self.content if isinstance(c, TextContent))


class ChatAcknowledgement(Message, type="chat.acknowledgement/1"):
    """Receipt of a chat message."""

    timestamp: datetime.datetime = Field(default_factory=_utc_now)
    """When it was received, UTC."""
    acknowledged_msg_id: uuid.UUID
    """The `msg_id` of the message acknowledged."""
    metadata: dict[str, str] | None = None
    """Optional details."""


CHAT_SCHEMAS = SchemaTable({ChatMessage: CHAT_MESSAGE_DIGEST, ChatAcknowledgement: CHAT_ACK_DIGEST},
                           protocols={ChatMessage: CHAT_PROTOCOL_DIGEST,
                                      ChatAcknowledgement: CHAT_PROTOCOL_DIGEST})
"""The chat protocol's two messages and their uAgents schema digests."""
