"""API Gateway WebSocket proxy events, as API Gateway hands them to the route Lambdas."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

DOMAIN = "abc123.execute-api.us-east-1.amazonaws.com"
STAGE = "test"
#: The @connections endpoint a handler derives from an event's domain and stage.
MANAGEMENT_ENDPOINT = f"https://{DOMAIN}/{STAGE}"

_EVENT_TYPES = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}


def websocket_event(
    route_key: str,
    connection_id: str,
    body: str | bytes | None = None,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """An event for ``route_key`` on ``connection_id``.

    ``$connect`` carries the handshake's headers and query string; any other route carries
    ``headers`` only when given. ``base64_body`` sends the body as a binary frame arrives.
    """
    event_type = _EVENT_TYPES.get(route_key, "MESSAGE")
    event: dict[str, Any] = {
        "requestContext": {
            "routeKey": route_key,
            "eventType": event_type,
            "connectionId": connection_id,
            "stage": STAGE,
            "domainName": DOMAIN,
            "apiId": DOMAIN.split(".", 1)[0],
            "requestId": uuid.uuid4().hex,
            "connectedAt": int(time.time() * 1000),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "isBase64Encoded": base64_body,
    }
    if event_type == "CONNECT" or headers is not None:
        event["headers"] = headers or {}
    if event_type == "CONNECT":
        event["queryStringParameters"] = query
    if body is not None:
        raw = body.encode() if isinstance(body, str) else body
        event["body"] = base64.b64encode(raw).decode() if base64_body else raw.decode()
    return event
