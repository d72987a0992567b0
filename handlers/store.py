"""DynamoDB access: connections, subscriptions, event history and event identities.

Every table layout comes from ``handlers.spec``. Items are written with the
low-level client (no boto3 resource layer: it is slower to import and turns
numbers into Decimals); event messages are stored as their exact wire JSON so a
replay sends byte-for-byte what the live broadcast sent.

Expired rows: DynamoDB's TTL sweeper can lag by days, so every reader here
treats an item whose ``ttl`` has passed as absent.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from handlers import spec
from handlers.config import TableNames

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

Item = dict[str, "AttributeValueTypeDef"]

_TTL = spec.TTL_ATTRIBUTE
_COUNTER_SEQ = "0"


class SequencingError(RuntimeError):
    """Could not assign a ``seq`` after repeated write conflicts."""


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
class StoredEvent:
    """An event that has its ``seq`` and is in the history."""

    seq: int
    message: str
    """The exact JSON sent to subscribers."""
    sent: bool
    """True once a broadcast of this event completed its fan-out."""


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
    ) -> None:
        self._db = client
        self._tables = tables
        self._history_ttl = history_ttl_seconds
        self._clock = clock

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

    def touch_connection(self, connection_id: str) -> bool:
        """Record a ping; False when the connection is not registered."""
        try:
            self._db.update_item(
                TableName=self._tables.connections,
                Key={"connectionId": _s(connection_id)},
                UpdateExpression="SET lastPing = :now",
                ConditionExpression="attribute_exists(connectionId) AND #ttl > :now",
                ExpressionAttributeNames={"#ttl": _TTL},
                ExpressionAttributeValues={":now": _n(self._now())},
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def delete_connection(self, connection_id: str) -> int:
        """Remove a connection and every subscription it holds; returns the subscriptions removed."""
        deployments = self.subscriptions_of(connection_id)
        keys = [{"deploymentId": _s(d), "connectionId": _s(connection_id)} for d in deployments]
        for start in range(0, len(keys), 25):  # BatchWriteItem takes at most 25 requests
            self._batch_delete(self._tables.subscriptions, keys[start : start + 25])
        self._db.delete_item(TableName=self._tables.connections, Key={"connectionId": _s(connection_id)})
        return len(keys)

    def _batch_delete(self, table: str, keys: list[Item]) -> None:
        pending: Any = {table: [{"DeleteRequest": {"Key": k}} for k in keys]}
        for attempt in range(8):
            if not pending:
                return
            pending = self._db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if pending:
                time.sleep(min(1.0, 0.025 * 2**attempt) * random.random())
        if pending:
            raise RuntimeError(f"could not delete {len(pending[table])} subscriptions from {table}")

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

    def put_subscription(self, deployment_id: str, connection: ConnectionRecord) -> None:
        """Subscribe a connection to a deployment (idempotent); the row lives as long as the connection's."""
        self._db.put_item(
            TableName=self._tables.subscriptions,
            Item={
                "deploymentId": _s(deployment_id),
                "connectionId": _s(connection.connection_id),
                "userId": _s(connection.user_id),
                "subscribedAt": _n(self._now()),
                _TTL: _n(connection.ttl),
            },
        )

    def delete_subscription(self, deployment_id: str, connection_id: str) -> bool:
        """Unsubscribe; True when a subscription existed."""
        old = self._db.delete_item(
            TableName=self._tables.subscriptions,
            Key={"deploymentId": _s(deployment_id), "connectionId": _s(connection_id)},
            ReturnValues="ALL_OLD",
        )
        return bool(old.get("Attributes"))

    def subscriber_pages(self, deployment_id: str, page_size: int) -> Iterator[SubscriberPage]:
        """A deployment's live subscribers, one DynamoDB Query page at a time.

        A strongly consistent Query on the hash key: reads grow with this
        deployment's subscribers only, and a subscription stored just before
        an event is stored is always seen (the subscribe handler relies on it).
        Expired rows are read (they count in ``items_read``) but not returned.
        """
        now = self._now()
        kwargs: dict[str, Any] = {
            "TableName": self._tables.subscriptions,
            "KeyConditionExpression": "deploymentId = :d",
            "ExpressionAttributeValues": {":d": _s(deployment_id)},
            "ProjectionExpression": "connectionId, #ttl",
            "ExpressionAttributeNames": {"#ttl": _TTL},
            "ConsistentRead": True,
            "Limit": page_size,
        }
        while True:
            page = self._db.query(**kwargs)
            items = page.get("Items", [])
            live = [Subscriber(i["connectionId"]["S"], _int(i, _TTL)) for i in items if _int(i, _TTL) > now]
            yield SubscriberPage(live, page.get("ScannedCount", len(items)))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- event history -------------------------------------------------------------------------

    def last_seq(self, deployment_id: str) -> int:
        """The highest ``seq`` handed out for a deployment (0 before its first event)."""
        item = self._db.get_item(
            TableName=self._tables.events,
            Key={"deploymentId": _s(deployment_id), "seq": {"N": _COUNTER_SEQ}},
            ConsistentRead=True,
        ).get("Item")
        return _int(item, "lastSeq") if item else 0

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
                time.sleep(min(1.0, 0.025 * 2**attempt) * random.random())
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

    def find_event(self, event_key: str) -> StoredEvent | None:
        """The stored event with this identity, if any."""
        identity = self._db.get_item(
            TableName=self._tables.event_ids, Key={"eventKey": _s(event_key)}, ConsistentRead=True
        ).get("Item")
        if not identity:
            return None
        deployment_id, seq = _str(identity, "deploymentId") or "", _int(identity, "seq")
        event = self._db.get_item(
            TableName=self._tables.events,
            Key={"deploymentId": _s(deployment_id), "seq": _n(seq)},
            ConsistentRead=True,
        ).get("Item")
        message = _str(event, "message") if event else None
        sent = bool(identity.get("sent", {}).get("BOOL", False))
        # The history row can have expired before its identity row; then there is nothing to resend.
        return StoredEvent(seq=seq, message=message or "", sent=sent or message is None)

    def append_event(
        self,
        deployment_id: str,
        event_key: str,
        event_id: str,
        render: Callable[[int], str],
        max_attempts: int = 25,
    ) -> StoredEvent | None:
        """Give an event the deployment's next ``seq`` and store it, exactly once.

        One transaction moves the counter from ``last`` to ``last + 1``, writes the
        history row and the identity row, each guarded by a condition. Concurrent
        writers that lose the race on the counter retry with the new value, so no
        ``seq`` is handed out twice or skipped. When the identity row already
        exists the event is a duplicate and None is returned.

        Args:
            render: builds the wire message for the ``seq`` it is given.
        """
        ttl = self._now() + self._history_ttl
        for attempt in range(max_attempts):
            last = self.last_seq(deployment_id)
            seq = last + 1
            message = render(seq)
            counter_condition = "attribute_not_exists(lastSeq)" if last == 0 else "lastSeq = :last"
            counter_values: dict[str, AttributeValueTypeDef] = {":seq": _n(seq), ":ttl": _n(ttl)}
            if last:
                counter_values[":last"] = _n(last)
            items: list[TransactWriteItemTypeDef] = [
                {
                    "Update": {
                        "TableName": self._tables.events,
                        "Key": {"deploymentId": _s(deployment_id), "seq": {"N": _COUNTER_SEQ}},
                        "UpdateExpression": "SET lastSeq = :seq, #ttl = :ttl",
                        "ConditionExpression": counter_condition,
                        "ExpressionAttributeNames": {"#ttl": _TTL},
                        "ExpressionAttributeValues": counter_values,
                    }
                },
                {
                    "Put": {
                        "TableName": self._tables.events,
                        "Item": {
                            "deploymentId": _s(deployment_id),
                            "seq": _n(seq),
                            "eventId": _s(event_id),
                            "message": _s(message),
                            _TTL: _n(ttl),
                        },
                        "ConditionExpression": "attribute_not_exists(seq)",
                    }
                },
                {
                    "Put": {
                        "TableName": self._tables.event_ids,
                        "Item": {
                            "eventKey": _s(event_key),
                            "deploymentId": _s(deployment_id),
                            "seq": _n(seq),
                            "sent": {"BOOL": False},
                            _TTL: _n(ttl),
                        },
                        "ConditionExpression": "attribute_not_exists(eventKey)",
                    }
                },
            ]
            try:
                self._db.transact_write_items(TransactItems=items)
            except ClientError as exc:
                if _code(exc) != "TransactionCanceledException":
                    raise
                reasons = exc.response.get("CancellationReasons", [])
                if len(reasons) == 3 and reasons[2].get("Code") == "ConditionalCheckFailed":
                    return None  # another delivery of this event already has its seq
                time.sleep(min(0.2, 0.005 * 2**attempt) * random.random())
                continue
            return StoredEvent(seq=seq, message=message, sent=False)
        raise SequencingError(f"could not assign a seq for {deployment_id} after {max_attempts} attempts")

    def mark_sent(self, event_key: str) -> None:
        """Record that an event's fan-out completed, so a redelivery does not resend it."""
        self._db.update_item(
            TableName=self._tables.event_ids,
            Key={"eventKey": _s(event_key)},
            UpdateExpression="SET sent = :t",
            ConditionExpression="attribute_exists(eventKey)",
            ExpressionAttributeValues={":t": {"BOOL": True}},
        )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
