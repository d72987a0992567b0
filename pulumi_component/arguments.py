"""``WebSocketMonitoring``'s arguments, written once: :data:`ARGUMENTS`.

Each row gives an argument's name, type, default, documentation and Pulumi
configuration key. Everything else that lists the arguments is derived from it,
the way pulumi-awsx generates its SDKs from one schema:

- ``WebSocketMonitoringArgs`` (websocket_monitoring.py) and ``Settings``
  (settings.py) are generated source, between the markers :data:`BEGIN` and
  :data:`END`. They have to be source: mypy reads the annotations statically,
  and Pulumi's schema inference reads the field docstrings with
  ``inspect.getsource`` (so docs/component-schema.json is derived too, through
  the docstrings). Edit the table, then regenerate with
  ``CLOUD_WS_UPDATE_ARGS=1 pytest tests/test_component/test_arguments.py`` (it fails
  while the generated code is stale), and docs/component-schema.json with
  ``CLOUD_WS_UPDATE_SCHEMA=1 pytest tests/test_component/test_schema.py``;
- :data:`DEFAULTS`, :data:`ARG_NAMES`, :data:`CONFIG_KEYS` and :data:`CONFIG_TYPES`
  are computed here; ``settings.py`` and the Pulumi program (``__main__.py``)
  read them.

What each argument accepts (bounds, choices) is checked by ``settings.validate_args``.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from contract import spec

#: How the Pulumi program reads a configuration key (``pulumi.Config.get``, ``get_int``, ...).
ConfigType = Literal["string", "integer", "number", "boolean", "list", "object"]

#: The configuration type of each argument type the table uses (a type not listed here is an
#: error at import, so a new argument type cannot be read from configuration by accident).
_CONFIG_TYPE_OF: Mapping[str, ConfigType] = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list[str]": "list",
    "dict[str, list[str]]": "object",
    "NotificationsArgs": "object",
}


class _Missing:
    """The default of an argument that has none (required, or derived by ``validate_args``)."""

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _Missing()


@dataclass(frozen=True)
class Argument:
    """One argument of ``WebSocketMonitoring``."""

    name: str
    """Python name: the key of ``WebSocketMonitoringArgs`` and the field of ``Settings``."""
    type: str
    """The value's type, as source (``int``, ``list[str]``, ``NotificationsArgs``)."""
    doc: str
    """What it is, for the args' docstring (and so the schema); the default is appended."""
    default: Any = NO_DEFAULT
    """The value when not given; ``NO_DEFAULT`` when required or derived by ``validate_args``."""
    default_doc: str | None = None
    """How the docstring states a default that is not a plain value (``the Pulumi stack name``)."""
    output: bool = True
    """Accepts an Output (``pulumi.Input``); false for arguments that decide which resources exist."""
    required: bool = False
    config_key: str | None = None
    """``cloud-ws:<key>`` the Pulumi program reads it from; None: not configurable there."""
    setting: str | None = None
    """``Settings``' annotation when it is not ``Checked[type]`` (or ``type`` for a plain argument)."""
    setting_doc: str | None = None
    """``Settings``' docstring for the field: what ``validate_args`` makes of the argument."""

    @property
    def annotation(self) -> str:
        """The annotation in ``WebSocketMonitoringArgs``."""
        value = f"pulumi.Input[{self.type}]" if self.output else self.type
        return value if self.required else f"NotRequired[{value}]"

    @property
    def setting_annotation(self) -> str:
        """The annotation in ``Settings``."""
        if self.setting is not None:
            return self.setting
        return f"Checked[{self.type}]" if self.output else self.type

    @property
    def docstring(self) -> str:
        """The args' docstring: ``doc``, then ``Default: ...`` as test_schema expects it stated."""
        if self.default is not NO_DEFAULT:
            return f"{self.doc} Default: {_stated(self.default)}."
        if self.default_doc is not None:
            return f"{self.doc} Default: {self.default_doc}."
        return self.doc

    @property
    def config_type(self) -> ConfigType:
        """How ``__main__.py`` reads it from configuration."""
        return _CONFIG_TYPE_OF[self.type]


