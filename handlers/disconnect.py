"""``$disconnect``: forget the connection and all its subscriptions.

API Gateway delivers ``$disconnect`` on a best-effort basis, so this is not the
only cleanup: the broadcaster removes connections that answer 410 Gone, readers
ignore rows whose ``ttl`` has passed, and DynamoDB's TTL sweeps them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contract.log import get_logger
from server.apigw import LambdaResponse, WebSocketEvent, response
from server.runtime import get_runtime, lambda_entry

log = get_logger("disconnect")


@lambda_entry("$disconnect")
def handler(event: Mapping[str, Any], context: Any = None) -> LambdaResponse:
    """Delete the connection row and its subscriptions (idempotent)."""
    ws = WebSocketEvent.from_lambda(event)
    removed = get_runtime().store.delete_connection(ws.connection_id)
    log.info(
        "disconnected",
        extra={
            "connection_id": ws.connection_id,
            "route": "$disconnect",
            "subscriptions_removed": removed,
            "status_code": ws.disconnect_status_code,
        },
    )
    return response(200)
