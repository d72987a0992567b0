"""``WebSocketMonitoring``'s arguments, checked once into a typed, frozen :class:`Settings`.

The arguments themselves (names, types, defaults, docs) are the table of
``arguments.py``, which generates :class:`Settings` below; every bound lives
here: the component, the Pulumi program (``__main__.py``) and the tests read
them from here.

A plain value is checked now; a value that is an Output (another resource's, or
another stack's) is checked once known, so the deployment then fails naming the
field. Either way the field of :class:`Settings` holds the checked value, plain
or Output: the builders pass it to resources as an Input.
"""

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, Union

import pulumi

from contract import notifications as notify

# Re-exported (`as`): they were defined here before the table of arguments.py.
from pulumi_component.arguments import ARG_NAMES as ARG_NAMES
from pulumi_component.arguments import DEFAULTS as DEFAULTS

T = TypeVar("T")

#: A checked argument: the plain value, or an Output whose value is checked once known.
Checked = Union[T, pulumi.Output[T]]  # noqa: UP007  # a generic alias: `T | Output[T]` is not subscriptable

#: Lambda runtimes the handlers and the bundled libraries are known to run on.
SUPPORTED_RUNTIMES = ("python3.12", "python3.13")
DEFAULT_RUNTIME: str = DEFAULTS["runtime"]
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

#: API Gateway's integration timeout caps how long a route handler may run.
MAX_ROUTE_TIMEOUT_SECONDS = 29
#: Lambda's bounds on an SQS event source mapping's maximum concurrency.
MAX_CONCURRENCY_RANGE = (2, 1000)
#: Provisioned mode's pollers for an SQS mapping: AWS's minimum is 2 to 200; its maximum goes
#: to 10,000 for SQS, but the pinned provider checks 2,000 (its Kafka bound).
MIN_POLLERS_RANGE = (2, 200)
MAX_POLLERS = 2000
#: Lambda's memory bounds, in MB.
MEMORY_RANGE_MB = (128, 10240)
#: Lambda's longest timeout (the broadcaster is not behind API Gateway).
MAX_FUNCTION_TIMEOUT_SECONDS = 900
#: The bus ``create_event_bus: false`` with no ``event_bus_name`` attaches the rule to.
DEFAULT_EVENT_BUS = "default"
#: ``route_reserved_concurrency`` value that reserves nothing (pulumi-aws's own "unreserved").
UNRESERVED = -1
#: The longest access policy accepted, as its compact JSON (``ACCESS_POLICY``). Lambda allows
#: 4 KB for all of a function's environment variables together; the rest of ours take about 1 KB.
MAX_ACCESS_POLICY_BYTES = 2048
#: Cognito's limit on a group name.
MAX_GROUP_NAME_LENGTH = 128
#: A project pattern: the characters of a project name (``^[a-z0-9][a-z0-9._-]{0,62}$``) and
#: ``*``, which matches any run of characters.
_PROJECT_PATTERN = re.compile(r"^[a-z0-9._*-]{1,63}$")
#: A trusted producer: an account id, or the ARN of an IAM role or user (with its path).
_ACCOUNT_ID = re.compile(r"^\d{12}$")
_PRINCIPAL_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::(\d{12}):(?:role|user)/[\w+=,.@/-]{1,512}$")
#: An SNS topic ARN (standard or FIFO), which alarm actions take.
_TOPIC_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}(?:\.fifo)?$")

_STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class WebSocketMonitoringArgsError(ValueError):
    """An argument is missing or invalid; ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"WebSocketMonitoring: [{field}] {reason}")
        self.field = field
        self.reason = reason


# -- generated from the table of pulumi_component/arguments.py: edit the table, not this --
@dataclass(frozen=True)
class Settings:
    """The checked arguments, defaults filled in: what the builders read (field = argument)."""

    user_pool_id: Checked[str]
    user_pool_client_id: Checked[str]
    extra_client_ids: Checked[list[str]]
    """Stripped; empty when not given."""
    stage_name: str
    """The argument, else the Pulumi stack name."""
    throttling_burst_limit: Checked[int]
    throttling_rate_limit: Checked[float]
    event_source: Checked[str]
    event_bus_name: Checked[str]
    """The existing bus named, else ``default`` (used only when ``create_event_bus`` is false)."""
    create_event_bus: bool
    """Resolved: false when a bus is named, else the argument (default true)."""
    connection_ttl_hours: Checked[int]
    history_ttl_hours: Checked[int]
    subscribe_groups: Checked[list[str]]
    """Stripped; empty (every user of the pool) when not given."""
    runtime: str
    memory_size_mb: Checked[int]
    timeout_seconds: Checked[int]
    broadcaster_memory_size_mb: Checked[int]
    log_retention_days: int
    log_level: str
    configure_api_gateway_account: bool
    broadcaster_timeout_seconds: Checked[int]
    delivery_max_concurrency: Checked[int] | None
    """None in provisioned mode (``delivery_min_pollers``), which AWS caps by pollers instead."""
    delivery_min_pollers: int | None
    """None: standard mode, capped by ``delivery_max_concurrency``."""
    delivery_max_pollers: int | None
    """Set exactly when ``delivery_min_pollers`` is (its value when not given)."""
    enable_appsync: bool
    route_reserved_concurrency: Checked[int]
    """``UNRESERVED`` (-1): no reservation."""
    producers: Checked[list[str]]
    """Account ids and role/user ARNs, deduplicated; empty: the stack's own account only."""
    access: Checked[dict[str, list[str]]]
    """Cognito group → project patterns; empty (the default): no group is granted any project."""
    alarm_topic_arn: Checked[str] | None
    """None: the alarms notify nobody (they still show in CloudWatch)."""
    notifications: notify.Targets | None
    """Where each attempt's outcome goes; None: no notifications (no bus, topic or webhooks)."""
    webhook_secrets: tuple[Any, ...] = ()
    """Each webhook's ``header_value`` as given (plain or an Output, made secret by the builder)."""


# -- end of generated code --

# -- checks (each returns the value it accepts, so it can run inside an apply) --------------------


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
    # Handlers read these sets comma-separated (SUBSCRIBE_GROUPS, COGNITO_CLIENT_IDS).
    if any("," in v for v in value):
        raise WebSocketMonitoringArgsError(field, f"entries must not contain commas, got {value!r}")
    return [v.strip() for v in value]


def _check_reserved(field: str, value: Any) -> int:
    """A reservation of at least 1, or ``UNRESERVED``; 0 would stop every route, so it is refused."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise WebSocketMonitoringArgsError(field, f"must be a whole number, got {value!r}")
    if value != UNRESERVED and value < 1:
        raise WebSocketMonitoringArgsError(
            field,
            f"must be at least 1, or {UNRESERVED} for no reservation, got {value!r} "
            "(0 would let no request through)",
        )
    return int(value)


def _check_producers(field: str, value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise WebSocketMonitoringArgsError(
            field, f"must be a list of account ids or IAM role/user ARNs, got {value!r}"
        )
    accepted: list[str] = []
    for entry in (v.strip() for v in value):
        if entry.startswith("arn:") and ":sts::" in entry:
            raise WebSocketMonitoringArgsError(
                field,
                f"names a role session ({entry!r}); name the role itself "
                "(arn:aws:iam::<account>:role/<name>): sessions change, aws:PrincipalArn is the role's",
            )
        if not (_ACCOUNT_ID.match(entry) or _PRINCIPAL_ARN.match(entry)):
            raise WebSocketMonitoringArgsError(
                field,
                f"entries must be 12-digit account ids or ARNs of IAM roles or users "
                f"(arn:aws:iam::<account>:role/<name>), got {entry!r}",
            )
        if entry not in accepted:
            accepted.append(entry)
    return accepted


def render_access(access: dict[str, list[str]]) -> str:
    """The access policy as ``ACCESS_POLICY`` and the resolvers carry it: compact, keys sorted."""
    return json.dumps(access, sort_keys=True, separators=(",", ":"))


def _check_access(field: str, value: Any) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise WebSocketMonitoringArgsError(
            field,
            "must be a JSON object mapping Cognito groups to lists of project patterns, e.g. "
            f'{{"sre": ["*"], "team-a": ["alpha"]}}; got {value!r}',
        )
    access: dict[str, list[str]] = {}
    for group, patterns in value.items():
        if not isinstance(group, str) or not group.strip() or len(group) > MAX_GROUP_NAME_LENGTH:
            raise WebSocketMonitoringArgsError(
                field, f"group names must be 1 to {MAX_GROUP_NAME_LENGTH} characters, got {group!r}"
            )
        if not isinstance(patterns, list | tuple) or not all(isinstance(p, str) for p in patterns):
            raise WebSocketMonitoringArgsError(
                field, f"group {group!r} must map to a list of project patterns, got {patterns!r}"
            )
        for pattern in patterns:
            if not _PROJECT_PATTERN.match(pattern):
                raise WebSocketMonitoringArgsError(
                    field,
                    f"group {group!r}: project pattern {pattern!r} may hold only a-z, 0-9, '.', '_', '-' "
                    "and '*' (any run of characters), at most 63 of them",
                )
        access[group] = list(dict.fromkeys(patterns))
    size = len(render_access(access).encode())
    if size > MAX_ACCESS_POLICY_BYTES:
        raise WebSocketMonitoringArgsError(
            field,
            f"is {size} bytes as JSON; at most {MAX_ACCESS_POLICY_BYTES} fit beside the other "
            "Lambda environment variables (4 KB in all): use patterns with '*' or fewer groups",
        )
    return access


def _check_topic_arn(field: str, value: Any) -> str:
    if not isinstance(value, str) or not _TOPIC_ARN.match(value):
        raise WebSocketMonitoringArgsError(
            field, f"must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>), got {value!r}"
        )
    return value


def _checked(value: Any, check: Callable[[Any], T]) -> Checked[T]:
    """Check a plain value now; an Output's value is checked once known (the deployment then fails)."""
    if _is_plain(value):
        return check(value)
    return pulumi.Output.from_input(value).apply(check)


