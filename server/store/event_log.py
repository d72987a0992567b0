"""The event log: each deployment's counter, its history, its checkpoints and the deployments list.

Sequencing (:meth:`EventLog.append_events`) gives a deployment's events their
``seq`` and stores each exactly once; the rest reads back what it stored: the
counter, the messages, the state folded through a ``seq`` and the list of
deployments by their latest event.
"""

from __future__ import annotations

import heapq
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from contract import keys, spec, state
from contract.backoff import Backoff
from contract.events import DeploymentEvent, SequencedEvent
from server.store.base import BATCH_BACKOFF as _BATCH_BACKOFF
from server.store.base import THROTTLING_CODES, THROTTLING_REASONS, Item, Part, TableAccess
from server.store.base import TTL as _TTL
from server.store.base import error_code as _code
from server.store.base import int_of as _int
from server.store.base import number_value as _n
from server.store.base import str_of as _str
from server.store.base import string_value as _s

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

_COUNTER_SEQ = "0"
_MAX_HINTS = 10_000
#: Inside the stored summary: until when the list shows the deployment (its history's lifetime),
#: since the counter item that carries the summary never expires. Never sent to clients.
_LISTED_UNTIL = "listed_until"
#: Folded states a container keeps to checkpoint without reading the history back (tens of KB each).
_MAX_STATES = 64
#: The producers' cursors kept on the counter, most recently moved first out last; past this
#: many bytes of JSON the least recently moved are forgotten (their next event then waits out
#: a gap), so the counter item stays under 1 KB however many producers report.
MAX_PRODUCERS_BYTES = 400

#: A throttled transaction: a few short waits (a hot partition's limit is per second), then the
#: caller is told, so that it backs off for longer and lets the queue bring the work back.
_THROTTLE_BACKOFF = Backoff(base=0.05, cap=0.4)
_THROTTLE_RETRIES = 3
#: A transaction conflict, or unprocessed keys of the history and identity reads: short waits.
_CONFLICT_BACKOFF = Backoff(base=0.005, cap=0.2)


class SequencingError(RuntimeError):
    """Could not assign a ``seq`` after repeated write conflicts."""


class ThrottledError(RuntimeError):
    """DynamoDB throttled a request: the caller backs off and lets the queue bring the work back."""

    partial: SequenceResult | None = None
    """What the same call had already stored before it was throttled (to be sent all the same)."""


@dataclass(frozen=True)
class Counter:
    """A deployment's counter item: small, whatever the deployment's size."""

    last_seq: int
    head: Mapping[str, Any] = field(default_factory=dict)
    """The deployment-level part of its state through ``last_seq`` (the list's summary and
    ``started_at``): status, attempt, layers, dates, environment. Empty before any event."""
    producers: Mapping[str, int] = field(default_factory=dict)
    """Each numbering producer's last stored ``producer_seq`` (see ``server.ordering``)."""
    project: str | None = None
    """The deployment's project, fixed by its first stored event (None before it)."""

    def head_state(self) -> state.StoredState:
        """A state to fold further events into for the head (stacks and logs are not kept here)."""
        return state.from_head(self.head)


@dataclass(frozen=True)
class DeploymentRow:
    """One deployment of the list, as the index returns it."""

    deployment_id: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class SequenceResult:
    """What sequencing a batch of one deployment's events found."""

    fresh: list[SequencedEvent]
    """Stored now, with new ``seq`` values: to be sent."""
    unsent: list[SequencedEvent]
    """Stored by an earlier delivery whose fan-out did not complete: to be sent again, same ``seq``."""
    duplicates: list[tuple[DeploymentEvent, int]]
    """Stored and fanned out before (with their ``seq``): nothing to do."""
    rejected: list[DeploymentEvent] = field(default_factory=list)
    refused: list[DeploymentEvent] = field(default_factory=list)
    """Claimed another project than the deployment's: never stored (logged by the caller)."""
    """Refused by DynamoDB as invalid (``ValidationError``): never stored; to be dead-lettered."""

    @property
    def to_send(self) -> list[SequencedEvent]:
        """Every event to fan out, in ``seq`` order."""
        return sorted(self.fresh + self.unsent, key=lambda e: e.seq)


