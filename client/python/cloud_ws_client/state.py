"""The picture of one deployment, folded from its events: what ``deployment.snapshot`` carries.

The rules are the project's, shared with the server's reducer and the
TypeScript client, and written down once as data in
``conformance/state.json`` (this package does not import the server's code;
the vectors prove the two equal):

- **Order.** Events are folded in ``seq`` order (give :meth:`DeploymentState.apply`
  what :class:`~cloud_ws_client.sequence.DeploymentSequence` releases) and the
  later event wins: ``seq`` order is the producer's emission order, while a
  producer's ``timestamp`` is only a claim, so it orders nothing. A ``seq``
  at or below the last one folded is a duplicate and is ignored.
- **Status ranks.** Within an attempt a status only moves forward:
  ``pending`` < ``deploying`` < the terminal ones for the deployment,
  ``pending`` < ``deploying`` < ``deployed`` / ``failed`` / ``cancelled`` for
  a stack; between two of the same rank the later one wins.
- **Attempts.** The first event starts attempt 1. A non-terminal
  ``deployment.status`` after a terminal one starts attempt ``n + 1`` with
  fresh stacks, ``current_layer``, ``log_counts`` and ``recent_logs``
  (``total_layers`` is kept unless the status names it).
- **Dates.** ``updated_at`` / ``started_at`` are the timestamps of the latest
  event / the attempt's first event, as given (the server clamps them).
- **Layers.** A status without ``current_layer`` / ``total_layers`` keeps the
  last known values.
- **The attempt's outcome.** A ``deployment.status`` carrying
  ``error_message`` / ``duration_seconds`` (the producer's final status) sets
  the attempt's; a status without them keeps them; a re-run starts without.
- **Logs.** ``log_counts`` counts the attempt's ``log.created`` per level;
  ``recent_logs`` keeps the latest :data:`RECENT_LOGS`, oldest first.
- **Other types** only move ``updated_at`` and ``environment``.
- **Bounds.** Every text is cut to a size in bytes of its JSON encoding
  (:func:`cut`), an attempt keeps at most :data:`MAX_STACKS` stacks (events
  about further ones are counted in ``dropped_stack_events``) and
  ``log_counts`` at most :data:`MAX_LOG_LEVELS` levels besides
  :data:`OTHER_LEVEL`; integers outside 0 to 2^53 - 1 and negative or
  non-finite durations are ignored. The same limits as the server's, so a
  snapshot always fits in one 128 KB message.

A state can start from a ``deployment.snapshot`` (:meth:`DeploymentState.from_snapshot`):
the snapshot is the fold of every event through its ``seq``, and later
events fold on top of it exactly as they fold on the server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from cloud_ws_client._protocol_generated import ENVIRONMENT_BYTES as ENVIRONMENT_BYTES
from cloud_ws_client._protocol_generated import ERROR_MESSAGE_BYTES as ERROR_MESSAGE_BYTES
from cloud_ws_client._protocol_generated import LEVEL_BYTES as LEVEL_BYTES
from cloud_ws_client._protocol_generated import LOG_MESSAGE_CHARS as LOG_MESSAGE_CHARS
from cloud_ws_client._protocol_generated import MAX_INTEGER
from cloud_ws_client._protocol_generated import MAX_LOG_LEVELS as MAX_LOG_LEVELS
from cloud_ws_client._protocol_generated import MAX_STACKS as MAX_STACKS
from cloud_ws_client._protocol_generated import OTHER_LEVEL as OTHER_LEVEL
from cloud_ws_client._protocol_generated import RECENT_LOGS as RECENT_LOGS
from cloud_ws_client._protocol_generated import STACK_NAME_BYTES as STACK_NAME_BYTES
from cloud_ws_client._protocol_generated import STACK_STATUS as STACK_STATUS
from cloud_ws_client._protocol_generated import TIMESTAMP_BYTES as TIMESTAMP_BYTES
from cloud_ws_client.messages import TERMINAL_STATUSES, DeploymentSnapshot, Event

# The limits (the same numbers as the server's) are generated from conformance/state.json's
# "limits" and conformance/protocol.json by tools/gen_protocol.py: RECENT_LOGS (log lines a state
# keeps, as the snapshot does), LOG_MESSAGE_CHARS (largest log message kept), ERROR_MESSAGE_BYTES,
# STACK_NAME_BYTES, ENVIRONMENT_BYTES, LEVEL_BYTES and TIMESTAMP_BYTES (largest texts), all in bytes
# of their JSON encoding; MAX_STACKS (stacks an attempt keeps; events about further stack names are
# counted in ``dropped_stack_events``), MAX_LOG_LEVELS (distinct levels ``log_counts`` keeps besides
# OTHER_LEVEL, the key counting the lines of every further level).
#: Largest integer every implementation reads exactly (JavaScript's ``Number.MAX_SAFE_INTEGER``).
MAX_SAFE_INTEGER: Final[int] = MAX_INTEGER

_T = TypeVar("_T")

_DEPLOYMENT_RANK = {"pending": 0, "deploying": 1, "succeeded": 2, "failed": 2, "cancelled": 2}
_STACK_RANK = {"pending": 0, "deploying": 1, "deployed": 2, "failed": 2, "cancelled": 2}

# STACK_STATUS (the stack status each stack event type sets) comes from conformance/protocol.json.


def parse_timestamp(value: str | None) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime (UTC when it names no zone), or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def epoch_ms(value: str | None) -> int | None:
    """An ISO 8601 timestamp as epoch milliseconds, or ``None``."""
    parsed = parse_timestamp(value)
    return None if parsed is None else int(parsed.timestamp() * 1000)


def _char_bytes(code: int) -> int:
    """Bytes one code point takes in compact JSON written as UTF-8 (non-ASCII unescaped)."""
    if code in (0x22, 0x5C, 0x08, 0x09, 0x0A, 0x0C, 0x0D):
        return 2  # \" \\ \b \t \n \f \r
    if code < 0x20:
        return 6  # \u00XX
    if code < 0x80:
        return 1
    if code < 0x800:
        return 2
    return 3 if code < 0x10000 else 4


def cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of JSON (UTF-8, quotes not counted), at a character boundary.

    A lone surrogate becomes U+FFFD, as on the server (UTF-8 cannot encode it).
    """
    if len(text) * 6 <= limit and not any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        return text  # short enough whatever the characters
    kept: list[str] = []
    size = 0
    for char in text:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            char, code = "\ufffd", 0xFFFD
        size += _char_bytes(code)
        if size > limit:
            break
        kept.append(char)
    return "".join(kept)


