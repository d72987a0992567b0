"""A deployment's inbox and drain lease: one invocation at a time stores its events, the others hand over.

The event source mapping runs several batches at once, and a busy
deployment's events are spread over all of them. Were each invocation to
sequence its own share, they would fight over the deployment's counter
(DynamoDB cancels all but one transaction on an item, and the losers retry),
store the producer's events in whatever order they won, and keep the
mapping's few pollers busy with one deployment while every other waits in
the queue behind it. Instead:

- the invocation that **claims the lease** (a conditional ``UpdateItem`` on
  the ``D#lease`` row) stores the deployment's events: its own, then those
  waiting in the inbox, in the producers' emission order
  (``server.ordering``), many to a transaction;
- every other invocation **puts its events in the inbox** (one ``D#in#k``
  row per batch, holding the batch's events as a JSON list: a row write
  instead of one per event), bumps the lease's ``wakes`` count (unless a
  bump is already pending, below) and is done in two or three requests, so
  the queue keeps draining and other deployments' events are not held up;
- the holder **releases** only if ``wakes`` has not moved since it last read
  the inbox (a conditional ``UpdateItem``); otherwise it reads the inbox
  again. A writer puts its rows *before* it bumps ``wakes``, so every row is
  either seen by the holder's next read or makes its release fail: nothing is
  stranded.
- one bump is enough until the holder reads the inbox again: before each
  re-read (and with its claim) the holder **marks** on the lease the ``wakes`` it reads up to
  (``seen``, and ``seenBy``: itself). A writer reads the lease after putting
  its rows; if the holder's mark is behind ``wakes``, a bump is already
  pending, so the holder's release will fail and it will mark and read the
  inbox after this read, hence after these rows: the writer need not bump.
  At a deployment's full speed nearly every event is an invocation of its own
  (the mapping's pollers split the queue), and one write per event on the
  lease row made it the deployment's hottest item (1,033 WCU/s at 1,000
  events/s in the cloud model); a read costs a third as much of a partition's
  capacity (3,000 RCU/s against 1,000 WCU/s).

``settled`` and ``held`` on the lease say whether the inbox can hold anything
(``wakes == settled`` and nothing held back), so an idle deployment's single
event costs no inbox read at all.

A holder that dies keeps the lease until ``until`` passes; the records of its
own batch, never acknowledged, come back through the queue and drain
whatever waited meanwhile.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from contract import keys
from contract.backoff import Backoff
from contract.events import DeploymentEvent
from contract.log import get_logger
from server.store import THROTTLING_CODES, ThrottledError
from server.store.subscriptions import AUDIENCE_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

log = get_logger("inbox")

#: How long a lease holds without being released: longer than any drain (whose budget is
#: seconds) and its fan-out, shorter than the queue's visibility timeout.
LEASE_SECONDS = 60

#: Largest inbox row written (DynamoDB items hold at most 400 KB; an event is at most 256 KB).
ROW_BYTES = 300_000

_BATCH_BACKOFF = Backoff(base=0.01, cap=0.5)


@dataclass(frozen=True)
class InboxRow:
    """One inbox row as read: the events it holds and its key."""

    key: dict[str, Any]
    events: tuple[DeploymentEvent, ...]


@dataclass(frozen=True)
class Lease:
    """The lease row as last read or written."""

    owner: str | None
    until_ms: int
    wakes: int
    """Bumped by every invocation that put events in the inbox (and by wake messages)."""
    settled: int
    """The ``wakes`` value the last holder drained the inbox up to when it released."""
    held: int
    """Events the last holder left in the inbox, waiting behind a gap."""
    sent_up_to: int = 0
    """Every ``seq`` up to this one was sent by a holder that released or abandoned the lease
    (0 on a row without the mark: new, or written before the mark existed)."""
    took_over: bool = False
    """Claimed from a holder whose lease ran out: what it stored past ``sent_up_to`` may be unsent."""
    seen: int = 0
    """The ``wakes`` value the holder named in ``seen_by`` marked before it last read the inbox."""
    seen_by: str | None = None
    audience: str = ""
    """The deployment's audience token: replaced by every subscribe and unsubscribe ('' before any)."""

    def free(self, now_ms: int) -> bool:
        """Whether nobody holds the lease (never claimed, released, or expired)."""
        return self.owner is None or self.until_ms < now_ms

    @property
    def wake_pending(self) -> bool:
        """The holder has been woken since its last mark: it will read the inbox again, later."""
        return self.owner is not None and self.seen_by == self.owner and self.wakes > self.seen

    @property
    def inbox_may_hold_events(self) -> bool:
        """False only when the inbox is known to be empty."""
        return self.wakes != self.settled or self.held > 0