def _choice(field: str, value: Any, choices: Sequence[T]) -> T:
    if value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise WebSocketMonitoringArgsError(field, f"must be one of {allowed}; got {value!r}")
    return value  # type: ignore[no-any-return]  # one of `choices`


def _flag(field: str, value: Any) -> bool:
    # Plain only: these decide which resources exist, which an Output cannot.
    if not isinstance(value, bool):
        raise WebSocketMonitoringArgsError(field, f"must be true or false, got {value!r}")
    return value


def _whole(merged: Mapping[str, Any], field: str, low: int, high: int | None) -> Checked[int]:
    return _checked(merged[field], functools.partial(_check_whole, field, low, high))


def _delivery_scaling(
    given: Mapping[str, Any], merged: Mapping[str, Any]
) -> tuple[Checked[int] | None, int | None, int | None]:
    """``(max_concurrency, min_pollers, max_pollers)`` of the delivery mapping.

    Standard mode (no ``delivery_min_pollers``): capped by ``delivery_max_concurrency``.
    Provisioned mode: AWS refuses ``MaximumConcurrency`` beside pollers, so the cap is
    ``delivery_max_pollers`` (a fixed pool of ``delivery_min_pollers`` when not given), and
    a ``delivery_max_concurrency`` given too is an error rather than silently dropped.
    """
    if "delivery_min_pollers" not in given:
        if "delivery_max_pollers" in given:
            raise WebSocketMonitoringArgsError(
                "delivery_max_pollers", "needs delivery_min_pollers (pollers are AWS's provisioned mode)"
            )
        return _whole(merged, "delivery_max_concurrency", *MAX_CONCURRENCY_RANGE), None, None
    if "delivery_max_concurrency" in given:
        raise WebSocketMonitoringArgsError(
            "delivery_max_concurrency",
            "cannot be set with delivery_min_pollers: AWS's provisioned mode takes no maximum "
            "concurrency; cap it with delivery_max_pollers",
        )
    low = _check_whole("delivery_min_pollers", *MIN_POLLERS_RANGE, given["delivery_min_pollers"])
    high = _check_whole("delivery_max_pollers", low, MAX_POLLERS, given.get("delivery_max_pollers", low))
    return None, low, high


