"""Packed entries: a plugin that falls behind puts many events of one deployment in one entry.

Through moto's EventBridge and the broadcaster's rule, so what is checked is what
the delivery queue receives.
"""

from __future__ import annotations

import json
from typing import Any

from contract import spec
from contract.events import parse_events
from plugin import DeliveryOptions, OrchestratorPlugin
from plugin.sender import PUT_EVENTS_MAX_BYTES
from tests.support.waiting import PATIENCE
from tests.test_plugin.conftest import Bus, FlakyClient, PoisonClient, details

FAST = {"backoff_base": 0.001, "backoff_max": 0.005, "close_timeout": PATIENCE}


def _interleaved_logs(plugin: OrchestratorPlugin, count: int) -> list[str]:
    """``count`` log lines, runs of 30 on D1 then 10 on D2, and so on; their event ids in hook order."""
    ids: list[str] = []
    for index in range(count):
        deployment_id = "D1" if index % 40 < 30 else "D2"
        event_id = plugin.log(deployment_id, f"line {index}")
        assert event_id is not None
        ids.append(event_id)
    return ids


def _packs(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["detail-type"] == spec.PACKED_DETAIL_TYPE]


def test_a_plugin_behind_packs_each_deployments_consecutive_events_into_one_entry(bus: Bus) -> None:
    """400 events waiting: a few requests of packed entries, each of one deployment, every event
    once with its own type, id and number, and parsed by the broadcaster as the events they are."""
    client = FlakyClient(bus.events)
    plugin = bus.plugin(client=client, options=DeliveryOptions(**FAST), autostart=False)
    ids = _interleaved_logs(plugin, 400)

    assert plugin.close(PATIENCE)

    assert plugin.stats.sent == 400
    assert plugin.stats.put_calls == len(client.requests) <= 4  # 40 requests of 10 entries unpacked
    entries = bus.entries()
    packs = _packs(entries)
    assert packs
    assert len(entries) < 40
    assert plugin.stats.packed_entries == len(packs)
    for pack in packs:
        members = pack["detail"]["events"]
        assert {member["deployment_id"] for member in members} == {pack["detail"]["deployment_id"]}
        assert all(member["type"] == "log.created" for member in members)
        assert len(json.dumps(pack["detail"], separators=(",", ":"))) <= spec.PACKED_MAX_BYTES
    received = details(bus.everything())
    assert [d["event_id"] for d in received] == ids
    for deployment_id in ("D1", "D2"):
        numbers = [d["producer_seq"] for d in received if d["deployment_id"] == deployment_id]
        assert numbers == list(range(1, len(numbers) + 1))
    parsed = [event for entry in entries for event in parse_events(entry, 0)[0]]
    assert [event.event_id for event in parsed] == ids
    assert {event.type for event in parsed} == {"log.created"}


def test_a_plugin_that_keeps_up_sends_the_plain_envelope(bus: Bus) -> None:
    """A few events at a time: one entry per event, ``DetailType`` the event's type."""
    with bus.plugin(options=DeliveryOptions(**FAST)) as plugin:
        for index in range(5):
            plugin.log("D1", f"line {index}")
            assert plugin.flush(PATIENCE)

    entries = bus.entries()
    assert [entry["detail-type"] for entry in entries] == ["log.created"] * 5
    assert plugin.stats.packed_entries == 0


def test_packing_can_be_turned_off(bus: Bus) -> None:
    """``pack_backlog=None``: 100 waiting events still go as 100 plain entries."""
    plugin = bus.plugin(options=DeliveryOptions(**FAST, pack_backlog=None), autostart=False)
    _interleaved_logs(plugin, 100)
    assert plugin.close(PATIENCE)

    entries = bus.entries()
    assert len(entries) == 100
    assert not _packs(entries)


