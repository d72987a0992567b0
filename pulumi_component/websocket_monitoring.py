"""``WebSocketMonitoring``: the whole cloud side of cloud-ws as one Pulumi component.

Everything it creates comes from ``contract.spec`` (routes, tables, the event
pattern) and from the code in ``handlers/``, so the deployed stack and
``cloud-ws local`` are built from one description:

- an API Gateway WebSocket API routing on ``$request.body.action``, one Lambda
  integration and route per spec route, a deployment and a stage with route
  throttling, token-free access logs and execution logs at ERROR;
- the DynamoDB tables of the spec (on-demand, TTL, point-in-time recovery,
  server-side encryption);
- one Lambda function per route plus the broadcaster (arm64, one shared code
  archive), each with its own log group and its own least-privilege role;
- the EventBridge bus (or an existing one), the rule that matches the
  configured source and sends every event to a standard SQS delivery queue
  (with a retry policy), the event source mapping that hands the broadcaster
  batches from that queue (reporting partial batch failures), and an SQS
  dead-letter queue for events that could not be delivered or kept failing,
  and for fan-out tasks that still failed after Lambda's retries.

- the token sweeper: a function an EventBridge schedule runs every minute,
  closing connections whose token has expired (``handlers/sweeper.py``);

- with AppSync enabled (the default), the GraphQL API of ``appsync.py`` that
  the broadcaster also publishes every sequenced event to;
- with ``notifications``, a notifications bus the broadcaster puts each
  attempt's outcome on, an SNS topic and webhooks (API destinations) fed from
  it by rules filtered by project and outcome (``notifications.py``).

Why a queue sits between the rule and the broadcaster, and how each number was
chosen: docs/delivery.md.

The constructor composes small builders, one module per part, the way
pulumi-awsx composes its components: ``arguments`` (the table of the
arguments, which generates ``WebSocketMonitoringArgs`` below), ``settings``
(the arguments, checked into a typed ``Settings``), ``gateway`` (API, routes,
stage), ``functions`` (a function with its log group and role), ``pipeline``
(bus, queues, rule, mapping) and ``appsync``. Resource names, types and
parents are what they were when all of it lived in this file: existing stacks
see no replacement.

Its outputs are exactly the outputs contract of docs/design.md.

No ``from __future__ import annotations`` here: Pulumi's schema inference reads
the annotations of the args and the outputs at run time.
"""

from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

from contract import environment, spec
from pulumi_component import gateway, pipeline, token_sweep
from pulumi_component._shared import child
from pulumi_component.appsync import AppSyncGraphQL
from pulumi_component.functions import LambdaFunction, common_environment, lambda_function
from pulumi_component.notifications import Notifications, notification_targets, notifications_bus
from pulumi_component.pipeline import (
    ASYNC_MAX_RETRIES,
    DEAD_LETTER_RETENTION_SECONDS,
    DELIVERY_RETENTION_SECONDS,
    EVENT_MAX_AGE_SECONDS,
    EVENT_MAX_RETRIES,
    VISIBILITY_TIMEOUT_FACTOR,
    visibility_timeout,
)
from pulumi_component.settings import (
    DEFAULT_RUNTIME,
    DEFAULTS,
    LOG_LEVELS,
    LOG_RETENTION_DAYS,
    MAX_CONCURRENCY_RANGE,
    MAX_ROUTE_TIMEOUT_SECONDS,
    SUPPORTED_RUNTIMES,
    Settings,
    WebSocketMonitoringArgsError,
    validate_args,
)

# Re-exported: these names were importable from here before the split.
__all__ = [
    "ACCESS_LOG_FORMAT",
    "ASYNC_MAX_RETRIES",
    "DEAD_LETTER_RETENTION_SECONDS",
    "DEFAULTS",
    "DEFAULT_RUNTIME",
    "DELIVERY_RETENTION_SECONDS",
    "EVENT_MAX_AGE_SECONDS",
    "EVENT_MAX_RETRIES",
    "LOG_LEVELS",
    "LOG_RETENTION_DAYS",
    "MAX_CONCURRENCY_RANGE",
    "MAX_ROUTE_TIMEOUT_SECONDS",
    "PACKAGE",
    "SUPPORTED_RUNTIMES",
    "TYPE_TOKEN",
    "VERSION",
    "VISIBILITY_TIMEOUT_FACTOR",
    "NotificationWebhookArgs",
    "NotificationsArgs",
    "WebSocketMonitoring",
    "WebSocketMonitoringArgs",
    "WebSocketMonitoringArgsError",
    "validate_args",
    "visibility_timeout",
]