def _event_bus(given: Mapping[str, Any]) -> tuple[bool, Checked[str]]:
    """``(create_event_bus, event_bus_name)``: a named bus is used as is, never created."""
    create_bus = given.get("create_event_bus")
    if create_bus is not None and not isinstance(create_bus, bool):
        raise WebSocketMonitoringArgsError("create_event_bus", f"must be true or false, got {create_bus!r}")
    if "event_bus_name" not in given:
        return (True if create_bus is None else create_bus), DEFAULT_EVENT_BUS
    if create_bus is True:
        raise WebSocketMonitoringArgsError(
            "create_event_bus",
            "cannot be true when [event_bus_name] names an existing bus; set only one of them",
        )
    return False, _checked(given["event_bus_name"], functools.partial(_check_text, "event_bus_name"))


def _producers(given: Mapping[str, Any], create_event_bus: bool) -> Checked[list[str]]:
    """The trusted producers; refused on a bus the component does not own (its policy is not ours)."""
    producers = given.get("producers", [])
    if not create_event_bus and (not _is_plain(producers) or producers):
        other = "event_bus_name" if "event_bus_name" in given else "create_event_bus"
        raise WebSocketMonitoringArgsError(
            "producers",
            f"cannot be enforced on a bus the component does not create ([{other}]): a bus has one "
            "resource policy and it belongs to the bus's owner. Leave [event_bus_name] unset so the "
            "component creates a bus and guards it, or have the bus's owner add the deny statement of "
            'docs/security.md ("Trusted producers") and leave [producers] unset',
        )
    return _checked(producers, functools.partial(_check_producers, "producers"))


def _notifications(value: Any) -> tuple[notify.Targets | None, tuple[Any, ...]]:
    """The notification targets (plain: they decide which resources exist) and the webhooks' secrets.

    A webhook's ``header_value`` may be an Output (a secret from another stack);
    it is set aside before the check and handed to the connection as it is.
    """
    if value is None:
        return None, ()
    if not _is_plain(value):
        raise WebSocketMonitoringArgsError(
            "notifications", "must be a plain object: it decides which resources exist"
        )
    secrets: list[Any] = []
    plain: Any = value
    if isinstance(value, Mapping) and isinstance(value.get("webhooks"), list | tuple):
        hooks = []
        for hook in value["webhooks"]:
            if isinstance(hook, Mapping):
                secret = hook.get("header_value", hook.get("headerValue"))
                secrets.append(secret)
                if secret is not None and not _is_plain(secret):
                    hook = {k: ("-" if k in ("header_value", "headerValue") else v) for k, v in hook.items()}
            hooks.append(hook)
        plain = {**value, "webhooks": hooks}
    try:
        targets = notify.parse_targets(plain)
    except ValueError as exc:
        field, _, reason = str(exc).partition(" ")
        raise WebSocketMonitoringArgsError(field, reason) from None
    if not targets.any:
        return None, ()
    return targets, tuple(secrets)