def test_a_packed_entry_that_fails_is_retried_whole(bus: Bus) -> None:
    """A throttled packed entry is sent again, whole and the same; nothing is lost or doubled."""
    client = FlakyClient(bus.events)
    client.fail_next({0: "ThrottlingException"})
    plugin = bus.plugin(client=client, options=DeliveryOptions(**FAST), autostart=False)
    ids = _interleaved_logs(plugin, 100)

    assert plugin.close(PATIENCE)

    first = client.requests[0][0]
    assert first["DetailType"] == spec.PACKED_DETAIL_TYPE
    assert client.requests[1][0] == first  # the same bytes again: the same event ids
    assert plugin.stats.sent == 100
    assert plugin.stats.retried_entries == len(json.loads(first["Detail"])["events"])
    delivered = [d["event_id"] for d in details(bus.everything())]
    assert sorted(delivered) == sorted(ids)  # the retried pack arrives after its request-mates


def test_a_malformed_packed_entry_is_split_and_only_the_bad_event_is_given_up(bus: Bus) -> None:
    """EventBridge refuses a pack holding one poisoned event: its events go one by one, and only
    the poisoned one is counted as failed."""
    client = PoisonClient(bus.events)
    plugin = bus.plugin(client=client, options=DeliveryOptions(**FAST), autostart=False)
    for index in range(60):
        data = {"poison": True} if index == 37 else {}
        assert plugin.emit("stack.progress", "D1", {"stack_name": f"s{index}", "percent": 1, **data})
    assert plugin.close(PATIENCE)

    assert plugin.stats.sent == 59
    assert plugin.stats.failed == 1
    assert client.requests[0][0]["DetailType"] == spec.PACKED_DETAIL_TYPE
    # Split into requests of ten, and only the one holding the poison split again: not one
    # request per event.
    assert len(client.requests) < 25
    delivered = details(bus.everything())
    assert len(delivered) == 59
    assert all("poison" not in d["data"] for d in delivered)


def test_a_packed_entry_refused_as_malformed_comes_back_as_its_events_in_requests_of_ten(bus: Bus) -> None:
    """EventBridge refuses a pack entry by entry (MalformedDetail): its events are sent again one
    entry each, in requests EventBridge takes (at most 10 entries), and none is given up on."""
    client = FlakyClient(bus.events)
    client.fail_next({0: "MalformedDetail"})
    plugin = bus.plugin(client=client, options=DeliveryOptions(**FAST), autostart=False)
    ids = _interleaved_logs(plugin, 60)

    assert plugin.close(PATIENCE)

    refused = json.loads(client.requests[0][0]["Detail"])["events"]
    assert len(refused) > 10
    assert plugin.stats.sent == 60
    assert plugin.stats.failed == 0
    assert all(len(request) <= 10 for request in client.requests)
    resent = [entry for request in client.requests[1:] for entry in request]
    assert [json.loads(e["Detail"])["event_id"] for e in resent[: len(refused)]] == [
        member["event_id"] for member in refused
    ]
    assert sorted(d["event_id"] for d in details(bus.everything())) == sorted(ids)


def test_a_packed_entry_counts_no_fewer_bytes_than_it_sends(bus: Bus) -> None:
    """The request limit is kept on the bytes EventBridge counts: the packed entry's estimate
    covers its Detail, DetailType and Source."""
    client = FlakyClient(bus.events)
    plugin = bus.plugin(client=client, options=DeliveryOptions(**FAST), autostart=False)
    _interleaved_logs(plugin, 300)
    assert plugin.close(PATIENCE)

    for request in client.requests:
        counted = sum(len(e["Detail"].encode()) + len(e["DetailType"]) + len(e["Source"]) for e in request)
        assert counted <= PUT_EVENTS_MAX_BYTES
        for entry in request:
            if entry["DetailType"] == spec.PACKED_DETAIL_TYPE:
                assert len(entry["Detail"].encode()) <= spec.PACKED_MAX_BYTES


def test_no_event_may_take_the_packed_type(bus: Bus) -> None:
    """``events.packed`` names a packed entry: a hook asked to emit it is refused, nothing is sent."""
    with bus.plugin(options=DeliveryOptions(**FAST)) as plugin:
        assert plugin.emit(spec.PACKED_DETAIL_TYPE, "D1", {}) is None
        assert plugin.stats.refused == 1
    assert bus.entries() == []
