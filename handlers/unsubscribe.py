"""``unsubscribe``: stop receiving a deployment's events (idempotent)."""

from __future__ import annotations

from collections.abc import Iterator

from contract import protocol
from server.messages import Request, live_connection, message_handler

ACTION = "unsubscribe"


def act(request: Request) -> Iterator[bytes]:
    """Delete the subscription, if any, and acknowledge."""
    deployment_id = protocol.validate_deployment_id(request.frame.body.get("deployment_id"), ACTION)
    live_connection(request, ACTION)  # refused (unknown_connection, token_expired) as every request is
    request.runtime.store.delete_subscription(deployment_id, request.connection_id)
    request.runtime.store.release_subscription(request.connection_id, deployment_id)
    yield protocol.encode(protocol.unsubscribed(deployment_id, request.request_id))


handler = message_handler(ACTION, act)
