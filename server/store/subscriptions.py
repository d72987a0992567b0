"""Subscription rows: which connections watch which deployment, and each connection's count of them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from contract import spec
from contract.authorization import granted
from server.store.base import BATCH_BACKOFF as _BATCH_BACKOFF
from server.store.base import TTL as _TTL
from server.store.base import Item, Part
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


class Subscriptions(Part):
    """The subscriptions table, and the set of watched deployments on each connection row."""

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

    def delete_subscriptions_of(self, connection_id: str) -> int:
        """Remove every subscription a connection holds (it is going away); returns how many."""
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
