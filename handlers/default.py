"""``$default``: every frame no other route took, which is always an error.

API Gateway sends a frame here when it is not JSON, has no ``action``, or names
an action without a route. The parse in ``server.messages`` answers the first
two; this answers the last.
"""

from __future__ import annotations

from collections.abc import Iterator

from contract.protocol import ErrorCode, ProtocolError
from server.messages import Request, message_handler

KNOWN_ACTIONS = ("subscribe", "unsubscribe", "ping", "list_deployments")


def act(request: Request) -> Iterator[bytes]:  # never returns: every frame here is an error
    """Refuse the frame with ``unknown_action``."""
    action = request.frame.action[:64]
    raise ProtocolError(
        ErrorCode.UNKNOWN_ACTION,
        f"unknown action {action!r}; expected one of {', '.join(KNOWN_ACTIONS)}",
        action,
    )


handler = message_handler("$default", act)
