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


def echo_message(conversation_id: str | None, properties: dict[str, Any]) -> dict[str, Any]:
    """``conversation.echo`` with the properties the Tavus echo quickstart forwards (text or base64 audio)."""
    return {"message_type": "conversation", "event_type": "conversation.echo", "conversation_id": conversation_id,
            "properties": {"modality": properties.get("modality"), "text": properties.get("text"),
                           "audio": properties.get("audio"), "sample_rate": properties.get("sample_rate", 16000),
                           "inference_id": properties.get("inference_id"), "done": properties.get("done")}}


# Tavus event types (both namings) -> our event name; the unified ones name the speaker in properties.role.
_SPEAKING_EVENTS = {
    "conversation.replica.started_speaking": "replica_started_speaking",
    "conversation.replica.stopped_speaking": "replica_stopped_speaking",
    "conversation.user.started_speaking": "user_started_speaking",
    "conversation.user.stopped_speaking": "user_stopped_speaking",
}
_UNIFIED_SPEAKING_EVENTS = {"conversation.started_speaking": "started_speaking",
                            "conversation.stopped_speaking": "stopped_speaking"}


def received_event(message: Any) -> dict[str, Any] | None:
    """Our event for an app message Tavus sent (None when it is not a Tavus conversation event).

    Replica and user speaking events get one name whichever naming Tavus used
    (``replica_started_speaking`` for both ``conversation.replica.started_speaking`` and
    ``conversation.started_speaking`` with role ``replica``); any other Tavus event is
    ``tavus_event``. The original ``event_type``, ``seq``, ``inference_id`` and properties are kept.
    """
    if not isinstance(message, dict) or message.get("message_type") != "conversation":
        return None
    event_type = message.get("event_type")
    if not isinstance(event_type, str):
        return None
    properties = message.get("properties")
    if not isinstance(properties, dict):
        properties = {}
    name = _SPEAKING_EVENTS.get(event_type)
    if name is None and event_type in _UNIFIED_SPEAKING_EVENTS:
        role = properties.get("role")
        name = f"{role}_{_UNIFIED_SPEAKING_EVENTS[event_type]}" if role in ("replica", "user") else None
    return {"event": name or "tavus_event", "event_type": event_type, "seq": message.get("seq"),
            "timestamp": message.get("timestamp"), "conversation_id": message.get("conversation_id"),
            "inference_id": properties.get("inference_id"), "properties": properties}
