"""One deployment's delivery: claim its lease, store its events in emission order, send them, hand over.

``handlers.broadcaster`` calls :meth:`Delivery.deliver` once per deployment of
a batch (each in a thread of its own, so one busy deployment does not hold up
the others of the same batch). What happens then:

1. **Claim.** If another invocation holds the deployment's lease, the events
   go into its inbox and this invocation is done (``server.inbox``).
2. **Drain.** Otherwise, until nothing is left: take this batch's events and
   the inbox's, order them (``server.ordering``: each producer's in the
   order it emitted them; those behind a gap wait), store them
   (``Store.append_events``, up to 49 to a transaction), send them (AppSync
   and the WebSocket fan-out, in ``seq`` order, while still holding the lease
   so the next chunk is never posted before this one).
3. **Release**, unless more arrived meanwhile (then drain again), recording
   on the lease that every ``seq`` up to the last one sent was sent
   (``sentUpTo``: one attribute on a write the release makes anyway, instead
   of rewriting every event's identity row). A holder that claims a lease
   whose holder ran out of time first resends what that holder stored past
   its mark (it may have died between storing and sending). A session
   that has run :data:`DRAIN_BUDGET_SECONDS` hands over instead: it releases
   and sends the delivery queue a *wake* message for the deployment, which
   goes behind whatever else waits there, so a deployment that never goes
   quiet shares the pollers with the others rather than keeping one.
4. Events held behind a gap stay in the inbox, and a wake message is sent
   to arrive when the gap times out.
5. The folded state is checkpointed (every :data:`CHECKPOINT_EVERY` events,
   on every status change, and at the end of a session), off the delivery path.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from contract import spec
from contract.events import DeploymentEvent, SequencedEvent
from contract.log import get_logger
from server import ordering
from server.fanout import FanOutSummary
from server.inbox import Inbox, InboxRow, Lease
from server.store import SequenceResult, Store, ThrottledError

log = get_logger("delivery")

#: How long one session drains a deployment that keeps receiving before it hands over.
DRAIN_BUDGET_SECONDS = 2.0

#: Events between two checkpoints of a busy deployment's folded state (tens of KB each:
#: at 1,000 events/s that is 5 writes a second, well under one partition's 1,000 WCU/s).
CHECKPOINT_EVERY = 200

#: A session that ends writes a checkpoint if this container wrote none for the deployment for
#: this long: a quiet deployment's checkpoint (what AppSync's ``deployment`` query reads) catches
#: up within a second of its last event, without a write for every event of a steady one.
CHECKPOINT_IDLE_SECONDS = 1.0

#: SQS's longest message delay.
_MAX_DELAY_SECONDS = 900

#: How long a container goes straight to a deployment's inbox after finding its lease held.
BUSY_HINT_SECONDS = 1.0

#: How long a deployment throttled by DynamoDB waits before its inbox is drained again.
THROTTLE_PAUSE_SECONDS = 1


class _Throttled(Exception):
    """Raised inside a drain: what was stored is sent and the rest waits in the inbox."""

    def __init__(self, done: set[str]) -> None:
        super().__init__("DynamoDB throttled storing")
        self.done = done
        """Identities of the events dealt with before the throttle (stored, found stored, set aside)."""


Send = Callable[[str, Sequence[SequencedEvent], str | None], FanOutSummary]
"""Publishes a deployment's newly stored events to every channel (in ``seq`` order); the third
argument is the deployment's audience token as the holder read it (None: read the subscribers)."""
CatchUp = Callable[[str, Sequence[SequencedEvent], str, str], FanOutSummary]
"""Posts events sent under one audience token to the subscribers that joined before the next."""
Wake = Callable[[str, int], None]
"""Asks for the deployment's inbox to be drained again in ``n`` seconds (a wake message)."""
DeadLetter = Callable[[Sequence[DeploymentEvent]], None]
"""Sets events aside that can never be stored."""


