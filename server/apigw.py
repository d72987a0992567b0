"""The API Gateway WebSocket event, parsed once into a small typed object.

Handlers never index ``event["requestContext"]`` themselves; they read
``WebSocketEvent`` fields. The shape follows what API Gateway sends to a Lambda
proxy integration (and what `cloud-ws local` sends too).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LambdaResponse = dict[str, Any]


@dataclass(frozen=True)
class WebSocketEvent:
    """One invocation of a WebSocket route."""

    connection_id: str
    route_key: str
    event_type: str
    """``CONNECT``, ``DISCONNECT`` or ``MESSAGE``."""
    stage: str
    domain_name: str
    api_id: str
    source_ip: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Request headers with lower-cased names (``$connect`` only)."""
    query: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    disconnect_status_code: int | None = None

    @classmethod
    def from_lambda(cls, event: Mapping[str, Any]) -> WebSocketEvent:
        """Parse a Lambda proxy event; ``ValueError`` if it is not a WebSocket event."""
        ctx = event.get("requestContext")
        if not isinstance(ctx, Mapping) or not isinstance(ctx.get("connectionId"), str):
            raise ValueError("not an API Gateway WebSocket event: requestContext.connectionId missing")
        identity = ctx.get("identity")
        if not isinstance(identity, Mapping):
            identity = {}
        body = event.get("body")
        if isinstance(body, str) and event.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8", errors="replace")
        return cls(
            connection_id=ctx["connectionId"],
            route_key=str(ctx.get("routeKey", "")),
            event_type=str(ctx.get("eventType", "")),
            stage=str(ctx.get("stage", "")),
            domain_name=str(ctx.get("domainName", "")),
            api_id=str(ctx.get("apiId", "")),
            source_ip=str(identity.get("sourceIp", "")),
            headers=_lower_keys(event.get("headers")),
            query=_str_map(event.get("queryStringParameters")),
            body=body if isinstance(body, str) else None,
            disconnect_status_code=_int_or_none(ctx.get("disconnectStatusCode")),
        )

    @property
    def management_endpoint(self) -> str:
        """``https://{domainName}/{stage}``: the host and stage the client connected through.

        Not where replies go: behind a custom domain, ``domainName`` is that domain and
        its base-path mapping need not be the stage, so a post there misses the API.
        Replies use :meth:`execute_api_endpoint`.
        """
        return f"https://{self.domain_name}/{self.stage}"

    def execute_api_endpoint(self, region: str) -> str:
        """The @connections endpoint of this event's API, whatever domain the client used.

        ``https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`` always reaches the
        API's stage (a custom domain is only a mapping in front of it); ``region`` is the
        function's, which is the API's: the component deploys both in one region.
        """
        return f"https://{self.api_id}.execute-api.{region}.amazonaws.com/{self.stage}"


def _lower_keys(headers: Any) -> dict[str, str]:
    if not isinstance(headers, Mapping):
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _str_map(values: Any) -> dict[str, str]:
    if not isinstance(values, Mapping):
        return {}
    return {str(k): str(v) for k, v in values.items()}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def response(status: int, headers: Mapping[str, str] | None = None) -> LambdaResponse:
    """A Lambda proxy response. WebSocket routes ignore bodies, so none is sent."""
    result: LambdaResponse = {"statusCode": status}
    if headers:
        result["headers"] = dict(headers)
    return result
