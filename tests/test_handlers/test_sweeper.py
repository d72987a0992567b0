"""The token sweeper (handlers/sweeper.py) against moto's DynamoDB and the @connections stand-in."""

from __future__ import annotations

import time
from typing import Any

import pytest

from contract import spec
from handlers import sweeper
from handlers.sweeper import CloseOutcome, Sweeper
from server.runtime import get_runtime
from tests.support.moto_stack import Stack


def _expire(stack: Stack, connection_id: str, expires_at: int) -> None:
    """Give a registered connection a token that expires (expired) at ``expires_at``."""
    stack.ddb.update_item(
        TableName=stack.tables[spec.CONNECTIONS.env_var],
        Key={"connectionId": {"S": connection_id}},
        UpdateExpression="SET tokenExpiresAt = :t, expiresMinute = :m",
        ExpressionAttributeValues={":t": {"N": str(expires_at)}, ":m": {"N": str(expires_at // 60)}},
    )


def _row(stack: Stack, connection_id: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = stack.ddb.get_item(
        TableName=stack.tables[spec.CONNECTIONS.env_var],
        Key={"connectionId": {"S": connection_id}},
        ConsistentRead=True,
    ).get("Item")
    return item


def _subscriptions(stack: Stack, connection_id: str) -> list[dict[str, Any]]:
    items = stack.ddb.scan(TableName=stack.tables[spec.SUBSCRIPTIONS.env_var], ConsistentRead=True)["Items"]
    return [i for i in items if i["connectionId"]["S"] == connection_id]


def _deletes(stack: Stack) -> list[str]:
    return [connection for method, connection in stack.mgmt.requests if method == "DELETE"]


def test_connect_files_the_row_under_its_token_minute(stack: Stack) -> None:
    connection = stack.open()
    row = _row(stack, connection)
    assert row is not None
    assert int(row["expiresMinute"]["N"]) == int(row["tokenExpiresAt"]["N"]) // 60


def test_expired_connections_are_closed_and_live_ones_untouched(stack: Stack) -> None:
    # Given two connections past their token's exp (one 10 minutes ago), and one still valid
    expired, older, live = stack.open("a"), stack.open("b"), stack.open("c")
    now = int(time.time())
    _expire(stack, expired, now - 30)
    _expire(stack, older, now - 600)
    before_live = _row(stack, live)
    # When the sweeper runs (as the local stack runs it: nothing ahead)
    result = sweeper.handler({spec.SWEEP_TASK_KEY: {"horizon_seconds": 0}})
    # Then both expired connections are closed through @connections, the live one is not
    assert sorted(_deletes(stack)) == sorted([expired, older])
    assert (result["closed"], result["gone"], result["failed"]) == (2, 0, 0)
    # Their rows stay for $disconnect (API Gateway runs it after a DeleteConnection) ...
    assert _row(stack, expired) is not None
    # ... and the live one is exactly as it was
    assert _row(stack, live) == before_live


def test_a_connection_already_gone_has_its_rows_deleted(stack: Stack) -> None:
    """410 Gone: API Gateway forgot it, no $disconnect will come, so the sweeper removes its rows."""
    gone = stack.open("a")
    stack.send(gone, {"action": "subscribe", "deployment_id": "D1"})
    assert _subscriptions(stack, gone)
    _expire(stack, gone, int(time.time()) - 30)
    stack.mgmt.gone.add(gone)
    result = sweeper.handler({spec.SWEEP_TASK_KEY: {"horizon_seconds": 0}})
    assert (result["gone"], result["closed"]) == (1, 0)
    assert _row(stack, gone) is None
    assert _subscriptions(stack, gone) == []


def test_a_failed_close_keeps_the_row_for_the_next_run(stack: Stack) -> None:
    connection = stack.open("a")
    _expire(stack, connection, int(time.time()) - 30)
    stack.mgmt.failures_for[connection] = [503, 503, 503]  # every attempt of boto3's retries
    first = sweeper.handler({spec.SWEEP_TASK_KEY: {"horizon_seconds": 0}})
    assert first["failed"] == 1
    assert _row(stack, connection) is not None
    second = sweeper.handler({spec.SWEEP_TASK_KEY: {"horizon_seconds": 0}})
    assert second["closed"] == 1
    assert _deletes(stack).count(connection) == 4  # three refused attempts, then the close


def test_the_run_reads_the_index_minute_by_minute_never_a_scan(stack: Stack) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    store = get_runtime().store
    real = store.client

    class Recording:
        def __getattr__(self, name: str) -> Any:
            method = getattr(real, name)

            def call(**kwargs: Any) -> Any:
                calls.append((name, kwargs))
                return method(**kwargs)

            return call

    store._db = Recording()  # type: ignore[assignment]  # a recording proxy of the same client
    try:
        Sweeper(store, lambda _: CloseOutcome.CLOSED, leeway_seconds=5).run(horizon_seconds=75)
    finally:
        store._db = real
    assert {name for name, _ in calls} == {"query"}
    assert all(kwargs["IndexName"] == spec.CONNECTIONS_BY_EXPIRY_INDEX for _, kwargs in calls)
    # The lookback's minutes, the current one and those the horizon reaches into.
    assert spec.SWEEP.lookback_minutes + 1 <= len(calls) <= spec.SWEEP.lookback_minutes + 4


class FakeClock:
    """Epoch seconds that move only when the sweeper sleeps."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_run_closes_each_connection_when_its_token_comes_due(stack: Stack) -> None:
    """Within the horizon a run waits for each token's exp (+ leeway) and closes it then, not before."""
    store = get_runtime().store
    start = float(int(time.time()))
    soon, later, beyond = stack.open("a"), stack.open("b"), stack.open("c")
    _expire(stack, soon, int(start) + 10)
    _expire(stack, later, int(start) + 40)
    _expire(stack, beyond, int(start) + 300)
    clock = FakeClock(start)
    closed_at: dict[str, float] = {}

    def close(connection_id: str) -> CloseOutcome:
        closed_at[connection_id] = clock.now
        return CloseOutcome.CLOSED

    result = Sweeper(store, close, leeway_seconds=5, clock=clock.time, sleep=clock.sleep).run(
        horizon_seconds=75
    )
    assert result.closed == 2
    grace = sweeper.CLOSE_GRACE_SECONDS
    assert closed_at == {soon: start + 10 + 5 + grace, later: start + 40 + 5 + grace}
    assert beyond not in closed_at  # the next runs take it


def test_a_run_leaves_what_comes_due_after_its_deadline(stack: Stack) -> None:
    store = get_runtime().store
    start = float(int(time.time()))
    due_now, due_late = stack.open("a"), stack.open("b")
    _expire(stack, due_now, int(start) - 20)
    _expire(stack, due_late, int(start) + 50)
    clock = FakeClock(start)
    closed: list[str] = []

    def close(connection_id: str) -> CloseOutcome:
        closed.append(connection_id)
        return CloseOutcome.CLOSED

    result = Sweeper(store, close, leeway_seconds=5, clock=clock.time, sleep=clock.sleep).run(
        horizon_seconds=75, deadline=start + 30
    )
    assert closed == [due_now]
    assert result.deferred == 1


@pytest.mark.parametrize(
    ("event", "horizon"),
    [
        ({}, spec.SWEEP.horizon_seconds),  # EventBridge's scheduled event: the cloud's horizon
        ({spec.SWEEP_TASK_KEY: {"horizon_seconds": 0}}, 0),
        ({spec.SWEEP_TASK_KEY: {"horizon_seconds": True}}, spec.SWEEP.horizon_seconds),
        ({spec.SWEEP_TASK_KEY: {"horizon_seconds": 10_000}}, spec.SWEEP.horizon_seconds),
    ],
)
def test_the_horizon_comes_from_the_task(event: dict[str, Any], horizon: float) -> None:
    assert sweeper._horizon(event) == horizon