@dataclass
class DeliveryOutcome:
    """What one :meth:`Delivery.deliver` call did."""

    deployment_id: str
    claimed: bool = False
    """This invocation held the lease (else its events went to the inbox)."""
    sent: list[int] = field(default_factory=list)
    """``seq`` of every event sent (fresh and resent), in order."""
    resent: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    rejected: list[DeploymentEvent] = field(default_factory=list)
    refused: list[DeploymentEvent] = field(default_factory=list)
    """Claimed another project than their deployment's: logged, never stored."""
    held: int = 0
    """Events left in the inbox behind a gap."""
    handed_over: bool = False
    throttled: bool = False
    """DynamoDB throttled storing: what was stored is sent, the rest waits in the inbox for a wake."""
    sessions: int = 0
    """Rounds of reading the inbox in this call."""
    fanout: FanOutSummary = field(default_factory=FanOutSummary)


@dataclass
class _Session:
    """One holder's hold of a deployment's lease."""

    owner: str
    sent_up_to: int
    """Every ``seq`` up to this one has been sent (the lease's mark, moved by this holder's sends)."""
    audience: str = ""
    """The deployment's audience token as this holder last read it (claim, mark)."""
    since_audience: list[SequencedEvent] = field(default_factory=list)
    """What this holder sent since it read ``audience``: a subscriber that joined after that read
    may have read its history before these were stored."""

    def sent(self, events: Sequence[SequencedEvent]) -> None:
        self.sent_up_to = max([self.sent_up_to, *(e.seq for e in events)])


