"""``WebSocketMonitoring``: the whole cloud side of cloud-ws as one Pulumi component.

Everything it creates comes from ``handlers.spec`` (routes, tables, the event
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

Why a queue sits between the rule and the broadcaster, and how each number was
chosen: docs/delivery.md.

Its outputs are exactly the outputs contract of docs/design.md.

No ``from __future__ import annotations`` here: Pulumi's schema inference reads
the annotations of the args and the outputs at run time.
"""

import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NotRequired, TypedDict, TypeVar

import pulumi
import pulumi_aws as aws

from handlers import environment, spec
from pulumi_component import policy
from pulumi_component.appsync import AppSyncGraphQL
from pulumi_component.archive import build_archive

#: Pulumi package name when the component is hosted for other languages.
PACKAGE = "cloud-ws"
#: Version reported by the hosted provider (and written in the schema).
VERSION = "0.1.0"
#: ``<package>:index:<Class>``, as the multi-language host requires.
TYPE_TOKEN = f"{PACKAGE}:index:WebSocketMonitoring"

#: Lambda runtimes the handlers and the bundled libraries are known to run on.
SUPPORTED_RUNTIMES = ("python3.12", "python3.13")
DEFAULT_RUNTIME = "python3.13"
#: Retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

DEFAULTS: Mapping[str, Any] = {
    "throttling_burst_limit": 5000,
    "throttling_rate_limit": 10000.0,
    "event_source": spec.DEFAULT_EVENT_SOURCE,
    "connection_ttl_hours": 24,
    "history_ttl_hours": 72,
    "runtime": DEFAULT_RUNTIME,
    "memory_size_mb": 256,
    "timeout_seconds": 10,
    "broadcaster_memory_size_mb": 512,
    "broadcaster_timeout_seconds": spec.DELIVERY.function_timeout_seconds,
    "log_retention_days": 30,
    "log_level": "INFO",
    "configure_api_gateway_account": False,
    "enable_appsync": True,
}

#: API Gateway's integration timeout caps how long a route handler may run.
MAX_ROUTE_TIMEOUT_SECONDS = 29

#: Access log record: who, which route, what happened. Built only from
#: ``$context`` variables that carry no credentials: never the query string
#: (the ``token`` parameter), headers (``Authorization``,
#: ``Sec-WebSocket-Protocol``) or bodies.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "requestTime": "$context.requestTimeEpoch",
        "connectionId": "$context.connectionId",
        "eventType": "$context.eventType",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "integrationStatus": "$context.integration.status",
        "integrationLatency": "$context.integration.latency",
        "errorMessage": "$context.error.message",
        "sourceIp": "$context.identity.sourceIp",
    },
    separators=(",", ":"),
)

#: EventBridge keeps retrying a delivery to the delivery queue for this long, then
#: sends the event to the dead-letter queue: older events are of no use to a live view.
EVENT_MAX_AGE_SECONDS = 3600
EVENT_MAX_RETRIES = 64
#: Lambda's own retries of an asynchronous invocation (a fan-out task) that raised.
ASYNC_MAX_RETRIES = 2
#: SQS's default, stated: a message waits out a broadcaster outage of days. Dead
#: letters keep their first enqueue time, so the DLQ must keep them longer still.
DELIVERY_RETENTION_SECONDS = 4 * 24 * 3600
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600
#: AWS asks for a queue visibility timeout of at least six times the function's timeout.
VISIBILITY_TIMEOUT_FACTOR = 6
#: Lambda's bounds on an SQS event source mapping's maximum concurrency.
MAX_CONCURRENCY_RANGE = (2, 1000)

_STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


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
    broadcaster_timeout_seconds: NotRequired[pulumi.Input[int]]
    """Broadcaster timeout in seconds (1 to 900); queue visibility is at least 6 times it. Default: 60."""
    delivery_max_concurrency: NotRequired[pulumi.Input[int]]
    """Most broadcaster invocations the delivery queue feeds at once (2 to 1000). Default: no cap."""
    log_retention_days: NotRequired[int]
    """Retention of every log group in days (a value CloudWatch accepts: 7, 30, 365, ...). Default: 30."""
    log_level: NotRequired[str]
    """Handler log level: `DEBUG`, `INFO`, `WARNING` or `ERROR`. Default: `INFO`."""
    configure_api_gateway_account: NotRequired[bool]
    """Set the region-wide API Gateway logging role stage logs need (in one stack only). Default: false."""
    enable_appsync: NotRequired[bool]
    """Also serve the events as AppSync GraphQL subscriptions (outputs `graphql_url`...). Default: true."""


