"""What the cloud stack and the local stack both build, in one dependency-free place.

The Pulumi component, the `cloud-ws local` emulator and the tests all read
routes, tables and the event pattern from here, so the local stack cannot drift
from the deployed one. Nothing here imports boto3, Pulumi or moto.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

AttributeType = Literal["S", "N", "B"]

#: EventBridge ``source`` the plugin emits with and the rule matches by default.
DEFAULT_EVENT_SOURCE = "cloud.orchestrator"

#: API Gateway's route selection expression for every cloud-ws API.
ROUTE_SELECTION_EXPRESSION = "$request.body.action"

#: Attribute DynamoDB's TTL sweeper reads on every table (epoch seconds).
TTL_ATTRIBUTE = "ttl"


@dataclass(frozen=True)
class KeyAttribute:
    """One key attribute of a table or index."""

    name: str
    type: AttributeType


@dataclass(frozen=True)
class IndexSpec:
    """A global secondary index (keys-only projections keep writes cheap)."""

    name: str
    hash_key: KeyAttribute
    range_key: KeyAttribute | None = None
    projection: Literal["KEYS_ONLY", "INCLUDE", "ALL"] = "KEYS_ONLY"
    non_key_attributes: tuple[str, ...] = ()
    """With ``INCLUDE``: the attributes the index carries besides the keys."""


@dataclass(frozen=True)
class TableSpec:
    """One DynamoDB table: keys, indexes, TTL, and the env var handlers read its name from."""

    role: str
    """Short name used in resource names (``connections``, ``subscriptions``, ...)."""
    env_var: str
    """Environment variable that carries the physical table name to the handlers."""
    hash_key: KeyAttribute
    range_key: KeyAttribute | None = None
    indexes: tuple[IndexSpec, ...] = ()
    ttl_attribute: str = TTL_ATTRIBUTE

    @property
    def attributes(self) -> tuple[KeyAttribute, ...]:
        """Every attribute that appears in a key of the table or one of its indexes, once."""
        seen: dict[str, KeyAttribute] = {}
        for attr in (self.hash_key, self.range_key, *self._index_keys()):
            if attr is not None:
                seen.setdefault(attr.name, attr)
        return tuple(seen.values())

    def _index_keys(self) -> list[KeyAttribute | None]:
        keys: list[KeyAttribute | None] = []
        for index in self.indexes:
            keys += [index.hash_key, index.range_key]
        return keys

    def create_table_kwargs(self, table_name: str) -> dict[str, Any]:
        """Arguments for DynamoDB ``CreateTable`` (on-demand billing), as boto3 takes them."""
        kwargs: dict[str, Any] = {
            "TableName": table_name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": a.name, "AttributeType": a.type} for a in self.attributes
            ],
            "KeySchema": _key_schema(self.hash_key, self.range_key),
        }
        if self.indexes:
            kwargs["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index.name,
                    "KeySchema": _key_schema(index.hash_key, index.range_key),
                    "Projection": _projection(index),
                }
                for index in self.indexes
            ]
        return kwargs


def _projection(index: IndexSpec) -> dict[str, Any]:
    projection: dict[str, Any] = {"ProjectionType": index.projection}
    if index.projection == "INCLUDE":
        projection["NonKeyAttributes"] = list(index.non_key_attributes)
    return projection


def _key_schema(hash_key: KeyAttribute, range_key: KeyAttribute | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": hash_key.name, "KeyType": "HASH"}]
    if range_key is not None:
        schema.append({"AttributeName": range_key.name, "KeyType": "RANGE"})
    return schema


CONNECTION_ID = KeyAttribute("connectionId", "S")
DEPLOYMENT_ID = KeyAttribute("deploymentId", "S")

#: Name of the connections index the sweeper reads expiring tokens from.
CONNECTIONS_BY_EXPIRY_INDEX = "byExpiry"

#: One item per open connection: who it is, when its token and its row expire. A sparse
#: index files each connection under the minute its token expires (``expiresMinute``, epoch
#: seconds // 60; rows written before it existed carry none and are not in it), so the
#: sweeper reads the few minutes around now instead of scanning every connection.
CONNECTIONS = TableSpec(
    role="connections",
    env_var="CONNECTIONS_TABLE",
    hash_key=CONNECTION_ID,
    indexes=(
        IndexSpec(
            CONNECTIONS_BY_EXPIRY_INDEX,
            KeyAttribute("expiresMinute", "N"),
            KeyAttribute("tokenExpiresAt", "N"),
        ),
    ),
)

#: Name of the subscriptions index that finds a connection's subscriptions on disconnect.
SUBSCRIPTIONS_BY_CONNECTION_INDEX = "byConnection"

#: One item per (deployment, connection): the broadcaster Queries a deployment's
#: subscribers by hash key, so its reads grow with subscribers, never with all connections.
SUBSCRIPTIONS = TableSpec(
    role="subscriptions",
    env_var="SUBSCRIPTIONS_TABLE",
    hash_key=DEPLOYMENT_ID,
    range_key=CONNECTION_ID,
    indexes=(IndexSpec(SUBSCRIPTIONS_BY_CONNECTION_INDEX, CONNECTION_ID, DEPLOYMENT_ID),),
)

#: Name of the events index that lists deployments by their latest event.
DEPLOYMENTS_BY_UPDATE_INDEX = "byUpdate"

#: Event history, one item per (deployment, seq). The item at ``seq = 0`` is the
#: deployment's counter: ``lastSeq``, the ``state`` folded through it (the snapshot), and,
#: for the deployment list, a ``summary`` indexed by ``updatedMs`` under one ``listKey``
#: (a sparse index: only counter items carry it). Replays read ``seq > since`` and never
#: see the counter.
EVENTS = TableSpec(
    role="events",
    env_var="EVENTS_TABLE",
    hash_key=DEPLOYMENT_ID,
    range_key=KeyAttribute("seq", "N"),
    indexes=(
        IndexSpec(
            DEPLOYMENTS_BY_UPDATE_INDEX,
            KeyAttribute("listKey", "S"),
            KeyAttribute("updatedMs", "N"),
            projection="INCLUDE",
            non_key_attributes=("summary", TTL_ATTRIBUTE),
        ),
    ),
)

#: One item per event identity (``{deployment_id}/{event_id}``): makes a second
#: delivery of the same event a no-op.
EVENT_IDS = TableSpec(role="event-ids", env_var="EVENT_IDS_TABLE", hash_key=KeyAttribute("eventKey", "S"))

TABLES: tuple[TableSpec, ...] = (CONNECTIONS, SUBSCRIPTIONS, EVENTS, EVENT_IDS)


@dataclass(frozen=True)
class RouteSpec:
    """An API Gateway WebSocket route and the handler module that serves it."""

    route_key: str
    module: str
    """Module under ``handlers`` whose ``handler`` function serves the route."""
    function: str
    """Short name of the Lambda function (one function per route)."""
    tables: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Table role → DynamoDB actions the handler uses (drives least-privilege IAM)."""
    management_methods: tuple[str, ...] = ("POST",)
    """@connections methods the handler calls (``execute-api:ManageConnections``)."""

    @property
    def handler(self) -> str:
        """Lambda handler string, e.g. ``handlers.connect.handler``."""
        return f"handlers.{self.module}.handler"