def _lease(item: dict[str, Any] | None) -> Lease:
    item = item or {}

    def number(name: str) -> int:
        value = item.get(name)
        return int(value["N"]) if isinstance(value, dict) and "N" in value else 0

    def text(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if isinstance(value, dict) and "S" in value else None

    return Lease(
        owner=text("owner"),
        until_ms=number("until"),
        wakes=number("wakes"),
        settled=number("settled"),
        held=number("held"),
        sent_up_to=number("sentUpTo"),
        seen=number("seen"),
        seen_by=text("seenBy"),
        audience=text(AUDIENCE_ATTRIBUTE) or "",
    )


class Inbox:
    """The lease and inbox rows of every deployment (in the events table, see ``contract.keys``)."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lease_seconds: float | None = None,
        ttl_seconds: int = 24 * 3600,
    ) -> None:
        """Set up access to one events table.

        Args:
            clock: the time (epoch seconds) for leases and row lifetimes.
            sleep: how a retry of unprocessed writes waits.
            lease_seconds: how long a claim holds; :data:`LEASE_SECONDS` (read now) when None.
            ttl_seconds: how long an inbox row may wait before DynamoDB sweeps it (a safety net:
                rows leave the inbox when they are stored).
        """
        self._db = client
        self._table = table
        self._clock = clock
        self._sleep = sleep
        self._lease_ms = int((LEASE_SECONDS if lease_seconds is None else lease_seconds) * 1000)
        self._ttl = ttl_seconds

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def claim(self, deployment_id: str, owner: str) -> Lease | None:
        """Take the lease if nobody holds it; the lease as claimed, or None when another holds it."""
        now = self._now_ms()
        try:
            reply = self._update(
                Key=keys.lease(deployment_id),
                # Absent counts are 0 to readers, and a release's condition accepts an absent
                # ``wakes`` for 0. The claim is also the new holder's first mark (``seen``,
                # ``seenBy``): until its first re-read, writers that find a wake pending need not
                # bump. Without it every writer bumped until that re-read, a storm of lease writes
                # at every change of holder (at 1,000 events/s, the lease row peaked at 320 WCU/s
                # with the storms and 99 without, in the cloud model).
                UpdateExpression=(
                    "SET #o = :me, #u = :until, seen = if_not_exists(wakes, :zero), seenBy = :me"
                ),
                ConditionExpression="attribute_not_exists(#o) OR #u < :now",
                ExpressionAttributeNames={"#o": "owner", "#u": "until"},
                ExpressionAttributeValues={
                    ":me": {"S": owner},
                    ":until": {"N": str(now + self._lease_ms)},
                    ":now": {"N": str(now)},
                    ":zero": {"N": "0"},
                },
                # The row as it was: whether a holder still named in it ran out of time (a takeover).
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        before = reply.get("Attributes") or {}
        old = _lease(before)
        return Lease(
            owner=owner,
            until_ms=now + self._lease_ms,
            wakes=old.wakes,
            settled=old.settled,
            held=old.held,
            sent_up_to=old.sent_up_to,
            took_over="owner" in before,
            audience=old.audience,
        )

    def add(self, deployment_id: str, events: Sequence[DeploymentEvent]) -> Lease:
        """Put events in the inbox, then make sure the holder reads it again; the lease as left.

        A read of the lease first: when a wake is already pending (the holder
        has not marked since), the holder reads the inbox after this read, so
        these rows are seen without another write on the lease row.
        """
        self.put(deployment_id, events)
        lease = self.read(deployment_id)
        if lease.wake_pending and not lease.free(self._now_ms()):
            return lease
        return self.wake(deployment_id, len(events))

    def mark(self, deployment_id: str, owner: str) -> Lease | None:
        """Record, as the holder, the ``wakes`` the inbox is about to be read up to; None if not the holder.

        Made before every re-read of the inbox: a writer that then finds
        ``wakes`` past this mark knows the holder's release will fail and it
        will mark and read again, so it need not bump.
        """
        try:
            reply = self._update(
                Key=keys.lease(deployment_id),
                UpdateExpression="SET seen = if_not_exists(wakes, :zero), seenBy = :me",
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": owner}, ":zero": {"N": "0"}},
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return _lease(reply.get("Attributes"))

    def put(self, deployment_id: str, events: Sequence[DeploymentEvent]) -> None:
        """Put events in the inbox without telling anyone (the holder leaving some behind).

        One row for all of them (more only past :data:`ROW_BYTES`), under a
        fresh name: a redelivered batch makes a second row, whose events the
        holder recognises as the same (by identity) and stores once.
        """
        ttl = {"N": str(self._now_ms() // 1000 + self._ttl)}
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        **keys.inbox(deployment_id, uuid.uuid4().hex),
                        "events": {"S": "[" + ",".join(row) + "]"},
                        "ttl": ttl,
                    }
                }
            }
            for row in _rows(event.to_json() for event in events)
        ]
        self._batch_write(requests)

    def settle(self, rows: Sequence[InboxRow], keep: set[str]) -> list[InboxRow]:
        """Take what was stored out of rows read earlier; the rows left, as they now are.

        A row none of whose events is in ``keep`` (identities still waiting) is
        deleted; one with some is rewritten with those; one with all of them is
        left as it is. One ``BatchWriteItem`` for all. Not in the storing
        transaction: a row that outlives its events (the holder stopped in
        between) only makes the next holder meet them again as duplicates.
        """
        requests: list[Any] = []
        left: list[InboxRow] = []
        ttl = {"N": str(self._now_ms() // 1000 + self._ttl)}
        for row in rows:
            waiting = tuple(e for e in row.events if e.identity in keep)
            if len(waiting) == len(row.events):
                left.append(row)
            elif not waiting:
                requests.append({"DeleteRequest": {"Key": row.key}})
            else:
                text = "[" + ",".join(e.to_json() for e in waiting) + "]"
                requests.append({"PutRequest": {"Item": {**row.key, "events": {"S": text}, "ttl": ttl}}})
                left.append(InboxRow(row.key, waiting))
        self._batch_write(requests)
        return left

    def wake(self, deployment_id: str, count: int = 1) -> Lease:
        """Bump ``wakes`` so the holder's release fails and it reads the inbox again."""
        reply = self._update(
            Key=keys.lease(deployment_id),
            UpdateExpression="ADD wakes :n",
            ExpressionAttributeValues={":n": {"N": str(max(1, count))}},
            ReturnValues="ALL_NEW",
        )
        return _lease(reply.get("Attributes"))

    def read(self, deployment_id: str) -> Lease:
        """The lease row now (strongly consistent)."""
        try:
            item = self._db.get_item(
                TableName=self._table, Key=keys.lease(deployment_id), ConsistentRead=True
            )
        except ClientError as exc:
            raise _throttled_or(exc) from exc
        return _lease(item.get("Item"))

    def waiting(self, deployment_id: str) -> list[DeploymentEvent]:
        """Every event in the deployment's inbox (any order; ``server.ordering`` orders them)."""
        return [event for row in self.rows(deployment_id) for event in row.events]

    def rows(self, deployment_id: str) -> list[InboxRow]:
        """Every row of the deployment's inbox, with the events each holds."""
        rows: list[InboxRow] = []
        for shard in range(keys.INBOX_SHARDS):
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "deploymentId = :d",
                "ExpressionAttributeValues": {":d": {"S": keys.inbox_partition(deployment_id, shard)}},
                "ConsistentRead": True,
            }
            while True:
                try:
                    page = self._db.query(**kwargs)
                except ClientError as exc:
                    raise _throttled_or(exc) from exc
                for item in page.get("Items", []):
                    key = {"deploymentId": item["deploymentId"], "seq": item["seq"]}
                    rows.append(InboxRow(key, tuple(_events_of(item, deployment_id))))
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return rows

    def release(
        self, deployment_id: str, owner: str, wakes: int, held: int, sent_up_to: int, audience: str = ""
    ) -> bool:
        """Give the lease up if nothing changed since ``wakes`` and ``audience`` were read; False if it did.

        ``sent_up_to``: every ``seq`` up to it has been sent (recorded for the next holder).
        A moved ``wakes`` means work arrived; a moved ``audience``, that a
        subscription changed while the holder sent from a list read earlier
        (it serves the newcomers before it lets go: ``server.delivery``).
        """
        # Nobody has bumped ``wakes`` since it read ``wakes`` (a claim does not create it: absent is 0).
        unchanged = "(wakes = :w OR attribute_not_exists(wakes))" if wakes == 0 else "wakes = :w"
        same_audience = "attribute_not_exists(#a)" if not audience else "#a = :a"
        values = {
            ":me": {"S": owner},
            ":w": {"N": str(wakes)},
            ":h": {"N": str(held)},
            ":s": {"N": str(sent_up_to)},
        }
        if audience:
            values[":a"] = {"S": audience}
        try:
            self._update(
                Key=keys.lease(deployment_id),
                UpdateExpression="SET settled = :w, held = :h, sentUpTo = :s REMOVE #o, #u, seen, seenBy",
                ConditionExpression=f"#o = :me AND {unchanged} AND {same_audience}",
                ExpressionAttributeNames={"#o": "owner", "#u": "until", "#a": AUDIENCE_ATTRIBUTE},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def abandon(self, deployment_id: str, owner: str, sent_up_to: int) -> None:
        """Give the lease up whatever waits (a hand-over, or a failure); the next holder reads the inbox.

        ``sent_up_to``: every ``seq`` up to it has been sent (recorded for the next holder).
        """
        try:
            self._update(
                Key=keys.lease(deployment_id),
                UpdateExpression="SET held = :one, sentUpTo = :s REMOVE #o, #u, seen, seenBy",
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner", "#u": "until"},
                ExpressionAttributeValues={
                    ":me": {"S": owner},
                    ":one": {"N": "1"},
                    ":s": {"N": str(sent_up_to)},
                },
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise

    def _update(self, **kwargs: Any) -> Any:
        try:
            return self._db.update_item(TableName=self._table, **kwargs)
        except ClientError as exc:
            if _code(exc) in THROTTLING_CODES:
                raise ThrottledError(f"DynamoDB throttled the drain lease: {_code(exc)}") from exc
            raise

    def _batch_write(self, requests: list[Any]) -> None:
        for start in range(0, len(requests), 25):  # BatchWriteItem takes at most 25 requests
            pending: Any = {self._table: requests[start : start + 25]}
            for attempt in range(1, 9):
                try:
                    pending = self._db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                except ClientError as exc:
                    raise _throttled_or(exc) from exc
                if not pending:
                    break
                self._sleep(_BATCH_BACKOFF.delay(attempt))
            else:
                raise ThrottledError(f"could not write {len(pending[self._table])} inbox rows")


def _rows(encoded: Iterable[str]) -> list[list[str]]:
    """Encoded events packed into rows of at most :data:`ROW_BYTES`."""
    rows: list[list[str]] = []
    size = ROW_BYTES
    for text in encoded:
        length = len(text.encode("utf-8")) + 1
        if size + length > ROW_BYTES:
            rows.append([])
            size = 2
        rows[-1].append(text)
        size += length
    return rows


def _events_of(item: dict[str, Any], deployment_id: str) -> list[DeploymentEvent]:
    """The events an inbox row holds (``events``: a JSON list; ``event``: one, as older rows held)."""
    try:
        if "events" in item:
            return [DeploymentEvent.from_object(raw) for raw in json.loads(item["events"]["S"])]
        if "event" in item:
            return [DeploymentEvent.from_json(item["event"]["S"])]
    except (ValueError, KeyError, TypeError):
        pass
    log.warning("unreadable inbox row dropped", extra={"deployment_id": deployment_id})
    return []


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _throttled_or(exc: ClientError) -> Exception:
    if _code(exc) in THROTTLING_CODES:
        return ThrottledError(f"DynamoDB throttled an inbox request: {_code(exc)}")
    return exc
