"""Connection rows: register, read, ping, remove, the sweeper's expiring list and the frame allowance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from contract import spec
from server.store.base import TTL as _TTL
from server.store.base import Item, Part, TableAccess
from server.store.base import error_code as _code
from server.store.base import int_of as _int
from server.store.base import number_value as _n
from server.store.base import str_of as _str
from server.store.base import string_value as _s
from server.store.subscriptions import Subscriptions


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


class Connections(Part):
    """The connections table: one row per open WebSocket connection."""

    #: The frame limiter's one attribute on a connection row (:meth:`take_frame_allowance`).
    FRAME_ALLOWANCE_ATTRIBUTE = "allowanceFullAt"

    def __init__(self, access: TableAccess, subscriptions: Subscriptions) -> None:
        """Set up the part; ``subscriptions`` is where a removed connection's subscriptions go with it."""
        super().__init__(access)
        self._subscriptions = subscriptions

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
        # The subscriptions go first, then the row: the order the one-class store used.
        removed = self._subscriptions.delete_subscriptions_of(connection_id)
        self._db.delete_item(TableName=self._tables.connections, Key={"connectionId": _s(connection_id)})
        return removed

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