def _stated(value: object) -> str:
    """A default as the docstrings write it: bools lower-case, strings as code, numbers with ``:g``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, int | float):
        return f"{value:g}"
    raise TypeError(f"no way to state the default {value!r}")


# The order is the order of WebSocketMonitoringArgs and Settings, and the order __main__.py reads the
# configuration in (so of its errors, when several keys hold values of the wrong type).
ARGUMENTS: tuple[Argument, ...] = (
    Argument(
        "user_pool_id",
        "str",
        "Cognito user pool whose JWTs `$connect` accepts (e.g. `eu-west-1_AbCdEf123`).",
        required=True,
        config_key="userPoolId",
    ),
    Argument(
        "user_pool_client_id",
        "str",
        "App client of that pool that clients sign in with (exported as `user_pool_client_id`).",
        required=True,
        config_key="userPoolClientId",
    ),
    Argument(
        "extra_client_ids",
        "list[str]",
        "Further app client ids of the same pool whose tokens are accepted (e.g. a web dashboard's).",
        config_key="extraClientIds",
        setting_doc="Stripped; empty when not given.",
    ),
    Argument(
        "stage_name",
        "str",
        "API Gateway stage name, part of every URL.",
        default_doc="the Pulumi stack name",
        output=False,
        config_key="stageName",
        setting_doc="The argument, else the Pulumi stack name.",
    ),
    Argument(
        "throttling_burst_limit",
        "int",
        "Burst of requests allowed on every route of the stage (whole number >= 0).",
        default=5000,
        config_key="throttlingBurstLimit",
    ),
    Argument(
        "throttling_rate_limit",
        "float",
        "Steady-state requests per second allowed on every route of the stage (>= 0).",
        default=10000.0,
        config_key="throttlingRateLimit",
    ),
    Argument(
        "event_source",
        "str",
        "EventBridge `source` the rule matches (not `aws.*`).",
        default=spec.DEFAULT_EVENT_SOURCE,
        config_key="eventSource",
    ),
    Argument(
        "event_bus_name",
        "str",
        "An existing EventBridge bus to attach the rule to. Leave unset to create a dedicated bus.",
        config_key="eventBusName",
        setting_doc=(
            "The existing bus named, else ``default`` (used only when ``create_event_bus`` is false)."
        ),
    ),
    Argument(
        "create_event_bus",
        "bool",
        "Create a dedicated bus (default unless a bus name is given); false with no name: the `default` bus.",
        output=False,
        config_key="createEventBus",
        setting_doc="Resolved: false when a bus is named, else the argument (default true).",
    ),
    Argument(
        "connection_ttl_hours",
        "int",
        "How long a connection's rows live (whole hours >= 1).",
        default=24,
        config_key="connectionTtlHours",
    ),
    Argument(
        "history_ttl_hours",
        "int",
        "How long events stay available for replay (whole hours >= 1).",
        default=72,
        config_key="historyTtlHours",
    ),
    Argument(
        "subscribe_groups",
        "list[str]",
        "Cognito groups allowed to subscribe.",
        default_doc="every authenticated user of the pool",
        config_key="subscribeGroups",
        setting_doc="Stripped; empty (every user of the pool) when not given.",
    ),
    Argument(
        "runtime",
        "str",
        "Lambda runtime: `python3.12` or `python3.13`.",
        default="python3.13",
        output=False,
        config_key="lambdaRuntime",
    ),
    Argument(
        "memory_size_mb",
        "int",
        "Memory of each route function, in MB (128 to 10240).",
        default=256,
    ),
    Argument(
        "timeout_seconds",
        "int",
        "Timeout of each route function in seconds (1 to 29, API Gateway's limit).",
        default=10,
    ),
    Argument(
        "broadcaster_memory_size_mb",
        "int",
        "Memory of the broadcaster in MB (128 to 10240; more memory, more CPU to fan out).",
        default=512,
    ),
    Argument(
        "log_retention_days",
        "int",
        "Retention of every log group in days (a value CloudWatch accepts: 7, 30, 365, ...).",
        default=30,
        output=False,
        config_key="logRetentionDays",
    ),
    Argument(
        "log_level",
        "str",
        "Handler log level: `DEBUG`, `INFO`, `WARNING` or `ERROR`.",
        default="INFO",
        output=False,
        config_key="logLevel",
    ),
    Argument(
        "configure_api_gateway_account",
        "bool",
        "Set the region-wide API Gateway logging role stage logs need (in one stack only).",
        default=False,
        output=False,
        config_key="configureApiGatewayAccount",
    ),
    Argument(
        "broadcaster_timeout_seconds",
        "int",
        "Broadcaster timeout in seconds (1 to 900); queue visibility is at least 6 times it.",
        default=spec.DELIVERY.function_timeout_seconds,
        config_key="broadcasterTimeoutSeconds",
    ),
    Argument(
        "delivery_max_concurrency",
        "int",
        "Most broadcaster invocations the delivery queue feeds at once (2 to 1000).",
        # A cap by default: see docs/delivery.md ("The real ceiling") and docs/security.md.
        default=50,
        config_key="deliveryMaxConcurrency",
        setting_doc="None in provisioned mode (``delivery_min_pollers``), which AWS caps by pollers instead.",
        setting="Checked[int] | None",
    ),
    Argument(
        "delivery_min_pollers",
        "int",
        "Pollers kept ready for bursts (2 to 200; AWS's provisioned mode, billed).",
        default_doc="none",
        output=False,
        config_key="deliveryMinPollers",
        setting="int | None",
        setting_doc="None: standard mode, capped by ``delivery_max_concurrency``.",
    ),
    Argument(
        "delivery_max_pollers",
        "int",
        "Most pollers the mapping grows to in provisioned mode (2 to 2000).",
        default_doc="delivery_min_pollers",
        output=False,
        config_key="deliveryMaxPollers",
        setting="int | None",
        setting_doc="Set exactly when ``delivery_min_pollers`` is (its value when not given).",
    ),
    Argument(
        "enable_appsync",
        "bool",
        "Also serve the events as AppSync GraphQL subscriptions (outputs `graphql_url`...).",
        default=True,
        output=False,
        config_key="enableAppSync",
    ),
    Argument(
        "route_reserved_concurrency",
        "int",
        "Concurrency reserved per route function (>= 1; -1: none): fan-outs cannot starve them.",
        default=25,
        config_key="routeReservedConcurrency",
        setting_doc="``UNRESERVED`` (-1): no reservation.",
    ),
    Argument(
        "producers",
        "list[str]",
        "Only these may put events (account ids, role/user ARNs) on the bus it creates.",
        default_doc="own account",
        config_key="producers",
        setting_doc="Account ids and role/user ARNs, deduplicated; empty: the stack's own account only.",
    ),
    Argument(
        "access",
        "dict[str, list[str]]",
        "Cognito group -> project patterns it may watch (`*`: any characters).",
        default_doc="none (no access)",
        config_key="access",
        setting_doc="Cognito group → project patterns; empty (the default): no group is granted any project.",
    ),
    Argument(
        "alarm_topic_arn",
        "str",
        "SNS topic the dead-letter queue's alarms notify (alarm and OK).",
        default_doc="none (CloudWatch only)",
        config_key="alarmTopicArn",
        setting="Checked[str] | None",
        setting_doc="None: the alarms notify nobody (they still show in CloudWatch).",
    ),
    Argument(
        "notifications",
        "NotificationsArgs",
        "Each attempt's outcome to an SNS topic and webhooks, by project and outcome.",
        default_doc="none",
        output=False,
        config_key="notifications",
        setting="notify.Targets | None",
        setting_doc="Where each attempt's outcome goes; None: no notifications (no bus, topic or webhooks).",
    ),
)

#: The argument names, in the order of the table (and of ``WebSocketMonitoringArgs`` and ``Settings``).
ARG_NAMES: tuple[str, ...] = tuple(argument.name for argument in ARGUMENTS)

#: Every default that is a plain value (the arguments not listed have none: required, or derived
#: by ``validate_args``). The args' docstrings state these values.
DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {a.name: a.default for a in ARGUMENTS if a.default is not NO_DEFAULT}
)

#: Component argument ← ``cloud-ws:`` configuration key, for the arguments a stack can configure.
CONFIG_KEYS: Mapping[str, str] = MappingProxyType(
    {a.name: a.config_key for a in ARGUMENTS if a.config_key is not None}
)

#: How each configurable argument is read from configuration.
CONFIG_TYPES: Mapping[str, ConfigType] = MappingProxyType(
    {a.name: a.config_type for a in ARGUMENTS if a.config_key is not None}
)

# -- the generated source ---------------------------------------------------------------------------

#: The generated code of a file sits between these two lines (both kept when it is regenerated).
BEGIN = "# -- generated from the table of pulumi_component/arguments.py: edit the table, not this --"
END = "# -- end of generated code --"

_PACKAGE = Path(__file__).resolve().parent


def _source(lines: list[str]) -> str:
    # Two blank lines before the end marker: where `ruff format` puts a comment after a class.
    return "\n".join(lines) + "\n\n\n"


def _field(name: str, annotation: str, docstring: str | None) -> list[str]:
    lines = [f"    {name}: {annotation}"]
    if docstring is not None:
        lines.append(f'    """{docstring}"""')
    return lines


def render_args() -> str:
    """``WebSocketMonitoringArgs``' source (websocket_monitoring.py)."""
    lines = [
        "class WebSocketMonitoringArgs(TypedDict):",
        '    """Arguments of :class:`WebSocketMonitoring`."""',
        "",
    ]
    for argument in ARGUMENTS:
        lines += _field(argument.name, argument.annotation, argument.docstring)
    return _source(lines)