def _int(value: Any) -> int | None:
    """An integer from 0 to :data:`MAX_SAFE_INTEGER`, else None.

    ``2.0`` counts as 2: JavaScript cannot tell them apart, and every
    implementation must read a number alike.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if 0 <= value <= MAX_SAFE_INTEGER else None


def _number(value: Any) -> int | float | None:
    """A finite number of seconds, at least 0 (at most :data:`MAX_SAFE_INTEGER` when whole), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) or value.is_integer():
        return value if _int(value) is not None else None
    return value if math.isfinite(value) and value >= 0 else None


def _text(value: Any, limit: int) -> str | None:
    """A non-empty string cut to ``limit`` bytes of JSON, else ``None``."""
    if not isinstance(value, str) or not value:
        return None
    return cut(value, limit) or None


@dataclass(eq=False)
class StackState:
    """What is known about one stack of the deployment's current attempt."""

    name: str
    status: str = "pending"
    """``pending``, ``deploying``, ``deployed``, ``failed`` or ``cancelled``."""
    layer: int | None = None
    environment: str | None = None
    resource_count: int | None = None
    duration_seconds: float | None = None
    error_message: str | None = None
    resources_done: int | None = None
    """Resources done so far (``stack.progress``); not part of the snapshot."""
    started_at: datetime | None = None
    """The time of its latest ``stack.started``; not part of the snapshot."""

    def elapsed(self, now: datetime) -> float | None:
        """Seconds the stack took (``duration_seconds``), or has taken so far while it deploys."""
        if self.duration_seconds is not None:
            return float(self.duration_seconds)
        if self.started_at is None or self.status != "deploying":
            return None
        return max(0.0, (now - self.started_at).total_seconds())

    def to_snapshot(self) -> dict[str, Any]:
        """The stack as a snapshot's ``stacks`` entry."""
        return {
            "status": self.status,
            "layer": self.layer,
            "environment": self.environment,
            "resource_count": self.resource_count,
            "duration_seconds": self.duration_seconds,
            "error_message": self.error_message,
        }


