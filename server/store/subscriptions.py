"""Subscription rows: which connections watch which deployment, and each connection's count of them.

**The audience.** The broadcaster used to read a deployment's subscribers
with a strongly consistent Query after every transaction: one DynamoDB round
trip on every event's path, and read units that grow with the subscribers on
every send (10,000 subscribers of one deployment are about 600 read units a
send, a fifth of a partition's 3,000 a second). Subscriptions change rarely,
so each container keeps the subscriber list it last read for a deployment
(:class:`Audience`), tagged with the deployment's *audience token*: a random
value on the deployment's lease row that every subscribe and unsubscribe
replaces (:meth:`Subscriptions.touch_audience`) after writing its row and
before reading the history it replays. The lease holder reads the token when
it claims the lease (and whenever it marks or releases it), so a list tagged
with the token it read is exact up to that read, and ``server.delivery`` makes
sure no subscription made later is missed (docs/delivery.md, "The audience").
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from contract import keys, spec
from contract.authorization import granted
from server.store.base import BATCH_BACKOFF as _BATCH_BACKOFF
from server.store.base import TTL as _TTL
from server.store.base import Item, Part, TableAccess
from server.store.base import error_code as _code
from server.store.base import int_of as _int
from server.store.base import number_value as _n
from server.store.base import string_value as _s

if TYPE_CHECKING:
    from server.store.connections import ConnectionRecord


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


#: The lease row's attribute that changes with every subscribe and unsubscribe of its deployment.
AUDIENCE_ATTRIBUTE = "audience"

#: Deployments whose subscriber lists one container keeps (least recently used go first).
AUDIENCE_DEPLOYMENTS = 1_000

#: Longest list kept: a larger audience is read on every send, as before (its fan-out is paged
#: over other invocations anyway, and a list this long is about a megabyte of a container's memory).
AUDIENCE_MEMBERS = 10_000


@dataclass(frozen=True)
class Member:
    """A subscription row as kept in a container's memory: what each post is checked against."""

    connection_id: str
    ttl: int
    token_expires_at: int
    grants: tuple[str, ...]

    def live(self, now: int, project: str | None) -> bool:
        """Whether the broadcaster may post to it now (the checks the Query's readers make)."""
        return (
            self.ttl > now
            and self.token_expires_at > now
            and (project is None or granted(self.grants, project))
        )


class Audience:
    """A container's subscriber lists, each tagged with the audience token it was read under."""

    def __init__(self, deployments: int = AUDIENCE_DEPLOYMENTS, members: int = AUDIENCE_MEMBERS) -> None:
        """Keep at most ``deployments`` lists of at most ``members`` subscriptions each."""
        self._lists: OrderedDict[str, tuple[str, tuple[Member, ...]]] = OrderedDict()
        self._deployments = deployments
        self._members = members
        self._lock = threading.Lock()

    def get(self, deployment_id: str, token: str) -> tuple[Member, ...] | None:
        """The list read under ``token``; None when none is kept under it."""
        with self._lock:
            kept = self._lists.get(deployment_id)
            if kept is None or kept[0] != token:
                return None
            self._lists.move_to_end(deployment_id)
            return kept[1]

    def put(self, deployment_id: str, token: str, members: Sequence[Member]) -> None:
        """Keep ``members``, read after ``token`` was (a longer list is not kept)."""
        with self._lock:
            if len(members) > self._members:
                self._lists.pop(deployment_id, None)
                return
            self._lists[deployment_id] = (token, tuple(members))
            self._lists.move_to_end(deployment_id)
            while len(self._lists) > self._deployments:
                self._lists.popitem(last=False)

    def forget_connection(self, connection_id: str) -> None:
        """Take a gone connection out of every list (its posts answer 410)."""
        with self._lock:
            for deployment_id, (token, members) in list(self._lists.items()):
                if any(m.connection_id == connection_id for m in members):
                    kept = tuple(m for m in members if m.connection_id != connection_id)
                    self._lists[deployment_id] = (token, kept)