class WebSocketMonitoringArgsError(ValueError):
    """An argument is missing or invalid; ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"WebSocketMonitoring: [{field}] {reason}")
        self.field = field
        self.reason = reason


# -- validation ---------------------------------------------------------------------------------

T = TypeVar("T")


def _is_plain(value: object) -> bool:
    return not isinstance(value, pulumi.Output) and not hasattr(value, "__await__")


def _check_whole(field: str, minimum: int, maximum: int | None, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise WebSocketMonitoringArgsError(field, f"must be a whole number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise WebSocketMonitoringArgsError(field, f"must be {bound}, got {value!r}")
    return int(value)


def _check_number(field: str, minimum: float, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
        raise WebSocketMonitoringArgsError(field, f"must be a number, got {value!r}")
    if value < minimum:
        raise WebSocketMonitoringArgsError(field, f"must be at least {minimum:g}, got {value!r}")
    return float(value)


def _check_text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise WebSocketMonitoringArgsError(field, f"must be a non-empty string, got {value!r}")
    return value


def _check_event_source(field: str, value: Any) -> str:
    text = _check_text(field, value)
    if len(text) > 256 or text.startswith("aws."):
        raise WebSocketMonitoringArgsError(
            field,
            f"must be at most 256 characters and not start with 'aws.' (reserved by AWS), got {value!r}",
        )
    return text


def _check_names(field: str, value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v.strip() for v in value):
        raise WebSocketMonitoringArgsError(field, f"must be a list of non-empty strings, got {value!r}")
    if any("," in v for v in value):
        raise WebSocketMonitoringArgsError(field, f"entries must not contain commas, got {value!r}")
    return [v.strip() for v in value]


def _checked(value: Any, check: Callable[[Any], T]) -> pulumi.Input[T]:
    """Check a plain value now; an Output's value is checked once known (the deployment then fails)."""
    if _is_plain(value):
        return check(value)
    return pulumi.Output.from_input(value).apply(check)


def _choice(field: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise WebSocketMonitoringArgsError(field, f"must be one of {allowed}; got {value!r}")
    return value


@functools.cache
def _lambda_archive() -> pulumi.FileArchive:
    """The code archive, built once per process (every function shares it)."""
    return pulumi.FileArchive(str(build_archive().path))


# -- apply callbacks (small, module level) -------------------------------------------------------


def _join(values: Sequence[Any]) -> str:
    """Comma-join a list, or lists of lists, of names (handlers read comma-separated sets)."""
    flat: list[str] = []
    for value in values:
        flat += value if isinstance(value, list) else [value]
    return ",".join(dict.fromkeys(flat))


def _render_json(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), sort_keys=False)


def _function_policy(route: spec.RouteSpec, stage: str, resolved: Mapping[str, Any]) -> str:
    return _render_json(
        policy.function_policy(
            route,
            table_arns=resolved["tables"],
            log_group_arn=resolved["log_group"],
            execution_arn=resolved["execution_arn"],
            stage=stage,
            dead_letter_queue_arn=resolved.get("dead_letter_queue"),
            delivery_queue_arn=resolved.get("delivery_queue"),
        )
    )


def _self_invoke_policy(function_arn: str) -> str:
    return _render_json(policy.self_invoke_policy(function_arn))


def _delivery_queue_policy(arns: Sequence[str]) -> str:
    queue_arn, rule_arn = arns
    return _render_json(policy.delivery_queue_policy(queue_arn, rule_arn))


def _redrive_policy(dead_letter_queue_arn: str) -> str:
    return _render_json(policy.redrive_policy(dead_letter_queue_arn, spec.DELIVERY.max_receive_count))


def _redrive_allow_policy(source_queue_arn: str) -> str:
    return _render_json(policy.redrive_allow_policy(source_queue_arn))


