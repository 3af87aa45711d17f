"""Tavus Interactions Protocol messages, sent as Daily app messages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def conversation_id_from_url(url: str) -> str:
    """The conversation id a Tavus ``conversation_url`` ends with (``https://tavus.daily.co/c123`` -> ``c123``)."""
    conversation_id = urlsplit(url).path.rstrip("/").rpartition("/")[2]
    if not conversation_id:
        raise ValueError(f"{url!r} has no path segment to take a conversation id from")
    return conversation_id


def interrupt_message(conversation_id: str) -> dict[str, Any]:
    """``conversation.interrupt``: stops the replica speaking."""
    return {"message_type": "conversation", "event_type": "conversation.interrupt",
            "conversation_id": conversation_id}
