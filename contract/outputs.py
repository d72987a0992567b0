"""The outputs contract: what a stack (cloud or local) tells its consumers, and the one reader.

``pulumi stack output --json`` prints, and ``cloud-ws local`` writes as
``.cloud-ws/outputs.json``, one JSON object with the keys below (docs/design.md,
*Outputs*). The emulator builds its file from these names, and the orchestrator
plugin and the CLI read outputs with :func:`load_outputs`, each naming the keys
it needs. Standard library only, so the plugin (boto3 and nothing else) and the
CLI both import it without importing each other.

The Python client (``client/python``) is installable alone and keeps its own
copy of the names it reads (``cloud_ws_client.outputs``);
``tests/test_client/test_contract.py`` holds that copy to this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Where consumers look when given no file, unless ``$CLOUD_WS_OUTPUTS`` names one.
DEFAULT_PATH = Path(".cloud-ws") / "outputs.json"
ENV_VAR = "CLOUD_WS_OUTPUTS"

# -- keys every stack exports ------------------------------------------------------------------

WEBSOCKET_URL = "websocket_url"
MANAGEMENT_ENDPOINT = "management_endpoint"
EVENT_BUS_NAME = "event_bus_name"
EVENT_SOURCE = "event_source"
REGION = "region"
USER_POOL_ID = "user_pool_id"
USER_POOL_CLIENT_ID = "user_pool_client_id"
CONNECTIONS_TABLE_NAME = "connections_table_name"

# -- keys some stacks export -------------------------------------------------------------------

AWS_ENDPOINT_URL = "aws_endpoint_url"
DASHBOARD_URL = "dashboard_url"
GRAPHQL_URL = "graphql_url"
GRAPHQL_REALTIME_URL = "graphql_realtime_url"
STAGE = "stage"
DEV_USERNAME = "dev_username"
NOTIFICATION_BUS_NAME = "notification_bus_name"
NOTIFICATION_TOPIC_ARN = "notification_topic_arn"

#: Keys every stack exports, and what each means.
REQUIRED: Mapping[str, str] = {
    WEBSOCKET_URL: "the WebSocket API clients connect to (wss:// in the cloud, ws:// locally)",
    MANAGEMENT_ENDPOINT: "the @connections API the broadcaster posts to",
    EVENT_BUS_NAME: "the EventBridge bus the orchestrator plugin puts events on",
    EVENT_SOURCE: "the EventBridge source the stack's rule matches",
    REGION: "the AWS region of the bus and the user pool",
    USER_POOL_ID: "the Cognito user pool whose tokens the API accepts",
    USER_POOL_CLIENT_ID: "the app client of that pool that clients sign in with",
    CONNECTIONS_TABLE_NAME: "the DynamoDB table of open connections",
}

#: Keys only some stacks export, and when.
OPTIONAL: Mapping[str, str] = {
    AWS_ENDPOINT_URL: "local only: the embedded AWS-compatible endpoint (DynamoDB, Cognito, EventBridge)",
    DASHBOARD_URL: "local only (or a hosted dashboard): the web dashboard",
    GRAPHQL_URL: "when AppSync is enabled (always locally): the GraphQL API",
    GRAPHQL_REALTIME_URL: "when AppSync is enabled (always locally): the GraphQL real-time endpoint",
    STAGE: "local only: the API stage in the URLs",
    DEV_USERNAME: "local only: the dev user of the embedded user pool",
    NOTIFICATION_BUS_NAME: "when notifications are configured: the bus each attempt's outcome is put on",
    NOTIFICATION_TOPIC_ARN: "when notifications go to a topic: the SNS topic email, SMS, push subscribe to",
}

#: What the orchestrator plugin reads (and ``aws_endpoint_url`` when present). Here, not in
#: ``plugin``, so ``cloud-ws demo`` checks them before it pays for importing boto3.
PLUGIN_NEEDS = (EVENT_BUS_NAME, EVENT_SOURCE, REGION)

REQUIRED_KEYS = frozenset(REQUIRED)
OPTIONAL_KEYS = frozenset(OPTIONAL)
KEYS = REQUIRED_KEYS | OPTIONAL_KEYS


class OutputsError(ValueError):
    """The outputs are missing, unreadable or lack a key; the one-line message names the file and key."""


def default_path() -> Path:
    """``$CLOUD_WS_OUTPUTS``, else ``.cloud-ws/outputs.json`` in the working directory."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


def load_outputs(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None, *, needs: Iterable[str]
) -> dict[str, Any]:
    """Read a stack's outputs and check that the keys the caller ``needs`` are there.

    Args:
        source: A mapping (a parsed ``pulumi stack output --json``, or the
            Automation API's ``stack.outputs()``, whose values are unwrapped
            from their ``.value``), a JSON file, or None for :func:`default_path`.
        needs: The keys the caller reads without a fallback; each must be a
            non-empty string. Other keys are passed through unchecked.

    Raises:
        OutputsError: with a one-line message naming the file and the problem.
    """
    if isinstance(source, Mapping):
        raw: Mapping[Any, Any] = source
        where = "the outputs"
    else:
        path = Path(source) if source is not None else default_path()
        where = f"outputs file {path}"
        try:
            parsed = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise OutputsError(
                f"no outputs file at {path}: start `cloud-ws local` (or `make run`), "
                "or write `pulumi stack output --json` there, or pass --outputs"
            ) from None
        except (OSError, ValueError) as exc:
            raise OutputsError(f"cannot read outputs file {path}: {exc}") from None
        if not isinstance(parsed, dict):
            raise OutputsError(f"{where} must hold a JSON object (`pulumi stack output --json`)")
        raw = parsed
    outputs = {str(key): _unwrap(value) for key, value in raw.items()}
    missing = [key for key in dict.fromkeys(needs) if not _present(outputs.get(key))]
    if missing:
        raise OutputsError(f"{where} lacks {', '.join(missing)}")
    return outputs


def _present(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _unwrap(value: Any) -> Any:
    """An Automation API ``OutputValue``'s ``value``; anything else as it is."""
    return value.value if hasattr(value, "value") and hasattr(value, "secret") else value