def visibility_timeout(function_timeout_seconds: int) -> int:
    """The delivery queue's visibility timeout for a broadcaster timeout.

    The spec's value, raised to six times the function timeout when the timeout
    is configured longer: a batch whose invocation was throttled or timed out is
    then not handed to a second invocation while the first may still run.
    """
    return max(spec.DELIVERY.visibility_timeout_seconds, VISIBILITY_TIMEOUT_FACTOR * function_timeout_seconds)


def _dead_letter_queue_policy(arns: Sequence[str]) -> str:
    queue_arn, rule_arn = arns
    return _render_json(policy.dead_letter_queue_policy(queue_arn, rule_arn))


def _event_pattern(source: str) -> str:
    return _render_json(spec.event_pattern(source))


def _fingerprint(parts: Sequence[Any]) -> str:
    return hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()


def _https(endpoint_and_stage: Sequence[str]) -> str:
    endpoint, stage = endpoint_and_stage
    return f"{endpoint.replace('wss://', 'https://', 1)}/{stage}"


def _wss(endpoint_and_stage: Sequence[str]) -> str:
    endpoint, stage = endpoint_and_stage
    return f"{endpoint}/{stage}"


def _as_str(value: Any) -> str:
    return str(value)


def validate_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments with defaults filled in, every plain value checked.

    Output values are checked once known. Raises ``WebSocketMonitoringArgsError``
    naming the field; the component calls this before creating anything, and a
    program can call it before creating resources of its own.
    """
    known = set(WebSocketMonitoringArgs.__annotations__)
    unknown = sorted(set(args) - known)
    if unknown:
        raise WebSocketMonitoringArgsError(
            unknown[0], f"is not an argument; expected one of {', '.join(sorted(known))}"
        )
    given = {k: v for k, v in args.items() if v is not None}
    for field in ("user_pool_id", "user_pool_client_id"):
        if field not in given:
            raise WebSocketMonitoringArgsError(field, "is required")
        given[field] = _checked(given[field], functools.partial(_check_text, field))
    settings: dict[str, Any] = {**DEFAULTS, **given}

    create_bus = given.get("create_event_bus")
    if create_bus is not None and not isinstance(create_bus, bool):
        raise WebSocketMonitoringArgsError("create_event_bus", f"must be true or false, got {create_bus!r}")
    if "event_bus_name" in given:
        if create_bus is True:
            raise WebSocketMonitoringArgsError(
                "create_event_bus",
                "cannot be true when [event_bus_name] names an existing bus; set only one of them",
            )
        settings["create_event_bus"] = False
        settings["event_bus_name"] = _checked(
            given["event_bus_name"], functools.partial(_check_text, "event_bus_name")
        )
    else:
        settings["create_event_bus"] = True if create_bus is None else create_bus
        settings["event_bus_name"] = "default"  # used only when create_event_bus is false

    stage = settings.get("stage_name", pulumi.get_stack())
    if not isinstance(stage, str) or not _STAGE_NAME.match(stage):
        raise WebSocketMonitoringArgsError(
            "stage_name", f"must be 1 to 128 letters, digits, '-' or '_', got {stage!r}"
        )
    settings["stage_name"] = stage

    whole = {
        "throttling_burst_limit": (0, None),
        "connection_ttl_hours": (1, None),
        "history_ttl_hours": (1, None),
        "memory_size_mb": (128, 10240),
        "timeout_seconds": (1, MAX_ROUTE_TIMEOUT_SECONDS),
        "broadcaster_memory_size_mb": (128, 10240),
        "broadcaster_timeout_seconds": (1, 900),
    }
    for field, (low, high) in whole.items():
        settings[field] = _checked(settings[field], functools.partial(_check_whole, field, low, high))
    if "delivery_max_concurrency" in settings:
        low, high = MAX_CONCURRENCY_RANGE
        settings["delivery_max_concurrency"] = _checked(
            settings["delivery_max_concurrency"],
            functools.partial(_check_whole, "delivery_max_concurrency", low, high),
        )
    settings["throttling_rate_limit"] = _checked(
        settings["throttling_rate_limit"], functools.partial(_check_number, "throttling_rate_limit", 0)
    )
    settings["event_source"] = _checked(
        settings["event_source"], functools.partial(_check_event_source, "event_source")
    )
    for field in ("extra_client_ids", "subscribe_groups"):
        settings[field] = _checked(settings.get(field, []), functools.partial(_check_names, field))
    _choice("runtime", settings["runtime"], SUPPORTED_RUNTIMES)
    _choice("log_retention_days", settings["log_retention_days"], LOG_RETENTION_DAYS)
    _choice("log_level", settings["log_level"], LOG_LEVELS)
    for field in ("configure_api_gateway_account", "enable_appsync"):
        if not isinstance(settings[field], bool):
            raise WebSocketMonitoringArgsError(field, f"must be true or false, got {settings[field]!r}")
    return settings


# -- the component ------------------------------------------------------------------------------


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

    def __init__(
        self,
        name: str,
        args: WebSocketMonitoringArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        settings = validate_args(args)
        super().__init__(TYPE_TOKEN, name, None, opts)
        stage_name: str = settings["stage_name"]
        retention: int = settings["log_retention_days"]

        # DynamoDB: one table per spec table.
        self.tables: dict[str, aws.dynamodb.Table] = {
            table.role: self._table(name, table) for table in spec.TABLES
        }
        table_env = {table.env_var: self.tables[table.role].name for table in spec.TABLES}
        table_arns = pulumi.Output.all(**{role: t.arn for role, t in self.tables.items()})

        self.api = aws.apigatewayv2.Api(
            f"{name}-api",
            protocol_type="WEBSOCKET",
            route_selection_expression=spec.ROUTE_SELECTION_EXPRESSION,
            description="cloud-ws deployment monitoring",
            opts=self._child(),
        )
        self.dead_letter_queue = aws.sqs.Queue(
            f"{name}-dlq",
            message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            opts=self._child(),
        )

        common_env: dict[str, pulumi.Input[str]] = {
            **table_env,
            environment.COGNITO_USER_POOL_ID: settings["user_pool_id"],
            environment.COGNITO_CLIENT_IDS: pulumi.Output.all(
                settings["user_pool_client_id"], settings["extra_client_ids"]
            ).apply(_join),
            environment.CONNECTION_TTL_HOURS: pulumi.Output.from_input(
                settings["connection_ttl_hours"]
            ).apply(_as_str),
            environment.HISTORY_TTL_HOURS: pulumi.Output.from_input(settings["history_ttl_hours"]).apply(
                _as_str
            ),
            environment.SUBSCRIBE_GROUPS: pulumi.Output.from_input(settings["subscribe_groups"]).apply(_join),
            environment.LOG_LEVEL: settings["log_level"],
        }

        # One function per route, each behind its own integration and route.
        self.functions: dict[str, aws.lambda_.Function] = {}
        self._roles: dict[str, aws.iam.Role] = {}
        self._role_policies: dict[str, aws.iam.RolePolicy] = {}
        routes: list[aws.apigatewayv2.Route] = []
        wiring: list[pulumi.Output[list[Any]]] = []
        for route in spec.ROUTES:
            function = self._function(
                name,
                route,
                settings,
                env=common_env,
                table_arns=table_arns,
                stage_name=stage_name,
                memory=settings["memory_size_mb"],
                timeout=settings["timeout_seconds"],
            )
            integration = aws.apigatewayv2.Integration(
                f"{name}-{route.function}-integration",
                api_id=self.api.id,
                integration_type="AWS_PROXY",
                integration_method="POST",
                integration_uri=function.invoke_arn,
                opts=self._child(),
            )
            api_route = aws.apigatewayv2.Route(
                f"{name}-{route.function}-route",
                api_id=self.api.id,
                route_key=route.route_key,
                authorization_type="NONE",  # $connect verifies the Cognito JWT itself
                target=pulumi.Output.concat("integrations/", integration.id),
                opts=self._child(),
            )
            routes.append(api_route)
            wiring.append(
                pulumi.Output.all(
                    route.route_key,
                    api_route.id,
                    api_route.target,
                    integration.id,
                    integration.integration_uri,
                )
            )
            aws.lambda_.Permission(
                f"{name}-{route.function}-invoke",
                action="lambda:InvokeFunction",
                function=function.name,
                principal="apigateway.amazonaws.com",
                source_arn=pulumi.Output.concat(
                    self.api.execution_arn, "/", stage_name, "/", route.route_key
                ),
                opts=self._child(),
            )

        # A stage serves a snapshot of the routes: deploy again whenever a route or
        # an integration changes, so the stage never serves a stale wiring.
        deployment = aws.apigatewayv2.Deployment(
            f"{name}-deployment",
            api_id=self.api.id,
            description="cloud-ws routes",
            triggers={"routes": pulumi.Output.all(*wiring).apply(_fingerprint)},
            opts=self._child(depends_on=routes),
        )
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs", retention_in_days=retention, opts=self._child()
        )
        stage_depends: list[pulumi.Resource] = []
        if settings["configure_api_gateway_account"]:
            stage_depends.append(self._api_gateway_account(name))
        self.stage = aws.apigatewayv2.Stage(
            f"{name}-stage",
            api_id=self.api.id,
            name=stage_name,
            deployment_id=deployment.id,
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_burst_limit=settings["throttling_burst_limit"],
                throttling_rate_limit=settings["throttling_rate_limit"],
                logging_level="ERROR",
                data_trace_enabled=False,  # would log whole frames, tokens included
                detailed_metrics_enabled=False,
            ),
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn, format=ACCESS_LOG_FORMAT
            ),
            opts=self._child(depends_on=stage_depends),
        )
        websocket_url = pulumi.Output.all(self.api.api_endpoint, self.stage.name).apply(_wss)
        management_endpoint = pulumi.Output.all(self.api.api_endpoint, self.stage.name).apply(_https)

        # EventBridge → delivery queue → (event source mapping, batches) → broadcaster.
        event_source = settings["event_source"]
        if settings["create_event_bus"]:
            bus = aws.cloudwatch.EventBus(
                f"{name}-bus", description="cloud-ws deployment events", opts=self._child()
            )
            event_bus_name: pulumi.Output[str] = bus.name
        else:
            event_bus_name = pulumi.Output.from_input(settings["event_bus_name"])
        broadcaster_timeout = settings["broadcaster_timeout_seconds"]
        self.delivery_queue = aws.sqs.Queue(
            f"{name}-delivery-queue",
            visibility_timeout_seconds=pulumi.Output.from_input(broadcaster_timeout).apply(
                visibility_timeout
            ),
            message_retention_seconds=DELIVERY_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            redrive_policy=self.dead_letter_queue.arn.apply(_redrive_policy),
            opts=self._child(),
        )
        # Only the delivery queue may name the dead-letter queue as its own: a separate
        # resource, since the delivery queue's redrive policy already names the DLQ.
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dlq-redrive-allow",
            queue_url=self.dead_letter_queue.url,
            redrive_allow_policy=self.delivery_queue.arn.apply(_redrive_allow_policy),
            opts=self._child(),
        )
        # The GraphQL API exists before the broadcaster: the broadcaster publishes to its URL.
        self.appsync: AppSyncGraphQL | None = None
        broadcaster_env: dict[str, pulumi.Input[str]] = {
            **common_env,
            environment.MANAGEMENT_ENDPOINT: management_endpoint,
            environment.DELIVERY_QUEUE_URL: self.delivery_queue.url,
            # The fan-out invokes the function by name: Lambda's own
            # AWS_LAMBDA_FUNCTION_NAME, so nothing here names it (no cycle).
        }
        if settings["enable_appsync"]:
            events_table = self.tables[spec.EVENTS.role]
            self.appsync = AppSyncGraphQL(
                name,
                parent=self,
                user_pool_id=settings["user_pool_id"],
                events_table_name=events_table.name,
                events_table_arn=events_table.arn,
                subscribe_groups=settings["subscribe_groups"],
                log_retention_days=retention,
            )
            broadcaster_env[environment.APPSYNC_GRAPHQL_URL] = self.appsync.graphql_url
        broadcaster = self._function(
            name,
            spec.BROADCASTER,
            settings,
            env=broadcaster_env,
            table_arns=table_arns,
            stage_name=stage_name,
            memory=settings["broadcaster_memory_size_mb"],
            timeout=broadcaster_timeout,
            dead_letter_queue=self.dead_letter_queue,
            delivery_queue=self.delivery_queue,
        )
        if self.appsync is not None:
            # IAM SigV4 on the two publish mutations, for the broadcaster's role only.
            self.appsync.allow_publish(self._roles[spec.BROADCASTER.function].id)
        # Invoking itself needs its own ARN, which exists only once the function does.
        aws.iam.RolePolicy(
            f"{name}-{spec.BROADCASTER.function}-fanout-policy",
            role=self._roles[spec.BROADCASTER.function].id,
            policy=broadcaster.arn.apply(_self_invoke_policy),
            opts=self._child(),
        )
        rule = aws.cloudwatch.EventRule(
            f"{name}-rule",
            event_bus_name=event_bus_name,
            description="cloud-ws: deployment events to the delivery queue",
            event_pattern=pulumi.Output.from_input(event_source).apply(_event_pattern),
            opts=self._child(),
        )
        delivery_queue_policy = aws.sqs.QueuePolicy(
            f"{name}-delivery-queue-policy",
            queue_url=self.delivery_queue.url,
            policy=pulumi.Output.all(self.delivery_queue.arn, rule.arn).apply(_delivery_queue_policy),
            opts=self._child(),
        )
        dead_letter_policy = aws.sqs.QueuePolicy(
            f"{name}-dlq-policy",
            queue_url=self.dead_letter_queue.url,
            policy=pulumi.Output.all(self.dead_letter_queue.arn, rule.arn).apply(_dead_letter_queue_policy),
            opts=self._child(),
        )
        # Same name and type as when the broadcaster itself was the target: an
        # existing stack updates this target in place (a new ARN), nothing is replaced.
        aws.cloudwatch.EventTarget(
            f"{name}-target",
            rule=rule.name,
            event_bus_name=event_bus_name,
            arn=self.delivery_queue.arn,
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_event_age_in_seconds=EVENT_MAX_AGE_SECONDS,
                maximum_retry_attempts=EVENT_MAX_RETRIES,
            ),
            dead_letter_config=aws.cloudwatch.EventTargetDeadLetterConfigArgs(arn=self.dead_letter_queue.arn),
            opts=self._child(depends_on=[delivery_queue_policy, dead_letter_policy]),
        )
        max_concurrency = settings.get("delivery_max_concurrency")
        self.delivery_mapping = aws.lambda_.EventSourceMapping(
            f"{name}-delivery-mapping",
            event_source_arn=self.delivery_queue.arn,
            function_name=broadcaster.arn,
            batch_size=spec.DELIVERY.batch_size,
            maximum_batching_window_in_seconds=spec.DELIVERY.max_batching_window_seconds,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=None
            if max_concurrency is None
            else aws.lambda_.EventSourceMappingScalingConfigArgs(maximum_concurrency=max_concurrency),
            # Lambda checks at creation that the role may read the queue.
            opts=self._child(depends_on=[self._role_policies[spec.BROADCASTER.function]]),
        )
        # Asynchronous invocations are the fan-out tasks the broadcaster hands to itself.
        aws.lambda_.FunctionEventInvokeConfig(
            f"{name}-{spec.BROADCASTER.function}-async",
            function_name=broadcaster.name,
            maximum_retry_attempts=ASYNC_MAX_RETRIES,
            maximum_event_age_in_seconds=EVENT_MAX_AGE_SECONDS,
            destination_config=aws.lambda_.FunctionEventInvokeConfigDestinationConfigArgs(
                on_failure=aws.lambda_.FunctionEventInvokeConfigDestinationConfigOnFailureArgs(
                    destination=self.dead_letter_queue.arn
                )
            ),
            opts=self._child(),
        )

        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        self.websocket_url = websocket_url
        self.management_endpoint = management_endpoint
        self.event_bus_name = event_bus_name
        self.event_source = pulumi.Output.from_input(event_source)
        self.region = region
        self.user_pool_id = pulumi.Output.from_input(settings["user_pool_id"])
        self.user_pool_client_id = pulumi.Output.from_input(settings["user_pool_client_id"])
        self.connections_table_name = self.tables[spec.CONNECTIONS.role].name
        self.graphql_url = self.appsync.graphql_url if self.appsync else None
        self.graphql_realtime_url = self.appsync.graphql_realtime_url if self.appsync else None
        graphql_outputs = (
            {"graphql_url": self.graphql_url, "graphql_realtime_url": self.graphql_realtime_url}
            if self.appsync
            else {}
        )
        self.register_outputs(
            {
                "websocket_url": self.websocket_url,
                "management_endpoint": self.management_endpoint,
                "event_bus_name": self.event_bus_name,
                "event_source": self.event_source,
                "region": self.region,
                "user_pool_id": self.user_pool_id,
                "user_pool_client_id": self.user_pool_client_id,
                "connections_table_name": self.connections_table_name,
                **graphql_outputs,
            }
        )

    # -- building blocks ------------------------------------------------------------------------

    def _child(self, depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=list(depends_on))

    def _table(self, name: str, table: spec.TableSpec) -> aws.dynamodb.Table:
        # The same CreateTable shape the emulator and the tests use; the name is Pulumi's.
        shape = table.create_table_kwargs(table_name="unused")
        keys = {k["KeyType"]: k["AttributeName"] for k in shape["KeySchema"]}
        return aws.dynamodb.Table(
            f"{name}-{table.role}",
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
            opts=self._child(),
        )

    def _function(
        self,
        name: str,
        route: spec.RouteSpec,
        settings: Mapping[str, Any],
        *,
        env: Mapping[str, pulumi.Input[str]],
        table_arns: pulumi.Output[dict[str, Any]],
        stage_name: str,
        memory: pulumi.Input[int],
        timeout: pulumi.Input[int],
        dead_letter_queue: aws.sqs.Queue | None = None,
        delivery_queue: aws.sqs.Queue | None = None,
    ) -> aws.lambda_.Function:
        """A function with its log group, its role and its inline least-privilege policy."""
        prefix = f"{name}-{route.function}"
        log_group = aws.cloudwatch.LogGroup(
            f"{prefix}-logs", retention_in_days=settings["log_retention_days"], opts=self._child()
        )
        role = aws.iam.Role(
            f"{prefix}-role",
            assume_role_policy=_render_json(policy.assume_role_policy("lambda.amazonaws.com")),
            description=f"cloud-ws {route.function} function",
            opts=self._child(),
        )
        arns: dict[str, Any] = {
            "tables": table_arns,
            "log_group": log_group.arn,
            "execution_arn": self.api.execution_arn,
        }
        if dead_letter_queue is not None:
            arns["dead_letter_queue"] = dead_letter_queue.arn
        if delivery_queue is not None:
            arns["delivery_queue"] = delivery_queue.arn
        role_policy = aws.iam.RolePolicy(
            f"{prefix}-policy",
            role=role.id,
            policy=pulumi.Output.all(**arns).apply(functools.partial(_function_policy, route, stage_name)),
            opts=self._child(),
        )
        function = aws.lambda_.Function(
            prefix,
            description=f"cloud-ws {route.route_key or 'delivery queue'} handler",
            runtime=settings["runtime"],
            architectures=["arm64"],
            handler=route.handler,
            code=_lambda_archive(),
            role=role.arn,
            memory_size=memory,
            timeout=timeout,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(env)),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=log_group.name),
            opts=self._child(depends_on=[role_policy, log_group]),
        )
        self.functions[route.function] = function
        self._roles[route.function] = role
        self._role_policies[route.function] = role_policy
        return function

    def _api_gateway_account(self, name: str) -> aws.apigateway.Account:
        """The region's API Gateway CloudWatch Logs role (an account-wide setting)."""
        role = aws.iam.Role(
            f"{name}-apigw-logs-role",
            assume_role_policy=_render_json(policy.assume_role_policy("apigateway.amazonaws.com")),
            description="API Gateway pushes execution and access logs to CloudWatch Logs",
            opts=self._child(),
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-apigw-logs-policy",
            role=role.name,
            policy_arn=policy.API_GATEWAY_LOGS_POLICY_ARN,
            opts=self._child(),
        )
        return aws.apigateway.Account(
            f"{name}-apigw-account",
            cloudwatch_role_arn=role.arn,
            opts=self._child(depends_on=[attachment]),
        )
