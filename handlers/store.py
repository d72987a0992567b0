"""DynamoDB access: connections, subscriptions, event history and event identities.

Every table layout comes from ``handlers.spec``. Items are written with the
low-level client (no boto3 resource layer: it is slower to import and turns
numbers into Decimals); event messages are stored as their exact wire JSON so a
replay sends byte-for-byte what the live broadcast sent.

Expired rows: DynamoDB's TTL sweeper can lag by days, so every reader here
treats an item whose ``ttl`` has passed as absent.
"""

from __future__ import annotations

import heapq
import json
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from handlers import keys, spec, state
from handlers.authorization import granted
from handlers.backoff import Backoff
from handlers.config import TableNames
from handlers.events import DeploymentEvent, SequencedEvent

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

Item = dict[str, "AttributeValueTypeDef"]

_TTL = spec.TTL_ATTRIBUTE
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

#: Errors of a whole request that mean "too fast for this partition": back off, retry later.
THROTTLING_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
#: The same, as a transaction's per-item cancellation reasons.
THROTTLING_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"})
#: Unprocessed items of a batch request that deletes subscriptions or reads counters.
_BATCH_BACKOFF = Backoff(base=0.025, cap=1.0)
#: A throttled transaction: a few short waits (a hot partition's limit is per second), then the
#: caller is told, so that it backs off for longer and lets the queue bring the work back.
_THROTTLE_BACKOFF = Backoff(base=0.05, cap=0.4)
_THROTTLE_RETRIES = 3
#: A transaction conflict, or unprocessed items of the event-id writes and history reads: short waits.
_CONFLICT_BACKOFF = Backoff(base=0.005, cap=0.2)


class SequencingError(RuntimeError):
    """Could not assign a ``seq`` after repeated write conflicts."""


class ThrottledError(RuntimeError):
    """DynamoDB throttled a request: the caller backs off and lets the queue bring the work back."""

    partial: SequenceResult | None = None
    """What the same call had already stored before it was throttled (to be sent all the same)."""


@dataclass(frozen=True)
class ConnectionRecord:
    """A registered connection and who opened it."""

    connection_id: str
    user_id: str
    username: str
    email: str | None
    groups: tuple[str, ...]
    token_expires_at: int
    connected_at: int
    last_ping: int
    ttl: int


@dataclass(frozen=True)
class Subscriber:
    """One subscription row as the broadcaster reads it."""

    connection_id: str
    ttl: int


@dataclass(frozen=True)
class SubscriberPage:
    """One page of a deployment's subscribers, and how many items DynamoDB read for it."""

    subscribers: list[Subscriber]
    items_read: int


@dataclass(frozen=True)
class Counter:
    """A deployment's counter item: small, whatever the deployment's size."""

    last_seq: int
    head: Mapping[str, Any] = field(default_factory=dict)
    """The deployment-level part of its state through ``last_seq`` (the list's summary and
    ``started_at``): status, attempt, layers, dates, environment. Empty before any event."""
    producers: Mapping[str, int] = field(default_factory=dict)
    """Each numbering producer's last stored ``producer_seq`` (see ``handlers.ordering``)."""
    project: str | None = None
    """The deployment's project, fixed by its first stored event (None before it)."""

    def head_state(self) -> dict[str, Any]:
        """A state to fold further events into for the head (stacks and logs are not kept here)."""
        folded = state.initial()
        order = folded.get("_keys")  # a fold that orders fields by key: the head's come first
        for name, value in self.head.items():
            if name in folded and name != "_keys":
                folded[name] = value
                if isinstance(order, dict) and value is not None:
                    order[name] = [None, 0]
        return folded


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


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


def _int(item: Item, name: str, default: int = 0) -> int:
    value = item.get(name)
    return int(value["N"]) if value and "N" in value else default


