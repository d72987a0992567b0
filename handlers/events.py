"""Deployment events as the broadcaster reads them, before and after they get their ``seq``.

The broadcaster parses every delivered EventBridge event into a
:class:`DeploymentEvent`, sequences a batch of them per deployment, and hands
the resulting :class:`SequencedEvent` list to every channel that publishes them
(the WebSocket fan-out, the AppSync publisher): one shape, one ``seq``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handlers import protocol, spec

MAX_EVENT_ID_LENGTH = 128

#: ``domain.verb`` names the server sends itself: a producer's event may not take them,
#: or clients would mistake it for the server's own message.
RESERVED_TYPES = frozenset({"deployment.snapshot"})


class InvalidEventError(ValueError):
    """The EventBridge event is not a cloud-ws deployment event."""


@dataclass(frozen=True)
class DeploymentEvent:
    """A validated deployment event, before it has a ``seq``."""

    type: str
    deployment_id: str
    event_id: str
    """The producer's ``event_id``, else EventBridge's ``id``."""
    data: dict[str, Any]
    timestamp: str

    @property
    def identity(self) -> str:
        """The key that makes a second delivery a no-op."""
        return f"{self.deployment_id}/{self.event_id}"

    def render(self, seq: int) -> str:
        """The wire message for ``seq``; oversize data is replaced by a marker, never split."""
        message = {
            "type": self.type,
            "deployment_id": self.deployment_id,
            "seq": seq,
            "event_id": self.event_id,
            "data": self.data,
            "timestamp": self.timestamp,
        }
        encoded = protocol.encode(message)
        if len(encoded) > spec.API_GATEWAY_LIMITS.message_bytes - 1024:
            message["data"] = {"truncated": True, "original_bytes": len(encoded)}
            encoded = protocol.encode(message)
        return encoded.decode("utf-8")


@dataclass(frozen=True)
class SequencedEvent:
    """An event with its ``seq``, stored in the history, as every channel publishes it."""

    event: DeploymentEvent
    seq: int
    message: str
    """The exact wire JSON (what the history stores and a replay sends)."""

    @property
    def deployment_id(self) -> str:
        """The deployment the event reports on."""
        return self.event.deployment_id


def parse_event(event: Mapping[str, Any]) -> DeploymentEvent:
    """Validate an EventBridge event carrying the cloud-ws envelope.

    Raises:
        InvalidEventError: the event can never be valid (retrying cannot fix it).
    """
    detail_type = event.get("detail-type")
    if not protocol.is_valid_event_type(detail_type):
        raise InvalidEventError(f"detail-type must be a domain.verb event type, got {detail_type!r}")
    if detail_type in RESERVED_TYPES:
        raise InvalidEventError(f"{detail_type} is a message of the server's own; producers cannot emit it")
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise InvalidEventError("detail must be a JSON object")
    deployment_id = detail.get("deployment_id")
    if not protocol.is_valid_deployment_id(deployment_id):
        raise InvalidEventError(f"detail.deployment_id must match {protocol.DEPLOYMENT_ID_PATTERN}")
    data = detail.get("data", {})
    if not isinstance(data, dict):
        raise InvalidEventError("detail.data must be a JSON object")
    event_id = detail.get("event_id")
    if not (isinstance(event_id, str) and 0 < len(event_id) <= MAX_EVENT_ID_LENGTH):
        event_id = event.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise InvalidEventError("the event has neither detail.event_id nor an EventBridge id")
        event_id = f"eb:{event_id}"
    timestamp = detail.get("timestamp")
    if not isinstance(timestamp, str) or not timestamp:
        timestamp = event.get("time") if isinstance(event.get("time"), str) else protocol.now_iso()
    return DeploymentEvent(str(detail_type), str(deployment_id), event_id, data, str(timestamp))
