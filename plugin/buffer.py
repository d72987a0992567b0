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

from contract import spec
from plugin.envelope import PACKED_OVERHEAD_BYTES, Envelope, packed_member_bytes

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


def entry_bytes(entry: list[Pending]) -> int:
    """Bytes one PutEvents entry carrying ``entry`` counts toward the request limit.

    One event: its own size. Several (a packed entry): the packed ``Detail`` (each
    member's detail and type, the list around them), the packed type, and the fixed
    part of an entry (source, bus, slack) once.
    """
    if len(entry) == 1:
        return entry[0].size
    members = sum(packed_member_bytes(item.envelope) for item in entry)
    return _packed_frame(entry[0]) + PACKED_OVERHEAD_BYTES + members


def _packed_frame(head: Pending) -> int:
    """A packed entry's bytes besides its ``Detail``: the packed type, and the fixed part of an
    entry (source, bus, slack) taken from its first event's size."""
    return head.size - head.envelope.detail_bytes - len(head.envelope.type) + len(spec.PACKED_DETAIL_TYPE)


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

    def pop_request(self, max_entries: int, max_bytes: int, pack_bytes: int = 0) -> list[list[Pending]]:
        """Remove the oldest events that fit one PutEvents request, as its entries (at least one event).

        Without ``pack_bytes`` every event is an entry of its own. With it, consecutive
        events of one deployment share a packed entry whose ``Detail`` stays within
        ``pack_bytes`` (docs/protocol.md, "Packed entries"), so one request carries
        hundreds of small events instead of ten.
        """
        entries: list[list[Pending]] = []
        sizes: list[int] = []  # each entry's bytes toward the request limit
        details: list[int] = []  # each entry's Detail bytes were it packed
        total = 0
        while self._items:
            item = next(iter(self._items.values()))
            member = packed_member_bytes(item.envelope)
            if (
                pack_bytes
                and entries
                and item.envelope.deployment_id == entries[-1][0].envelope.deployment_id
                and len(entries[-1]) < spec.PACKED_MAX_EVENTS
                and details[-1] + member <= pack_bytes
            ):
                # As a packed entry the request counts its Detail and its frame (entry_bytes).
                grown = _packed_frame(entries[-1][0]) + details[-1] + member
                if total - sizes[-1] + grown <= max_bytes:
                    entries[-1].append(self._remove(item))
                    total += grown - sizes[-1]
                    sizes[-1], details[-1] = grown, details[-1] + member
                    continue
            if len(entries) >= max_entries or (entries and total + item.size > max_bytes):
                break
            entries.append([self._remove(item)])
            sizes.append(item.size)
            details.append(PACKED_OVERHEAD_BYTES + member)
            total += item.size
        first = self.first_seq()
        while self._sheddable and (first is None or self._sheddable[0] < first):
            self._sheddable.popleft()
        return entries

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