class EventLog(Part):
    """The events table (counters, history rows, checkpoints) and the event-ids table."""

    def __init__(
        self,
        access: TableAccess,
        history_ttl_seconds: int,
        max_sequence_attempts: int,
        reuse_counter: bool,
        read_counter: Callable[[str], Counter] | None = None,
    ) -> None:
        """Set up the part.

        Args:
            history_ttl_seconds: how long history rows and checkpoints live.
            max_sequence_attempts: conflicting rounds :meth:`append_events` takes before it gives up.
            reuse_counter: start each batch from the counter this container wrote last (checked by
                the transaction's condition) instead of reading it; False reads it every time.
            read_counter: how this part reads a counter when it needs one (default :meth:`counter`);
                the store passes its own ``counter``, so replacing that one governs every read.
        """
        super().__init__(access)
        self._history_ttl = history_ttl_seconds
        self._max_sequence_attempts = max_sequence_attempts
        self._read_counter = read_counter or self.counter
        # deployment id -> the counter (seq and state) this container last wrote: a guess, checked
        # by the transaction's condition, that saves reading the counter before every batch.
        self._last_seq_hint: dict[str, Counter] = {}
        self._reuse_counter = reuse_counter
        # deployment id -> (seq, state folded through it) this container computed last.
        self._states: OrderedDict[str, tuple[int, state.StoredState]] = OrderedDict()

    def last_seq(self, deployment_id: str) -> int:
        """The highest ``seq`` handed out for a deployment (0 before its first event)."""
        return self._read_counter(deployment_id).last_seq

    def counter(self, deployment_id: str) -> Counter:
        """The deployment's counter item: its last ``seq``, its head and its producers' cursors."""
        item = self._db.get_item(
            TableName=self._tables.events,
            Key={"deploymentId": _s(deployment_id), "seq": {"N": _COUNTER_SEQ}},
            ConsistentRead=True,
            ProjectionExpression="lastSeq, summary, startedAt, producers, projectName",
        ).get("Item")
        return _counter(item)

    def counter_hint(self, deployment_id: str) -> Counter:
        """The counter this container wrote last for the deployment, else read (a guess the
        sequencing transaction checks: a stale one costs one retry, never a wrong ``seq``)."""
        known = self._last_seq_hint.get(deployment_id)
        if known is None:
            known = self._read_counter(deployment_id)
            self._remember_counter(deployment_id, known)
        return known

    def refreshed_counter(self, deployment_id: str) -> Counter:
        """The counter read now (strongly consistent), remembered as this container's hint."""
        known = self._read_counter(deployment_id)
        self._remember_counter(deployment_id, known)
        return known

    def advance_state(self, deployment_id: str, stored: Sequence[SequencedEvent]) -> None:
        """Fold just-stored events into the container's cached state when they follow it directly."""
        cached = self._states.get(deployment_id)
        if not stored:
            return
        if cached is None and stored[0].seq == 1:
            cached = (0, state.initial())
        if cached is None or cached[0] != stored[0].seq - 1:
            self._states.pop(deployment_id, None)  # not contiguous: rebuilt from the checkpoint when needed
            return
        messages = [
            {"type": e.event.type, "seq": e.seq, "data": e.event.data, "timestamp": e.event.timestamp}
            for e in stored
        ]
        self._remember_state(deployment_id, stored[-1].seq, state.fold(cached[1], messages))

    def checkpoint(self, deployment_id: str) -> tuple[int, state.StoredState]:
        """The latest checkpoint of the deployment's folded state: its ``seq`` and the state then."""
        item = self._db.get_item(
            TableName=self._tables.events,
            Key=keys.checkpoint(deployment_id),
            ConsistentRead=True,
            ProjectionExpression="upTo, #state",
            ExpressionAttributeNames={"#state": "state"},
        ).get("Item")
        if not item:
            return 0, state.initial()
        return _int(item, "upTo"), state.loads(_str(item, "state"))

    def put_checkpoint(
        self, deployment_id: str, seq: int, folded: state.StoredState, project: str | None = None
    ) -> bool:
        """Store the state folded through ``seq`` unless a later checkpoint is there; True if stored.

        A plain PutItem on an item of its own (not the counter, not in a
        transaction): the state is tens of KB, and rewriting it with every
        batch on the counter is what capped a deployment at tens of events a
        second. It keeps the history's lifetime (``ttl``).
        """
        try:
            self._db.put_item(
                TableName=self._tables.events,
                Item={
                    **keys.checkpoint(deployment_id),
                    "upTo": _n(seq),
                    "state": _s(state.dumps(folded)),
                    # What AppSync's deployment resolver authorizes by.
                    **({"projectName": _s(project)} if project else {}),
                    _TTL: _n(self._now() + self._history_ttl),
                },
                ConditionExpression="attribute_not_exists(upTo) OR upTo < :seq",
                ExpressionAttributeValues={":seq": _n(seq)},
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def folded(self, deployment_id: str, seq: int) -> state.StoredState:
        """The deployment's state folded through ``seq``: the container's cache, else checkpoint + history.

        Every ``seq`` up to the one asked for must be stored already.
        """
        cached = self._states.get(deployment_id)
        if cached is None or cached[0] > seq:
            cached = self.checkpoint(deployment_id)
            if cached[0] > seq:  # a later checkpoint: fold from the start of what is still stored
                cached = (0, state.initial())
        upto, folded = cached
        if upto < seq:
            folded = state.fold(folded, _wire(self.events_between(deployment_id, upto + 1, seq)))
        self._remember_state(deployment_id, seq, folded)
        return folded

    def snapshot(self, deployment_id: str) -> tuple[int, state.StoredState]:
        """The deployment's last ``seq`` and its state folded through it (what ``deployment.snapshot`` sends).

        The checkpoint is read first, then the counter (checkpoints are written
        after their events are stored, so the counter is never behind it), then
        the events between the two are folded on top.
        """
        upto, folded = self.checkpoint(deployment_id)
        last = self._read_counter(deployment_id).last_seq
        if last > upto:
            folded = state.fold(folded, _wire(self.events_between(deployment_id, upto + 1, last)))
        return max(last, upto), folded

    def deployments(self, page_size: int = 100, max_pages: int = 10) -> Iterator[DeploymentRow]:
        """Deployments by their latest event, newest first, across the shards of the ``byUpdate`` index.

        Each shard is read a page at a time (newest first) and the shards are
        merged, so no single index partition takes every deployment's writes.
        At most ``max_pages`` pages are read per shard; the caller stops
        reading when it has enough. Deployments whose latest event is older
        than the history's lifetime are left out.
        """
        now = self._now()
        shards = [self._list_shard(shard, page_size, max_pages) for shard in range(keys.LIST_SHARDS)]
        for _, expires, row in heapq.merge(*shards, key=lambda entry: -entry[0]):
            if expires > now:
                yield row

    def _list_shard(
        self, shard: int, page_size: int, max_pages: int
    ) -> Iterator[tuple[int, int, DeploymentRow]]:
        kwargs: dict[str, Any] = {
            "TableName": self._tables.events,
            "IndexName": spec.DEPLOYMENTS_BY_UPDATE_INDEX,
            "KeyConditionExpression": "listKey = :k",
            "ExpressionAttributeValues": {":k": _s(keys.list_key(shard))},
            "ScanIndexForward": False,
            "Limit": page_size,
        }
        for _ in range(max_pages):
            page = self._db.query(**kwargs)
            for item in page.get("Items", []):
                summary = _str(item, "summary")
                if summary is None:
                    continue
                row = json.loads(summary)
                # Listed while its history lives (the counter itself never expires).
                expires = int(row.pop(_LISTED_UNTIL, 0) or 0)
                yield _int(item, "updatedMs"), expires, DeploymentRow(_str(item, "deploymentId") or "", row)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def last_seqs(self, deployment_ids: list[str]) -> dict[str, int]:
        """The highest ``seq`` of each deployment (0 when nothing was reported), one BatchGetItem per 100."""
        result = dict.fromkeys(deployment_ids, 0)
        unique = list(result)
        for start in range(0, len(unique), 100):  # BatchGetItem takes at most 100 keys
            keys: list[Item] = [
                {"deploymentId": _s(d), "seq": {"N": _COUNTER_SEQ}} for d in unique[start : start + 100]
            ]
            pending: Any = {
                self._tables.events: {
                    "Keys": keys,
                    "ConsistentRead": True,
                    "ProjectionExpression": "deploymentId, lastSeq",
                }
            }
            for attempt in range(8):
                reply = self._db.batch_get_item(RequestItems=pending)
                for item in reply.get("Responses", {}).get(self._tables.events, []):
                    result[_str(item, "deploymentId") or ""] = _int(item, "lastSeq")
                pending = reply.get("UnprocessedKeys") or {}
                if not pending:
                    break
                self._wait(_BATCH_BACKOFF, attempt + 1)
        result.pop("", None)
        return result

    def events_between(self, deployment_id: str, first: int, last: int) -> Iterator[str]:
        """Stored messages with ``first <= seq <= last``, in ``seq`` order."""
        for _, message in self._history(deployment_id, first, last):
            yield message

    def _history(self, deployment_id: str, first: int, last: int) -> Iterator[tuple[int, str]]:
        """``(seq, message)`` of the stored events with ``first <= seq <= last``, in ``seq`` order.

        Rows are keyed by the last ``seq`` they hold, so the rows holding any
        of them are those keyed ``first`` … ``last + HISTORY_ROW_EVENTS - 1``.
        """
        if first > last:
            return
        kwargs: dict[str, Any] = {
            "TableName": self._tables.events,
            "KeyConditionExpression": "deploymentId = :d AND seq BETWEEN :a AND :b",
            "ExpressionAttributeValues": {
                ":d": _s(deployment_id),
                ":a": _n(first),
                ":b": _n(last + keys.HISTORY_ROW_EVENTS - 1),
            },
            "ProjectionExpression": "seq, firstSeq, messages, message",
            "ConsistentRead": True,
        }
        while True:
            page = self._db.query(**kwargs)
            for row in page.get("Items", []):
                for seq, message in _history_messages(row):
                    if seq > last:
                        return
                    if seq >= first:
                        yield seq, message
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _messages_at(self, deployment_id: str, seqs: Iterable[int]) -> dict[int, str]:
        """The stored messages of these ``seq`` (those still stored), read in one range."""
        wanted = set(seqs)
        if not wanted:
            return {}
        return {
            seq: message
            for seq, message in self._history(deployment_id, min(wanted), max(wanted))
            if seq in wanted
        }

    def append_events(
        self,
        deployment_id: str,
        events: Sequence[DeploymentEvent],
        *,
        sent_up_to: int | None = None,
    ) -> SequenceResult:
        """Give a deployment's events the next ``seq`` range, in the order given, and store them exactly once.

        Each round is one TransactWriteItems: the counter moves from ``last``
        to ``last + n`` (guarded by ``lastSeq = last``), every event gets its
        history row and its identity row (guarded by "does not exist yet"),
        and the producers' cursors move with the counter (the caller takes
        events it read from the inbox out of it afterwards). The counter
        item stays small: the last ``seq``, the deployment's head (status,
        attempt, layers, dates) and the cursors; the full state is checkpointed
        apart (:meth:`put_checkpoint`).

        A cancelled transaction's per-item reasons decide what happens next:

        - the counter's condition failed: another invocation stored first;
          read it again and retry;
        - an identity's condition failed: stored by an earlier delivery
          (read back: a duplicate when its ``seq`` is at most ``sent_up_to``,
          the lease holder's mark that everything up to it was sent; else
          stored but not yet sent, and resent);
        - ``TransactionConflict``: another request holds one of the items right
          now; wait a little and retry (at most ``max_sequence_attempts`` rounds);
        - ``ThrottlingError`` / ``ProvisionedThroughputExceeded``: wait a little
          and retry, at most three times (never counted as a conflict, never 25
          times), then raise :class:`ThrottledError`, so the caller backs off for
          longer and the queue brings the work back later;
        - ``ValidationError``: the event it names can never be stored; it is
          set aside in ``rejected`` (to be dead-lettered) and the rest retried.

        Raises:
            SequencingError: the counter kept moving or conflicting for ``max_sequence_attempts`` rounds.
            ThrottledError: DynamoDB throttled the transaction.
        """
        pending: list[DeploymentEvent] = []
        seen: set[str] = set()
        for event in events:  # the same event twice in one batch: the first one counts
            if event.identity not in seen:
                seen.add(event.identity)
                pending.append(event)
        result = SequenceResult([], [], [])
        now = self._now()
        ttl = now + self._history_ttl
        identity_ttl = now + max(self._history_ttl, spec.IDENTITY_TTL_SECONDS)
        attempts = 0
        throttles = 0
        # Refused numbered events still move their producer's cursor (with the next write), so the
        # producer's later events do not wait out a gap for numbers that will never be stored.
        passed: list[DeploymentEvent] = []
        packed = True
        while pending:
            chunk = pending[: min(spec.DELIVERY.max_events_per_transaction, keys.HISTORY_ROW_EVENTS)]
            known_counter = self._last_seq_hint.get(deployment_id)
            if known_counter is None:
                known_counter = self._read_counter(deployment_id)
            # The first stored event fixes the deployment's project; a claim of another is refused.
            project = known_counter.project or pending[0].project
            claims_other = [e for e in pending if e.project != project]
            if claims_other:
                result.refused.extend(claims_other)
                passed.extend(claims_other)
                pending = [e for e in pending if e.project == project]
                if not pending:
                    break
                continue
            last = known_counter.last_seq
            messages = [event.render(last + 1 + i) for i, event in enumerate(chunk)]
            head = state.fold(
                known_counter.head_state(),
                (
                    {"type": e.type, "seq": last + 1 + i, "data": e.data, "timestamp": e.timestamp}
                    for i, e in enumerate(chunk)
                ),
            )
            summary = _head_of(deployment_id, head)
            producers = _moved_cursors(known_counter.producers, [*passed, *chunk])
            items, owners = self._sequence_items(
                deployment_id,
                chunk,
                messages,
                last,
                (ttl, identity_ttl),
                summary,
                producers,
                project,
                packed,
            )
            try:
                self._db.transact_write_items(TransactItems=items)
            except ClientError as exc:
                code = _code(exc)
                reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
                if code in THROTTLING_CODES or any(r in THROTTLING_REASONS for r in reasons):
                    throttles += 1
                    if throttles <= _THROTTLE_RETRIES:
                        self._wait(_THROTTLE_BACKOFF, throttles)
                        continue
                    throttled = ThrottledError(f"DynamoDB throttled sequencing {deployment_id}: {code}")
                    # Earlier chunks of this call are stored: whoever catches this must still send them.
                    throttled.partial = result
                    raise throttled from exc
                if code != "TransactionCanceledException":
                    raise
                refused = [owners[i] for i, r in enumerate(reasons[: len(owners)]) if r == "ValidationError"]
                if packed and any(len(held) > 1 for held in refused):
                    # A row of several events was refused: store them a row each, to learn which.
                    packed = False
                    continue
                invalid = {held[0] for held in refused if held}
                if invalid:
                    bad = [chunk[i] for i in sorted(invalid)]
                    result.rejected.extend(bad)
                    bad_ids = {e.identity for e in bad}
                    pending = [e for e in pending if e.identity not in bad_ids]
                    continue
                attempts += 1
                if attempts >= self._max_sequence_attempts:
                    raise SequencingError(
                        f"could not assign a seq for {deployment_id} after {attempts} attempts"
                    ) from exc
                identities = len(owners) - len(chunk)  # the identity rows come last, in chunk order
                known = [e for i, e in enumerate(chunk) if _failed(reasons, identities + i)]
                if known:
                    self._classify_known(known, result, sent_up_to)
                    known_ids = {e.identity for e in known}
                    pending = [e for e in pending if e.identity not in known_ids]
                if _failed(reasons, 0):
                    self._last_seq_hint.pop(deployment_id, None)  # someone else moved the counter
                elif not known:
                    # TransactionConflict: another request holds one of these items right now.
                    self._wait(_CONFLICT_BACKOFF, attempts + 1)  # first wait under 10 ms
                continue
            self._remember_counter(deployment_id, Counter(last + len(chunk), summary, producers, project))
            passed = []
            result.fresh.extend(
                SequencedEvent(event, last + 1 + i, message)
                for i, (event, message) in enumerate(zip(chunk, messages, strict=True))
            )
            pending = pending[len(chunk) :]
        return result

    def _sequence_items(
        self,
        deployment_id: str,
        chunk: Sequence[DeploymentEvent],
        messages: Sequence[str],
        last: int,
        ttls: tuple[int, int],
        summary: Mapping[str, Any],
        producers: Mapping[str, int],
        project: str,
        packed: bool = True,
    ) -> tuple[list[TransactWriteItemTypeDef], list[tuple[int, ...]]]:
        """The counter put, the chunk's history rows (runs of events, ``packed``; else one each),
        then per event its identity row.

        Returns the items and, per item, the indexes in ``chunk`` of the events
        it holds (none for the counter), so cancellation reasons map to events.
        The counter item is written whole, without the ``ttl`` (and the folded
        ``state``) an older version gave it: it must outlive every redelivery,
        or a re-run would start again at ``seq`` 1.
        """
        ttl, identity_ttl = ttls
        updated_ms = state.epoch_ms(summary.get("updated_at")) or int(self._clock() * 1000)
        head = dict(summary)
        started_at = head.pop("started_at", None)
        head[_LISTED_UNTIL] = ttl
        head["project"] = project
        counter: Item = {
            **keys.counter(deployment_id),
            "lastSeq": _n(last + len(chunk)),
            "summary": _s(json.dumps(head, separators=(",", ":"))),
            "startedAt": _s(started_at or ""),
            "producers": _s(json.dumps(producers, separators=(",", ":"))),
            "listKey": _s(keys.list_key(keys.list_shard(deployment_id))),
            "updatedMs": _n(updated_ms),
            "projectName": _s(project),
        }
        values: dict[str, AttributeValueTypeDef] = {":project": _s(project)}
        if last:
            values[":last"] = _n(last)
        items: list[TransactWriteItemTypeDef] = [
            {
                # A whole new item rather than an update: the holder knows every attribute, and
                # DynamoDB charges the same, while an update expression of seven SETs and two
                # REMOVEs costs the local backend twice the work of a put on every delivery.
                "Put": {
                    "TableName": self._tables.events,
                    "Item": counter,
                    # The project is fixed once: a counter that names another refuses the write.
                    "ConditionExpression": ("lastSeq = :last" if last else "attribute_not_exists(lastSeq)")
                    + " AND (attribute_not_exists(projectName) OR projectName = :project)",
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        owners: list[tuple[int, ...]] = [()]
        for run in _history_runs(messages, packed):
            first, last_in_run = last + 1 + run[0], last + 1 + run[-1]
            items.append(
                {
                    "Put": {
                        "TableName": self._tables.events,
                        "Item": {
                            "deploymentId": _s(deployment_id),
                            "seq": _n(last_in_run),
                            "firstSeq": _n(first),
                            "messages": {"L": [_s(messages[i]) for i in run]},
                            # Not in the messages: what AppSync's deploymentEvents resolver authorizes by.
                            "projectName": _s(project),
                            _TTL: _n(ttl),
                        },
                        "ConditionExpression": "attribute_not_exists(seq)",
                    }
                }
            )
            owners.append(tuple(run))
        for i, event in enumerate(chunk):
            items.append(
                {
                    "Put": {
                        "TableName": self._tables.event_ids,
                        "Item": _identity_item(event.identity, deployment_id, last + 1 + i, identity_ttl),
                        "ConditionExpression": "attribute_not_exists(eventKey)",
                    }
                }
            )
            owners.append((i,))
        return items, owners

    def _classify_known(
        self, known: Sequence[DeploymentEvent], result: SequenceResult, sent_up_to: int | None
    ) -> None:
        """Sort events already stored by an earlier delivery into fanned out (duplicates) and not yet.

        Sent: a ``seq`` at most ``sent_up_to``, or an identity row an earlier
        version marked ``sent`` (identity rows are written once and never marked now).
        """
        identities = self._batch_get(
            self._tables.event_ids, [{"eventKey": _s(e.identity)} for e in known], "eventKey, seq, sent"
        )
        by_key = {_str(item, "eventKey") or "": item for item in identities}
        unsent: list[tuple[DeploymentEvent, int]] = []
        for event in known:
            item = by_key.get(event.identity)
            if item is None:  # swept by TTL since the transaction saw it: long past, nothing to resend
                result.duplicates.append((event, 0))
                continue
            seq = _int(item, "seq")
            if item.get("sent", {}).get("BOOL", False) or (sent_up_to is not None and seq <= sent_up_to):
                result.duplicates.append((event, seq))
            else:
                unsent.append((event, seq))
        if not unsent:
            return
        deployment_id = unsent[0][0].deployment_id
        messages = self._messages_at(deployment_id, (seq for _, seq in unsent))
        for event, seq in unsent:
            message = messages.get(seq)
            if message is None:  # the history row expired first: there is nothing left to resend
                result.duplicates.append((event, seq))
            else:
                result.unsent.append(SequencedEvent(event, seq, message))

    def messages(self, deployment_id: str, seqs: Sequence[int]) -> list[str]:
        """The stored wire messages of these events, in ``seq`` order (expired ones are left out)."""
        found = self._messages_at(deployment_id, seqs)
        return [found[seq] for seq in sorted(found)]

    def _batch_get(self, table: str, keys: list[Item], projection: str) -> list[Item]:
        """Consistent BatchGetItem of up to any number of keys (100 per request), unprocessed keys retried."""
        items: list[Item] = []
        for start in range(0, len(keys), 100):  # BatchGetItem takes at most 100 keys
            pending: Any = {
                table: {
                    "Keys": keys[start : start + 100],
                    "ConsistentRead": True,
                    "ProjectionExpression": projection,
                }
            }
            for attempt in range(8):
                reply = self._db.batch_get_item(RequestItems=pending)
                items += reply.get("Responses", {}).get(table, [])
                pending = reply.get("UnprocessedKeys") or {}
                if not pending:
                    break
                self._wait(_CONFLICT_BACKOFF, attempt + 1)
            else:
                raise RuntimeError(f"could not read {len(pending[table]['Keys'])} items from {table}")
        return items

    def _remember_counter(self, deployment_id: str, counter: Counter) -> None:
        if not self._reuse_counter:
            return
        if len(self._last_seq_hint) >= _MAX_HINTS:  # bounded: a container may see many deployments
            self._last_seq_hint.clear()
        self._last_seq_hint[deployment_id] = counter

    def _remember_state(self, deployment_id: str, seq: int, folded: state.StoredState) -> None:
        self._states[deployment_id] = (seq, folded)
        self._states.move_to_end(deployment_id)
        while len(self._states) > _MAX_STATES:
            self._states.popitem(last=False)


def _counter(item: Item | None) -> Counter:
    """A counter item as read (an absent one is the counter of a deployment nobody reported on)."""
    if not item:
        return Counter(0)
    head = _json_object(item, "summary")
    head.pop(_LISTED_UNTIL, None)
    started_at = _str(item, "startedAt")
    if started_at:
        head["started_at"] = started_at
    producers = {str(k): int(v) for k, v in _json_object(item, "producers").items() if isinstance(v, int)}
    return Counter(_int(item, "lastSeq"), head, producers, _str(item, "projectName"))


def _json_object(item: Item, name: str) -> dict[str, Any]:
    """A string attribute holding a JSON object, parsed; empty when absent or unreadable."""
    raw = _str(item, name)
    try:
        loaded = json.loads(raw) if raw else None
    except ValueError:
        loaded = None
    return loaded if isinstance(loaded, dict) else {}


def _head_of(deployment_id: str, folded: state.StoredState) -> dict[str, Any]:
    """The counter's head: the list's summary and when the attempt started."""
    return {**state.summary(deployment_id, folded), "started_at": folded.get("started_at")}


def _moved_cursors(producers: Mapping[str, int], chunk: Iterable[DeploymentEvent]) -> dict[str, int]:
    """The producers' cursors once ``chunk`` is stored: moved ones last, bounded in bytes."""
    cursors = dict(producers)
    for event in chunk:
        if event.producer_id is not None and event.producer_seq is not None:
            number = max(cursors.pop(event.producer_id, 0), event.producer_seq)
            cursors[event.producer_id] = number  # re-inserted: the most recently moved goes last
    while len(cursors) > 1 and len(json.dumps(cursors, separators=(",", ":"))) > MAX_PRODUCERS_BYTES:
        del cursors[next(iter(cursors))]
    return cursors


def _wire(messages: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Stored wire messages as the fold takes them."""
    for message in messages:
        try:
            parsed = json.loads(message)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            yield parsed


def _history_runs(messages: Sequence[str], packed: bool) -> Iterator[range]:
    """Indexes of ``messages`` per history row: consecutive runs of about
    :data:`keys.HISTORY_ROW_BYTES` (a larger message alone), or one each when not ``packed``."""
    start, size = 0, 0
    for i, message in enumerate(messages):
        length = len(message.encode("utf-8"))
        if i > start and (not packed or size + length > keys.HISTORY_ROW_BYTES):
            yield range(start, i)
            start, size = i, 0
        size += length
    if messages:
        yield range(start, len(messages))


def _history_messages(row: Item) -> Iterator[tuple[int, str]]:
    """``(seq, message)`` of each event a history row holds, in ``seq`` order.

    A row holds ``firstSeq`` … its ``seq`` in ``messages``; a row an older
    version wrote holds the one event of its ``seq`` in ``message``.
    """
    packed = row.get("messages")
    if packed is not None:
        first = _int(row, "firstSeq")
        for i, value in enumerate(packed.get("L", [])):
            if "S" in value:
                yield first + i, value["S"]
        return
    message = _str(row, "message")
    if message is not None:
        yield _int(row, "seq"), message


def _failed(reasons: Sequence[str], index: int) -> bool:
    """Whether the transaction item at ``index`` failed its condition."""
    return index < len(reasons) and reasons[index] == "ConditionalCheckFailed"


def _identity_item(event_key: str, deployment_id: str, seq: int, ttl: int) -> Item:
    # Written once with its event and never rewritten: whether it was sent is the lease's
    # ``sentUpTo`` mark (server.inbox), one attribute instead of a write per event.
    return {"eventKey": _s(event_key), "deploymentId": _s(deployment_id), "seq": _n(seq), _TTL: _n(ttl)}
