"""The bounded, ordered in-memory queue between the hooks and the sender.

When the bus is unreachable events pile up here, up to a bound in events and
in bytes. Past the bound the buffer sheds the *oldest* log line first, then the
oldest event of any kind: a status, stack or progress event describes state,
and views apply the newest state, so a terminal ``deployment.status`` must
survive an outage even if the log lines before it cannot. Shedding never
reorders what remains.

Not thread-safe on its own: the sender guards it with its lock.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from plugin.envelope import Envelope

#: Event types shed first when the buffer is full: commentary, not state.
SHEDDABLE_TYPES = frozenset({"log.created", "stack.progress"})


@dataclass(slots=True)
class Pending:
    """An accepted event on its way to the bus."""

    seq: int
    """Order of acceptance in this plugin: the order events are sent in."""
    envelope: Envelope
    size: int
    """Bytes it counts toward the PutEvents request limit."""
    attempts: int = 0
    """PutEvents calls that returned an error for this entry."""

    @property
    def sheddable(self) -> bool:
        """True for log lines and progress events."""
        return self.envelope.type in SHEDDABLE_TYPES


class EventBuffer:
    """FIFO of :class:`Pending` bounded by count and bytes, shedding logs first."""

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._items: OrderedDict[int, Pending] = OrderedDict()
        # Seqs of sheddable items, oldest first. Entries already sent or shed
        # are skipped lazily and trimmed from the left as the queue advances.
        self._sheddable: deque[int] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Sum of the queued events' sizes."""
        return self._bytes

    def first_seq(self) -> int | None:
        """The oldest queued event's seq, or None when empty."""
        return next(iter(self._items), None)

    def push(self, item: Pending) -> list[Pending]:
        """Append ``item``; returns what had to be shed to make room (possibly ``item`` itself)."""
        if item.size > self.max_bytes:
            return [item]
        shed: list[Pending] = []
        while len(self._items) >= self.max_events or self._bytes + item.size > self.max_bytes:
            shed.append(self._remove(self._victim()))
        self._items[item.seq] = item
        self._bytes += item.size
        if item.sheddable:
            self._sheddable.append(item.seq)
        return shed

    def pop_batch(self, max_entries: int, max_bytes: int) -> list[Pending]:
        """Remove and return the oldest events that fit one PutEvents request (at least one)."""
        batch: list[Pending] = []
        total = 0
        while self._items and len(batch) < max_entries:
            item = next(iter(self._items.values()))
            if batch and total + item.size > max_bytes:
                break
            batch.append(self._remove(item))
            total += item.size
        first = self.first_seq()
        while self._sheddable and (first is None or self._sheddable[0] < first):
            self._sheddable.popleft()
        return batch

    def drain(self) -> list[Pending]:
        """Remove and return everything, oldest first."""
        items = list(self._items.values())
        self._items.clear()
        self._sheddable.clear()
        self._bytes = 0
        return items

    def _victim(self) -> Pending:
        while self._sheddable:
            seq = self._sheddable.popleft()
            if seq in self._items:
                return self._items[seq]
        return next(iter(self._items.values()))

    def _remove(self, item: Pending) -> Pending:
        del self._items[item.seq]
        self._bytes -= item.size
        return item
