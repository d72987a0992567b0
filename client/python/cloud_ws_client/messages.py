"""Typed server messages: what arrives on a cloud-ws connection (see docs/protocol.md).

Every frame parses into a :class:`Message`. Deployment events (anything with a
``deployment_id`` and a ``seq``) are :class:`Event`; the event types the
orchestrator plugin emits get a subclass with typed accessors for their
``data``. A type this module does not know is still delivered: as an
:class:`Event` when it is sequenced, else as a plain :class:`Message`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cloud_ws_client._protocol_generated import MESSAGE_SEPARATOR
from cloud_ws_client._protocol_generated import TERMINAL_STATUSES as TERMINAL_STATUSES

# TERMINAL_STATUSES (``deployment.status`` statuses after which nothing more happens) and
# MESSAGE_SEPARATOR are generated from conformance/protocol.json, as the server's are checked.


class MalformedMessage(ValueError):
    """A frame that is not a JSON object with a string ``type``."""


@dataclass(frozen=True, kw_only=True)
class Message:
    """Any server message; unknown types arrive as this class."""

    type: str
    """The message type, e.g. ``subscribed`` or ``stack.deployed``."""
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    """The decoded JSON object, with every field the server sent."""

    @property
    def request_id(self) -> str | None:
        """The ``id`` of the request this message answers (replies only; events carry none)."""
        return _optional_str(self.raw, "id")

    def to_json(self) -> str:
        """The message as one line of compact JSON (what the server sent)."""
        return json.dumps(self.raw, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, kw_only=True)
class Subscribed(Message):
    """Acknowledges a subscription.

    ``seq`` is the deployment's latest stored ``seq`` when the subscription took
    effect; ``replay`` is how many stored events follow the acknowledgement.
    """

    deployment_id: str
    seq: int
    replay: int = 0


@dataclass(frozen=True, kw_only=True)
class Unsubscribed(Message):
    """Acknowledges an unsubscription."""

    deployment_id: str


@dataclass(frozen=True, kw_only=True)
class Pong(Message):
    """Answer to the client's keep-alive ``ping`` (consumed by the client, not delivered)."""

    timestamp: str | None = None
    latest: Mapping[str, int] = field(default_factory=dict)
    """The last ``seq`` of every deployment the connection is subscribed to (0: none yet)."""


@dataclass(frozen=True, kw_only=True)
class ErrorMessage(Message):
    """A refused frame: ``code`` is stable, ``message`` is for people."""

    code: str
    message: str
    action: str | None = None
    """The refused frame's ``action``, when it named one."""
    deployment_id: str | None = None
    """The refused frame's ``deployment_id``, when it named a well-formed one."""


@dataclass(frozen=True, kw_only=True)
class Event(Message):
    """A deployment event, numbered by ``seq`` (1, 2, 3… per deployment)."""

    deployment_id: str
    seq: int
    event_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    timestamp: str | None = None
    """The producer's time (ISO 8601), which orders state: a stack's newest state wins."""

    def _str(self, key: str) -> str | None:
        return _optional_str(self.data, key)

    def _int(self, key: str) -> int | None:
        return _optional_int(self.data, key)

    def _number(self, key: str) -> float | None:
        value = self.data.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True, kw_only=True)