def render_settings() -> str:
    """``Settings``' source (settings.py): the arguments as checked, then what the builders also need."""
    lines = [
        "@dataclass(frozen=True)",
        "class Settings:",
        '    """The checked arguments, defaults filled in: what the builders read (field = argument)."""',
        "",
    ]
    for argument in ARGUMENTS:
        lines += _field(argument.name, argument.setting_annotation, argument.setting_doc)
    lines += _field(
        "webhook_secrets",
        "tuple[Any, ...] = ()",
        "Each webhook's ``header_value`` as given (plain or an Output, made secret by the builder).",
    )
    return _source(lines)


#: Each file with generated code, and what goes between its markers.
GENERATED: Mapping[Path, Callable[[], str]] = {
    _PACKAGE / "websocket_monitoring.py": render_args,
    _PACKAGE / "settings.py": render_settings,
}


def regenerated(text: str, code: str) -> str:
    """``text`` with ``code`` between its markers (which must each be there once)."""
    head, begin, rest = text.partition(BEGIN + "\n")
    _, end, tail = rest.partition(END + "\n")
    if not begin or not end or BEGIN in tail:
        raise ValueError(f"expected the lines {BEGIN!r} and {END!r}, once each")
    return head + begin + code + end + tail


def stale() -> list[Path]:
    """The files whose generated code is not what the table generates."""
    return [
        path
        for path, render in GENERATED.items()
        if regenerated(path.read_text(), render()) != path.read_text()
    ]


def regenerate() -> list[Path]:
    """Rewrite the generated code of every stale file in :data:`GENERATED`; return those files."""
    rewritten = stale()
    for path in rewritten:
        path.write_text(regenerated(path.read_text(), GENERATED[path]()))
    return rewritten
