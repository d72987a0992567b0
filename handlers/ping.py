"""``ping``: an application-level keep-alive that also tells the client where each stream ends.

API Gateway closes connections idle for 10 minutes, so clients ping; the
``pong`` carries ``latest``, the last ``seq`` of every deployment the
connection is subscribed to. A client whose last event was lost has nothing
later to reveal the gap; ``latest`` reveals it at the next ping.
"""

from __future__ import annotations

from collections.abc import Iterator

from contract import protocol
from contract.protocol import ErrorCode, ProtocolError
from server.messages import Request, check_token, message_handler

ACTION = "ping"


def act(request: Request) -> Iterator[bytes]:
    """Record the ping on the connection row and answer ``pong`` with every subscription's latest seq.

    Refused ``token_expired`` once the connection's token has expired: the pong
    that proves a connection alive must not keep one alive past its token.
    """
    store = request.runtime.store
    token_expires_at = store.touch_connection(request.connection_id)
    if token_expires_at is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_CONNECTION, "this connection is not registered any more; reconnect", ACTION
        )
    check_token(request, token_expires_at, ACTION)  # a connection lives no longer than its token
    # Read after the touch: a subscription stored before this ping is listed (the
    # by-connection index is eventually consistent, so one made a moment ago may
    # show at the next ping instead).
    latest = store.last_seqs(store.subscriptions_of(request.connection_id))
    yield protocol.encode(protocol.pong(latest, request.request_id))


handler = message_handler(ACTION, act)
