"""One emulated WebSocket connection, as API Gateway knows it, and what every side of the
gateway says about connections.

Shared by the WebSocket side (:mod:`emulator.gateway`), the @connections Management API
(:mod:`emulator.connections_api`) and the connection fault routes
(:mod:`emulator.fault_routes`), so none of them imports another for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.websockets import WebSocket
from websockets.exceptions import ProtocolError
from websockets.frames import Close

#: The close code of the gateway's own closes (idle, too old, shutting down).
GOING_AWAY = 1001

#: A close frame's payload is at most 125 bytes, two of which hold the code.
_MAX_CLOSE_REASON_BYTES = 123


@dataclass
class LocalConnection:
    """One open WebSocket and what API Gateway knows about it."""

    connection_id: str
    websocket: WebSocket
    source_ip: str
    user_agent: str
    connected_at: float = field(default_factory=time.time)
    last_active_at: float = field(default_factory=time.time)
    stale: bool = False
    """API Gateway forgot it: posts answer 410, its frames go nowhere, no ``$disconnect``."""
    closed: bool = False
    close_code: int | None = None
    close_reason: str = ""

    def touch(self) -> None:
        """Record data-frame activity in either direction (what the idle timeout watches)."""
        self.last_active_at = time.time()

    @property
    def reachable(self) -> bool:
        """Whether a post can be delivered."""
        return not (self.stale or self.closed)


def close_frame_refusal(code: Any, reason: str) -> str | None:
    """Why a server cannot send a close frame with ``code`` and ``reason``, or None if it can.

    websockets' own rule (``Close.check``): 1000-1003, 1007-1014 and 3000-4999.
    1004 is reserved, and 1005, 1006 and 1015 only report a close that had no
    code, no frame, or a failed TLS handshake: websockets refuses to send them.
    The reason must fit a control frame (123 bytes of UTF-8).
    """
    if not isinstance(code, int) or isinstance(code, bool):
        return "code must be an integer WebSocket close code"
    try:
        Close(code, reason).check()
    except ProtocolError:
        return (
            f"close code {code} cannot be sent in a close frame: "
            "use 1000-1003, 1007-1014 or 3000-4999 (1004 is reserved, 1005, 1006 and 1015 are never sent)"
        )
    if len(reason.encode("utf-8")) > _MAX_CLOSE_REASON_BYTES:
        return f"reason must be at most {_MAX_CLOSE_REASON_BYTES} bytes of UTF-8"
    return None


def iso_time(epoch: float) -> str:
    """``epoch`` as API Gateway writes a connection's times (``2024-05-01T12:00:00.000Z``)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