class Subscriptions(Part):
    """The subscriptions table, and the set of watched deployments on each connection row."""

    def __init__(self, access: TableAccess) -> None:
        """Share ``access``; start with no subscriber list kept."""
        super().__init__(access)
        self.audience = Audience()
        """This container's subscriber lists by deployment (see the module's doc)."""

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
        (``contract.authorization``) and when the connection's token expires.
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
        self.touch_audience(deployment_id)

    def touch_audience(self, deployment_id: str) -> None:
        """Give the deployment a new audience token (after its subscriptions changed).

        Made after the subscription row is written or deleted and before the
        subscriber is sent any history: a lease holder that read the old token
        either finds the new one before it gives the lease up (and serves the
        newcomer what it sent meanwhile) or gave up first, so the newcomer's
        history read comes after every event that holder stored.
        """
        self._db.update_item(
            TableName=self._tables.events,
            Key=keys.lease(deployment_id),
            UpdateExpression="SET #a = :t",
            ExpressionAttributeNames={"#a": AUDIENCE_ATTRIBUTE},
            ExpressionAttributeValues={":t": _s(uuid.uuid4().hex)},
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
        """Unsubscribe; True when a subscription existed (then the audience token changes too)."""
        old = self._db.delete_item(
            TableName=self._tables.subscriptions,
            Key={"deploymentId": _s(deployment_id), "connectionId": _s(connection_id)},
            ReturnValues="ALL_OLD",
        )
        existed = bool(old.get("Attributes"))
        if existed:
            self.touch_audience(deployment_id)
        return existed

    def subscriber_pages(
        self, deployment_id: str, page_size: int, project: str | None = None, audience: str | None = None
    ) -> Iterator[SubscriberPage]:
        """A deployment's live subscribers, one DynamoDB Query page at a time.

        A strongly consistent Query on the hash key: reads grow with this
        deployment's subscribers only, and a subscription stored just before
        an event is stored is always seen (the subscribe handler relies on it).
        Rows that are read but not returned (they count in ``items_read``):
        expired ones, those whose connection's token has expired (nothing is
        posted after ``exp``), and, given the deployment's ``project``, those
        whose grants do not cover it.

        ``audience``: the deployment's audience token, read before this call
        (by the lease holder). The list kept under it answers without a read
        (``items_read`` 0), checked against the clock as the Query's rows are;
        otherwise the Query's whole list is kept under it.
        """
        now = self._now()
        if audience is not None:
            kept = self.audience.get(deployment_id, audience)
            if kept is not None:
                live = [Subscriber(m.connection_id, m.ttl) for m in kept if m.live(now, project)]
                for start in range(0, len(live), page_size):
                    yield SubscriberPage(live[start : start + page_size], 0)
                return
        kwargs: dict[str, Any] = {
            "TableName": self._tables.subscriptions,
            "KeyConditionExpression": "deploymentId = :d",
            "ExpressionAttributeValues": {":d": _s(deployment_id)},
            "ProjectionExpression": "connectionId, #ttl, grants, tokenExpiresAt",
            "ExpressionAttributeNames": {"#ttl": _TTL},
            "ConsistentRead": True,
            "Limit": page_size,
        }
        members: list[Member] = []
        while True:
            page = self._db.query(**kwargs)
            items = page.get("Items", [])
            read = [
                Member(
                    i["connectionId"]["S"],
                    _int(i, _TTL),
                    _int(i, "tokenExpiresAt"),
                    tuple(_strings(i, "grants")),
                )
                for i in items
            ]
            if audience is not None and len(members) <= AUDIENCE_MEMBERS:
                members += read
            live = [Subscriber(m.connection_id, m.ttl) for m in read if m.live(now, project)]
            yield SubscriberPage(live, page.get("ScannedCount", len(items)))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if audience is not None:
            self.audience.put(deployment_id, audience, members)

    def delete_subscriptions_of(self, connection_id: str) -> int:
        """Remove every subscription a connection holds (it is going away); returns how many.

        The audience tokens stay: a list that still holds the connection costs
        at most one post answered 410 per container, which takes it out.
        """
        self.audience.forget_connection(connection_id)
        deployments = self.subscriptions_of(connection_id)
        keys = [{"deploymentId": _s(d), "connectionId": _s(connection_id)} for d in deployments]
        for start in range(0, len(keys), 25):  # BatchWriteItem takes at most 25 requests
            self._batch_delete(self._tables.subscriptions, keys[start : start + 25])
        return len(keys)

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


def _strings(item: Item, name: str) -> list[str]:
    """A list attribute of strings (empty when absent)."""
    return [value.get("S", "") for value in item.get(name, {}).get("L", [])]