class DeploymentStatus(Event):
    """``deployment.status``: the deployment's status and the layer it is at."""

    @property
    def status(self) -> str | None:
        """``pending``, ``deploying``, ``succeeded``, ``failed`` or ``cancelled``."""
        return self._str("status")

    @property
    def current_layer(self) -> int | None:
        """The layer being deployed (1-based; 0 before the first)."""
        return self._int("current_layer")

    @property
    def total_layers(self) -> int | None:
        """How many layers the deployment has."""
        return self._int("total_layers")

    @property
    def error_message(self) -> str | None:
        """Why the deployment failed, when it did."""
        return self._str("error_message")

    @property
    def duration_seconds(self) -> float | None:
        """How long the deployment took, on completion."""
        return self._number("duration_seconds")

    @property
    def is_terminal(self) -> bool:
        """True for ``succeeded``, ``failed`` and ``cancelled``."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, kw_only=True)
class StackEvent(Event):
    """``stack.started``, ``stack.progress``, ``stack.deployed``, ``stack.failed`` or ``stack.cancelled``."""

    @property
    def stack_name(self) -> str | None:
        """The stack's name."""
        return self._str("stack_name")

    @property
    def environment(self) -> str | None:
        """The environment the stack is deployed to."""
        return self._str("environment")

    @property
    def layer(self) -> int | None:
        """The layer the stack belongs to."""
        return self._int("layer")

    @property
    def duration_seconds(self) -> float | None:
        """How long the stack took (``stack.deployed``, ``stack.failed``)."""
        return self._number("duration_seconds")

    @property
    def resource_count(self) -> int | None:
        """Resources in the deployed stack (``stack.deployed``)."""
        return self._int("resource_count")

    @property
    def resources_done(self) -> int | None:
        """Resources done so far (``stack.progress``)."""
        return self._int("resources_done")

    @property
    def error_message(self) -> str | None:
        """Why the stack failed (``stack.failed``)."""
        return self._str("error_message")


@dataclass(frozen=True, kw_only=True)
class LogCreated(Event):
    """``log.created``: one log line of the deployment."""

    @property
    def level(self) -> str:
        """``debug``, ``info``, ``warning``, ``error`` or ``critical``."""
        return self._str("level") or "info"

    @property
    def message(self) -> str:
        """The log line."""
        return self._str("message") or ""

    @property
    def stack_name(self) -> str | None:
        """The stack the line is about, if any."""
        return self._str("stack_name")


@dataclass(frozen=True, kw_only=True)
class DeploymentSnapshot(Message):
    """``deployment.snapshot``: a deployment's state folded from every event up to ``seq``.

    Sent right after ``subscribed`` by servers that support it. It is not an
    event: its ``seq`` names the last event folded in, which arrives (or
    arrived) on its own, so it is passed through rather than sequenced.
    """

    deployment_id: str
    seq: int
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class HistoryReset(Message):
    """``history_reset``: the client's own report that a deployment's history went backwards.

    Not a server message. A resubscribe with ``since`` = the last ``seq`` the
    client had was answered with a lower ``seq``: the server's history is not
    the one the client followed (a restarted local stack forgot everything, or
    a deployment id was reused after its history expired). The client dropped
    its position for the deployment and starts again from the server's
    snapshot, which comes next; a view drops what it folded and starts from it
    too. ``raw`` is ``{"type": "history_reset", "deployment_id", "seq",
    "previous"}``.
    """

    deployment_id: str
    seq: int
    """The server's latest ``seq`` (its acknowledgement's): the new history's position."""
    previous: int
    """The last ``seq`` the client had (the ``since`` it resubscribed with)."""

    @classmethod
    def of(cls, deployment_id: str, seq: int, previous: int) -> HistoryReset:
        """The report for ``deployment_id``, with ``raw`` in the shape of a message."""
        raw = {"type": "history_reset", "deployment_id": deployment_id, "seq": seq, "previous": previous}
        return cls(type="history_reset", raw=raw, deployment_id=deployment_id, seq=seq, previous=previous)


@dataclass(frozen=True, kw_only=True)
class Deployments(Message):
    """``deployments``: the answer to ``list_deployments``, newest first (by ``updated_at``).

    Each entry has ``deployment_id``, ``status``, ``attempt``, ``current_layer``,
    ``total_layers``, ``updated_at`` and ``environment``, as the server sent them.
    """

    deployments: tuple[Mapping[str, Any], ...] = ()


#: Event type → the class that gives its ``data`` typed accessors.
EVENT_CLASSES: dict[str, type[Event]] = {
    "deployment.status": DeploymentStatus,
    "stack.started": StackEvent,
    "stack.progress": StackEvent,
    "stack.deployed": StackEvent,
    "stack.failed": StackEvent,
    "stack.cancelled": StackEvent,
    "log.created": LogCreated,
}


