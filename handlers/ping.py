"""``ping``: an application-level keep-alive that also tells the client where each stream ends.

API Gateway closes connections idle for 10 minutes, so clients ping; the
``pong`` carries ``latest``, the last ``seq`` of every deployment the
connection is subscribed to. A client whose last event was lost has nothing
later to reveal the gap; ``latest`` reveals it at the next ping.
"""

from __future__ import annotations

from collections.abc import Iterator

from handlers import protocol
from handlers.messages import Request, message_handler
from handlers.protocol import ErrorCode, ProtocolError

ACTION = "ping"


def act(request: Request) -> Iterator[bytes]:
    """Record the ping on the connection row and answer ``pong`` with every subscription's latest seq."""
    store = request.runtime.store
    if not store.touch_connection(request.connection_id):
        raise ProtocolError(
            ErrorCode.UNKNOWN_CONNECTION, "this connection is not registered any more; reconnect", ACTION
        )
    # Read after the touch: a subscription stored before this ping is listed (the
    # by-connection index is eventually consistent, so one made a moment ago may
    # show at the next ping instead).
    latest = store.last_seqs(store.subscriptions_of(request.connection_id))
    yield protocol.encode(protocol.pong(latest, request.request_id))


handler = message_handler(ACTION, act)