ACCESS_LOG_FORMAT = gateway.ACCESS_LOG_FORMAT

#: Pulumi package name when the component is hosted for other languages.
PACKAGE = "cloud-ws"
#: Version reported by the hosted provider (and written in the schema).
VERSION = "0.1.0"
#: ``<package>:index:<Class>``, as the multi-language host requires.
TYPE_TOKEN = f"{PACKAGE}:index:WebSocketMonitoring"


class NotificationWebhookArgs(TypedDict):
    """A webhook each matching attempt outcome is POSTed to, as Slack-compatible `{"text": ...}` JSON."""

    url: str
    """HTTPS endpoint (an EventBridge API destination: retries, rate limit and auth are EventBridge's)."""
    projects: NotRequired[list[str]]
    """Only these projects' outcomes. Default: every project's."""
    outcomes: NotRequired[list[str]]
    """Only these outcomes (`succeeded`, `failed`, `cancelled`). Default: all three."""
    header_name: NotRequired[str]
    """Header the connection sends with every call. Default: `X-Cloud-Ws-Notification`."""
    header_value: NotRequired[pulumi.Input[str]]
    """Its value, kept secret (a token the endpoint wants). Default: a fixed marker."""
    rate_limit_per_second: NotRequired[int]
    """Most calls a second (1 to 300). Default: 1."""


class NotificationsArgs(TypedDict):
    """Where each deployment attempt's outcome is sent when nobody is watching."""

    topic: NotRequired[bool]
    """Publish a one-line summary to an SNS topic (email, SMS, mobile push subscribe). Default: true."""
    emails: NotRequired[list[str]]
    """Email addresses subscribed to the topic (each confirms by email). Default: none."""
    sms: NotRequired[list[str]]
    """Phone numbers (E.164, `+15551234567`) subscribed to the topic. Default: none."""
    projects: NotRequired[list[str]]
    """The topic gets only these projects' outcomes. Default: every project's."""
    outcomes: NotRequired[list[str]]
    """The topic gets only these outcomes (`succeeded`, `failed`, `cancelled`). Default: all three."""
    webhooks: NotRequired[list[NotificationWebhookArgs]]
    """Webhooks (Slack-compatible), each with its own filters. Default: none."""
    dashboard_url: NotRequired[str]
    """The dashboard's base URL, linked from every notification (`{url}/?deployment=ID`). Default: none."""


