"""The picture of one deployment, folded from its events: what ``deployment.snapshot`` carries.

The rules are the project's, shared with the server's reducer and the
TypeScript client, and written down once as data in
``conformance/state.json`` (this package does not import the server's code;
the vectors prove the two equal):

- **Order.** Events are folded in ``seq`` order (give :meth:`DeploymentState.apply`
  what :class:`~cloud_ws_client.sequence.DeploymentSequence` releases), but
  ``seq`` order is not always the order things happened in, so each field
  remembers the *key* of the event that set it: the producer's ``timestamp``
  (a missing or unreadable one sorts first), then ``seq``. A field only takes
  a value from an event with a newer key.
- **Status ranks.** A status only moves forward: ``pending`` < ``deploying``
  < the terminal ones for the deployment, ``pending`` < ``deploying`` <
  ``deployed`` / ``failed`` / ``cancelled`` for a stack; between two of the
  same rank the newer key wins.
- **Attempts.** The first event starts attempt 1. A non-terminal
  ``deployment.status`` newer than a terminal one starts attempt ``n + 1``
  with fresh stacks, ``current_layer``, ``log_counts`` and ``recent_logs``
  (``total_layers`` is kept unless the status names it). An event older than
  the running attempt's start changes nothing but ``updated_at``.
- **Layers.** A status without ``current_layer`` / ``total_layers`` keeps the
  last known values.
- **Logs.** ``log_counts`` counts the attempt's ``log.created`` per level;
  ``recent_logs`` keeps the latest :data:`RECENT_LOGS` by key, oldest first,
  each message cut to :data:`LOG_MESSAGE_CHARS` characters.
- **Other types** only move ``updated_at`` and ``environment``.

A state can start from a ``deployment.snapshot`` (:meth:`DeploymentState.from_snapshot`):
the snapshot is the fold of every event through its ``seq``, and later
events fold on top. The snapshot does not carry the keys that ordered its
fields, so each field it gives is taken as set by the snapshot's latest
event (``updated_at``, then the snapshot's ``seq``): a later event changes it
only if it is stamped at or after that time, so a late arrival never
regresses the picture a newcomer was shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloud_ws_client.messages import TERMINAL_STATUSES, DeploymentSnapshot, Event

#: How many of the attempt's latest log lines a state keeps (as the snapshot does).
RECENT_LOGS = 50
#: Longest log message kept in ``recent_logs`` (the server's state lives in one DynamoDB item).
LOG_MESSAGE_CHARS = 500

_DEPLOYMENT_RANK = {"pending": 0, "deploying": 1, "succeeded": 2, "failed": 2, "cancelled": 2}
_STACK_RANK = {"pending": 0, "deploying": 1, "deployed": 2, "failed": 2, "cancelled": 2}

#: Stack status set by each stack event type.
STACK_STATUS = {
    "stack.started": "deploying",
    "stack.progress": "deploying",
    "stack.deployed": "deployed",
    "stack.failed": "failed",
    "stack.cancelled": "cancelled",
}

OrderKey = tuple[int, int]
"""``(epoch milliseconds, seq)``: how two events that set the same field are ordered; a
missing time is -1, so it sorts before any real one."""

_NEVER: OrderKey = (-1, -1)


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
    """An ISO 8601 timestamp as epoch milliseconds (the server's unit for ordering), or ``None``."""
    parsed = parse_timestamp(value)
    return None if parsed is None else int(parsed.timestamp() * 1000)


def order_key(timestamp: str | None, seq: int) -> OrderKey:
    """The producer's time, then ``seq`` (events without a usable time sort first)."""
    ms = epoch_ms(timestamp)
    return (-1 if ms is None else ms, seq)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(eq=False)
class _Fields:
    """Fields that each remember the key of the event that set them; newest wins."""

    _keys: dict[str, OrderKey] = field(default_factory=dict, repr=False, kw_only=True)

    def _set(self, name: str, value: Any, key: OrderKey) -> None:
        if value is not None and key > self._keys.get(name, _NEVER):
            setattr(self, name, value)
            self._keys[name] = key


@dataclass(eq=False)
class StackState(_Fields):
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
    """The producer's time of ``stack.started``; not part of the snapshot."""

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
    """The producer's time, as sent (ISO 8601)."""
    level: str
    message: str
    stack_name: str | None = None

    @property
    def time(self) -> datetime | None:
        """:attr:`timestamp` as a datetime, when it is readable."""
        return parse_timestamp(self.timestamp)

    @property
    def key(self) -> OrderKey:
        """Where the line sorts among the others."""
        return order_key(self.timestamp, self.seq)

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
class DeploymentState(_Fields):
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
    """The producer's time of the attempt's first event."""
    updated_at: str | None = None
    """The producer's time of the latest event."""
    environment: str | None = None
    stacks: dict[str, StackState] = field(default_factory=dict)
    log_counts: dict[str, int] = field(default_factory=dict)
    """The attempt's ``log.created`` per level."""
    recent_logs: list[LogLine] = field(default_factory=list)
    """The attempt's latest :data:`RECENT_LOGS` log lines, oldest first."""
    error_message: str | None = None
    """Why the attempt failed, from its terminal status (not part of the snapshot)."""
    duration_seconds: float | None = None
    """How long the attempt took, from its terminal status (not part of the snapshot)."""
    seq: int = 0
    """The highest ``seq`` folded in (or the snapshot's)."""
    events: int = 0
    """Events folded in since the start (or the snapshot)."""
    _floor: int = field(default=0, repr=False)
    _seen: set[int] = field(default_factory=set, repr=False)

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
            self.stacks.values(), key=lambda s: (s.layer if s.layer is not None else 1 << 30, order[s.name])
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
            "stacks": {name: stack.to_snapshot() for name, stack in self.stacks.items()},
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
        deployment) changes nothing.
        """
        if snapshot.deployment_id != self.deployment_id or snapshot.seq <= self.seq:
            return False
        data = snapshot.data
        # The snapshot does not say which event set each field: take them all as set by its
        # latest one, so only an event stamped at or after it changes them (see the module doc).
        key = order_key(_text(data.get("updated_at")), snapshot.seq)
        self._keys = {}
        self.status = "pending"
        self._set("status", data.get("status") if data.get("status") in _DEPLOYMENT_RANK else None, key)
        self.attempt = _int(data.get("attempt")) or 0
        self.current_layer = self.total_layers = self.environment = None
        self._set("current_layer", _int(data.get("current_layer")), key)
        self._set("total_layers", _int(data.get("total_layers")), key)
        self._set("environment", _text(data.get("environment")), key)
        self.updated_at = _text(data.get("updated_at"))
        if self.updated_at is not None:
            self._keys["updated_at"] = key
        self.started_at = _text(data.get("started_at"))
        start = (order_key(self.started_at, -1)[0], -1)
        self._keys["attempt"] = start
        if self.started_at is not None:
            self._keys["started_at"] = start
        self.stacks = {}
        stacks = data.get("stacks")
        for name, fields_ in stacks.items() if isinstance(stacks, Mapping) else ():
            if isinstance(name, str) and isinstance(fields_, Mapping):
                self.stacks[name] = _stack_from_snapshot(name, fields_, key)
        counts = data.get("log_counts")
        self.log_counts = {
            level: count
            for level, count in (counts.items() if isinstance(counts, Mapping) else ())
            if isinstance(level, str) and _int(count) is not None
        }
        logs = data.get("recent_logs")
        lines = [_line_from_snapshot(line) for line in (logs if isinstance(logs, list) else ())]
        self.recent_logs = sorted((line for line in lines if line is not None), key=lambda line: line.key)
        self.error_message = self.duration_seconds = None
        self.seq = self._floor = snapshot.seq
        self._seen = set()
        return True

    # -- folding -----------------------------------------------------------------------------

    def apply(self, event: Event) -> bool:
        """Fold one event of this deployment in; returns whether it was new.

        Give events in ``seq`` order (as a :class:`~cloud_ws_client.sequence.DeploymentSequence`
        releases them): the rules order fields by the producer's time, but an
        attempt starts at the status that follows a terminal one in ``seq``
        order. A ``seq`` already folded in (or in the snapshot) changes nothing.
        """
        seq = event.seq
        if event.deployment_id != self.deployment_id or seq <= self._floor or seq in self._seen:
            return False
        self._seen.add(seq)
        self.events += 1
        self.seq = max(self.seq, seq)
        self._fold(event)
        return True

    def _fold(self, event: Event) -> None:
        kind, data = event.type, event.data
        timestamp = _text(event.timestamp)
        key = order_key(timestamp, event.seq)
        keys = self._keys

        if timestamp is not None and key > keys.get("updated_at", _NEVER):
            self.updated_at, keys["updated_at"] = timestamp, key

        status = data.get("status") if kind == "deployment.status" else None
        if self.attempt == 0 or (
            status in _DEPLOYMENT_RANK
            and status not in TERMINAL_STATUSES
            and self.status in TERMINAL_STATUSES
            and key > keys.get("status", _NEVER)
        ):
            self._new_attempt(key, timestamp)
        elif self.attempt > 1 and keys["attempt"] > key:
            return  # an earlier attempt's event, arriving late

        if timestamp is not None and (self.started_at is None or keys["started_at"] > key):
            self.started_at, keys["started_at"] = timestamp, key
        self._set("environment", _text(data.get("environment")), key)

        if kind == "deployment.status":
            if isinstance(status, str) and status in _DEPLOYMENT_RANK:
                rank, current = _DEPLOYMENT_RANK[status], _DEPLOYMENT_RANK[self.status]
                if rank > current or (rank == current and key > keys.get("status", _NEVER)):
                    self.status, keys["status"] = status, key
            self._set("current_layer", _int(data.get("current_layer")), key)
            self._set("total_layers", _int(data.get("total_layers")), key)
            self._set("error_message", _text(data.get("error_message")), key)
            self._set("duration_seconds", _number(data.get("duration_seconds")), key)
        elif kind in STACK_STATUS:
            self._fold_stack(kind, data, key)
        elif kind == "log.created":
            self._fold_log(event, key, timestamp)

    def _new_attempt(self, key: OrderKey, timestamp: str | None) -> None:
        self.attempt += 1
        self.status = "pending"
        self.current_layer = None
        self.stacks = {}
        self.log_counts = {}
        self.recent_logs = []
        self.started_at = timestamp
        self.error_message = self.duration_seconds = None
        for name in ("status", "current_layer", "started_at", "error_message", "duration_seconds"):
            self._keys.pop(name, None)
        self._keys["attempt"] = key
        if timestamp is not None:
            self._keys["started_at"] = key

    def _fold_stack(self, kind: str, data: Mapping[str, Any], key: OrderKey) -> None:
        name = _text(data.get("stack_name"))
        if name is None:
            return
        stack = self.stacks.get(name)
        if stack is None:
            stack = self.stacks[name] = StackState(name)
        status = STACK_STATUS[kind]
        rank, current = _STACK_RANK[status], _STACK_RANK[stack.status]
        if rank > current or (rank == current and key > stack._keys.get("status", _NEVER)):
            stack.status, stack._keys["status"] = status, key
        stack._set("layer", _int(data.get("layer")), key)
        stack._set("environment", _text(data.get("environment")), key)
        stack._set("resource_count", _int(data.get("resource_count")), key)
        stack._set("duration_seconds", _number(data.get("duration_seconds")), key)
        stack._set("error_message", _text(data.get("error_message")), key)
        done = _int(data.get("resources_done"))
        if done is None and kind == "stack.deployed":
            done = _int(data.get("resource_count"))
        stack._set("resources_done", done, key)
        if kind == "stack.started":
            stack._set("started_at", _time(key), key)

    def _fold_log(self, event: Event, key: OrderKey, timestamp: str | None) -> None:
        data = event.data
        level = _text(data.get("level")) or "info"
        self.log_counts[level] = self.log_counts.get(level, 0) + 1
        message = data.get("message")
        line = LogLine(
            seq=event.seq,
            timestamp=timestamp,
            level=level,
            message=(message if isinstance(message, str) else "")[:LOG_MESSAGE_CHARS],
            stack_name=_text(data.get("stack_name")),
        )
        logs = self.recent_logs
        position = len(logs)
        while position > 0 and logs[position - 1].key > key:
            position -= 1
        logs.insert(position, line)
        del logs[:-RECENT_LOGS]


def _time(key: OrderKey) -> datetime | None:
    """The time part of a key as a datetime (``None`` for an event without a time)."""
    return None if key[0] < 0 else datetime.fromtimestamp(key[0] / 1000, UTC)


def _stack_from_snapshot(name: str, fields_: Mapping[str, Any], key: OrderKey) -> StackState:
    stack = StackState(name)
    status = fields_.get("status")
    stack._set("status", status if status in _STACK_RANK else None, key)
    stack._set("layer", _int(fields_.get("layer")), key)
    stack._set("environment", _text(fields_.get("environment")), key)
    stack._set("resource_count", _int(fields_.get("resource_count")), key)
    stack._set("duration_seconds", _number(fields_.get("duration_seconds")), key)
    stack._set("error_message", _text(fields_.get("error_message")), key)
    if stack.status == "deployed":
        stack._set("resources_done", stack.resource_count, key)
    return stack


def _line_from_snapshot(line: Any) -> LogLine | None:
    if not isinstance(line, Mapping) or _int(line.get("seq")) is None:
        return None
    message = line.get("message")
    return LogLine(
        seq=line["seq"],
        timestamp=_text(line.get("timestamp")),
        level=_text(line.get("level")) or "info",
        message=message if isinstance(message, str) else "",
        stack_name=_text(line.get("stack_name")),
    )
