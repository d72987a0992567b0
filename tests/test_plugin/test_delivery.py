"""Delivery through moto's EventBridge to the broadcaster's rule: batching, retries, order,
outages, overflow, draining. Waits are polls with a deadline; nothing asserts on time."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from botocore.stub import Stubber

from plugin import DeliveryOptions, OrchestratorPlugin
from plugin.sender import PUT_EVENTS_MAX_BYTES
from tests.support.waiting import eventually_sync
from tests.test_plugin.conftest import FAST, Bus, FlakyClient, PoisonClient, details

#: Every event its own entry: what these tests check is how single entries fill requests and
#: are retried (a plugin that falls behind packs instead: test_packing.py).
ONE_PER_ENTRY = replace(FAST, pack_backlog=None)


def _logs(plugin: OrchestratorPlugin, count: int, deployment_id: str = "D1") -> list[str]:
    ids = [plugin.log(deployment_id, f"line {index}") for index in range(count)]
    assert None not in ids
    return [event_id for event_id in ids if event_id is not None]


def test_an_event_reaches_the_rule_target_in_the_design_envelope(bus: Bus) -> None:
    """Source, detail-type and detail exactly as the broadcaster's rule and parser expect."""
    with bus.plugin(environment="dev") as plugin:
        event_id = plugin.stack_deployed("D1BRV40", "network", duration_seconds=300, resource_count=15)

    (event,) = bus.received(1)
    assert event["source"] == "cloud.orchestrator"
    assert event["detail-type"] == "stack.deployed"
    assert event["detail"]["event_id"] == event_id
    assert event["detail"]["deployment_id"] == "D1BRV40"
    assert event["detail"]["data"] == {
        "stack_name": "network",
        "environment": "dev",
        "duration_seconds": 300,
        "resource_count": 15,
    }


def test_25_events_take_3_put_events_calls(bus: Bus, flaky: FlakyClient) -> None:
    """Queued events are batched 10, 10, 5, and arrive in hook order."""
    plugin = bus.plugin(client=flaky, options=ONE_PER_ENTRY, autostart=False)
    ids = _logs(plugin, 25)

    assert plugin.close(10)

    assert [len(request) for request in flaky.requests] == [10, 10, 5]
    assert plugin.stats.put_calls == 3
    assert [d["event_id"] for d in details(bus.received(25))] == ids


def test_batches_respect_the_request_size_limit(bus: Bus, flaky: FlakyClient) -> None:
    """Large events are packed under 256 KiB per request, never split or refused."""
    plugin = bus.plugin(client=flaky, autostart=False)
    for index in range(6):
        plugin.emit("stack.deployed", "D1", {"stack_name": f"s{index}", "notes": "n" * 100_000})

    assert plugin.close(10)

    assert [len(request) for request in flaky.requests] == [2, 2, 2]
    for request in flaky.requests:
        assert sum(len(entry["Detail"].encode()) for entry in request) < PUT_EVENTS_MAX_BYTES
    assert len(bus.received(6)) == 6


def test_partial_failure_retries_only_the_failed_entries_with_the_same_event_id(
    bus: Bus, flaky: FlakyClient
) -> None:
    """FailedEntryCount > 0: the failed entries alone are resent, byte for byte, before anything newer."""
    flaky.fail_next({2: "ThrottlingException", 5: "InternalFailure"})
    plugin = bus.plugin(client=flaky, options=ONE_PER_ENTRY, autostart=False)
    ids = _logs(plugin, 13)

    assert plugin.close(10)

    first, retry, rest = flaky.requests
    assert len(first) == 10
    assert retry == [first[2], first[5]]  # identical entries: same Detail, same event_id
    assert [json.loads(entry["Detail"])["event_id"] for entry in rest] == ids[10:]
    delivered = [d["event_id"] for d in details(bus.received(13))]
    assert sorted(delivered) == sorted(ids)  # each exactly once
    assert delivered[-3:] == ids[10:]  # nothing newer overtook the retried entries
    assert plugin.stats.retried_entries == 2
    assert plugin.stats.sent == 13