# -- generated from the table of pulumi_component/arguments.py: edit the table, not this --
class WebSocketMonitoringArgs(TypedDict):
    """Arguments of :class:`WebSocketMonitoring`."""

    user_pool_id: pulumi.Input[str]
    """Cognito user pool whose JWTs `$connect` accepts (e.g. `eu-west-1_AbCdEf123`)."""
    user_pool_client_id: pulumi.Input[str]
    """App client of that pool that clients sign in with (exported as `user_pool_client_id`)."""
    extra_client_ids: NotRequired[pulumi.Input[list[str]]]
    """Further app client ids of the same pool whose tokens are accepted (e.g. a web dashboard's)."""
    stage_name: NotRequired[str]
    """API Gateway stage name, part of every URL. Default: the Pulumi stack name."""
    throttling_burst_limit: NotRequired[pulumi.Input[int]]
    """Burst of requests allowed on every route of the stage (whole number >= 0). Default: 5000."""
    throttling_rate_limit: NotRequired[pulumi.Input[float]]
    """Steady-state requests per second allowed on every route of the stage (>= 0). Default: 10000."""
    event_source: NotRequired[pulumi.Input[str]]
    """EventBridge `source` the rule matches (not `aws.*`). Default: `cloud.orchestrator`."""
    event_bus_name: NotRequired[pulumi.Input[str]]
    """An existing EventBridge bus to attach the rule to. Leave unset to create a dedicated bus."""
    create_event_bus: NotRequired[bool]
    """Create a dedicated bus (default unless a bus name is given); false with no name: the `default` bus."""
    connection_ttl_hours: NotRequired[pulumi.Input[int]]
    """How long a connection's rows live (whole hours >= 1). Default: 24."""
    history_ttl_hours: NotRequired[pulumi.Input[int]]
    """How long events stay available for replay (whole hours >= 1). Default: 72."""
    subscribe_groups: NotRequired[pulumi.Input[list[str]]]
    """Cognito groups allowed to subscribe. Default: every authenticated user of the pool."""
    runtime: NotRequired[str]
    """Lambda runtime: `python3.12` or `python3.13`. Default: `python3.13`."""
    memory_size_mb: NotRequired[pulumi.Input[int]]
    """Memory of each route function, in MB (128 to 10240). Default: 256."""
    timeout_seconds: NotRequired[pulumi.Input[int]]
    """Timeout of each route function in seconds (1 to 29, API Gateway's limit). Default: 10."""
    broadcaster_memory_size_mb: NotRequired[pulumi.Input[int]]
    """Memory of the broadcaster in MB (128 to 10240; more memory, more CPU to fan out). Default: 512."""
    log_retention_days: NotRequired[int]
    """Retention of every log group in days (a value CloudWatch accepts: 7, 30, 365, ...). Default: 30."""
    log_level: NotRequired[str]
    """Handler log level: `DEBUG`, `INFO`, `WARNING` or `ERROR`. Default: `INFO`."""
    configure_api_gateway_account: NotRequired[bool]
    """Set the region-wide API Gateway logging role stage logs need (in one stack only). Default: false."""
    broadcaster_timeout_seconds: NotRequired[pulumi.Input[int]]
    """Broadcaster timeout in seconds (1 to 900); queue visibility is at least 6 times it. Default: 60."""
    delivery_max_concurrency: NotRequired[pulumi.Input[int]]
    """Most broadcaster invocations the delivery queue feeds at once (2 to 1000). Default: 50."""
    delivery_min_pollers: NotRequired[int]
    """Pollers kept ready for bursts (2 to 200; AWS's provisioned mode, billed). Default: none."""
    delivery_max_pollers: NotRequired[int]
    """Most pollers the mapping grows to in provisioned mode (2 to 2000). Default: delivery_min_pollers."""
    enable_appsync: NotRequired[bool]
    """Also serve the events as AppSync GraphQL subscriptions (outputs `graphql_url`...). Default: true."""
    route_reserved_concurrency: NotRequired[pulumi.Input[int]]
    """Concurrency reserved per route function (>= 1; -1: none): fan-outs cannot starve them. Default: 25."""
    producers: NotRequired[pulumi.Input[list[str]]]
    """Only these may put events (account ids, role/user ARNs) on the bus it creates. Default: own account."""
    access: NotRequired[pulumi.Input[dict[str, list[str]]]]
    """Cognito group -> project patterns it may watch (`*`: any characters). Default: none (no access)."""
    alarm_topic_arn: NotRequired[pulumi.Input[str]]
    """SNS topic the dead-letter queue's alarms notify (alarm and OK). Default: none (CloudWatch only)."""
    notifications: NotRequired[NotificationsArgs]
    """Each attempt's outcome to an SNS topic and webhooks, by project and outcome. Default: none."""


# -- end of generated code --


