"""The per-connection rate limit on the message routes (spec.FRAME_RATE_LIMIT, docs/protocol.md, Limits)."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

import pytest

from contract import environment as names
from contract import spec
from server.config import ConfigError, load_config
from server.runtime import get_runtime, reset_runtime
from server.store import Store
from tests.support.moto_stack import AtomicRequests, Stack
from tests.test_handlers.wire import replies


class Clock:
    """A clock that moves only when told, so a bucket refills exactly when a test says."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _limited(stack: Stack, monkeypatch: pytest.MonkeyPatch, burst: int, per_second: float) -> Clock:
    """The handlers with a rate limit of ``burst``, then ``per_second``, on a clock of the test's."""
    monkeypatch.setenv(names.FRAME_BURST, str(burst))
    monkeypatch.setenv(names.FRAME_RATE_PER_SECOND, str(per_second))
    reset_runtime()
    runtime = get_runtime()
    clock = Clock()
    runtime.store = Store(
        cast(Any, AtomicRequests(stack.ddb)),
        runtime.config.tables,
        runtime.config.history_ttl_seconds,
        clock=clock,
    )
    return clock


def _connection_row(stack: Stack, connection_id: str) -> dict[str, Any]:
    item: dict[str, Any] = stack.ddb.get_item(
        TableName=stack.tables[spec.CONNECTIONS.env_var],
        Key={"connectionId": {"S": connection_id}},
        ConsistentRead=True,
    )["Item"]
    return item


def test_past_the_burst_a_subscribe_is_refused_and_stores_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Burst 3: the fourth frame gets rate_limited with its id and deployment_id; no subscription
    is stored and the connection's watched set is unchanged."""
    _limited(stack, monkeypatch, burst=3, per_second=2)
    conn = stack.open()
    for n in range(3):
        stack.send(conn, {"action": "subscribe", "deployment_id": f"D{n}", "id": f"s{n}"})
    assert [r["type"] for r in replies(stack, conn)] == ["subscribed"] * 3
    stack.mgmt.clear()
    before = stack.snapshot()
    watching = _connection_row(stack, conn)["watching"]

    assert stack.send(conn, {"action": "subscribe", "deployment_id": "EXTRA", "id": "s3"}) == {
        "statusCode": 200
    }

    (error,) = replies(stack, conn)
    assert error == {
        "type": "error",
        "code": "rate_limited",
        "message": (
            "this connection sent frames faster than allowed (3 at once, then 2 a second); retry in 0.5 s"
        ),
        "action": "subscribe",
        "deployment_id": "EXTRA",
        "id": "s3",
    }
    assert stack.snapshot() == before
    assert _connection_row(stack, conn)["watching"] == watching


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "ping", "id": "p"},
        {"action": "unsubscribe", "deployment_id": "D0", "id": "p"},
        {"action": "list_deployments", "id": "p"},
        {"action": "shout", "id": "p"},
    ],
)
def test_every_message_route_is_limited(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, frame: dict[str, Any]
) -> None:
    """ping, unsubscribe, list_deployments and $default count against the same allowance."""
    _limited(stack, monkeypatch, burst=1, per_second=1)
    conn = stack.open()
    stack.send(conn, {"action": "subscribe", "deployment_id": "D0"})
    stack.mgmt.clear()
    before = stack.snapshot()

    stack.send(conn, frame)

    (error,) = replies(stack, conn)
    assert (error["code"], error["action"], error["id"]) == ("rate_limited", frame["action"], "p")
    assert stack.snapshot() == before