class Delivery:
    """Stores and sends deployments' events, one lease holder per deployment at a time."""

    def __init__(
        self,
        store: Store,
        inbox: Inbox,
        send: Send,
        wake: Wake,
        dead_letter: DeadLetter,
        clock: Callable[[], float] = time.time,
        budget_seconds: float = DRAIN_BUDGET_SECONDS,
        gap_seconds: float = ordering.GAP_SECONDS,
        catch_up: CatchUp | None = None,
    ) -> None:
        """Wire the parts: the store, the inbox, and how to send, wake and dead-letter.

        ``catch_up``: how to serve subscribers that joined while this holder sent
        from a subscriber list kept under an older audience token. Without it,
        every send reads the subscribers (no token is passed on).
        """
        self._store = store
        self._inbox = inbox
        self._catch_up = catch_up
        self._send_to = send
        self._wake = wake
        self._dead_letter = dead_letter
        self._clock = clock
        self._budget = budget_seconds
        self._gap = gap_seconds
        # deployment id -> until when this container takes it to be held by another invocation.
        self._busy: dict[str, float] = {}
        # deployment id -> (the last seq this container checkpointed, when).
        self._checkpointed: dict[str, tuple[int, float]] = {}

    def deliver(self, deployment_id: str, events: Sequence[DeploymentEvent]) -> DeliveryOutcome:
        """Store and send these events of one deployment (none: a wake), or leave them to the lease holder.

        Raises whatever storing raised (``ThrottledError``, ``SequencingError``…):
        the caller lets the queue bring the records back. Events already put in
        the inbox are safe there either way.
        """
        outcome = DeliveryOutcome(deployment_id)
        owner = uuid.uuid4().hex
        # The gap's clock starts here, not at the queue: see DeploymentEvent.arrived_ms.
        arrived = self._now_ms()
        own = [e if e.arrived_ms else replace(e, arrived_ms=arrived) for e in events]
        # A deployment this container just found held is most likely held still: go straight to
        # the inbox (a failed claim is a write too, on the lease row every invocation touches).
        lease = (
            None
            if own and self._busy.get(deployment_id, 0.0) > self._clock()
            else self._claim(deployment_id, owner)
        )
        if lease is None:
            after = self._inbox.add(deployment_id, own) if own else self._inbox.wake(deployment_id)
            own = []
            if not after.free(self._now_ms()):
                return outcome  # the holder's release fails on our bump: it reads the inbox again
            lease = self._claim(deployment_id, owner)  # released in between: drain it ourselves
            if lease is None:
                return outcome
        outcome.claimed = True
        session = _Session(owner, lease.sent_up_to, lease.audience)
        try:
            if lease.took_over:
                self._resend_past_mark(deployment_id, session, outcome)
            self._drain(deployment_id, session, own, lease, outcome)
        except _Throttled:
            # Everything unsent waits in the inbox: pause, then drain again (the records are done).
            self._confirm_audience_quietly(deployment_id, session, outcome)
            self._inbox.abandon(deployment_id, owner, session.sent_up_to)
            outcome.throttled = True
            self._wake(deployment_id, THROTTLE_PAUSE_SECONDS)
        except BaseException:
            # Whatever is in the inbox waits for the next holder; ours come back with the records.
            self._confirm_audience_quietly(deployment_id, session, outcome)
            self._inbox.abandon(deployment_id, owner, session.sent_up_to)
            raise
        return outcome

    def _send(self, deployment_id: str, session: _Session, events: Sequence[SequencedEvent]) -> FanOutSummary:
        """Send as the session's holder: from the subscriber list kept under its audience token."""
        if self._catch_up is None:
            return self._send_to(deployment_id, events, None)
        summary = self._send_to(deployment_id, events, session.audience)
        if summary.items_read == 0:
            # Sent from a kept list (or to nobody): a subscriber that joins before we let go may have
            # read its history before these were stored. A list read now, after the transaction,
            # holds every subscription made before it, as it always did.
            session.since_audience.extend(events)
        return summary

    def _audience_moved(
        self, deployment_id: str, session: _Session, audience: str, outcome: DeliveryOutcome
    ) -> None:
        """The token moved while we held the lease: serve whoever joined what we sent since the last read."""
        if audience == session.audience:
            return
        if session.since_audience:  # only ever filled when there is a catch-up (``_send``)
            assert self._catch_up is not None
            outcome.fanout.merge(
                self._catch_up(deployment_id, session.since_audience, session.audience, audience)
            )
        session.audience = audience
        session.since_audience = []

    def _confirm_audience_quietly(
        self, deployment_id: str, session: _Session, outcome: DeliveryOutcome
    ) -> None:
        """:meth:`_confirm_audience` on a failure's way out: what brought us here matters more."""
        try:
            self._confirm_audience(deployment_id, session, outcome)
        except Exception:
            log.exception(
                "could not serve subscribers that joined during the drain",
                extra={"deployment_id": deployment_id},
            )

    def _confirm_audience(self, deployment_id: str, session: _Session, outcome: DeliveryOutcome) -> None:
        """Before giving the lease up without a release (which checks it): check the audience token."""
        if session.since_audience:
            self._audience_moved(deployment_id, session, self._inbox.read(deployment_id).audience, outcome)

    def _resend_past_mark(self, deployment_id: str, session: _Session, outcome: DeliveryOutcome) -> None:
        """Send again what was stored past the lease's mark, claimed from a holder that ran out of time.

        A holder that dies between storing and sending leaves events whose
        records may never come back (those it took from the inbox were
        acknowledged by the invocations that put them there): the next holder
        sends them, in ``seq`` order, before anything newer. A holder that was
        only slow sends its own as well: subscribers drop the copies by ``seq``.
        """
        last = self._store.counter(deployment_id).last_seq
        if last <= session.sent_up_to:
            return
        messages = list(self._store.events_between(deployment_id, session.sent_up_to + 1, last))
        resend = [SequencedEvent.from_message(m) for m in messages]
        log.warning(
            "resending events stored past the lease's sent mark (their holder stopped before sending)",
            extra={"deployment_id": deployment_id, "first": session.sent_up_to + 1, "last": last},
        )
        if resend:
            outcome.fanout.merge(self._send(deployment_id, session, resend))
            outcome.sent += [e.seq for e in resend]
            outcome.resent += [e.seq for e in resend]
        session.sent_up_to = last

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _claim(self, deployment_id: str, owner: str) -> Lease | None:
        """Claim the lease, remembering for a moment when another holds it."""
        lease = self._inbox.claim(deployment_id, owner)
        if lease is None:
            self._busy[deployment_id] = self._clock() + BUSY_HINT_SECONDS
            if len(self._busy) > 10_000:  # bounded: a container may see many deployments
                self._busy.clear()
        else:
            self._busy.pop(deployment_id, None)
        return lease

    def _drain(
        self,
        deployment_id: str,
        session: _Session,
        own: list[DeploymentEvent],
        lease: Lease,
        outcome: DeliveryOutcome,
    ) -> None:
        started = self._clock()
        wakes, read_inbox = lease.wakes, lease.inbox_may_hold_events
        pool: dict[str, DeploymentEvent] = {event.identity: event for event in own}
        inboxed: set[str] = set()
        rows: list[InboxRow] = []
        confirmed = False  # the counter read since the lease was claimed
        wake_in: float | None = None
        while True:
            outcome.sessions += 1
            if read_inbox:
                rows = self._inbox.rows(deployment_id)
                for row in rows:
                    for event in row.events:
                        pool.setdefault(event.identity, event)
                        inboxed.add(event.identity)
            counter = self._store.counter_hint(deployment_id)
            plan = ordering.plan(pool.values(), counter.producers, self._now_ms(), self._gap)
            if plan.held and not confirmed:
                # The hint is what this container last wrote: another container may have stored the
                # "missing" events before this one claimed the lease. Hold nothing behind a gap the
                # counter does not confirm (a stale hint held a quiet deployment's next event for the
                # whole gap, 5 s). Once read under the lease, the hint stays true: only the holder stores.
                counter = self._store.refreshed_counter(deployment_id)
                confirmed = True
                plan = ordering.plan(pool.values(), counter.producers, self._now_ms(), self._gap)
            # Held events of our own batch go to the inbox before anyone else may hold the lease.
            not_yet_inboxed = [event for event in plan.held if event.identity not in inboxed]
            if not_yet_inboxed:
                self._inbox.put(deployment_id, not_yet_inboxed)
                inboxed.update(event.identity for event in not_yet_inboxed)
            if plan.ready:
                try:
                    self._store_and_send(deployment_id, plan.ready, inboxed, session, outcome)
                except _Throttled as throttled:
                    waiting = {e.identity for e in [*plan.ready, *plan.held]} - throttled.done
                    self._inbox.settle(rows, waiting)
                    raise
                # Off the posting path: what was stored (or found stored, or set aside) leaves the inbox.
                rows = self._inbox.settle(rows, {event.identity for event in plan.held})
            pool = {event.identity: event for event in plan.held}
            wake_in = plan.wake_in_seconds
            if self._clock() - started >= self._budget:
                self._confirm_audience(deployment_id, session, outcome)
                self._inbox.abandon(deployment_id, session.owner, session.sent_up_to)
                outcome.handed_over = True
                self._wake(deployment_id, 0)
                break
            if self._inbox.release(
                deployment_id, session.owner, wakes, len(plan.held), session.sent_up_to, session.audience
            ):
                break
            # More arrived (or a subscription changed): mark how far the inbox is read (writers that
            # see a wake pending past the mark leave theirs to this read without bumping again), then
            # serve any newcomer what was sent from the older list, and drain again.
            marked = self._inbox.mark(deployment_id, session.owner)
            if marked is None:
                break  # held past its time and claimed by another: the new holder drains
            self._audience_moved(deployment_id, session, marked.audience, outcome)
            wakes, read_inbox = marked.wakes, True
        outcome.held = len(pool)
        if pool and wake_in is not None and not outcome.handed_over:
            self._wake(deployment_id, min(_MAX_DELAY_SECONDS, math.ceil(wake_in)))
        self._checkpoint(deployment_id, ending=True)

    def _store_and_send(
        self,
        deployment_id: str,
        ready: list[DeploymentEvent],
        inboxed: set[str],
        session: _Session,
        outcome: DeliveryOutcome,
    ) -> None:
        try:
            result = self._store.append_events(
                deployment_id,
                ready,
                sent_up_to=session.sent_up_to,
            )
        except ThrottledError as exc:
            partial = exc.partial
            if partial is None or not (partial.fresh or partial.unsent):
                raise  # nothing stored: the records come back later, their visibility doubled
            # Some chunks were stored before the throttle: send them (nothing else would: the
            # records are acknowledged), keep the rest in the inbox, and back off: the lease is
            # given up and a wake message brings the deployment back after a pause.
            self._after_store(deployment_id, partial, session, outcome)
            done = {e.event.identity for e in partial.fresh + partial.unsent}
            done.update(e.identity for e, _ in partial.duplicates)
            done.update(e.identity for e in partial.rejected + partial.refused)
            rest = [e for e in ready if e.identity not in inboxed and e.identity not in done]
            if rest:
                self._inbox.put(deployment_id, rest)  # raises if throttled too: the records come back
                inboxed.update(e.identity for e in rest)
            raise _Throttled(done) from exc
        self._after_store(deployment_id, result, session, outcome)

    def _after_store(
        self,
        deployment_id: str,
        result: SequenceResult,
        session: _Session,
        outcome: DeliveryOutcome,
    ) -> None:
        if result.refused:
            outcome.refused += result.refused
            for event in result.refused:
                log.warning(
                    "event refused: it claims another project than its deployment's",
                    extra={
                        "deployment_id": deployment_id,
                        "event_id": event.event_id,
                        "claimed_project": event.project,
                        "project": self._store.counter_hint(deployment_id).project,
                    },
                )
        if result.rejected:
            outcome.rejected += result.rejected
            self._dead_letter(result.rejected)
        to_send = result.to_send
        outcome.duplicates += [seq for _, seq in result.duplicates]
        outcome.resent += [e.seq for e in result.unsent]
        if not to_send:
            return
        summary = self._send(deployment_id, session, to_send)
        session.sent(to_send)
        outcome.sent += [e.seq for e in to_send]
        outcome.fanout.merge(summary)
        self._store.advance_state(deployment_id, result.fresh)
        status_changed = any(e.event.type == "deployment.status" for e in result.fresh)
        self._checkpoint(deployment_id, status_changed=status_changed)

    def _checkpoint(self, deployment_id: str, status_changed: bool = False, ending: bool = False) -> None:
        """Write the folded state when it is due (never fails the delivery).

        Due: every :data:`CHECKPOINT_EVERY` events, with every status change
        (so a finished deployment's checkpoint is its final state), and when a
        session ends more than :data:`CHECKPOINT_IDLE_SECONDS` after the last one.
        """
        last = self._store.counter_hint(deployment_id).last_seq
        done, when = self._checkpointed.get(deployment_id, (0, 0.0))
        now = self._clock()
        due = (
            last - done >= CHECKPOINT_EVERY
            or status_changed
            or (ending and now - when >= CHECKPOINT_IDLE_SECONDS)
        )
        if last <= done or not due:
            return
        try:
            counter = self._store.counter_hint(deployment_id)
            self._store.put_checkpoint(
                deployment_id, last, self._store.folded(deployment_id, last), counter.project
            )
            self._checkpointed[deployment_id] = (last, now)
            if len(self._checkpointed) > 10_000:  # bounded: a container may see many deployments
                self._checkpointed.clear()
        except Exception:  # the next session writes it; snapshots fold the history meanwhile
            log.exception("checkpoint failed", extra={"deployment_id": deployment_id, "seq": last})


def wake_message(deployment_id: str) -> str:
    """The body of a wake message for a deployment."""
    return json.dumps({spec.WAKE_KEY: {"deployment_id": deployment_id}}, separators=(",", ":"))