class WebSocketMonitoring(pulumi.ComponentResource):
    """Real-time deployment monitoring over WebSocket: API Gateway, Lambda, DynamoDB, EventBridge, SQS."""

    websocket_url: pulumi.Output[str]
    """`wss://{api}.execute-api.{region}.amazonaws.com/{stage}`: where clients connect."""
    management_endpoint: pulumi.Output[str]
    """`https://{api}.execute-api.{region}.amazonaws.com/{stage}`: the @connections endpoint."""
    event_bus_name: pulumi.Output[str]
    """EventBridge bus the orchestrator plugin emits deployment events to."""
    event_source: pulumi.Output[str]
    """EventBridge `source` the plugin must emit with."""
    region: pulumi.Output[str]
    """AWS region of the stack."""
    user_pool_id: pulumi.Output[str]
    """Cognito user pool whose tokens are accepted."""
    user_pool_client_id: pulumi.Output[str]
    """App client clients sign in with."""
    connections_table_name: pulumi.Output[str]
    """DynamoDB table of open connections."""
    graphql_url: pulumi.Output[str] | None
    """`https://{id}.appsync-api.{region}.amazonaws.com/graphql` (absent without AppSync)."""
    graphql_realtime_url: pulumi.Output[str] | None
    """`wss://{id}.appsync-realtime-api.{region}.amazonaws.com/graphql` (absent without AppSync)."""
    notification_bus_name: pulumi.Output[str] | None
    """Bus each attempt's outcome is put on (absent without notifications); `cloud-ws notify test` uses it."""
    notification_topic_arn: pulumi.Output[str] | None
    """SNS topic of the outcomes (absent without a notifications topic): subscribe push endpoints to it."""

    def __init__(
        self,
        name: str,
        args: WebSocketMonitoringArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the stack's resources as children of this component (``{name}-...``).

        Raises:
            WebSocketMonitoringArgsError: an argument is missing or invalid, before anything exists.
        """
        settings = validate_args(args)
        super().__init__(TYPE_TOKEN, name, None, opts)
        self._prefix = name
        self.functions: dict[str, aws.lambda_.Function] = {}
        """Every function by its spec name (``connect``, ..., ``broadcaster``)."""

        self.tables = self._tables()
        """The DynamoDB tables by their spec role (``connections``, ``subscriptions``, ...)."""
        self.api = gateway.websocket_api(name, self)
        self.dead_letter_queue = pipeline.dead_letter_queue(name, self)
        self.stage = self._api_and_routes(settings)
        websocket_url = gateway.websocket_url(self.api, self.stage)
        management_endpoint = gateway.management_endpoint(self.api, self.stage)
        event_bus_name = pipeline.event_bus_name(name, self, settings)
        self.delivery_queue = pipeline.delivery_queue(name, self, settings, self.dead_letter_queue)
        # Before the broadcaster: it publishes to the API's URL.
        self.appsync = self._appsync(settings)
        """The GraphQL API and its resources; None when ``enable_appsync`` is false."""
        bus = notifications_bus(name, self) if settings.notifications is not None else None
        broadcaster = self._broadcaster(settings, management_endpoint, bus)
        self.notifications: Notifications | None = None
        """The notifications bus, topic and webhooks; None without ``notifications``."""
        if bus is not None and settings.notifications is not None:
            self.notifications = notification_targets(
                name,
                self,
                bus=bus,
                targets=settings.notifications,
                header_values=settings.webhook_secrets,
                broadcaster_role=broadcaster.role,
            )
        self.delivery_mapping = self._event_pipeline(settings, event_bus_name, broadcaster)
        self.token_sweep = self._token_sweeper(settings, management_endpoint)
        """The schedule that closes connections whose token has expired (``handlers.sweeper``)."""
        self.dead_letter_alarms = pipeline.dead_letter_alarms(
            name, self, self.dead_letter_queue, settings.alarm_topic_arn
        )
        """The dead-letter queue's depth and age alarms."""

        self.websocket_url = websocket_url
        self.management_endpoint = management_endpoint
        self.event_bus_name = event_bus_name
        self.event_source = pulumi.Output.from_input(settings.event_source)
        self.region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        self.user_pool_id = pulumi.Output.from_input(settings.user_pool_id)
        self.user_pool_client_id = pulumi.Output.from_input(settings.user_pool_client_id)
        self.connections_table_name = self.tables[spec.CONNECTIONS.role].name
        self.graphql_url = self.appsync.graphql_url if self.appsync else None
        self.graphql_realtime_url = self.appsync.graphql_realtime_url if self.appsync else None
        self.notification_bus_name = bus.name if bus is not None else None
        topic = self.notifications.topic if self.notifications is not None else None
        self.notification_topic_arn = topic.arn if topic is not None else None
        self.register_outputs(self._outputs())

    # -- builders, in the order the constructor calls them ------------------------------------------

    def _tables(self) -> dict[str, aws.dynamodb.Table]:
        """One table per spec table: on-demand, TTL, point-in-time recovery, encrypted."""
        return {table.role: self._table(table) for table in spec.TABLES}

    def _table(self, table: spec.TableSpec) -> aws.dynamodb.Table:
        # The same CreateTable shape the emulator and the tests use; the name is Pulumi's.
        shape = table.create_table_kwargs(table_name="unused")
        keys = {k["KeyType"]: k["AttributeName"] for k in shape["KeySchema"]}
        return aws.dynamodb.Table(
            f"{self._prefix}-{table.role}",
            billing_mode=shape["BillingMode"],
            hash_key=keys["HASH"],
            range_key=keys.get("RANGE"),
            attributes=[
                aws.dynamodb.TableAttributeArgs(name=a["AttributeName"], type=a["AttributeType"])
                for a in shape["AttributeDefinitions"]
            ],
            global_secondary_indexes=[
                aws.dynamodb.TableGlobalSecondaryIndexArgs(
                    name=index["IndexName"],
                    projection_type=index["Projection"]["ProjectionType"],
                    non_key_attributes=index["Projection"].get("NonKeyAttributes"),
                    key_schemas=[
                        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                            attribute_name=k["AttributeName"], key_type=k["KeyType"]
                        )
                        for k in index["KeySchema"]
                    ],
                )
                for index in shape.get("GlobalSecondaryIndexes", [])
            ]
            or None,
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=table.ttl_attribute, enabled=True),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            opts=child(self),
        )

    def _api_and_routes(self, settings: Settings) -> aws.apigatewayv2.Stage:
        """One function per spec route, each behind its own integration and route; then the stage."""
        routes = gateway.Routes(self._prefix, self, self.api, settings.stage_name)
        env = common_environment(settings, self.tables)
        for route in spec.ROUTES:
            # Reserved: a broadcaster fanning out to thousands cannot take the account's
            # concurrency from $connect and ping (docs/security.md, "Rate limits").
            built = self._function(
                settings,
                route,
                env=env,
                memory=settings.memory_size_mb,
                timeout=settings.timeout_seconds,
                reserved_concurrency=settings.route_reserved_concurrency,
            )
            routes.add(route, built.function)
        return routes.stage(settings)

    def _appsync(self, settings: Settings) -> AppSyncGraphQL | None:
        if not settings.enable_appsync:
            return None
        events = self.tables[spec.EVENTS.role]
        return AppSyncGraphQL(
            self._prefix,
            parent=self,
            user_pool_id=settings.user_pool_id,
            events_table_name=events.name,
            events_table_arn=events.arn,
            subscribe_groups=settings.subscribe_groups,
            log_retention_days=settings.log_retention_days,
            client_ids=pulumi.Output.all(settings.user_pool_client_id, settings.extra_client_ids).apply(
                _client_ids
            ),
            access=settings.access,
        )

    def _broadcaster(
        self,
        settings: Settings,
        management_endpoint: pulumi.Output[str],
        notification_bus: aws.cloudwatch.EventBus | None = None,
    ) -> LambdaFunction:
        """The function the delivery queue feeds, allowed to fan out to itself and to publish to AppSync."""
        env: dict[str, pulumi.Input[str]] = {
            **common_environment(settings, self.tables),
            environment.MANAGEMENT_ENDPOINT: management_endpoint,
            environment.DELIVERY_QUEUE_URL: self.delivery_queue.url,
            environment.DEAD_LETTER_QUEUE_URL: self.dead_letter_queue.url,
            # The fan-out invokes the function by name: Lambda's own
            # AWS_LAMBDA_FUNCTION_NAME, so nothing here names it (no cycle).
        }
        if self.appsync is not None:
            env[environment.APPSYNC_GRAPHQL_URL] = self.appsync.graphql_url
        if notification_bus is not None and settings.notifications is not None:
            env[environment.NOTIFY_EVENT_BUS_NAME] = notification_bus.name
            if settings.notifications.dashboard_url:
                env[environment.NOTIFY_DASHBOARD_URL] = settings.notifications.dashboard_url
        broadcaster = self._function(
            settings,
            spec.BROADCASTER,
            env=env,
            memory=settings.broadcaster_memory_size_mb,
            timeout=settings.broadcaster_timeout_seconds,
            dead_letter_queue=self.dead_letter_queue,
            delivery_queue=self.delivery_queue,
        )
        if self.appsync is not None:
            # IAM SigV4 on the two publish mutations, for the broadcaster's role only.
            self.appsync.allow_publish(broadcaster.role.id)
        pipeline.allow_self_invoke(self._prefix, self, broadcaster.role, broadcaster.function)
        return broadcaster

    def _token_sweeper(
        self, settings: Settings, management_endpoint: pulumi.Output[str]
    ) -> aws.cloudwatch.EventRule:
        """The sweeper function, closing through @connections (DELETE), run every minute."""
        sweeper = self._function(
            settings,
            spec.SWEEPER,
            env={
                **common_environment(settings, self.tables),
                environment.MANAGEMENT_ENDPOINT: management_endpoint,
            },
            memory=settings.memory_size_mb,
            # A run waits inside the invocation for tokens that expire before the next run.
            timeout=spec.SWEEP.function_timeout_seconds,
        )
        return token_sweep.schedule_sweeps(self._prefix, self, sweeper.function)

    def _event_pipeline(
        self, settings: Settings, bus_name: pulumi.Output[str], broadcaster: LambdaFunction
    ) -> aws.lambda_.EventSourceMapping:
        """The rule feeding the delivery queue, and the mapping feeding the broadcaster from it."""
        pipeline.route_events(
            self._prefix,
            self,
            settings,
            bus_name=bus_name,
            queue=self.delivery_queue,
            dead_letters=self.dead_letter_queue,
        )
        return pipeline.feed_broadcaster(
            self._prefix,
            self,
            settings,
            queue=self.delivery_queue,
            dead_letters=self.dead_letter_queue,
            broadcaster=broadcaster.function,
            broadcaster_policy=broadcaster.role_policy,
        )

    def _outputs(self) -> dict[str, pulumi.Output[str]]:
        """The outputs contract (docs/design.md); the GraphQL URLs only when AppSync is enabled."""
        outputs = {
            "websocket_url": self.websocket_url,
            "management_endpoint": self.management_endpoint,
            "event_bus_name": self.event_bus_name,
            "event_source": self.event_source,
            "region": self.region,
            "user_pool_id": self.user_pool_id,
            "user_pool_client_id": self.user_pool_client_id,
            "connections_table_name": self.connections_table_name,
        }
        if self.graphql_url is not None and self.graphql_realtime_url is not None:
            outputs["graphql_url"] = self.graphql_url
            outputs["graphql_realtime_url"] = self.graphql_realtime_url
        if self.notification_bus_name is not None:
            outputs["notification_bus_name"] = self.notification_bus_name
        if self.notification_topic_arn is not None:
            outputs["notification_topic_arn"] = self.notification_topic_arn
        return outputs

    # -- building blocks ------------------------------------------------------------------------

    def _function(
        self,
        settings: Settings,
        route: spec.RouteSpec,
        *,
        env: dict[str, pulumi.Input[str]],
        memory: pulumi.Input[int],
        timeout: pulumi.Input[int],
        dead_letter_queue: aws.sqs.Queue | None = None,
        delivery_queue: aws.sqs.Queue | None = None,
        reserved_concurrency: pulumi.Input[int] | None = None,
    ) -> LambdaFunction:
        """``route``'s function with its log group, role and policy; remembered in ``functions``."""
        built = lambda_function(
            self._prefix,
            route,
            parent=self,
            settings=settings,
            env=env,
            table_arns=pulumi.Output.all(**{role: t.arn for role, t in self.tables.items()}),
            execution_arn=self.api.execution_arn,
            memory=memory,
            timeout=timeout,
            dead_letter_queue=dead_letter_queue,
            delivery_queue=delivery_queue,
            reserved_concurrency=reserved_concurrency,
        )
        self.functions[route.function] = built.function
        return built


def _client_ids(client_and_extras: Sequence[Any]) -> list[str]:
    """The app client and the further clients: the ones AppSync accepts, as the WebSocket API does."""
    client, extras = client_and_extras
    return list(dict.fromkeys([client, *extras]))