def test_the_allowance_refills_at_the_rate(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused frames spend nothing; one interval later one more frame passes, after a long idle
    spell the whole burst does, and never more."""
    clock = _limited(stack, monkeypatch, burst=2, per_second=4)
    conn = stack.open()

    def pings(count: int) -> list[str]:
        stack.mgmt.clear()
        for _ in range(count):
            stack.send(conn, {"action": "ping"})
        return [r.get("code", r["type"]) for r in replies(stack, conn)]

    assert pings(4) == ["pong", "pong", "rate_limited", "rate_limited"]
    clock.now += 0.2  # 200 ms: not yet a whole 250 ms interval
    assert pings(1) == ["rate_limited"]
    clock.now += 0.05
    assert pings(2) == ["pong", "rate_limited"]
    clock.now += 3600
    assert pings(3) == ["pong", "pong", "rate_limited"]


def test_a_connection_flooding_leaves_another_alone(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each connection has its own allowance."""
    _limited(stack, monkeypatch, burst=2, per_second=1)
    flooder, other = stack.open("mallory"), stack.open("alice")

    for _ in range(6):
        stack.send(flooder, {"action": "ping"})
    for _ in range(2):
        stack.send(other, {"action": "ping"})

    assert [r.get("code", r["type"]) for r in replies(stack, flooder)].count("rate_limited") == 4
    assert [r["type"] for r in replies(stack, other)] == ["pong", "pong"]


def test_concurrent_frames_never_share_an_allowance(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """12 pings of one connection at the same moment, a burst of 5: exactly 5 pongs (API Gateway
    may run one connection's frames concurrently), including the first frames' race to start the bucket."""
    _limited(stack, monkeypatch, burst=5, per_second=1)
    conn = stack.open()
    runtime = get_runtime()
    start_line = threading.Barrier(12)
    real_take = runtime.store.take_frame_allowance

    def take_in_lockstep(*args: Any) -> float:
        start_line.wait(timeout=10)
        return real_take(*args)

    monkeypatch.setattr(runtime.store, "take_frame_allowance", take_in_lockstep)
    threads = [threading.Thread(target=stack.send, args=(conn, {"action": "ping"})) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    kinds = [r.get("code", r["type"]) for r in replies(stack, conn)]
    assert sorted(kinds) == ["pong"] * 5 + ["rate_limited"] * 7


def test_a_reconnecting_client_is_never_limited_by_default(stack: Stack) -> None:
    """The defaults let a client resubscribe to the most deployments it may watch, list them and
    ping, all at once."""
    assert load_config().frame_rate_limit == spec.FRAME_RATE_LIMIT
    conn = stack.open()
    limit = get_runtime().config.max_subscriptions_per_connection

    for n in range(limit):
        stack.send(conn, {"action": "subscribe", "deployment_id": f"D{n:02d}", "since": 0})
    stack.send(conn, {"action": "list_deployments"})
    stack.send(conn, {"action": "ping"})

    kinds = [r["type"] for r in replies(stack, conn)]
    assert kinds == ["subscribed"] * limit + ["deployments", "pong"]


def test_an_unregistered_connection_is_not_created_by_the_limiter(stack: Stack) -> None:
    """The limiter's write is conditional on the row: the route still answers unknown_connection."""
    before = stack.snapshot()

    stack.send("never-connected=", {"action": "ping", "id": "1"})

    assert replies(stack, "never-connected=") == [
        {
            "type": "error",
            "code": "unknown_connection",
            "message": "this connection is not registered any more; reconnect",
            "action": "ping",
            "id": "1",
        }
    ]
    assert stack.snapshot() == before
    rows = stack.ddb.scan(TableName=stack.tables[spec.CONNECTIONS.env_var], ConsistentRead=True)["Items"]
    assert all(row["connectionId"]["S"] != "never-connected=" for row in rows)


def test_rate_zero_turns_the_limit_off(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """FRAME_RATE_PER_SECOND=0: no limit, and no write for it on the connection row."""
    monkeypatch.setenv(names.FRAME_BURST, "1")
    monkeypatch.setenv(names.FRAME_RATE_PER_SECOND, "0")
    reset_runtime()
    conn = stack.open()

    for _ in range(3):
        stack.send(conn, {"action": "ping"})

    assert [r["type"] for r in replies(stack, conn)] == ["pong"] * 3
    assert Store.FRAME_ALLOWANCE_ATTRIBUTE not in _connection_row(stack, conn)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        (names.FRAME_BURST, "0", "FRAME_BURST must be at least 1"),
        (names.FRAME_BURST, "many", "FRAME_BURST must be an integer"),
        (names.FRAME_RATE_PER_SECOND, "-1", "FRAME_RATE_PER_SECOND must not be negative"),
        (names.FRAME_RATE_PER_SECOND, "fast", "FRAME_RATE_PER_SECOND must be a number"),
    ],
)
def test_malformed_settings_name_the_variable(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=words):
        load_config()


def test_settings_are_read(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(names.FRAME_BURST, "7")
    monkeypatch.setenv(names.FRAME_RATE_PER_SECOND, "2.5")
    assert load_config().frame_rate_limit == spec.FrameRateLimit(burst=7, per_second=2.5)