@dataclass(frozen=True)
class LogLine:
    """One ``log.created`` line."""

    seq: int
    timestamp: str | None
    """The event's time, as sent (ISO 8601)."""
    level: str
    message: str
    stack_name: str | None = None

    @property
    def time(self) -> datetime | None:
        """:attr:`timestamp` as a datetime, when it is readable."""
        return parse_timestamp(self.timestamp)

    def to_snapshot(self) -> dict[str, Any]:
        """The line as a snapshot's ``recent_logs`` entry."""
        return {
            "level": self.level,
            "message": self.message,
            "stack_name": self.stack_name,
            "seq": self.seq,
            "timestamp": self.timestamp,
        }


@dataclass(eq=False)
class DeploymentState:
    """The deployment as its events describe it: its latest attempt.

    Start empty or from a snapshot (:meth:`from_snapshot`), then feed every
    event, in ``seq`` order, to :meth:`apply`.

    Args:
        deployment_id: The deployment.
    """

    deployment_id: str
    status: str = "pending"
    """``pending``, ``deploying``, ``succeeded``, ``failed`` or ``cancelled``."""
    attempt: int = 0
    """1 for the first run, ``n + 1`` for each re-run; 0 before any event."""
    current_layer: int | None = None
    total_layers: int | None = None
    started_at: str | None = None
    """The time of the attempt's first event (as the server clamped it)."""
    updated_at: str | None = None
    """The time of the latest event (as the server clamped it)."""
    environment: str | None = None
    stacks: dict[str, StackState] = field(default_factory=dict)
    """The attempt's stacks (at most :data:`MAX_STACKS`), in the order they were first heard of."""
    dropped_stack_events: int = 0
    """The attempt's stack events about stacks beyond the first :data:`MAX_STACKS` (not kept)."""
    log_counts: dict[str, int] = field(default_factory=dict)
    """The attempt's ``log.created`` per level."""
    recent_logs: list[LogLine] = field(default_factory=list)
    """The attempt's latest :data:`RECENT_LOGS` log lines, oldest first."""
    error_message: str | None = None
    """Why the attempt ended, from the latest status that carried one (its terminal status)."""
    duration_seconds: float | None = None
    """How long the attempt took, from the latest status that carried it (its terminal status)."""
    seq: int = 0
    """The highest ``seq`` folded in (or the snapshot's)."""
    events: int = 0
    """Events folded in since the start (or the snapshot)."""

    # -- reading -----------------------------------------------------------------------------

    @property
    def logs(self) -> list[LogLine]:
        """The latest log lines, oldest first (same as :attr:`recent_logs`)."""
        return self.recent_logs

    @property
    def last_seq(self) -> int:
        """The highest ``seq`` folded in (same as :attr:`seq`)."""
        return self.seq

    @property
    def is_complete(self) -> bool:
        """True once the latest attempt's status is terminal (``succeeded``, ``failed``, ``cancelled``)."""
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        """True when the latest attempt ended ``succeeded``."""
        return self.status == "succeeded"

    @property
    def layers_done(self) -> int:
        """Layers finished: all of them on success, else those before the current one."""
        if self.status == "succeeded" and self.total_layers is not None:
            return self.total_layers
        return max(0, (self.current_layer or 0) - 1)

    def stacks_in_order(self) -> list[StackState]:
        """Stacks by layer, then in the order they were first heard of."""
        order = {name: index for index, name in enumerate(self.stacks)}
        return sorted(
            self.stacks.values(), key=lambda s: (s.layer if s.layer is not None else 1 << 60, order[s.name])
        )

    def to_snapshot(self) -> dict[str, Any]:
        """The state with a snapshot's field names and shape (its ``data``)."""
        return {
            "status": self.status,
            "attempt": self.attempt,
            "current_layer": self.current_layer,
            "total_layers": self.total_layers,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "environment": self.environment,
            "error_message": self.error_message,
            "duration_seconds": self.duration_seconds,
            "stacks": {name: stack.to_snapshot() for name, stack in self.stacks.items()},
            "dropped_stack_events": self.dropped_stack_events,
            "log_counts": dict(self.log_counts),
            "recent_logs": [line.to_snapshot() for line in self.recent_logs],
        }

    # -- snapshots ---------------------------------------------------------------------------

    @classmethod
    def from_snapshot(cls, snapshot: DeploymentSnapshot) -> DeploymentState:
        """A state that starts where a ``deployment.snapshot`` stands."""
        state = cls(snapshot.deployment_id)
        state.apply_snapshot(snapshot)
        return state

    def apply_snapshot(self, snapshot: DeploymentSnapshot) -> bool:
        """Take a snapshot of this deployment as the state, if it is ahead of it; returns whether it was.

        Events at or before the snapshot's ``seq`` are in it, so :meth:`apply`
        ignores them afterwards (a replay that follows the snapshot fills in
        nothing twice). A snapshot behind the state (or of another
        deployment) changes nothing. Its fields are read defensively (a
        field of the wrong type is "not known") and within the limits.
        """
        if snapshot.deployment_id != self.deployment_id or snapshot.seq <= self.seq:
            return False
        data = snapshot.data
        status = data.get("status")
        self.status = status if isinstance(status, str) and status in _DEPLOYMENT_RANK else "pending"
        self.attempt = _int(data.get("attempt")) or 0
        self.current_layer = _int(data.get("current_layer"))
        self.total_layers = _int(data.get("total_layers"))
        self.started_at = _text(data.get("started_at"), TIMESTAMP_BYTES)
        self.updated_at = _text(data.get("updated_at"), TIMESTAMP_BYTES)
        self.environment = _text(data.get("environment"), ENVIRONMENT_BYTES)
        self.stacks = {}
        stacks = data.get("stacks")
        for name, fields_ in stacks.items() if isinstance(stacks, Mapping) else ():
            key = _text(name, STACK_NAME_BYTES)
            if key is not None and isinstance(fields_, Mapping) and len(self.stacks) < MAX_STACKS:
                self.stacks.setdefault(key, _stack_from_snapshot(key, fields_))
        self.dropped_stack_events = _int(data.get("dropped_stack_events")) or 0
        counts = data.get("log_counts")
        self.log_counts = {}
        for level, count in counts.items() if isinstance(counts, Mapping) else ():
            name, number = _text(level, LEVEL_BYTES), _int(count)
            if name is not None and number:
                self._count_level(name, number)
        logs = data.get("recent_logs")
        lines = [_line_from_snapshot(line) for line in (logs if isinstance(logs, list) else ())]
        kept = sorted((line for line in lines if line is not None), key=lambda line: line.seq)
        self.recent_logs = kept[-RECENT_LOGS:]
        self.error_message = _text(data.get("error_message"), ERROR_MESSAGE_BYTES)
        self.duration_seconds = _number(data.get("duration_seconds"))
        self.seq = snapshot.seq
        return True

    # -- folding -----------------------------------------------------------------------------

    def apply(self, event: Event) -> bool:
        """Fold one event of this deployment in; returns whether it was new.

        Give events in ``seq`` order (as a :class:`~cloud_ws_client.sequence.DeploymentSequence`
        releases them): the later event wins. A ``seq`` at or below the last
        one folded (or the snapshot's) is a duplicate and changes nothing.
        """
        seq = event.seq
        if event.deployment_id != self.deployment_id or _int(seq) is None or seq <= self.seq:
            return False
        self.seq = seq
        self.events += 1
        self._fold(event)
        return True

    def _fold(self, event: Event) -> None:
        kind, data = event.type, event.data
        timestamp = _text(event.timestamp, TIMESTAMP_BYTES)
        if timestamp is not None:
            self.updated_at = timestamp

        raw_status = data.get("status") if kind == "deployment.status" else None
        status = raw_status if isinstance(raw_status, str) and raw_status in _DEPLOYMENT_RANK else None
        if self.attempt == 0 or (
            status is not None and status not in TERMINAL_STATUSES and self.status in TERMINAL_STATUSES
        ):
            self._new_attempt(timestamp)
        if self.started_at is None:
            self.started_at = timestamp
        environment = _text(data.get("environment"), ENVIRONMENT_BYTES)
        if environment is not None:
            self.environment = environment

        if kind == "deployment.status":
            if status is not None and _DEPLOYMENT_RANK[status] >= _DEPLOYMENT_RANK[self.status]:
                self.status = status
            self.current_layer = _or(_int(data.get("current_layer")), self.current_layer)
            self.total_layers = _or(_int(data.get("total_layers")), self.total_layers)
            self.error_message = _or(
                _text(data.get("error_message"), ERROR_MESSAGE_BYTES), self.error_message
            )
            self.duration_seconds = _or(_number(data.get("duration_seconds")), self.duration_seconds)
        elif kind in STACK_STATUS:
            self._fold_stack(kind, data, timestamp)
        elif kind == "log.created":
            self._fold_log(event, timestamp)

    def _new_attempt(self, timestamp: str | None) -> None:
        self.attempt += 1
        self.status = "pending"
        self.current_layer = None
        self.started_at = timestamp
        self.stacks = {}
        self.dropped_stack_events = 0
        self.log_counts = {}
        self.recent_logs = []
        self.error_message = self.duration_seconds = None

    def _fold_stack(self, kind: str, data: Mapping[str, Any], timestamp: str | None) -> None:
        name = _text(data.get("stack_name"), STACK_NAME_BYTES)
        if name is None:
            return
        stack = self.stacks.get(name)
        if stack is None:
            if len(self.stacks) >= MAX_STACKS:
                self.dropped_stack_events += 1
                return
            stack = self.stacks[name] = StackState(name)
        status = STACK_STATUS[kind]
        if _STACK_RANK[status] >= _STACK_RANK[stack.status]:
            stack.status = status
        stack.layer = _or(_int(data.get("layer")), stack.layer)
        stack.environment = _or(_text(data.get("environment"), ENVIRONMENT_BYTES), stack.environment)
        stack.resource_count = _or(_int(data.get("resource_count")), stack.resource_count)
        stack.duration_seconds = _or(_number(data.get("duration_seconds")), stack.duration_seconds)
        stack.error_message = _or(_text(data.get("error_message"), ERROR_MESSAGE_BYTES), stack.error_message)
        done = _int(data.get("resources_done"))
        if done is None and kind == "stack.deployed":
            done = _int(data.get("resource_count"))
        stack.resources_done = _or(done, stack.resources_done)
        if kind == "stack.started":
            stack.started_at = _or(parse_timestamp(timestamp), stack.started_at)

    def _count_level(self, level: str, count: int) -> None:
        counts = self.log_counts
        if (
            level not in counts
            and level != OTHER_LEVEL
            and sum(k != OTHER_LEVEL for k in counts) >= MAX_LOG_LEVELS
        ):
            level = OTHER_LEVEL
        counts[level] = counts.get(level, 0) + count

    def _fold_log(self, event: Event, timestamp: str | None) -> None:
        data = event.data
        level = _text(data.get("level"), LEVEL_BYTES) or "info"
        self._count_level(level, 1)
        message = data.get("message")
        self.recent_logs.append(
            LogLine(
                seq=event.seq,
                timestamp=timestamp,
                level=level,
                message=cut(message, LOG_MESSAGE_CHARS) if isinstance(message, str) else "",
                stack_name=_text(data.get("stack_name"), STACK_NAME_BYTES),
            )
        )
        del self.recent_logs[:-RECENT_LOGS]