def test_partial_failure_with_botocore_stubber() -> None:
    """The same contract against botocore's own response shapes (Stubber, no moto)."""
    import boto3

    client = boto3.client("events", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    plugin = OrchestratorPlugin("bus", client=client, options=FAST, autostart=False)
    ids = [plugin.log("D1", f"line {index}") for index in range(3)]
    with Stubber(client) as stub:
        stub.add_response(
            "put_events",
            {
                "FailedEntryCount": 1,
                "Entries": [{"EventId": "a"}, {"ErrorCode": "ThrottlingException"}, {"EventId": "c"}],
            },
        )
        stub.add_response("put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "b"}]})
        assert plugin.close(10)
        stub.assert_no_pending_responses()

    assert plugin.stats.sent == 3
    assert plugin.stats.put_calls == 2
    assert ids[1] is not None


def test_an_entry_that_keeps_failing_is_given_up_after_max_attempts(bus: Bus, flaky: FlakyClient) -> None:
    """Retrying is bounded per entry, so one bad entry cannot hold the queue forever."""
    options = DeliveryOptions(backoff_base=0.001, backoff_max=0.002, max_entry_attempts=3)
    for _ in range(3):
        flaky.fail_next({0: "InternalFailure"})
    plugin = bus.plugin(client=flaky, options=options, autostart=False)
    _logs(plugin, 2)

    assert plugin.close(10)

    assert plugin.stats.failed == 1
    assert plugin.stats.sent == 1
    assert "InternalFailure" in (plugin.stats.last_error or "")


def test_malformed_entries_are_not_retried(bus: Bus, flaky: FlakyClient) -> None:
    """A per-entry MalformedDetail is final at once; its batch-mates are delivered."""
    flaky.fail_next({1: "MalformedDetail"})
    plugin = bus.plugin(client=flaky, autostart=False)
    _logs(plugin, 3)

    assert plugin.close(10)

    assert len(flaky.requests) == 1
    assert (plugin.stats.sent, plugin.stats.failed) == (2, 1)


def test_a_request_refused_as_a_whole_is_split_to_save_the_good_entries(bus: Bus) -> None:
    """ValidationException on a batch: entries are retried one by one; only the bad one is lost."""
    import boto3

    client = PoisonClient(boto3.client("events", region_name="us-east-1"))
    plugin = bus.plugin(client=client, autostart=False)
    plugin.log("D1", "before")
    plugin.emit("custom.event", "D1", {"poison": True})
    plugin.log("D1", "after")

    assert plugin.close(10)

    assert [len(request) for request in client.requests] == [3, 1, 1, 1]
    assert (plugin.stats.sent, plugin.stats.failed) == (2, 1)
    assert [d["data"]["message"] for d in details(bus.received(2))] == ["before", "after"]


def test_bus_down_then_back_delivers_everything_in_order(
    bus: Bus, flaky: FlakyClient, plugin_log: pytest.LogCaptureFixture
) -> None:
    """An outage delays events, never loses or reorders them, and never reaches the hooks."""
    flaky.down = True
    plugin = bus.plugin(client=flaky)
    ids = [plugin.deployment_started("D1", total_layers=2)]
    ids += _logs(plugin, 30)
    assert flaky.request_made.wait(10)
    while len(flaky.requests) < 3:  # a few failed attempts while we keep emitting
        ids += _logs(plugin, 1)
        time.sleep(0.001)
    ids.append(plugin.deployment_completed("D1", "succeeded"))
    assert not plugin.flush(0.05)  # still down: flush gives up at its deadline

    flaky.down = False
    assert plugin.flush(10)

    delivered = [d["event_id"] for d in details(bus.received(len(ids)))]
    assert delivered == ids
    stats = plugin.stats
    assert (stats.sent, stats.undelivered) == (len(ids), 0)
    assert "EndpointConnectionError" in (stats.last_error or "")
    assert "unreachable" in plugin_log.text
    plugin.close(1)


def test_submissions_only_move_forward(bus: Bus, flaky: FlakyClient) -> None:
    """Across several partial failures, each request starts at the oldest event not yet accepted."""
    plans = [{0: "ThrottlingException"}, {3: "InternalFailure", 7: "ThrottlingException"}, {1: "X"}]
    for failures in plans:
        flaky.fail_next(failures)
    plugin = bus.plugin(client=flaky, options=ONE_PER_ENTRY, autostart=False)
    ids = _logs(plugin, 40)

    assert plugin.close(10)

    order = {event_id: index for index, event_id in enumerate(ids)}
    accepted: set[int] = set()
    for number, request in enumerate(flaky.requests):
        indexes = [order[json.loads(entry["Detail"])["event_id"]] for entry in request]
        assert indexes == sorted(indexes)
        assert indexes[0] == min(set(range(40)) - accepted)
        failed = plans[number] if number < len(plans) else {}
        accepted |= {index for position, index in enumerate(indexes) if position not in failed}
    assert accepted == set(range(40))
    assert len(bus.received(40)) == 40


def test_queue_overflow_sheds_oldest_logs_first_and_counts_it(
    bus: Bus, flaky: FlakyClient, plugin_log: pytest.LogCaptureFixture
) -> None:
    """Past the bound, log lines go before state events; every drop is counted and logged."""
    options = DeliveryOptions(backoff_base=0.001, backoff_max=0.002, max_queue_events=5)
    plugin = bus.plugin(client=flaky, options=options, autostart=False)
    started = plugin.deployment_started("D1", total_layers=1)
    logs = _logs(plugin, 6)
    completed = plugin.deployment_completed("D1", "succeeded")

    stats = plugin.stats
    assert (stats.accepted, stats.queued, stats.dropped) == (8, 5, 3)
    assert "dropped" in plugin_log.text

    assert plugin.close(10)
    delivered = [d["event_id"] for d in details(bus.received(5))]
    assert delivered == [started, *logs[3:], completed]
    assert plugin.stats.undelivered == 3


def test_overflow_of_state_events_keeps_the_newest(bus: Bus, flaky: FlakyClient) -> None:
    """With no logs to shed, the oldest event goes: views keep the newest state."""
    options = DeliveryOptions(max_queue_events=2)
    plugin = bus.plugin(client=flaky, options=options, autostart=False)
    statuses = [
        plugin.deployment_status("D1", "deploying", current_layer=n, total_layers=5) for n in range(5)
    ]

    assert plugin.close(10)
    assert [d["event_id"] for d in details(bus.received(2))] == statuses[-2:]
    assert plugin.stats.dropped == 3


def test_byte_bound_sheds_too(bus: Bus, flaky: FlakyClient) -> None:
    """The bound in bytes holds however few events there are."""
    options = DeliveryOptions(max_queue_bytes=50_000)
    plugin = bus.plugin(client=flaky, options=options, autostart=False)
    for index in range(5):
        plugin.emit("stack.deployed", "D1", {"stack_name": f"s{index}", "notes": "n" * 20_000})

    assert plugin.stats.queued == 2
    assert plugin.stats.dropped == 3
    plugin.close(10)


def test_close_drains_everything_queued(bus: Bus, flaky: FlakyClient) -> None:
    """close() returns once all is sent; later hooks are dropped, not raised."""
    plugin = bus.plugin(client=flaky)
    ids = _logs(plugin, 57)

    assert plugin.close(10) is True

    assert [d["event_id"] for d in details(bus.received(57))] == ids
    assert plugin.log("D1", "too late") is None
    assert plugin.stats.dropped == 1
    assert plugin.close(1) is True  # idempotent


def test_close_gives_up_at_its_deadline_when_the_bus_is_down(bus: Bus, flaky: FlakyClient) -> None:
    """The orchestrator's exit is never held hostage: undelivered events are counted as abandoned."""
    flaky.down = True
    plugin = bus.plugin(client=flaky)
    _logs(plugin, 12)

    assert plugin.close(0.1) is False

    stats = plugin.stats
    assert stats.sent == 0
    assert stats.abandoned + stats.in_flight == 12


def test_context_manager_closes(bus: Bus, flaky: FlakyClient) -> None:
    """Leaving the ``with`` block drains the queue."""
    with bus.plugin(client=flaky) as plugin:
        _logs(plugin, 5)
    assert plugin.stats.sent == 5


def test_hooks_from_many_threads_keep_each_threads_order(bus: Bus) -> None:
    """Stacks of a layer report concurrently; each one's events stay in its order."""
    plugin = bus.plugin()

    def stack(name: str) -> None:
        for index in range(20):
            plugin.log("D1", f"{name} {index}", stack_name=name)

    threads = [threading.Thread(target=stack, args=(f"s{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert plugin.close(10)

    messages = [d["data"]["message"] for d in details(bus.received(80))]
    for n in range(4):
        mine = [m for m in messages if m.startswith(f"s{n} ")]
        assert mine == [f"s{n} {index}" for index in range(20)]


def test_several_plugins_may_report_on_one_deployment(bus: Bus) -> None:
    """A restarted orchestrator's events are new events (fresh ids), not duplicates."""
    with bus.plugin() as first:
        first.deployment_started("D1", total_layers=2)
    with bus.plugin() as second:
        second.deployment_status("D1", "deploying", current_layer=2, total_layers=2)

    received = details(bus.received(2))
    assert len({d["event_id"] for d in received}) == 2


def test_a_client_that_cannot_be_built_is_an_outage_not_a_crash(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No region anywhere: boto3 refuses to build the client; hooks still return, close() reports it."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    plugin = OrchestratorPlugin("bus", options=FAST)
    assert plugin.log("D1", "hello") is not None

    eventually_sync(
        lambda: "NoRegionError" in (plugin.stats.last_error or ""), "the NoRegionError in the stats"
    )
    assert plugin.close(0.1) is False


def test_stats_account_for_every_event(bus: Bus, flaky: FlakyClient) -> None:
    """accepted = sent + dropped + failed + abandoned once closed."""
    flaky.fail_next({0: "MalformedDetail"})
    options = DeliveryOptions(max_queue_events=3)
    plugin = bus.plugin(client=flaky, options=options, autostart=False)
    _logs(plugin, 6)
    plugin.log("D1", 123, level=object())  # odd but acceptable arguments
    plugin.deployment_status("D1", "exploded")  # refused

    plugin.close(10)
    stats = plugin.stats
    assert stats.accepted == stats.sent + stats.dropped + stats.failed + stats.abandoned
    assert (stats.refused, stats.failed) == (1, 1)


def test_plugin_logger_is_quiet_when_all_is_well(bus: Bus, plugin_log: pytest.LogCaptureFixture) -> None:
    """Nothing at warning level in a healthy run: the orchestrator's log stays its own."""
    with bus.plugin() as plugin:
        _logs(plugin, 3)
    assert [r for r in plugin_log.records if r.levelno >= logging.WARNING] == []


def test_an_orchestrator_forwarding_its_logs_to_the_plugin_does_not_deadlock(
    bus: Bus, flaky: FlakyClient
) -> None:
    """The plugin's own warnings may come back into its hooks: it never logs holding its lock."""
    plugin = bus.plugin(client=flaky, options=DeliveryOptions(max_queue_events=3, backoff_base=0.001))

    forwarded: list[str] = []

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            forwarded.append(record.getMessage())
            plugin.log("D1", record.getMessage(), level=record.levelname)

    logger = logging.getLogger("cloud_ws.plugin")
    handler = Forward(logging.WARNING)
    # Whatever earlier tests left: the warnings must reach the handler, or nothing is tested.
    level, disabled = logger.level, logger.disabled
    logger.setLevel(logging.WARNING)
    logger.disabled = False
    logger.addHandler(handler)
    try:
        flaky.fail_next({0: "MalformedDetail"})  # a warning from the sending thread
        worker = threading.Thread(target=lambda: (_logs(plugin, 10), plugin.close(10)), daemon=True)
        worker.start()
        worker.join(10)
        assert not worker.is_alive()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.disabled = disabled
    assert plugin.stats.failed == 1
    assert any("dropped" in line for line in forwarded)  # the queue-full warning came back in


def test_a_malformed_reply_is_retried_not_fatal(bus: Bus, flaky: FlakyClient) -> None:
    """A reply that is not PutEvents' shape, or lacks an entry's result, is a failure to retry."""

    class Garbled:
        def __init__(self) -> None:
            self.replies: list[Any] = [None, {"Entries": "nope"}, {"Entries": [{"EventId": "a"}]}]

        def put_events(self, *, Entries: list[dict[str, str]]) -> Any:
            if self.replies:
                return self.replies.pop(0)
            return flaky.put_events(Entries=Entries)

    plugin = bus.plugin(client=Garbled(), autostart=False)
    ids = _logs(plugin, 2)

    assert plugin.close(10)
    assert plugin.stats.sent == 2
    # The third reply accepted the first entry only; the second was retried alone.
    assert [d["event_id"] for d in details(bus.received(1))] == ids[1:]


class _SlowClient(FlakyClient):
    """Takes 50 ms per request (a far region's round trip) and records how many overlap."""

    def __init__(self, real: Any) -> None:
        super().__init__(real)
        self.running = 0
        self.most = 0
        self._count = threading.Lock()

    def put_events(self, *, Entries: list[dict[str, str]]) -> dict[str, Any]:
        with self._count:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)
            return super().put_events(Entries=Entries)
        finally:
            with self._count:
                self.running -= 1


def test_several_requests_in_flight_deliver_every_event_once_numbered_in_hook_order(bus: Bus) -> None:
    """requests_in_flight=4: up to four PutEvents at once, every event delivered exactly once, a
    failed entry retried; the arrival order may change, the numbering (what the broadcaster
    stores by) is the hook order."""
    slow = _SlowClient(bus.events)
    slow.fail_next({3: "ThrottlingException"})
    # Not started until close(): every request then holds 10 entries, the first one's 4th included.
    plugin = bus.plugin(
        client=slow,
        options=DeliveryOptions(requests_in_flight=4, backoff_base=0.001, pack_backlog=None),
        autostart=False,
    )
    ids = _logs(plugin, 100)

    assert plugin.close(30)

    assert slow.most == 4
    assert plugin.stats.sent == 100
    assert plugin.stats.retried_entries == 1
    received = details(bus.received(100))
    assert sorted(d["event_id"] for d in received) == sorted(ids)
    by_id = {d["event_id"]: d["producer_seq"] for d in received}
    assert [by_id[event_id] for event_id in ids] == list(range(1, 101))


def test_one_request_in_flight_is_the_default_and_the_width_is_bounded() -> None:
    assert DeliveryOptions().requests_in_flight == 1
    for width in (0, 9):
        with pytest.raises(ValueError, match="requests_in_flight"):
            DeliveryOptions(requests_in_flight=width)
