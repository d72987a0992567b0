"""Handler configuration: environment variables validated once into one frozen object.

Every Lambda reads the same variables (the Pulumi component and `cloud-ws local`
set them); a missing or malformed value fails the container's first invocation
with a message that names the variable, instead of a KeyError deep in a request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from contract import environment as names
from contract import spec
from contract.authorization import AccessPolicy, AccessPolicyError


class ConfigError(ValueError):
    """An environment variable is missing or malformed."""


@dataclass(frozen=True)
class TableNames:
    """Physical DynamoDB table names."""

    connections: str
    subscriptions: str
    events: str
    event_ids: str


@dataclass(frozen=True)
class AuthConfig:
    """How connect verifies Cognito JWTs (see ``server.cognito``)."""

    issuer: str
    """Exact ``iss`` expected, ``https://cognito-idp.{region}.amazonaws.com/{pool_id}``."""
    jwks_url: str
    """Where the pool's public keys are fetched from (defaults to ``{issuer}/.well-known/jwks.json``)."""
    client_ids: frozenset[str]
    """App client ids accepted as ``aud`` (ID tokens) or ``client_id`` (access tokens)."""
    token_uses: frozenset[str]
    """Accepted ``token_use`` values: ``id``, ``access`` or both."""
    leeway_seconds: int
    """Clock skew tolerated on ``exp`` and ``nbf``."""
    jwks_penalty_seconds: float
    """After a refetch finds no key for a ``kid``, refetches for unknown ``kid`` wait this long."""


