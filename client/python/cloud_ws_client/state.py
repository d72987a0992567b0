"""The picture of one deployment, built from its events: status, layers, stacks, latest logs.

Transport order is best effort (EventBridge does not guarantee it), so ``seq``
order is not always the order things happened in: a ``stack.started`` can be
stored after its ``stack.deployed``. Every field therefore keeps the *order
key* of the event that set it, the producer's ``timestamp`` then ``seq``, and
an event only overwrites a field with an older key. Applying an event twice,
or events in any order, gives the same picture: a late arrival never
regresses it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloud_ws_client.messages import TERMINAL_STATUSES, DeploymentStatus, Event, LogCreated, StackEvent

OrderKey = tuple[datetime, int]
"""``(timestamp, seq)``: how two events that set the same field are ordered."""

_EARLIEST = datetime.min.replace(tzinfo=UTC)

#: Stack status set by each stack event type.
STACK_STATUS = {
    "stack.started": "deploying",
    "stack.progress": "deploying",
    "stack.deployed": "deployed",
    "stack.failed": "failed",
}


def parse_timestamp(value: str | None) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime (UTC when it names no zone), or ``None``."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def order_key(event: Event) -> OrderKey:
    """The producer's time, then ``seq`` (events without a usable time sort first)."""
    return (parse_timestamp(event.timestamp) or _EARLIEST, event.seq)


@dataclass(eq=False)
class _Fields:
    """Fields that each remember the key of the event that set them; newest wins."""

    _keys: dict[str, OrderKey] = field(default_factory=dict, repr=False, kw_only=True)

    def _set(self, name: str, value: Any, key: OrderKey) -> bool:
        if value is None or key <= self._keys.get(name, (_EARLIEST, -1)):
            return False
        self._keys[name] = key
        if getattr(self, name) == value:
            return False
        setattr(self, name, value)
        return True


@dataclass(eq=False)
class StackState(_Fields):
    """What is known about one stack of the deployment."""

    name: str
    status: str = "pending"
    """``pending``, ``deploying``, ``deployed`` or ``failed``."""
    layer: int | None = None
    environment: str | None = None
    started_at: datetime | None = None
    """The producer's time of ``stack.started``."""
    finished_at: datetime | None = None
    """The producer's time of ``stack.deployed`` / ``stack.failed``."""
    duration_seconds: float | None = None
    resource_count: int | None = None
    resources_done: int | None = None
    error_message: str | None = None

    def elapsed(self, now: datetime) -> float | None:
        """Seconds the stack took (or has taken so far), if known."""
        if self.duration_seconds is not None:
            return self.duration_seconds
        if self.started_at is None:
            return None
        end = self.finished_at or now
        return max(0.0, (end - self.started_at).total_seconds())


@dataclass(frozen=True)
class LogLine:
    """One ``log.created`` line."""

    seq: int
    timestamp: datetime | None
    level: str
    message: str
    stack_name: str | None = None


@dataclass(eq=False)
class DeploymentState(_Fields):
    """The deployment as its events describe it; feed every event to :meth:`apply`.

    Args:
        deployment_id: The deployment.
        max_logs: How many of the latest log lines to keep.
    """

    deployment_id: str
    max_logs: int = 8
    status: str | None = None
    current_layer: int | None = None
    total_layers: int | None = None
    error_message: str | None = None
    duration_seconds: float | None = None
    stacks: dict[str, StackState] = field(default_factory=dict)
    events: int = 0
    """Distinct events applied."""
    last_seq: int = 0
    """Highest ``seq`` applied."""
    _logs: list[tuple[OrderKey, LogLine]] = field(default_factory=list, repr=False)
    _seen: set[int] = field(default_factory=set, repr=False)

    @property
    def logs(self) -> list[LogLine]:
        """The latest log lines, oldest first (by the producer's time)."""
        return [line for _, line in self._logs]

    @property
    def is_complete(self) -> bool:
        """True once the status is terminal (``succeeded``, ``failed``, ``cancelled``)."""
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        """True when the deployment ended ``succeeded``."""
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

    def apply(self, event: Event) -> bool:
        """Apply one event of this deployment; returns whether the picture changed.

        Idempotent and order-independent: a duplicate changes nothing, and an
        older event never overwrites what a newer one set.
        """
        if event.deployment_id != self.deployment_id or event.seq in self._seen:
            return False
        self._seen.add(event.seq)
        self.events += 1
        self.last_seq = max(self.last_seq, event.seq)
        key = order_key(event)
        if isinstance(event, DeploymentStatus):
            return self._apply_status(event, key)
        if isinstance(event, StackEvent):
            return self._apply_stack(event, key)
        if isinstance(event, LogCreated):
            return self._apply_log(event, key)
        return True  # an event type without a place in the picture still counts

    def _apply_status(self, event: DeploymentStatus, key: OrderKey) -> bool:
        changed = self._set("status", event.status, key)
        changed |= self._set("current_layer", event.current_layer, key)
        changed |= self._set("total_layers", event.total_layers, key)
        changed |= self._set("error_message", event.error_message, key)
        changed |= self._set("duration_seconds", event.duration_seconds, key)
        return changed

    def _apply_stack(self, event: StackEvent, key: OrderKey) -> bool:
        name = event.stack_name
        if name is None:
            return False
        stack = self.stacks.get(name)
        changed = stack is None
        if stack is None:
            stack = self.stacks[name] = StackState(name)
        changed |= stack._set("status", STACK_STATUS[event.type], key)
        changed |= stack._set("layer", event.layer, key)
        changed |= stack._set("environment", event.environment, key)
        when = key[0] if key[0] != _EARLIEST else None
        if event.type == "stack.started":
            changed |= stack._set("started_at", when, key)
        elif event.type in ("stack.deployed", "stack.failed"):
            changed |= stack._set("finished_at", when, key)
            changed |= stack._set("duration_seconds", event.duration_seconds, key)
            changed |= stack._set("error_message", event.error_message, key)
        count, done = event.resource_count, event.resources_done
        changed |= stack._set("resource_count", count, key)
        changed |= stack._set("resources_done", count if done is None else done, key)
        return changed

    def _apply_log(self, event: LogCreated, key: OrderKey) -> bool:
        line = LogLine(
            seq=event.seq,
            timestamp=parse_timestamp(event.timestamp),
            level=event.level,
            message=event.message,
            stack_name=event.stack_name,
        )
        if len(self._logs) >= self.max_logs and key < self._logs[0][0]:
            return False  # older than every line kept
        bisect.insort(self._logs, (key, line), key=lambda item: item[0])
        del self._logs[: -self.max_logs]
        return True
