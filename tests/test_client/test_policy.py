"""Reconnect policy and connection timing: backoff, process_exception, rotation, options."""

from __future__ import annotations

import itertools

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import InvalidMessage, InvalidStatus, InvalidURI
from websockets.http11 import Response

from cloud_ws_client import AuthenticationError, ClientOptions, ConnectError, backoff, process_exception
from cloud_ws_client.client import rotation_delay


def refused(status: int) -> InvalidStatus:
    return InvalidStatus(Response(status, "refused", Headers(), b""))


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    """Bounds 1, 2, 4, 8, then the cap; each delay is uniform below its bound."""
    top = list(itertools.islice(backoff(1.0, 10.0, 2.0, rand=lambda: 0.999999), 6))
    assert [round(d, 3) for d in top] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert list(itertools.islice(backoff(1.0, 10.0, 2.0, rand=lambda: 0.0), 3)) == [0.0, 0.0, 0.0]
    delays = list(itertools.islice(backoff(0.5, 3.0), 50))
    assert all(0 <= d < 3.0 for d in delays)
    assert delays[0] < 0.5  # the initial jitter


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_is_fatal(status: int) -> None:
    """401/403 become AuthenticationError: never retried."""
    decision = process_exception(refused(status))
    assert isinstance(decision, AuthenticationError)
    assert decision.status == status


@pytest.mark.parametrize(
    "exc",
    [
        refused(500),
        refused(502),
        refused(503),
        refused(504),
        refused(429),
        ConnectionRefusedError(111, "refused"),
        OSError("network is unreachable"),
        TimeoutError(),
        InvalidMessage("did not receive a valid HTTP response"),
    ],
)
def test_network_errors_5xx_and_429_are_retried(exc: Exception) -> None:
    """Transient failures return None: retry after a backoff delay."""
    if isinstance(exc, InvalidMessage):
        exc.__cause__ = EOFError("connection closed while reading HTTP status line")
    assert process_exception(exc) is None


def test_other_failures_are_fatal() -> None:
    """A wrong path (404), a bad URL or a bug are raised, not retried."""
    assert isinstance(process_exception(refused(404)), ConnectError)
    assert isinstance(process_exception(InvalidURI("http://x", "not a WebSocket URI")), ConnectError)
    bug = RuntimeError("bug")
    assert process_exception(bug) is bug


def test_rotation_comes_before_the_cap_and_the_token_expiry() -> None:
    """The earlier of max age and expiry minus margin (a third of a short token's life), floor first."""
    common = {"now_wall": 1000.0, "margin": 60.0, "floor": 5.0}
    assert rotation_delay(max_age=6600.0, token_exp=None, **common) == 6600.0
    assert rotation_delay(max_age=6600.0, token_exp=1000.0 + 3600, **common) == 3540.0
    assert rotation_delay(max_age=100.0, token_exp=1000.0 + 3600, **common) == 100.0
    # A short-lived token is refreshed with a third of its lifetime left, never sooner than the floor.
    assert rotation_delay(max_age=6600.0, token_exp=1000.0 + 30, **common) == 20.0
    assert rotation_delay(max_age=6600.0, token_exp=1000.0 + 6, **common) == 5.0
    assert rotation_delay(max_age=6600.0, token_exp=1000.0 - 10, **common) == 5.0


def test_options_are_validated() -> None:
    """Durations must be positive and the transport one of three."""
    assert ClientOptions().max_connection_age == 6600.0
    with pytest.raises(ValueError, match="ping_interval"):
        ClientOptions(ping_interval=0)
    with pytest.raises(ValueError, match="token_transport"):
        ClientOptions(token_transport="cookie")  # type: ignore[arg-type]
