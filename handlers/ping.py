"""``ping``: an application-level keep-alive (API Gateway closes connections idle for 10 minutes)."""

from __future__ import annotations

from collections.abc import Iterator

from handlers import protocol
from handlers.messages import Request, message_handler
from handlers.protocol import ErrorCode, ProtocolError

ACTION = "ping"


def act(request: Request) -> Iterator[bytes]:
    """Record the ping on the connection row and answer ``pong``."""
    if not request.runtime.store.touch_connection(request.connection_id):
        raise ProtocolError(
            ErrorCode.UNKNOWN_CONNECTION, "this connection is not registered any more; reconnect", ACTION
        )
    yield protocol.encode(protocol.pong())


handler = message_handler(ACTION, act)
