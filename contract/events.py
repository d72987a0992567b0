"""Deployment events as the broadcaster reads them, before and after they get their ``seq``.

The broadcaster parses every delivered EventBridge event into a
:class:`DeploymentEvent`, sequences a batch of them per deployment, and hands
the resulting :class:`SequencedEvent` list to every channel that publishes them
(the WebSocket fan-out, the AppSync publisher): one shape, one ``seq``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contract import protocol, spec, state
from contract.authorization import DEFAULT_PROJECT, PROJECT_PATTERN, is_valid_project

MAX_EVENT_ID_LENGTH = 128

#: A producer's id (``detail.producer_id``): the plugin sends 16 hex digits; any producer may number.
PRODUCER_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
_PRODUCER_ID = re.compile(PRODUCER_ID_PATTERN)

#: A producer's clock may run ahead of ours by at most this much (DESIGN: "Producer clocks are claims").
MAX_CLOCK_AHEAD_MS = 5_000

#: ``domain.verb`` names the server sends itself: a producer's event may not take them,
#: or clients would mistake it for the server's own message.
RESERVED_TYPES = frozenset({"deployment.snapshot", spec.PACKED_DETAIL_TYPE})


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
    """The producer's time, clamped to no later than ``received_ms`` + :data:`MAX_CLOCK_AHEAD_MS`."""
    received_ms: int = 0
    """When the system first received the event (the delivery queue's ``SentTimestamp``), epoch ms."""
    arrived_ms: int = 0
    """When a broadcaster first had the event in hand (0 until then), epoch ms: the clock of a gap's
    wait. Not ``received_ms``: under a backlog an event sits in the queue longer than a gap lasts,
    and timing from the queue would skip every gap that concurrent batches open."""
    producer_id: str | None = None
    """The producer that numbered the event (``detail.producer_id``), if it did."""
    producer_seq: int | None = None
    """Its number among that producer's events for this deployment, from 1 (``detail.producer_seq``)."""
    project: str = DEFAULT_PROJECT
    """The project the event claims its deployment belongs to (``detail.project``); the first stored
    event's claim fixes the deployment's, and a later event claiming another is refused."""

    @property
    def numbered(self) -> bool:
        """Whether the producer numbered it: then it is stored in the producer's emission order."""
        return self.producer_id is not None and self.producer_seq is not None

    def to_json(self) -> str:
        """The event as stored while it waits in a deployment's inbox (everything :meth:`from_json` needs)."""
        return json.dumps(
            {
                "type": self.type,
                "deployment_id": self.deployment_id,
                "event_id": self.event_id,
                "data": self.data,
                "timestamp": self.timestamp,
                "received_ms": self.received_ms,
                "arrived_ms": self.arrived_ms,
                "producer_id": self.producer_id,
                "producer_seq": self.producer_seq,
                "project": self.project,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> DeploymentEvent:
        """An event :meth:`to_json` wrote (already validated when it was parsed)."""
        return cls.from_object(json.loads(text))

    @classmethod
    def from_object(cls, raw: Any) -> DeploymentEvent:
        """An event :meth:`to_json` wrote, already decoded from JSON."""
        return cls(
            type=str(raw["type"]),
            deployment_id=str(raw["deployment_id"]),
            event_id=str(raw["event_id"]),
            data=dict(raw.get("data") or {}),
            timestamp=str(raw["timestamp"]),
            received_ms=int(raw.get("received_ms") or 0),
            arrived_ms=int(raw.get("arrived_ms") or 0),
            producer_id=raw.get("producer_id"),
            producer_seq=raw.get("producer_seq"),
            project=str(raw.get("project") or DEFAULT_PROJECT),
        )

    def eventbridge(self, source: str = spec.DEFAULT_EVENT_SOURCE) -> dict[str, Any]:
        """The event as an EventBridge event again (what the dead-letter queue keeps, redrivable)."""
        detail: dict[str, Any] = {
            "deployment_id": self.deployment_id,
            "event_id": self.event_id,
            "data": self.data,
            "timestamp": self.timestamp,
        }
        if self.numbered:
            detail["producer_id"] = self.producer_id
            detail["producer_seq"] = self.producer_seq
        if self.project != DEFAULT_PROJECT:
            detail["project"] = self.project
        return {"detail-type": self.type, "source": source, "detail": detail}

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

    @classmethod
    def from_message(cls, message: str) -> SequencedEvent:
        """A stored wire message as an event to send again (what a holder resends after a takeover)."""
        # The wire message holds every field an event needs to be sent again (not how it was received).
        raw = json.loads(message)
        return cls(DeploymentEvent.from_object(raw), int(raw["seq"]), message)


def parse_event(event: Mapping[str, Any], received_ms: int | None = None) -> DeploymentEvent:
    """Validate an EventBridge event carrying the cloud-ws envelope.

    ``received_ms`` is when the system first received it (the delivery queue's
    ``SentTimestamp``, the same on every redelivery); the producer's
    ``timestamp`` is a claim and is clamped to no later than that plus
    :data:`MAX_CLOCK_AHEAD_MS`, so a clock that runs ahead (or says 2099)
    cannot pin a deployment's dates. Without it, now.

    Raises:
        InvalidEventError: the event can never be valid (retrying cannot fix it).
    """
    detail_type = event.get("detail-type")
    if not protocol.is_valid_event_type(detail_type):
        raise InvalidEventError(f"detail-type must be a domain.verb event type, got {detail_type!r}")
    if detail_type in RESERVED_TYPES:
        raise InvalidEventError(f"{detail_type} is a message of the server's own; producers cannot emit it")
    detail, deployment_id = _detail(event)
    data = detail.get("data", {})
    if not isinstance(data, dict):
        raise InvalidEventError("detail.data must be a JSON object")
    event_id = detail.get("event_id")
    if not (isinstance(event_id, str) and 0 < len(event_id) <= MAX_EVENT_ID_LENGTH):
        event_id = event.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise InvalidEventError("the event has neither detail.event_id nor an EventBridge id")
        event_id = f"eb:{event_id}"
    producer_id, producer_seq = _producer(detail)
    project = detail.get("project")
    project = DEFAULT_PROJECT if project is None else project
    if not is_valid_project(project):
        raise InvalidEventError(f"detail.project must match {PROJECT_PATTERN}, got {project!r}")
    received = int(time.time() * 1000) if received_ms is None else received_ms
    timestamp = clamp_timestamp(detail.get("timestamp"), received)
    return DeploymentEvent(
        str(detail_type),
        str(deployment_id),
        event_id,
        data,
        timestamp,
        received_ms=received,
        producer_id=producer_id,
        producer_seq=producer_seq,
        project=str(project),
    )


def parse_events(
    event: Mapping[str, Any], received_ms: int | None = None
) -> tuple[list[DeploymentEvent], list[str]]:
    """The events one EventBridge event carries: itself, or the members of a packed entry.

    A packed entry (``detail-type`` :data:`~contract.spec.PACKED_DETAIL_TYPE`) holds
    several events of one deployment, each the ``Detail`` of a single entry plus its
    ``type`` (docs/protocol.md, "Packed entries"). Each member is validated as a single
    event would be: a member that can never be valid is left out, and its reason is
    returned beside the events that are, so one bad member does not sink the others.

    Raises:
        InvalidEventError: the event (or the pack as a whole) can never be valid.
    """
    if event.get("detail-type") != spec.PACKED_DETAIL_TYPE:
        return [parse_event(event, received_ms)], []
    detail, deployment_id = _detail(event)
    members = detail.get("events")
    if not isinstance(members, list) or not 1 <= len(members) <= spec.PACKED_MAX_EVENTS:
        raise InvalidEventError(f"detail.events must be a list of 1 to {spec.PACKED_MAX_EVENTS} events")
    received = int(time.time() * 1000) if received_ms is None else received_ms
    events: list[DeploymentEvent] = []
    rejected: list[str] = []
    for index, member in enumerate(members):
        try:
            events.append(_member(member, deployment_id, received))
        except InvalidEventError as exc:
            rejected.append(f"detail.events[{index}]: {exc}")
    return events, rejected


def _detail(event: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """The event's ``detail`` and the deployment it names, both checked."""
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise InvalidEventError("detail must be a JSON object")
    deployment_id = detail.get("deployment_id")
    if not protocol.is_valid_deployment_id(deployment_id):
        raise InvalidEventError(f"detail.deployment_id must match {protocol.DEPLOYMENT_ID_PATTERN}")
    return detail, str(deployment_id)


def _member(member: Any, deployment_id: str, received_ms: int) -> DeploymentEvent:
    """One member of a packed entry, as the single event it stands for."""
    if not isinstance(member, Mapping):
        raise InvalidEventError("a packed event must be a JSON object")
    if member.get("deployment_id") != deployment_id:
        raise InvalidEventError("a packed event must name the pack's deployment_id")
    # A member has no EventBridge id of its own to fall back on: without its event_id,
    # every such member of the pack would share one duplicate key.
    event_id = member.get("event_id")
    if not (isinstance(event_id, str) and 0 < len(event_id) <= MAX_EVENT_ID_LENGTH):
        raise InvalidEventError(f"a packed event needs an event_id of 1 to {MAX_EVENT_ID_LENGTH} characters")
    single = {key: value for key, value in member.items() if key != "type"}
    return parse_event({"detail-type": member.get("type"), "detail": single}, received_ms)


def _producer(detail: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """``detail.producer_id`` and ``detail.producer_seq``: both valid, or the event counts as unnumbered."""
    producer_id, producer_seq = detail.get("producer_id"), detail.get("producer_seq")
    if producer_id is None and producer_seq is None:
        return None, None
    if not (isinstance(producer_id, str) and _PRODUCER_ID.match(producer_id)):
        raise InvalidEventError(f"detail.producer_id must match {PRODUCER_ID_PATTERN}")
    if not (isinstance(producer_seq, int) and not isinstance(producer_seq, bool) and producer_seq >= 1):
        raise InvalidEventError("detail.producer_seq must be an integer from 1, with detail.producer_id")
    return producer_id, producer_seq


def clamp_timestamp(claimed: Any, received_ms: int) -> str:
    """The producer's timestamp, or ``received_ms`` + the allowed skew when it claims a later time.

    A timestamp that cannot be read is replaced by the time of receipt. One
    that is in range is kept exactly as the producer wrote it.
    """
    limit = received_ms + MAX_CLOCK_AHEAD_MS
    claimed_ms = state.epoch_ms(claimed)
    if claimed_ms is None:
        return _iso(received_ms)
    if claimed_ms > limit:
        return _iso(limit)
    return str(claimed)


def _iso(epoch_ms: int) -> str:
    return (
        datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{epoch_ms % 1000:03d}Z"
    )
