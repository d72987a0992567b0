"""The handlers' environment variables: one name each, shared by their reader and their writers.

``server.config`` reads them; the Pulumi component (``pulumi_component``) and
``cloud-ws local`` (``emulator.stack.handler_environment``) set them, and the
tests set them too. Each writer uses these constants, so a renamed variable
cannot leave one of them setting a name nobody reads.

Standard library only (plus the dependency-free ``contract.spec``): every
Lambda cold start imports this module.
"""

from __future__ import annotations

from contract import spec

# -- set on every function by the component and by cloud-ws local --------------------------------

#: The physical DynamoDB table names, one variable per ``spec`` table (``CONNECTIONS_TABLE``, ...).
TABLES: tuple[str, ...] = tuple(table.env_var for table in spec.TABLES)
COGNITO_USER_POOL_ID = "COGNITO_USER_POOL_ID"
"""Cognito user pool whose JWTs are accepted (``eu-west-1_AbC``; the issuer is derived from it)."""
COGNITO_CLIENT_IDS = "COGNITO_CLIENT_IDS"
"""Comma-separated app client ids accepted as a token's audience."""
CONNECTION_TTL_HOURS = "CONNECTION_TTL_HOURS"
"""Lifetime of a connection's rows, in whole hours (default 24)."""
HISTORY_TTL_HOURS = "HISTORY_TTL_HOURS"
"""Lifetime of replayable history, in whole hours (default 72)."""
SUBSCRIBE_GROUPS = "SUBSCRIBE_GROUPS"
"""Comma-separated Cognito groups allowed to subscribe; empty: every user of the pool."""
LOG_LEVEL = "LOG_LEVEL"
"""Handler log level (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``; default ``INFO``)."""
ACCESS_POLICY = "ACCESS_POLICY"
"""Which Cognito groups may watch which projects: a JSON object, group → list of project patterns
(``*`` matches any run of characters), e.g. ``{"sre":["*"],"team-a":["alpha"]}``. The component
always sets it, checked, keys sorted; ``{}`` (its default) grants no group any project."""

# -- set on the broadcaster only -----------------------------------------------------------------

MANAGEMENT_ENDPOINT = "MANAGEMENT_ENDPOINT"
"""The @connections endpoint; route handlers derive theirs from the event instead."""
DELIVERY_QUEUE_URL = "DELIVERY_QUEUE_URL"
"""The SQS delivery queue: a failed message's visibility is shortened so it comes back soon, and
the broadcaster sends it wake messages (a drain handed over, a gap timing out)."""
DEAD_LETTER_QUEUE_URL = "DEAD_LETTER_QUEUE_URL"
"""The delivery queue's dead-letter queue: events DynamoDB refuses as invalid go there at once."""
APPSYNC_GRAPHQL_URL = "APPSYNC_GRAPHQL_URL"
"""The AppSync GraphQL endpoint sequenced events are published to; unset when AppSync is off."""
NOTIFY_EVENT_BUS_NAME = "NOTIFY_EVENT_BUS_NAME"
"""The notifications bus each attempt's outcome is put on (``server.notify``); unset: no notifications."""
NOTIFY_DASHBOARD_URL = "NOTIFY_DASHBOARD_URL"
"""The dashboard's base URL, linked from notifications (``{url}/?deployment=ID``); unset: no link."""
FANOUT_FUNCTION_NAME = "FANOUT_FUNCTION_NAME"
"""Function the broadcaster hands fan-out pages to (locally); on AWS, ``AWS_LAMBDA_FUNCTION_NAME``."""

# -- local stack only: where the embedded Cognito lives ------------------------------------------

COGNITO_ISSUER = "COGNITO_ISSUER"
"""Exact ``iss`` expected; overrides the one derived from ``COGNITO_USER_POOL_ID``."""
COGNITO_JWKS_URL = "COGNITO_JWKS_URL"
"""Where the pool's signing keys are fetched; default ``{issuer}/.well-known/jwks.json``."""

# -- tuning, with defaults in server.config (nothing sets them unless asked) -------------------

COGNITO_TOKEN_USES = "COGNITO_TOKEN_USES"
"""Accepted ``token_use`` values, comma-separated: ``id``, ``access`` or both (default both)."""
JWT_LEEWAY_SECONDS = "JWT_LEEWAY_SECONDS"
"""Clock skew tolerated on ``exp`` and ``nbf``."""
JWKS_PENALTY_SECONDS = "JWKS_PENALTY_SECONDS"
"""After a refetch finds no key for a ``kid``, how long refetches for unknown ``kid`` wait."""
MAX_SUBSCRIPTIONS_PER_CONNECTION = "MAX_SUBSCRIPTIONS_PER_CONNECTION"
"""Deployments one connection may watch at once."""
MAX_MESSAGE_BYTES = "MAX_MESSAGE_BYTES"
"""Largest client frame accepted."""
MAX_JSON_DEPTH = "MAX_JSON_DEPTH"
"""Deepest nesting accepted in a client frame."""
FRAME_BURST = "FRAME_BURST"
"""Frames one connection may send at once before the rate limit applies (``spec.FRAME_RATE_LIMIT``)."""
FRAME_RATE_PER_SECOND = "FRAME_RATE_PER_SECOND"
"""Frames per second one connection may keep sending after its burst; ``0`` turns the limit off."""
REPLAY_LIMIT = "REPLAY_LIMIT"
"""Most history events replayed on one subscribe."""
BROADCAST_CONCURRENCY = "BROADCAST_CONCURRENCY"
"""Concurrent @connections posts of one broadcaster invocation."""
SUBSCRIBER_PAGE_SIZE = "SUBSCRIBER_PAGE_SIZE"
"""Subscribers read per DynamoDB page."""
POST_MAX_ATTEMPTS = "POST_MAX_ATTEMPTS"
"""Attempts of one @connections post before it counts as failed."""
FANOUT_PAGE_SIZE = "FANOUT_PAGE_SIZE"
"""Subscribers one invocation posts to before handing the next pages to fan-out workers."""
FANOUT_MAX_ATTEMPTS = "FANOUT_MAX_ATTEMPTS"
"""Rounds of re-posting to a connection whose posts keep failing (429/5xx)."""

# -- AWS's own: set by Lambda, read by botocore (named here so the writers use one spelling) -----

AWS_REGION = "AWS_REGION"
"""The function's region (Lambda sets it)."""
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
"""botocore's fallback region."""
AWS_LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"
"""The running function's name (Lambda sets it): the broadcaster invokes itself by it."""
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
"""botocore's endpoint for every service (locally: the embedded AWS backend)."""
AWS_ENDPOINT_URL_LAMBDA = "AWS_ENDPOINT_URL_LAMBDA"
"""botocore's endpoint for Lambda only (locally: the stack's Invoke API)."""
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
"""Credentials (locally: throwaway ones; on Lambda: the role's, set by Lambda)."""
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
"""Credentials (locally: throwaway ones; on Lambda: the role's, set by Lambda)."""

#: Every name above: what a writer may set.
NAMES: frozenset[str] = frozenset(
    {
        *TABLES,
        *(
            value
            for key, value in dict(globals()).items()
            if key.isupper() and key != "TABLES" and isinstance(value, str)
        ),
    }
)