def _str(item: Item, name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value and "S" in value else None


class Store:
    """All DynamoDB reads and writes of cloud-ws."""

    def __init__(
        self,
        client: DynamoDBClient,
        tables: TableNames,
        history_ttl_seconds: int = 72 * 3600,
        clock: Callable[[], float] = time.time,
        max_sequence_attempts: int = 25,
        reuse_counter: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """Set up the store.

        Args:
            clock: the time (epoch seconds) for TTLs and expiry checks.
            sleep: how a retry waits (tests pass a fake, so no real time passes).
            rng: the jitter of the retries' waits (tests pass a seeded one).
            reuse_counter: start each batch from the counter this container wrote last (checked by
                the transaction's condition) instead of reading it; False reads it every time.
        """
        self._db = client
        self._tables = tables
        self._history_ttl = history_ttl_seconds
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._max_sequence_attempts = max_sequence_attempts
        # deployment id -> the counter (seq and state) this container last wrote: a guess, checked
        # by the transaction's condition, that saves reading the counter before every batch.
        self._last_seq_hint: dict[str, Counter] = {}
        self._reuse_counter = reuse_counter
        # deployment id -> (seq, state folded through it) this container computed last.
        self._states: OrderedDict[str, tuple[int, dict[str, Any]]] = OrderedDict()

    @property
    def client(self) -> DynamoDBClient:
        """The DynamoDB client this store uses (the inbox shares it)."""
        return self._db

    def _now(self) -> int:
        return int(self._clock())

    # -- connections ---------------------------------------------------------------------------

    def put_connection(self, record: ConnectionRecord) -> None:
        """Register a connection (``$connect``)."""
        item: Item = {
            "connectionId": _s(record.connection_id),
            "userId": _s(record.user_id),
            "username": _s(record.username),
            "groups": {"L": [_s(g) for g in record.groups]},
            "tokenExpiresAt": _n(record.token_expires_at),
            # Files the row under its token's minute in the sweeper's index (spec.CONNECTIONS).
            "expiresMinute": _n(record.token_expires_at // 60),
            "connectedAt": _n(record.connected_at),
            "lastPing": _n(record.last_ping),
            _TTL: _n(record.ttl),
        }
        if record.email:
            item["email"] = _s(record.email)
        self._db.put_item(TableName=self._tables.connections, Item=item)

    def get_connection(self, connection_id: str) -> ConnectionRecord | None:
        """The connection's record, or None when it is unknown or expired."""
        item = self._db.get_item(
            TableName=self._tables.connections,
            Key={"connectionId": _s(connection_id)},
            ConsistentRead=True,
        ).get("Item")
        if not item or _int(item, _TTL) <= self._now():
            return None
        return ConnectionRecord(
            connection_id=connection_id,
            user_id=_str(item, "userId") or "",
            username=_str(item, "username") or "",
            email=_str(item, "email"),
            groups=tuple(g["S"] for g in item.get("groups", {}).get("L", []) if "S" in g),
            token_expires_at=_int(item, "tokenExpiresAt"),
            connected_at=_int(item, "connectedAt"),
            last_ping=_int(item, "lastPing"),
            ttl=_int(item, _TTL),
        )

    def touch_connection(self, connection_id: str) -> int | None:
        """Record a ping; returns when the connection's token expires, None when it is not registered."""
        try:
            reply = self._db.update_item(
                TableName=self._tables.connections,
                Key={"connectionId": _s(connection_id)},
                UpdateExpression="SET lastPing = :now",
                ConditionExpression="attribute_exists(connectionId) AND #ttl > :now",
                ExpressionAttributeNames={"#ttl": _TTL},
                ExpressionAttributeValues={":now": _n(self._now())},
                ReturnValues="ALL_NEW",  # the row's tokenExpiresAt, in the same request
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return _int(reply.get("Attributes", {}), "tokenExpiresAt")

    def delete_connection(self, connection_id: str) -> int:
        """Remove a connection and every subscription it holds; returns the subscriptions removed."""
        deployments = self.subscriptions_of(connection_id)
        keys = [{"deploymentId": _s(d), "connectionId": _s(connection_id)} for d in deployments]
        for start in range(0, len(keys), 25):  # BatchWriteItem takes at most 25 requests
            self._batch_delete(self._tables.subscriptions, keys[start : start + 25])
        self._db.delete_item(TableName=self._tables.connections, Key={"connectionId": _s(connection_id)})
        return len(keys)

    def expiring_connections(self, first_minute: int, last_minute: int, until: int) -> list[tuple[str, int]]:
        """Connections whose token expires by ``until``, filed under these minutes (epoch s // 60).

        ``(connection id, tokenExpiresAt)`` pairs, soonest first. One Query per
        minute on the sparse by-expiry index: the reads grow with the minutes
        and the connections expiring in them, never with every connection. The
        index is eventually consistent: a row deleted a moment ago may still be
        listed (closing it again answers 410 Gone, which is harmless).
        """
        found: list[tuple[str, int]] = []
        for minute in range(first_minute, last_minute + 1):
            kwargs: dict[str, Any] = {
                "TableName": self._tables.connections,
                "IndexName": spec.CONNECTIONS_BY_EXPIRY_INDEX,
                "KeyConditionExpression": "expiresMinute = :m AND tokenExpiresAt <= :until",
                "ExpressionAttributeValues": {":m": _n(minute), ":until": _n(until)},
            }
            while True:
                page = self._db.query(**kwargs)
                found += [(i["connectionId"]["S"], _int(i, "tokenExpiresAt")) for i in page.get("Items", [])]
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(found, key=lambda pair: pair[1])

    def _batch_delete(self, table: str, keys: list[Item]) -> None:
        pending: Any = {table: [{"DeleteRequest": {"Key": k}} for k in keys]}
        for attempt in range(8):
            if not pending:
                return
            pending = self._db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if pending:
                self._wait(_BATCH_BACKOFF, attempt + 1)
        if pending:
            raise RuntimeError(f"could not delete {len(pending[table])} subscriptions from {table}")

    #: The frame limiter's one attribute on a connection row (:meth:`take_frame_allowance`).
    FRAME_ALLOWANCE_ATTRIBUTE = "allowanceFullAt"

    def take_frame_allowance(self, connection_id: str, burst: int, per_second: float) -> float:
        """Count one frame against the connection's rate limit; 0 when it may go ahead, else the
        seconds until the next frame would be allowed.

        A token bucket kept as one number on the connection row (the generic cell
        rate algorithm): ``allowanceFullAt``, the epoch millisecond at which the
        connection's whole burst is available again. Each allowed frame moves it
        one interval (``1000 / per_second`` ms) later; a frame is allowed while it
        is at most ``burst - 1`` intervals ahead of now. The usual frame costs one
        conditional UpdateItem; the first after the connection was idle (the time
        in the past) costs two, as DynamoDB cannot take ``max(time, now)`` in one
        update. Both writes are conditional, so frames of one connection that run
        concurrently (API Gateway may) never share one allowance. A refused frame
        changes nothing. A connection that is not registered is not created here
        (0 is returned: the route answers ``unknown_connection`` as it would anyway).
        """
        interval = max(1, round(1000 / per_second))
        names = {"#at": self.FRAME_ALLOWANCE_ATTRIBUTE}
        key = {"connectionId": _s(connection_id)}
        for _ in range(3):
            now = int(self._clock() * 1000)
            edge = now + (burst - 1) * interval
            try:
                self._db.update_item(
                    TableName=self._tables.connections,
                    Key=key,
                    UpdateExpression="ADD #at :interval",
                    ConditionExpression="#at BETWEEN :now AND :edge",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":interval": _n(interval), ":now": _n(now), ":edge": _n(edge)},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return 0.0
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
                old: Item | None = exc.response.get("Item")  # type: ignore[assignment]
            if not old:
                return 0.0
            full_at = _int(old, self.FRAME_ALLOWANCE_ATTRIBUTE, default=now - 1)
            if full_at > edge:
                return (full_at - edge) / 1000
            try:  # idle: the whole burst is there again; this frame takes the first of it
                self._db.update_item(
                    TableName=self._tables.connections,
                    Key=key,
                    UpdateExpression="SET #at = :next",
                    ConditionExpression=(
                        "attribute_exists(connectionId) AND (attribute_not_exists(#at) OR #at < :now)"
                    ),
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":next": _n(now + interval), ":now": _n(now)},
                )
                return 0.0
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
            # Another frame of this connection started the bucket first (or the row just went):
            # take this one from the bucket it started.
        # Three rounds lost to concurrent frames of the same connection: let this one through
        # rather than refuse a frame the limit may well allow.
        return 0.0

    # -- subscriptions -------------------------------------------------------------------------

    def subscriptions_of(self, connection_id: str) -> list[str]:
        """Deployment ids a connection is subscribed to (via the by-connection index)."""
        deployments: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self._tables.subscriptions,
            "IndexName": spec.SUBSCRIPTIONS_BY_CONNECTION_INDEX,
            "KeyConditionExpression": "connectionId = :c",
            "ExpressionAttributeValues": {":c": _s(connection_id)},
        }
        while True:
            page = self._db.query(**kwargs)
            deployments += [i["deploymentId"]["S"] for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return deployments
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def put_subscription(
        self, deployment_id: str, connection: ConnectionRecord, grants: Sequence[str]
    ) -> None:
        """Subscribe a connection to a deployment (idempotent); the row lives as long as the connection's.

        The row carries what the broadcaster checks before each post, without
        reading the connection: the project patterns the user's groups grant
        (``handlers.authorization``) and when the connection's token expires.
        """
        self._db.put_item(
            TableName=self._tables.subscriptions,
            Item={
                "deploymentId": _s(deployment_id),
                "connectionId": _s(connection.connection_id),
                "userId": _s(connection.user_id),
                "subscribedAt": _n(self._now()),
                "grants": {"L": [_s(pattern) for pattern in grants]},
                "tokenExpiresAt": _n(connection.token_expires_at),
                _TTL: _n(connection.ttl),
            },
        )

    def reserve_subscription(self, connection_id: str, deployment_id: str, limit: int) -> bool:
        """Count a deployment against the connection's limit, atomically; False when it is full.

        One conditional UpdateItem adds the deployment to the connection row's
        set of watched deployments unless the set already holds ``limit`` others:
        API Gateway may run one connection's frames concurrently, and counting
        the subscriptions first and writing after let 21 concurrent subscribes
        all pass a limit of 20. Watching a deployment again never counts twice.
        """
        try:
            self._db.update_item(
                TableName=self._tables.connections,
                Key={"connectionId": _s(connection_id)},
                UpdateExpression="ADD watching :d",
                ConditionExpression=(
                    "attribute_exists(connectionId) AND "
                    "(attribute_not_exists(watching) OR size(watching) < :limit OR contains(watching, :id))"
                ),
                ExpressionAttributeValues={
                    ":d": {"SS": [deployment_id]},
                    ":id": _s(deployment_id),
                    ":limit": _n(limit),
                },
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release_subscription(self, connection_id: str, deployment_id: str) -> None:
        """Take a deployment off the connection's count (unsubscribe)."""
        try:
            self._db.update_item(
                TableName=self._tables.connections,
                Key={"connectionId": _s(connection_id)},
                UpdateExpression="DELETE watching :d",
                ConditionExpression="attribute_exists(connectionId)",
                ExpressionAttributeValues={":d": {"SS": [deployment_id]}},
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise

    def delete_subscription(self, deployment_id: str, connection_id: str) -> bool:
        """Unsubscribe; True when a subscription existed."""
        old = self._db.delete_item(
            TableName=self._tables.subscriptions,
            Key={"deploymentId": _s(deployment_id), "connectionId": _s(connection_id)},
            ReturnValues="ALL_OLD",
        )
        return bool(old.get("Attributes"))

    def subscriber_pages(
        self, deployment_id: str, page_size: int, project: str | None = None
    ) -> Iterator[SubscriberPage]:
        """A deployment's live subscribers, one DynamoDB Query page at a time.

        A strongly consistent Query on the hash key: reads grow with this
        deployment's subscribers only, and a subscription stored just before
        an event is stored is always seen (the subscribe handler relies on it).
        Rows that are read but not returned (they count in ``items_read``):
        expired ones, those whose connection's token has expired (nothing is
        posted after ``exp``), and, given the deployment's ``project``, those
        whose grants do not cover it.
        """
        now = self._now()
        kwargs: dict[str, Any] = {
            "TableName": self._tables.subscriptions,
            "KeyConditionExpression": "deploymentId = :d",
            "ExpressionAttributeValues": {":d": _s(deployment_id)},
            "ProjectionExpression": "connectionId, #ttl, grants, tokenExpiresAt",
            "ExpressionAttributeNames": {"#ttl": _TTL},
            "ConsistentRead": True,
            "Limit": page_size,
        }
        while True:
            page = self._db.query(**kwargs)
            items = page.get("Items", [])
            live = [
                Subscriber(i["connectionId"]["S"], _int(i, _TTL))
                for i in items
                if _int(i, _TTL) > now
                and _int(i, "tokenExpiresAt") > now
                and (project is None or granted(_strings(i, "grants"), project))
            ]
            yield SubscriberPage(live, page.get("ScannedCount", len(items)))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- event history -------------------------------------------------------------------------

    def last_seq(self, deployment_id: str) -> int:
        """The highest ``seq`` handed out for a deployment (0 before its first event)."""
        return self.counter(deployment_id).last_seq

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
            known = self.counter(deployment_id)
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

    def checkpoint(self, deployment_id: str) -> tuple[int, dict[str, Any]]:
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
        self, deployment_id: str, seq: int, folded: Mapping[str, Any], project: str | None = None
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

    def folded(self, deployment_id: str, seq: int) -> dict[str, Any]:
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

    def snapshot(self, deployment_id: str) -> tuple[int, dict[str, Any]]:
        """The deployment's last ``seq`` and its state folded through it (what ``deployment.snapshot`` sends).

        The checkpoint is read first, then the counter (checkpoints are written
        after their events are stored, so the counter is never behind it), then
        the events between the two are folded on top.
        """
        upto, folded = self.checkpoint(deployment_id)
        last = self.counter(deployment_id).last_seq
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
        if first > last:
            return
        kwargs: dict[str, Any] = {
            "TableName": self._tables.events,
            "KeyConditionExpression": "deploymentId = :d AND seq BETWEEN :a AND :b",
            "ExpressionAttributeValues": {":d": _s(deployment_id), ":a": _n(first), ":b": _n(last)},
            "ProjectionExpression": "message",
            "ConsistentRead": True,
        }
        while True:
            page = self._db.query(**kwargs)
            for item in page.get("Items", []):
                message = _str(item, "message")
                if message is not None:
                    yield message
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

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
        while pending:
            chunk = pending[: min(spec.DELIVERY.max_events_per_transaction, 99 // 2)]
            known_counter = self._last_seq_hint.get(deployment_id)
            if known_counter is None:
                known_counter = self.counter(deployment_id)
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
                invalid = {
                    owners[i] for i, r in enumerate(reasons) if r == "ValidationError" and owners[i] >= 0
                }
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
                known = [e for i, e in enumerate(chunk) if _failed(reasons, owners.index(i) + 1)]
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
    ) -> tuple[list[TransactWriteItemTypeDef], list[int]]:
        """The counter put, then per event its history row and its identity row.

        Returns the items and, per item, the index in ``chunk`` of the event it
        belongs to (-1 for the counter), so cancellation reasons map to events.
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
        owners = [-1]
        for i, (event, message) in enumerate(zip(chunk, messages, strict=True)):
            seq = last + 1 + i
            items.append(
                {
                    "Put": {
                        "TableName": self._tables.events,
                        "Item": {
                            "deploymentId": _s(deployment_id),
                            "seq": _n(seq),
                            "eventId": _s(event.event_id),
                            "message": _s(message),
                            # Not in the message: what AppSync's deploymentEvents resolver authorizes by.
                            "projectName": _s(project),
                            _TTL: _n(ttl),
                        },
                        "ConditionExpression": "attribute_not_exists(seq)",
                    }
                }
            )
            items.append(
                {
                    "Put": {
                        "TableName": self._tables.event_ids,
                        "Item": _identity_item(event.identity, deployment_id, seq, identity_ttl),
                        "ConditionExpression": "attribute_not_exists(eventKey)",
                    }
                }
            )
            owners += [i, i]
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
        rows = self._batch_get(
            self._tables.events,
            [{"deploymentId": _s(deployment_id), "seq": _n(seq)} for _, seq in unsent],
            "seq, message",
        )
        messages = {_int(row, "seq"): _str(row, "message") for row in rows}
        for event, seq in unsent:
            message = messages.get(seq)
            if message is None:  # the history row expired first: there is nothing left to resend
                result.duplicates.append((event, seq))
            else:
                result.unsent.append(SequencedEvent(event, seq, message))

    def messages(self, deployment_id: str, seqs: Sequence[int]) -> list[str]:
        """The stored wire messages of these events, in ``seq`` order (expired ones are left out)."""
        rows = self._batch_get(
            self._tables.events,
            [{"deploymentId": _s(deployment_id), "seq": _n(seq)} for seq in sorted(set(seqs))],
            "seq, message",
        )
        found = {_int(row, "seq"): _str(row, "message") for row in rows}
        return [m for _, m in sorted(found.items()) if m is not None]

    def _batch_write(self, table: str, requests: list[Any]) -> None:
        pending: Any = {table: requests}
        for attempt in range(8):
            pending = self._db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not pending:
                return
            self._wait(_CONFLICT_BACKOFF, attempt + 1)
        raise RuntimeError(f"could not write {len(pending[table])} items to {table}")

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

    def _remember_state(self, deployment_id: str, seq: int, folded: dict[str, Any]) -> None:
        self._states[deployment_id] = (seq, folded)
        self._states.move_to_end(deployment_id)
        while len(self._states) > _MAX_STATES:
            self._states.popitem(last=False)

    def _wait(self, policy: Backoff, attempt: int) -> None:
        """Wait before retry ``attempt`` (1 for the first) through the sleep this store was given."""
        self._sleep(policy.delay(attempt, self._rng))


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


def _strings(item: Item, name: str) -> list[str]:
    """A list attribute of strings (empty when absent)."""
    return [value.get("S", "") for value in item.get(name, {}).get("L", [])]


def _json_object(item: Item, name: str) -> dict[str, Any]:
    """A string attribute holding a JSON object, parsed; empty when absent or unreadable."""
    raw = _str(item, name)
    try:
        loaded = json.loads(raw) if raw else None
    except ValueError:
        loaded = None
    return loaded if isinstance(loaded, dict) else {}


def _head_of(deployment_id: str, folded: Mapping[str, Any]) -> dict[str, Any]:
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


def _failed(reasons: Sequence[str], index: int) -> bool:
    """Whether the transaction item at ``index`` failed its condition."""
    return index < len(reasons) and reasons[index] == "ConditionalCheckFailed"


def _identity_item(event_key: str, deployment_id: str, seq: int, ttl: int) -> Item:
    # Written once with its event and never rewritten: whether it was sent is the lease's
    # ``sentUpTo`` mark (handlers.inbox), one attribute instead of a write per event.
    return {"eventKey": _s(event_key), "deploymentId": _s(deployment_id), "seq": _n(seq), _TTL: _n(ttl)}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
