"""When to retry a connection, and how long to wait: the reconnect policy.

Shaped like ``websockets.asyncio.client.connect``'s own: ``process_exception``
decides retry (``None``) or raise (an exception), and :func:`backoff` yields
the delays. The differences are cloud-ws's: a 401/403 means the token was
refused, which retrying with the same credentials cannot fix, so it becomes an
:class:`~cloud_ws_client.errors.AuthenticationError` at once; API Gateway's 429
(too many connection attempts) is worth a retry; and the delays use *full
jitter* (uniform between 0 and the capped exponential), which spreads clients
that lost their connections at the same moment.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from websockets.client import process_exception as websockets_process_exception
from websockets.exceptions import InvalidStatus, InvalidURI

from cloud_ws_client.errors import AuthenticationError, ConnectError

#: Handshake statuses that mean "try again later" (server, proxy or throttling trouble).
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Handshake statuses that mean "these credentials are refused".
REFUSED_STATUSES = frozenset({401, 403})


def backoff(
    initial: float = 1.0,
    maximum: float = 30.0,
    factor: float = 2.0,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Delays between connection attempts: capped exponential with full jitter.

    The n-th delay is uniform in ``[0, min(maximum, initial * factor**n))``, so
    the first one is the "initial jitter" of RFC 6455 §7.2.3 and later ones
    grow until they hit the cap. Start a new generator to reset it.

    Args:
        initial: Upper bound of the first delay, in seconds.
        maximum: Cap of every delay, in seconds.
        factor: Growth of the bound per attempt.
        rand: Source of uniform numbers in ``[0, 1)`` (tests pass a fixed one).

    Yields:
        Seconds to wait before the next attempt.
    """
    bound = initial
    while True:
        yield rand() * min(bound, maximum)
        bound = min(bound * factor, maximum)


def process_exception(exc: Exception) -> Exception | None:
    """Decide whether a failed connection attempt is retried.

    Args:
        exc: What the attempt raised (from opening the connection or from the
            token provider).

    Returns:
        ``None`` to retry (network errors, timeouts, 429 and 5xx), else the
        exception to raise: :class:`AuthenticationError` for 401/403,
        :class:`ConnectError` for other refused handshakes and bad URLs, and
        anything else as it is.
    """
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in REFUSED_STATUSES:
            return AuthenticationError(f"the server refused the token (HTTP {status})", status)
        if status in RETRYABLE_STATUSES:
            return None
        return ConnectError(f"the server refused the connection (HTTP {status})")
    if isinstance(exc, InvalidURI):
        return ConnectError(str(exc))
    # Network errors, timeouts and a handshake cut short are transient, as
    # websockets itself judges them.
    decision = websockets_process_exception(exc)
    return None if decision is None else exc