_CONNECTION_READ = ("dynamodb:GetItem",)
_SUBSCRIPTION_CLEANUP = ("dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem")
#: Every message route counts each frame against its connection's rate limit (``FRAME_RATE_LIMIT``)
#: with a conditional UpdateItem on the connection's row (two after an idle spell), before its
#: action runs.
_FRAME_ALLOWANCE = ("dynamodb:UpdateItem",)

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "$connect",
        "connect",
        "connect",
        tables={"connections": ("dynamodb:PutItem",)},
        management_methods=(),
    ),
    RouteSpec(
        "$disconnect",
        "disconnect",
        "disconnect",
        tables={"connections": ("dynamodb:DeleteItem",), "subscriptions": _SUBSCRIPTION_CLEANUP},
        management_methods=(),
    ),
    RouteSpec("$default", "default", "default", tables={"connections": _FRAME_ALLOWANCE}),
    # subscribe and unsubscribe keep the connection row's set of watched deployments (UpdateItem),
    # the one atomic count of a connection's subscriptions.
    RouteSpec(
        "subscribe",
        "subscribe",
        "subscribe",
        tables={
            "connections": ("dynamodb:GetItem", "dynamodb:UpdateItem"),
            "subscriptions": ("dynamodb:PutItem", "dynamodb:Query"),
            # UpdateItem: the deployment's audience token on its lease row (server.store.subscriptions).
            "events": ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"),
        },
    ),
    RouteSpec(
        "unsubscribe",
        "unsubscribe",
        "unsubscribe",
        tables={
            "subscriptions": ("dynamodb:DeleteItem",),
            "connections": ("dynamodb:GetItem", "dynamodb:UpdateItem"),
            "events": ("dynamodb:UpdateItem",),  # the audience token, as subscribe
        },
    ),
    # pong tells the tail: the connection's subscriptions (by-connection index) and their counters.
    RouteSpec(
        "ping",
        "ping",
        "ping",
        tables={
            "connections": ("dynamodb:UpdateItem",),
            "subscriptions": ("dynamodb:Query",),
            "events": ("dynamodb:BatchGetItem",),
        },
    ),
    RouteSpec(
        "list_deployments",
        "list_deployments",
        "list-deployments",
        tables={"connections": (*_CONNECTION_READ, *_FRAME_ALLOWANCE), "events": ("dynamodb:Query",)},
    ),
)