def split_frame(frame: str | bytes) -> list[str | bytes]:
    """The messages of one server frame: one JSON object per line (blank lines skipped).

    A server frame carries one or more messages separated by ``\n``; compact
    JSON never contains a raw newline, so the split is exact.
    """
    lines: list[str | bytes]
    if isinstance(frame, bytes):
        lines = [line for line in frame.split(MESSAGE_SEPARATOR.encode()) if line.strip()]
    else:
        lines = [line for line in frame.split(MESSAGE_SEPARATOR) if line.strip()]
    return lines


def parse_message(frame: str | bytes) -> Message:
    """Parse one server message into its typed message.

    Args:
        frame: One message's text (bytes are decoded as UTF-8); a frame with
            several messages is split first (:func:`split_frame`).

    Returns:
        The most specific :class:`Message` subclass the frame fits.

    Raises:
        MalformedMessage: The frame is not a JSON object with a string ``type``,
            or a known type lacks a field it must have.
    """
    try:
        raw = json.loads(frame)
    except ValueError as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise MalformedMessage("not a JSON object with a string type")
    kind: str = raw["type"]
    if kind == "subscribed":
        return Subscribed(
            type=kind,
            raw=raw,
            deployment_id=_required_str(raw, "deployment_id"),
            seq=_required_int(raw, "seq"),
            replay=_optional_int(raw, "replay") or 0,
        )
    if kind == "unsubscribed":
        return Unsubscribed(type=kind, raw=raw, deployment_id=_required_str(raw, "deployment_id"))
    if kind == "pong":
        latest = raw.get("latest")
        return Pong(
            type=kind,
            raw=raw,
            timestamp=_optional_str(raw, "timestamp"),
            # Entries that are not a deployment's integer seq are left out, not fatal:
            # the pong still proves the connection is alive.
            latest={
                key: value
                for key, value in (latest.items() if isinstance(latest, dict) else ())
                if isinstance(key, str) and isinstance(value, int) and not isinstance(value, bool)
            },
        )
    if kind == "error":
        return ErrorMessage(
            type=kind,
            raw=raw,
            code=_required_str(raw, "code"),
            message=_optional_str(raw, "message") or "",
            action=_optional_str(raw, "action"),
            deployment_id=_optional_str(raw, "deployment_id"),
        )
    if kind == "deployments":
        rows = raw.get("deployments")
        return Deployments(
            type=kind,
            raw=raw,
            deployments=tuple(
                row
                for row in (rows if isinstance(rows, list) else ())
                if isinstance(row, dict) and isinstance(row.get("deployment_id"), str)
            ),
        )
    if kind == "deployment.snapshot":
        data = raw.get("data")
        return DeploymentSnapshot(
            type=kind,
            raw=raw,
            deployment_id=_required_str(raw, "deployment_id"),
            seq=_required_int(raw, "seq"),
            data=data if isinstance(data, dict) else {},
        )
    deployment_id, seq = raw.get("deployment_id"), _optional_int(raw, "seq")
    if isinstance(deployment_id, str) and seq is not None:
        data = raw.get("data")
        return EVENT_CLASSES.get(kind, Event)(
            type=kind,
            raw=raw,
            deployment_id=deployment_id,
            seq=seq,
            event_id=_optional_str(raw, "event_id"),
            data=data if isinstance(data, dict) else {},
            timestamp=_optional_str(raw, "timestamp"),
        )
    # Not sequenced and not known: passed through as it is.
    return Message(type=kind, raw=raw)


def _optional_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) else None


def _optional_int(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _required_str(raw: Mapping[str, Any], key: str) -> str:
    value = _optional_str(raw, key)
    if value is None:
        raise MalformedMessage(f"{raw['type']} message without a string {key}")
    return value


def _required_int(raw: Mapping[str, Any], key: str) -> int:
    value = _optional_int(raw, key)
    if value is None:
        raise MalformedMessage(f"{raw['type']} message without an integer {key}")
    return value