@dataclass(frozen=True)
class Config:
    """Everything the handlers need from their environment."""

    tables: TableNames
    auth: AuthConfig
    management_endpoint: str | None
    """@connections endpoint. Optional for route handlers (derived from the event's
    domain and stage as on AWS); required by the broadcaster."""
    region: str
    subscribe_groups: frozenset[str]
    """Cognito groups allowed to subscribe; empty means every authenticated user of the pool."""
    access: AccessPolicy | None
    """Which groups may watch which projects (``ACCESS_POLICY``); None: every user sees every project."""
    connection_ttl_seconds: int
    history_ttl_seconds: int
    max_subscriptions_per_connection: int
    max_message_bytes: int
    max_json_depth: int
    frame_rate_limit: spec.FrameRateLimit | None
    """Frames one connection may send (a burst, then a rate); None: no limit."""
    replay_limit: int
    broadcast_concurrency: int
    subscriber_page_size: int
    post_max_attempts: int
    fanout_page_size: int
    """Subscribers one invocation posts to before handing the next pages to workers."""
    fanout_function: str | None
    """The broadcaster's own function name, for fan-out workers; None: it posts to every page itself."""
    fanout_max_attempts: int
    """Rounds of re-posting to a connection whose posts keep failing (429/5xx)."""
    delivery_queue_url: str | None
    """The delivery queue (SQS): failed messages get their visibility shortened so they come back soon."""
    dead_letter_queue_url: str | None
    """Its dead-letter queue: events that can never be stored are sent there at once."""
    appsync_graphql_url: str | None
    """AppSync GraphQL endpoint the broadcaster publishes sequenced events to; None when AppSync is off."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def _frame_rate_limit(env: Mapping[str, str]) -> spec.FrameRateLimit | None:
    default = spec.FRAME_RATE_LIMIT
    per_second = _float(env, names.FRAME_RATE_PER_SECOND, default.per_second)
    burst = _int(env, names.FRAME_BURST, default.burst, minimum=1)
    return spec.FrameRateLimit(burst=burst, per_second=per_second) if per_second > 0 else None


def _set(env: Mapping[str, str], name: str) -> frozenset[str]:
    return frozenset(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _access(env: Mapping[str, str]) -> AccessPolicy | None:
    raw = env.get(names.ACCESS_POLICY)
    if raw is None or not raw.strip():
        return None
    try:
        return AccessPolicy.parse(raw)
    except AccessPolicyError as exc:
        raise ConfigError(str(exc)) from None


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set")
    return value


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from environment variables (``os.environ`` by default).

    Raises:
        ConfigError: a variable is missing or malformed; the message names it.
    """
    env = os.environ if env is None else env
    region = env.get(names.AWS_REGION) or env.get(names.AWS_DEFAULT_REGION) or "us-east-1"

    issuer = env.get(names.COGNITO_ISSUER, "").strip().rstrip("/")
    if not issuer:
        pool_id = _required(env, names.COGNITO_USER_POOL_ID)
        pool_region = pool_id.split("_", 1)[0] if "_" in pool_id else region
        issuer = f"https://cognito-idp.{pool_region}.amazonaws.com/{pool_id}"
    client_ids = _set(env, names.COGNITO_CLIENT_IDS)
    if not client_ids:
        raise ConfigError(f"{names.COGNITO_CLIENT_IDS} is not set (comma-separated app client ids)")
    token_uses = _set(env, names.COGNITO_TOKEN_USES) or frozenset({"id", "access"})
    if not token_uses <= {"id", "access"}:
        raise ConfigError(
            f"{names.COGNITO_TOKEN_USES} accepts only 'id' and 'access', got {sorted(token_uses)}"
        )

    return Config(
        tables=TableNames(
            connections=_required(env, spec.CONNECTIONS.env_var),
            subscriptions=_required(env, spec.SUBSCRIPTIONS.env_var),
            events=_required(env, spec.EVENTS.env_var),
            event_ids=_required(env, spec.EVENT_IDS.env_var),
        ),
        auth=AuthConfig(
            issuer=issuer,
            jwks_url=env.get(names.COGNITO_JWKS_URL, "").strip() or f"{issuer}/.well-known/jwks.json",
            client_ids=client_ids,
            token_uses=token_uses,
            leeway_seconds=_int(env, names.JWT_LEEWAY_SECONDS, 5),
            jwks_penalty_seconds=_float(env, names.JWKS_PENALTY_SECONDS, 10.0),
        ),
        management_endpoint=env.get(names.MANAGEMENT_ENDPOINT, "").strip().rstrip("/") or None,
        region=region,
        subscribe_groups=_set(env, names.SUBSCRIBE_GROUPS),
        access=_access(env),
        connection_ttl_seconds=_int(env, names.CONNECTION_TTL_HOURS, 24, minimum=1) * 3600,
        history_ttl_seconds=_int(env, names.HISTORY_TTL_HOURS, 72, minimum=1) * 3600,
        max_subscriptions_per_connection=_int(env, names.MAX_SUBSCRIPTIONS_PER_CONNECTION, 20, minimum=1),
        max_message_bytes=_int(env, names.MAX_MESSAGE_BYTES, 4096, minimum=64),
        max_json_depth=_int(env, names.MAX_JSON_DEPTH, 4, minimum=1),
        frame_rate_limit=_frame_rate_limit(env),
        replay_limit=_int(env, names.REPLAY_LIMIT, 1000, minimum=1),
        broadcast_concurrency=_int(env, names.BROADCAST_CONCURRENCY, 64, minimum=1),
        subscriber_page_size=_int(env, names.SUBSCRIBER_PAGE_SIZE, 1000, minimum=1),
        post_max_attempts=_int(env, names.POST_MAX_ATTEMPTS, 4, minimum=1),
        fanout_page_size=_int(env, names.FANOUT_PAGE_SIZE, spec.DELIVERY.fanout_page_size, minimum=1),
        # Lambda sets AWS_LAMBDA_FUNCTION_NAME in every function: the broadcaster invokes itself.
        fanout_function=(
            env.get(names.FANOUT_FUNCTION_NAME) or env.get(names.AWS_LAMBDA_FUNCTION_NAME) or ""
        ).strip()
        or None,
        fanout_max_attempts=_int(
            env, names.FANOUT_MAX_ATTEMPTS, spec.DELIVERY.fanout_max_attempts, minimum=1
        ),
        delivery_queue_url=env.get(names.DELIVERY_QUEUE_URL, "").strip() or None,
        dead_letter_queue_url=env.get(names.DEAD_LETTER_QUEUE_URL, "").strip() or None,
        appsync_graphql_url=env.get(names.APPSYNC_GRAPHQL_URL, "").strip() or None,
    )
