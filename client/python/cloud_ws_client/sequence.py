"""Ordering of one deployment's events: drop duplicates, reorder, notice gaps.

The server numbers a deployment's events 1, 2, 3… and delivers them at least
once, in best-effort order. A replay (after ``subscribe`` with ``since``) and
live events can interleave, so an event past the next expected ``seq`` is not
"newer, skip the rest": it is held in a reorder buffer and released once the
missing ones arrive. When they do not arrive within the gap timeout, the owner
asks the server again (``subscribe`` with ``since`` = the last contiguous
``seq``), which fills the gap from the stored history. A replay the server
capped (``subscribed.replay`` < ``seq - since``) is continued at once, as soon
as its last event is delivered: the rest is known to be stored, so waiting
out the gap timeout would only slow a catch-up down.

The rules are written down as data in ``conformance/sequence.json``, which
the TypeScript client runs too.

Pure state, no I/O and no clock: every method that needs the time takes it.
"""

from __future__ import annotations

from cloud_ws_client.messages import Event


class DeploymentSequence:
    """Delivery state of one subscribed deployment.

    Args:
        since: The last ``seq`` already seen (events after it are wanted), or
            ``None`` for live events only, from the subscription's ``seq`` on.
        max_buffer: Most out-of-order events held at once. Beyond it new ones
            are dropped: they are stored on the server, and the gap repair's
            replay brings them back in order.
    """

    def __init__(self, since: int | None, max_buffer: int) -> None:
        self.last_seq = since
        """The last ``seq`` delivered in order; ``None`` until a live-only subscription is acknowledged."""
        self.latest_known = since or 0
        """The highest ``seq`` the server is known to have (from events and acknowledgements)."""
        self.duplicates = 0
        """Events dropped because their ``seq`` was already delivered or buffered."""
        self._max_buffer = max_buffer
        self._buffer: dict[int, Event] = {}
        self._waiting_since: float | None = None
        self._replay_end: int | None = None
        """Where a capped replay ends: reaching it with more known to exist asks for the rest at once."""
        self._ask_at: float | None = None
        """When a capped replay was consumed: a repair is due from then on, whatever the gap clock."""

    @property
    def buffered(self) -> int:
        """Events held until the ones before them arrive."""
        return len(self._buffer)

    @property
    def missing(self) -> bool:
        """True while the server has events this stream has not delivered.

        That includes a live-only subscription whose acknowledgement has not
        come while its first events have: the acknowledgement may be lost.
        """
        if self.last_seq is None:
            return bool(self._buffer)
        return self.latest_known > self.last_seq

    def acknowledge(
        self, seq: int, now: float, *, since: int | None = None, replay: int | None = None
    ) -> list[Event]:
        """Apply a ``subscribed`` acknowledgement; returns events now deliverable, in order.

        Args:
            seq: The acknowledgement's ``seq`` (latest stored when it took effect).
            now: Current time, for the gap clock.
            since: The ``since`` the acknowledged subscribe was sent with.
            replay: The acknowledgement's ``replay`` (how many stored events follow it).
                With ``since``, a replay that stops short of ``seq`` was capped:
                once it is delivered, :meth:`repair_due` is true at once.
        """
        if self.last_seq is None:
            # Live only: the subscription starts after ``seq``; anything at or
            # before it that raced ahead of the acknowledgement is not wanted.
            self.last_seq = seq
            for old in [s for s in self._buffer if s <= seq]:
                del self._buffer[old]
        self.latest_known = max(self.latest_known, seq)
        if since is not None and replay is not None and since + replay < seq:
            self._replay_end = since + replay
        return self._release(now)

    def restart(self, seq: int) -> None:
        """Start again at ``seq``: the server's history went backwards, below what was delivered.

        Everything held or known belongs to a history that no longer exists:
        the buffer, the gap clock and the position are dropped, and the
        stream continues from ``seq`` as a live-only subscription does from
        its acknowledgement (the snapshot that follows stands for the rest).
        """
        self.last_seq = seq
        self.latest_known = seq
        self._buffer.clear()
        self._waiting_since = self._ask_at = self._replay_end = None

    def accept(self, event: Event, now: float) -> list[Event]:
        """Take one event; returns the events deliverable now, in ``seq`` order.

        Args:
            event: An event of this deployment.
            now: Current time, for the gap clock.

        Returns:
            ``[]`` for a duplicate or an event held for later; otherwise the
            event and every buffered one that follows it contiguously.
        """
        seq = event.seq
        if (self.last_seq is not None and seq <= self.last_seq) or seq in self._buffer:
            self.duplicates += 1
            return []
        self.latest_known = max(self.latest_known, seq)
        if len(self._buffer) < self._max_buffer or (self.last_seq is not None and seq == self.last_seq + 1):
            self._buffer[seq] = event
        return self._release(now)

    def observe_latest(self, seq: int, now: float) -> None:
        """Learn the server's latest ``seq`` from a ``pong`` (its ``latest``).

        When it is ahead of what was delivered, that is a gap like any other:
        the missing events may still be in flight (the pong can overtake
        them), so the gap clock starts and, without progress within the gap
        timeout, the owner resubscribes with ``since``. This is how the loss
        of a deployment's *last* event is found: nothing later reveals it.
        """
        if seq <= self.latest_known:
            return
        self.latest_known = seq
        if self.missing and self._waiting_since is None:
            self._waiting_since = now

    def repair_due(self, now: float, timeout: float) -> bool:
        """True when a gap has waited ``timeout`` without progress, or a capped replay was consumed."""
        deadline = self.repair_deadline(timeout)
        return deadline is not None and now >= deadline

    def repair_deadline(self, timeout: float) -> float | None:
        """When :meth:`repair_due` becomes true, or ``None`` without a gap."""
        if self._ask_at is not None:
            return self._ask_at
        return None if self._waiting_since is None else self._waiting_since + timeout

    def begin_repair(self, now: float) -> tuple[int | None, list[Event]]:
        """Start a gap repair: returns the ``since`` to resubscribe with and events now deliverable.

        The next repair waits a full timeout again. A live-only subscription
        still without its acknowledgement adopts the first event it holds as
        its start (so nothing it already has is lost) and asks from there.
        """
        released: list[Event] = []
        if self.last_seq is None and self._buffer:
            self.last_seq = min(self._buffer) - 1
            released = self._release(now)
        self._ask_at = None
        self._replay_end = None
        if self.missing:
            self._waiting_since = now
        return self.last_seq, released

    def _release(self, now: float) -> list[Event]:
        released: list[Event] = []
        if self.last_seq is not None:
            while (following := self._buffer.pop(self.last_seq + 1, None)) is not None:
                released.append(following)
                self.last_seq = following.seq
        # The gap clock runs from the last progress, so a long replay that is
        # still streaming in is not interrupted by a resubscribe.
        if not self.missing:
            self._waiting_since = self._ask_at = self._replay_end = None
        elif released or self._waiting_since is None:
            self._waiting_since = now
        if self._replay_end is not None and self.last_seq is not None and self.last_seq >= self._replay_end:
            # The capped replay is all here and the server has more: ask for it now.
            self._replay_end = None
            self._ask_at = now
        return released
