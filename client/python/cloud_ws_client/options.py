"""How a :class:`~cloud_ws_client.CloudWebSocketClient` keeps its connection, and what it counts.

Plain data and one pure function, so the timing policy is read (and tested)
without a client: :class:`ClientOptions`, :class:`ClientStats`,
:func:`rotation_delay` and the :data:`ConnectionState` names.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from cloud_ws_client.auth import TokenTransport


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """How the client keeps its connection; every duration is in seconds.

    The defaults suit API Gateway: it closes a connection idle for 10 minutes
    and any connection after 2 hours, and it can forget a connection without
    closing it (frames then go nowhere): with the default keep-alive such a
    connection is noticed within :attr:`detection_bound` (40 s, under a
    minute) and replaced, and the new one resumes from the last ``seq``.
    """

    token_transport: TokenTransport = "header"
    """Where the handshake carries the token (``header``, ``query``, ``subprotocol``)."""
    open_timeout: float = 10.0
    """Longest wait for a handshake, and for a new connection's acknowledgements."""
    close_timeout: float = 5.0
    """Longest wait for a closing handshake."""
    ping_interval: float = 20.0
    """Keep-alive ``ping`` period. Each ``pong`` also carries every subscription's latest
    ``seq``, so a deployment's lost last event is caught up within this period too."""
    pong_timeout: float = 20.0
    """A connection whose pong has not come back after this long is dead (half-open)."""
    gap_timeout: float = 1.0
    """How long a gap in ``seq`` may last without progress before resubscribing with ``since``."""
    max_connection_age: float = 6600.0
    """Replace a connection after this long: 1 h 50 min, before API Gateway's 2 h cap."""
    token_refresh_margin: float = 60.0
    """Replace a connection this long before its token's ``exp`` (a third of the token's remaining
    lifetime, for tokens that live less than three margins)."""
    backoff_initial: float = 1.0
    """Upper bound of the first retry delay (full jitter)."""
    backoff_max: float = 30.0
    """Cap of the retry delay."""
    backoff_factor: float = 2.0
    """Growth of the retry delay bound per failed attempt."""
    min_uptime: float = 5.0
    """A connection that stayed up this long resets the backoff; none is replaced sooner."""
    max_buffered_events: int = 10_000
    """Most out-of-order events held per deployment while a gap is filled."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, int | float) and not value > 0:
                raise ValueError(f"ClientOptions.{item.name} must be positive, got {value!r}")
        if self.token_transport not in ("header", "query", "subprotocol"):
            raise ValueError(
                f"token_transport must be header, query or subprotocol, not {self.token_transport!r}"
            )

    @property
    def detection_bound(self) -> float:
        """Longest time a dead or forgotten connection goes unnoticed: ``ping_interval + pong_timeout``.

        Worst case: the connection dies just after a pong came back; the next
        ping goes out ``ping_interval`` later, and its pong is given up on
        ``pong_timeout`` after that.
        """
        return self.ping_interval + self.pong_timeout


@dataclass
class ClientStats:
    """Counters of what the client did (for logs, metrics and tests)."""

    connect_attempts: int = 0
    """Handshakes attempted (including refused and failed ones)."""
    connections: int = 0
    """Handshakes that succeeded."""
    reconnects: int = 0
    """Connections lost and replaced after the fact."""
    rotations: int = 0
    """Connections replaced before they closed (age, token expiry, server request)."""
    dead_connections: int = 0
    """Connections declared dead because a pong did not come back."""
    pongs: int = 0
    """Keep-alive pongs received (matched to their ping by ``id``)."""
    catch_ups: int = 0
    """Times a pong's ``latest`` showed a deployment ahead of what was delivered."""
    unmatched: int = 0
    """Replies whose ``id`` answers no request of ours (ignored)."""
    duplicates: int = 0
    """Events dropped because their ``seq`` was already delivered."""
    repairs: int = 0
    """Resubscribes sent to fill a gap in ``seq``."""
    history_resets: int = 0
    """Deployments whose history went backwards and were started again from the snapshot."""


def rotation_delay(
    *, max_age: float, token_exp: float | None, now_wall: float, margin: float, floor: float
) -> float:
    """Seconds from opening a connection to replacing it.

    The earlier of ``max_age`` and ``margin`` before the token expires, but
    never less than ``floor``: a provider that hands out nearly expired tokens
    must not make the client reconnect in a tight loop. A token that lives
    less than three margins is refreshed when a third of its remaining
    lifetime is left (a 30 s token after 20 s), so its connection is used
    for most of it and still replaced well before ``exp``.
    """
    delay = max_age
    if token_exp is not None:
        remaining = token_exp - now_wall
        delay = min(delay, remaining - min(margin, max(remaining, 0.0) / 3))
    return max(delay, floor)


ConnectionState = Literal["idle", "connected", "reconnecting", "waiting", "closed"]
"""Where the client stands: not connected yet, connected, opening a replacement after a
loss, waiting out a backoff delay before the next attempt, or closed for good."""