#: The broadcaster: drains the delivery queue (an SQS event source mapping), not an API route.
#: On the events table (contract/keys.py) it claims and releases a deployment's drain lease
#: (UpdateItem), puts, reads and removes inbox rows (BatchWriteItem, Query), sequences in one
#: transaction (TransactWriteItems: Update of the counter, Put of history rows, Delete of
#: inbox rows), reads the counter and checkpoint (GetItem) and the history to fold a checkpoint
#: (Query), and writes checkpoints (PutItem). On the identity table: Puts in the transaction,
#: BatchGetItem to read duplicates back, BatchWriteItem to mark a batch sent. Large fan-outs go
#: to asynchronous invocations of itself (``lambda:InvokeFunction`` on its own ARN).
BROADCASTER = RouteSpec(
    "",
    "broadcaster",
    "broadcaster",
    tables={
        "connections": ("dynamodb:DeleteItem",),
        "subscriptions": _SUBSCRIPTION_CLEANUP,
        "events": (
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:Query",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
        ),
        "event-ids": (
            "dynamodb:BatchGetItem",
            "dynamodb:PutItem",
            "dynamodb:BatchWriteItem",
        ),
    },
    management_methods=("POST",),
)


#: The token sweeper: run every minute by an EventBridge schedule (``SWEEP``), not an API route.
#: It reads the connections filed under the minutes around now (Query on the by-expiry index),
#: closes each one whose token has expired (@connections ``DELETE``; ``$disconnect`` then removes
#: its rows), and removes the rows of one that answers 410 Gone as ``$disconnect`` would: the
#: connection (DeleteItem) and its subscriptions (by-connection Query, BatchWriteItem).
SWEEPER = RouteSpec(
    "",
    "sweeper",
    "sweeper",
    tables={
        "connections": ("dynamodb:Query", "dynamodb:DeleteItem"),
        "subscriptions": _SUBSCRIPTION_CLEANUP,
    },
    management_methods=("DELETE",),
)


