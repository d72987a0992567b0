"""The one backoff rule (``contract.backoff``) and the waits of the store's retries."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from cloud_ws_client import backoff as client_backoff
from contract import backoff
from contract.backoff import Backoff
from server.config import TableNames
from server.management import RetryPolicy
from server.store import Store


def test_the_ceiling_doubles_from_base_up_to_the_cap() -> None:
    """Growth: base, 2*base, 4*base... until the cap, which holds however many retries follow."""
    ceilings = [backoff.ceiling(n, base=0.5, cap=5.0) for n in range(1, 8)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert backoff.ceiling(10_000, base=0.5, cap=5.0) == 5.0  # no overflow far past the cap


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff.ceiling(0, base=1.0, cap=1.0)


def test_full_jitter_spreads_waits_over_zero_to_the_ceiling() -> None:
    """Bounds and full jitter: every wait within [0, ceiling], both ends of the range used."""
    rng = random.Random(42)
    for attempt in range(1, 10):
        top = backoff.ceiling(attempt, base=0.1, cap=2.0)
        waits = [backoff.delay(attempt, base=0.1, cap=2.0, rng=rng) for _ in range(500)]
        assert all(0.0 <= w <= top for w in waits)
        assert min(waits) < 0.05 * top
        assert max(waits) > 0.95 * top


def test_a_seeded_rng_gives_the_same_waits() -> None:
    """Deterministic with a seeded rng, and the same draw as ``Random.uniform(0, ceiling)``."""
    ours = [backoff.delay(n, base=0.05, cap=2.0, rng=random.Random(7)) for n in range(1, 6)]
    again = [backoff.delay(n, base=0.05, cap=2.0, rng=random.Random(7)) for n in range(1, 6)]
    uniform = [random.Random(7).uniform(0.0, min(2.0, 0.05 * 2 ** (n - 1))) for n in range(1, 6)]
    assert ours == again == uniform


def test_a_floor_keeps_waits_above_a_fraction_of_the_ceiling() -> None:
    policy = Backoff(base=0.25, cap=8.0, floor=0.5)
    rng = random.Random(3)
    for attempt in range(1, 8):
        top = backoff.ceiling(attempt, base=0.25, cap=8.0)
        assert all(top / 2 <= policy.delay(attempt, rng) <= top for _ in range(200))


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [({"base": -1.0, "cap": 1.0}, "negative"), ({"base": 1.0, "cap": 1.0, "floor": 1.5}, "fraction")],
)
def test_a_policy_refuses_nonsense(kwargs: dict[str, float], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        Backoff(**kwargs)


def test_the_poster_policy_is_the_rule() -> None:
    """``RetryPolicy`` waits by this rule, with its own base after a 429."""
    policy = RetryPolicy(base_seconds=0.05, throttled_base_seconds=0.1, cap_seconds=2.0)
    for retry in range(1, 8):
        assert policy.delay(retry, False, random.Random(retry)) == backoff.delay(
            retry, base=0.05, cap=2.0, rng=random.Random(retry)
        )
        assert policy.delay(retry, True, random.Random(retry)) == backoff.delay(
            retry, base=0.1, cap=2.0, rng=random.Random(retry)
        )


def test_the_client_package_keeps_the_same_rule() -> None:
    """``cloud_ws_client`` installs alone, with its own copy: both give the same waits from the same draws."""
    client = list(itertools.islice(client_backoff(0.5, 10.0, 2.0, rand=random.Random(11).random), 8))
    rng = random.Random(11)
    ours = [backoff.delay(n, base=0.5, cap=10.0, rng=rng) for n in range(1, 9)]
    assert client == pytest.approx(ours)


# -- the store waits through the sleep it is given -----------------------------------------------


class _Unprocessed:
    """A DynamoDB client whose BatchGetItem leaves every key unprocessed ``times`` times."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.calls = 0

    def batch_get_item(self, RequestItems: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.times:
            return {"Responses": {}, "UnprocessedKeys": RequestItems}
        table, request = next(iter(RequestItems.items()))
        items = [{"deploymentId": key["deploymentId"], "lastSeq": {"N": "4"}} for key in request["Keys"]]
        return {"Responses": {table: items}}


def test_store_retries_wait_through_the_injected_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unprocessed keys are retried after waits taken through ``sleep``: no real time passes."""
    monkeypatch.setattr("time.sleep", lambda _: pytest.fail("the store slept for real"))
    waits: list[float] = []
    db = _Unprocessed(times=3)
    store = Store(
        db,  # type: ignore[arg-type]
        TableNames("connections", "subscriptions", "events", "event_ids"),
        sleep=waits.append,
        rng=random.Random(5),
    )

    assert store.last_seqs(["D1", "D2"]) == {"D1": 4, "D2": 4}
    assert db.calls == 4
    rng = random.Random(5)
    assert waits == [backoff.delay(n, base=0.025, cap=1.0, rng=rng) for n in (1, 2, 3)]