def _or(value: _T | None, current: _T | None) -> _T | None:
    """``value`` when the event gives one, else what was known (a missing field erases nothing)."""
    return current if value is None else value


def _stack_from_snapshot(name: str, fields_: Mapping[str, Any]) -> StackState:
    status = fields_.get("status")
    stack = StackState(
        name,
        status=status if isinstance(status, str) and status in _STACK_RANK else "pending",
        layer=_int(fields_.get("layer")),
        environment=_text(fields_.get("environment"), ENVIRONMENT_BYTES),
        resource_count=_int(fields_.get("resource_count")),
        duration_seconds=_number(fields_.get("duration_seconds")),
        error_message=_text(fields_.get("error_message"), ERROR_MESSAGE_BYTES),
    )
    if stack.status == "deployed":
        stack.resources_done = stack.resource_count
    return stack


def _line_from_snapshot(line: Any) -> LogLine | None:
    if not isinstance(line, Mapping) or _int(line.get("seq")) is None:
        return None
    message = line.get("message")
    return LogLine(
        seq=line["seq"],
        timestamp=_text(line.get("timestamp"), TIMESTAMP_BYTES),
        level=_text(line.get("level"), LEVEL_BYTES) or "info",
        message=cut(message, LOG_MESSAGE_CHARS) if isinstance(message, str) else "",
        stack_name=_text(line.get("stack_name"), STACK_NAME_BYTES),
    )