#: Every Lambda function of the stack: one per route, the broadcaster and the sweeper.
FUNCTIONS: tuple[RouteSpec, ...] = (*ROUTES, BROADCASTER, SWEEPER)


@dataclass(frozen=True)
class SweepSpec:
    """When connections are closed after their token's ``exp`` (docs/protocol.md, "Token lifetime").

    The contract: closed no later than 60 s after ``exp``. A schedule fires at most once a
    minute and not to the second, so each run also takes the connections whose token expires
    before the next run is due and closes each one when its time comes, waiting inside the
    invocation: every connection is closed within seconds of ``exp`` + the verifier's leeway.
    """

    schedule_expression: str = "rate(1 minute)"
    """How often EventBridge runs the sweeper in the cloud."""
    horizon_seconds: int = 75
    """Tokens expiring this far ahead are taken by a run (the period, plus the schedule's slack)."""
    lookback_minutes: int = 15
    """Past minutes a run reads again: connections a failed or late run left open."""
    function_timeout_seconds: int = 120
    """The sweeper's Lambda timeout: the horizon's wait plus the closes."""
    local_interval_seconds: float = 5.0
    """How often ``cloud-ws local`` runs it (with no horizon: it closes only what is due)."""


SWEEP = SweepSpec()

#: The payload of the sweeper's invocations: ``{SWEEP_TASK_KEY: {"horizon_seconds": N}}``.
SWEEP_TASK_KEY = "cloud_ws_sweep"


@dataclass(frozen=True)
class DeliverySpec:
    """The wiring between the EventBridge rule and the broadcaster, cloud and local alike.

    The rule targets a standard SQS queue; an event source mapping hands the
    broadcaster batches of up to ``batch_size`` messages with no batching window
    (an idle deployment's event is not held back), and the broadcaster reports
    partial batch failures so only the failed messages come back. A message that
    keeps failing moves to the dead-letter queue after ``max_receive_count``
    receives. See docs/delivery.md for the facts behind each number.
    """

    batch_size: int = 10
    """Messages per invocation. Above 10, AWS requires a batching window of at least 1 s."""
    max_batching_window_seconds: int = 0
    """0: invoke as soon as messages are there (latency first)."""
    function_timeout_seconds: int = 60
    """The broadcaster's Lambda timeout."""
    visibility_timeout_seconds: int = 360
    """AWS asks for at least six times the function timeout, so throttled invocations are not redelivered."""
    retry_visibility_seconds: int = 2
    """How soon a failed message first comes back: the broadcaster shortens its visibility to this,
    doubled at each further receive (2, 4, 8 … s, at most the visibility timeout)."""
    max_receive_count: int = 10
    """Receives before a message is moved to the dead-letter queue: with the doubling retry
    visibility, about 14 minutes of failing storage before an event is dead-lettered."""
    max_events_per_transaction: int = 49
    """A TransactWriteItems takes 100 items: the counter, then a history row and an identity row per event."""
    fanout_page_size: int = 250
    """Subscribers one invocation posts to; further shares go to asynchronous invocations of itself.
    With 64 posts in flight and 20 ms per post, 250 take about 80 ms: 1,000 subscribers are
    reached in about 0.17 s by four invocations, where one would take about 0.4 s
    (bench/bench_fanout_model.py)."""
    fanout_max_attempts: int = 10
    """Rounds of re-posting a connection whose posts keep failing (429/5xx) before it is left to
    the client's ``pong.latest`` check."""


DELIVERY = DeliverySpec()

#: How long the dead-letter queue keeps a message (SQS's maximum, 14 days).
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600

#: Identity rows ("this event is stored, with this ``seq``") outlive the dead-letter queue by a
#: day, so a dead letter redriven on its last day is still recognised and never stored twice.
IDENTITY_TTL_SECONDS = DEAD_LETTER_RETENTION_SECONDS + 24 * 3600