def validate_args(args: Mapping[str, Any]) -> Settings:
    """The arguments with defaults filled in, every plain value checked.

    Output values are checked once known. Raises ``WebSocketMonitoringArgsError``
    naming the field; the component calls this before creating anything, and a
    program can call it before creating resources of its own.
    """
    unknown = sorted(set(args) - set(ARG_NAMES))
    if unknown:
        raise WebSocketMonitoringArgsError(
            unknown[0], f"is not an argument; expected one of {', '.join(sorted(ARG_NAMES))}"
        )
    # An argument set to None is an argument left out (YAML and other languages send nulls).
    given = {k: v for k, v in args.items() if v is not None}
    pool: dict[str, Checked[str]] = {}
    for field in ("user_pool_id", "user_pool_client_id"):
        if field not in given:
            raise WebSocketMonitoringArgsError(field, "is required")
        pool[field] = _checked(given[field], functools.partial(_check_text, field))
    merged: dict[str, Any] = {**DEFAULTS, **given}

    create_event_bus, event_bus_name = _event_bus(given)

    stage = merged.get("stage_name", pulumi.get_stack())
    if not isinstance(stage, str) or not _STAGE_NAME.match(stage):
        raise WebSocketMonitoringArgsError(
            "stage_name", f"must be 1 to 128 letters, digits, '-' or '_', got {stage!r}"
        )

    # The order of the checks is the order a user sees the errors in, one at a time.
    throttling_burst_limit = _whole(merged, "throttling_burst_limit", 0, None)
    connection_ttl_hours = _whole(merged, "connection_ttl_hours", 1, None)
    history_ttl_hours = _whole(merged, "history_ttl_hours", 1, None)
    memory_size_mb = _whole(merged, "memory_size_mb", *MEMORY_RANGE_MB)
    timeout_seconds = _whole(merged, "timeout_seconds", 1, MAX_ROUTE_TIMEOUT_SECONDS)
    broadcaster_memory_size_mb = _whole(merged, "broadcaster_memory_size_mb", *MEMORY_RANGE_MB)
    broadcaster_timeout_seconds = _whole(
        merged, "broadcaster_timeout_seconds", 1, MAX_FUNCTION_TIMEOUT_SECONDS
    )
    delivery_max_concurrency, delivery_min_pollers, delivery_max_pollers = _delivery_scaling(given, merged)
    route_reserved_concurrency = _checked(
        merged["route_reserved_concurrency"],
        functools.partial(_check_reserved, "route_reserved_concurrency"),
    )
    throttling_rate_limit = _checked(
        merged["throttling_rate_limit"], functools.partial(_check_number, "throttling_rate_limit", 0)
    )
    event_source = _checked(merged["event_source"], functools.partial(_check_event_source, "event_source"))
    extra_client_ids = _checked(
        merged.get("extra_client_ids", []), functools.partial(_check_names, "extra_client_ids")
    )
    subscribe_groups = _checked(
        merged.get("subscribe_groups", []), functools.partial(_check_names, "subscribe_groups")
    )
    runtime = _choice("runtime", merged["runtime"], SUPPORTED_RUNTIMES)
    log_retention_days = _choice("log_retention_days", merged["log_retention_days"], LOG_RETENTION_DAYS)
    log_level = _choice("log_level", merged["log_level"], LOG_LEVELS)
    configure_api_gateway_account = _flag(
        "configure_api_gateway_account", merged["configure_api_gateway_account"]
    )
    enable_appsync = _flag("enable_appsync", merged["enable_appsync"])
    producers = _producers(given, create_event_bus)
    # Deny by default: a stack that names no policy shows no project to anyone (docs/security.md).
    access = _checked(merged.get("access", {}), functools.partial(_check_access, "access"))
    alarm_topic_arn = (
        _checked(merged["alarm_topic_arn"], functools.partial(_check_topic_arn, "alarm_topic_arn"))
        if "alarm_topic_arn" in merged
        else None
    )

    notifications, webhook_secrets = _notifications(given.get("notifications"))

    return Settings(
        user_pool_id=pool["user_pool_id"],
        user_pool_client_id=pool["user_pool_client_id"],
        extra_client_ids=extra_client_ids,
        stage_name=stage,
        throttling_burst_limit=throttling_burst_limit,
        throttling_rate_limit=throttling_rate_limit,
        event_source=event_source,
        event_bus_name=event_bus_name,
        create_event_bus=create_event_bus,
        connection_ttl_hours=connection_ttl_hours,
        history_ttl_hours=history_ttl_hours,
        subscribe_groups=subscribe_groups,
        runtime=runtime,
        memory_size_mb=memory_size_mb,
        timeout_seconds=timeout_seconds,
        broadcaster_memory_size_mb=broadcaster_memory_size_mb,
        broadcaster_timeout_seconds=broadcaster_timeout_seconds,
        delivery_max_concurrency=delivery_max_concurrency,
        delivery_min_pollers=delivery_min_pollers,
        delivery_max_pollers=delivery_max_pollers,
        log_retention_days=log_retention_days,
        log_level=log_level,
        configure_api_gateway_account=configure_api_gateway_account,
        enable_appsync=enable_appsync,
        route_reserved_concurrency=route_reserved_concurrency,
        producers=producers,
        access=access,
        alarm_topic_arn=alarm_topic_arn,
        notifications=notifications,
        webhook_secrets=webhook_secrets,
    )