#: Marks a message the broadcaster sends its own queue: "look at this deployment's inbox".
WAKE_KEY = "cloud_ws_wake"

#: Marks the payload of an asynchronous fan-out invocation of the broadcaster.
FANOUT_TASK_KEY = "cloud_ws_fanout"

#: ``DetailType`` of a packed entry: one ``PutEvents`` entry carrying several numbered events of
#: one deployment (docs/protocol.md, "Packed entries"). A producer that falls behind packs, so a
#: burst of 10,000 events is about 70 queue messages, not 10,000: the queue's pollers (five
#: at first) would otherwise spend seconds on the burst while every other deployment waits.
PACKED_DETAIL_TYPE = "events.packed"

#: Most bytes of a packed entry's ``Detail``: within one 64 KB chunk, the unit EventBridge and
#: SQS bill by (an entry may be 256 KB; four such chunks would cost as four events).
PACKED_MAX_BYTES = 63 * 1024

#: Most events in one packed entry the broadcaster accepts (a 63 KB pack of the smallest events
#: holds far fewer).
PACKED_MAX_EVENTS = 500


def select_route(body: str | None) -> str:
    """API Gateway's route selection on ``$request.body.action``.

    A frame that is a JSON object whose ``action`` names a route goes to that
    route; anything else (not JSON, no action, an unknown one) goes to ``$default``.
    """
    try:
        parsed = json.loads(body or "")
    except (ValueError, RecursionError):  # hostile nesting must not break routing
        return "$default"
    action = parsed.get("action") if isinstance(parsed, dict) else None
    if isinstance(action, str) and not action.startswith("$"):
        for route in ROUTES:
            if route.route_key == action:
                return action
    return "$default"


def route_for(route_key: str) -> RouteSpec:
    """The route spec for an API Gateway route key (``KeyError`` if there is none)."""
    for route in ROUTES:
        if route.route_key == route_key:
            return route
    raise KeyError(route_key)


def event_pattern(source: str = DEFAULT_EVENT_SOURCE) -> dict[str, Any]:
    """The EventBridge rule pattern that routes deployment events to the broadcaster.

    It matches the plugin's envelope: the configured ``source`` and a ``detail``
    that names a deployment, so unrelated events on a shared bus never wake the
    broadcaster.
    """
    return {"source": [source], "detail": {"deployment_id": [{"exists": True}]}}


@dataclass(frozen=True)
class ApiGatewayLimits:
    """API Gateway WebSocket quotas the emulator enforces and the clients respect."""

    frame_bytes: int = 32 * 1024
    message_bytes: int = 128 * 1024
    idle_timeout_seconds: float = 10 * 60
    max_connection_seconds: float = 2 * 60 * 60


API_GATEWAY_LIMITS = ApiGatewayLimits()


@dataclass(frozen=True)
class FrameRateLimit:
    """How many frames one connection may send to the message routes (docs/protocol.md, Rate limit).

    A token bucket per connection, kept on its row of the connections table
    (``Store.take_frame_allowance``): ``burst`` frames at once, then ``per_second``.
    A frame beyond it is answered ``rate_limited`` and does nothing else, so one
    client's flood cannot turn into DynamoDB work and replays that starve the others.
    ``FRAME_BURST`` and ``FRAME_RATE_PER_SECOND`` override the defaults.
    """

    burst: int = 40
    """Frames a connection may send at once. A client that reconnects resubscribes to as many as
    20 deployments (``MAX_SUBSCRIPTIONS_PER_CONNECTION``), lists them and pings: 22 frames in a
    few milliseconds. Twice 20 leaves room for that and for the gap repairs that may follow."""
    per_second: float = 10.0
    """Frames per second a connection may keep sending once its burst is spent. A well-behaved
    client pings every few minutes and resubscribes now and then; ten a second is far above
    that and far below a flood (the bucket refills one frame every 100 ms)."""


FRAME_RATE_LIMIT = FrameRateLimit()
