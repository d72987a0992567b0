"""The Pulumi Automation API adapter, fed recorded engine event streams (Pulumi's JSON event
log, as ``stack.up(on_event=...)`` parses it into ``pulumi.automation`` event objects)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import (
    DiagnosticEvent,
    EngineEvent,
    OpType,
    PolicyEvent,
    ResOpFailedEvent,
    ResourcePreEvent,
    ResOutputsEvent,
    StdoutEngineEvent,
    StepEventMetadata,
    SummaryEvent,
)

from cloud_ws import event_schemas
from plugin import AutomationAdapter
from plugin.automation import MAX_RESOURCE_TEXT, MAX_RESOURCES_BYTES, MAX_RESOURCES_PER_EVENT
from tests.test_plugin.conftest import Bus, details
from tests.test_plugin.test_hooks import Recorder

DATA = Path(__file__).parent / "data"


def recorded(name: str) -> list[EngineEvent]:
    """A recorded engine event log, one JSON event per line."""
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [EngineEvent.from_json(json.loads(line)) for line in lines if line.strip()]


def play(adapter: AutomationAdapter, events: list[EngineEvent]) -> None:
    for event in events:
        adapter(event)


def _types(recorder: Recorder) -> list[str]:
    return [event_type for event_type, _, _ in recorder.events]


def test_a_successful_up_becomes_started_progress_logs_and_deployed() -> None:
    """Every resource step is progress; diagnostics are logs; the summary is stack.deployed."""
    hooks = Recorder(environment="dev")
    adapter = AutomationAdapter(hooks, "D1", "network", layer=1, progress_interval=0)

    play(adapter, recorded("pulumi_up_network.jsonl"))

    # 5 resources: each one's start and end (interval 0: one progress per step).
    assert _types(hooks) == [
        "stack.started",
        *["stack.progress"] * 3,
        "log.created",
        *["stack.progress"] * 5,
        "log.created",
        *["stack.progress"] * 2,
        "stack.deployed",
    ]
    data = [event[2] for event in hooks.events]
    assert data[0] == {"stack_name": "network", "environment": "dev", "layer": 1}
    assert data[6] == {
        "stack_name": "network",
        "environment": "dev",
        "layer": 1,
        "resources_done": 2,
        "resources_in_progress": 1,
        "resource": "main",
        "resource_type": "aws:ec2/vpc:Vpc",
        "operation": "create",
        "resources": [
            {
                "name": "main",
                "type": "aws:ec2/vpc:Vpc",
                "operation": "create",
                "status": "done",
                "duration_seconds": data[6]["resources"][0]["duration_seconds"],
            }
        ],
    }
    assert data[5]["resources"] == [
        {"name": "main", "type": "aws:ec2/vpc:Vpc", "operation": "create", "status": "running"}
    ]
    assert data[4]["message"] == "Creating the VPC in us-east-1"
    assert data[10] == {  # Pulumi's colour markup is gone, the resource is named
        "level": "warning",
        "message": "map_public_ip_on_launch is deprecated",
        "stack_name": "network",
        "environment": "dev",
        "resource": "private-b",
        "resource_type": "aws:ec2/subnet:Subnet",
    }
    assert [d["resources_done"] for d in data if "resources_done" in d] == [0, 0, 1, 1, 2, 2, 2, 3, 4, 5]
    assert data[-1] == {
        "stack_name": "network",
        "environment": "dev",
        "layer": 1,
        "duration_seconds": 17,
        "resource_count": 5,
        "changes": {"create": 5},
    }
    assert adapter.finished
    assert {event[1] for event in hooks.events} == {"D1"}


def test_a_failed_up_becomes_stack_failed_with_the_diagnostic_that_caused_it() -> None:
    """The failed resource's error diagnostic leads the error message; config never leaks."""
    hooks = Recorder(environment="dev")
    adapter = AutomationAdapter(hooks, "D1", "database-rds", layer=3, progress_interval=0)

    play(adapter, recorded("pulumi_up_database_rds.jsonl"))

    assert _types(hooks)[-3:] == ["log.created", "stack.progress", "stack.failed"]
    errors = [d for t, _, d in hooks.events if t == "log.created" and d["level"] == "error"]
    assert [e["message"] for e in errors] == [
        "creating RDS DB Instance (orders): InvalidSubnet: Subnet not found: subnet-0b7d41",
        "update failed",
    ]
    failed = hooks.events[-1][2]
    assert failed["error_message"] == (
        "creating RDS DB Instance (orders): InvalidSubnet: Subnet not found: subnet-0b7d41\nupdate failed"
    )
    assert failed["failed_resources"] == ["orders"]
    assert failed["duration_seconds"] == 17
    assert "[secret]" not in json.dumps(hooks.events)


def test_progress_is_coalesced_by_interval() -> None:
    """At most one progress event per interval; the rest of the steps go out before stack.deployed."""
    now = [0.0]
    hooks = Recorder()
    adapter = AutomationAdapter(hooks, "D1", "network", progress_interval=10, clock=lambda: now[0])

    play(adapter, recorded("pulumi_up_network.jsonl"))

    progress = [d for t, _, d in hooks.events if t == "stack.progress"]
    # The first step at once, the other nine batched in the flush before the terminal event.
    assert [len(p["resources"]) for p in progress] == [1, 5]
    assert [p["resources_done"] for p in progress] == [0, 5]
    assert _types(hooks)[-2:] == ["stack.progress", "stack.deployed"]
    assert {r["status"] for r in progress[-1]["resources"]} == {"done"}
    assert hooks.events[-1][2]["resource_count"] == 5


def _metadata(name: str, op: OpType = OpType.CREATE) -> StepEventMetadata:
    return StepEventMetadata(
        op=op,
        urn=f"urn:pulumi:dev::infra::aws:s3/bucketV2:BucketV2::{name}",
        type="aws:s3/bucketV2:BucketV2",
        provider="",
    )


def test_planning_events_ephemeral_and_empty_messages_are_ignored() -> None:
    """A preview's steps, spinner chatter and blank lines are not the deployment's story."""
    hooks = Recorder()
    adapter = AutomationAdapter(hooks, "D1", "storage", progress_interval=0)

    adapter(EngineEvent(1, 0, res_outputs_event=ResOutputsEvent(_metadata("logs"), planning=True)))
    adapter(EngineEvent(2, 0, diagnostic_event=DiagnosticEvent("spinning", "never", "info", ephemeral=True)))
    adapter(EngineEvent(3, 0, stdout_event=StdoutEngineEvent("   \n", "never")))
    adapter(EngineEvent(4, 0, diagnostic_event=DiagnosticEvent("<{%reset%}>\n", "raw", "info")))

    assert _types(hooks) == ["stack.started"]  # the update is under way, nothing more to say


def test_stdout_policy_and_corrupt_state_become_logs() -> None:
    """Other engine output is still visible, at a level that matches its weight."""
    hooks = Recorder()
    adapter = AutomationAdapter(hooks, "D1", "storage")
    adapter(EngineEvent(1, 0, stdout_event=StdoutEngineEvent("Updating (dev)\n", "never")))
    adapter(
        EngineEvent(
            2,
            0,
            policy_event=PolicyEvent(
                "bucket must be private", "never", "s3-private", "baseline", "1.0", "v1.0", "mandatory"
            ),
        )
    )
    summary = SummaryEvent(True, 3, {OpType.SAME: 2}, {})
    adapter(EngineEvent(3, 0, summary_event=summary))

    levels = [(t, d.get("level")) for t, _, d in hooks.events]
    assert levels == [
        ("stack.started", None),
        ("log.created", "info"),
        ("log.created", "error"),
        ("log.created", "warning"),
        ("stack.failed", None),  # a mandatory policy violation fails the stack
    ]
    assert "baseline/s3-private" in hooks.events[-1][2]["error_message"]


def test_finish_sends_a_terminal_event_when_the_summary_never_came() -> None:
    """If the CLI dies mid-update, finish(error) in the orchestrator's ``finally`` reports it, once."""
    hooks = Recorder()
    adapter = AutomationAdapter(hooks, "D1", "storage", progress_interval=0)
    adapter(EngineEvent(1, 0, res_outputs_event=ResOutputsEvent(_metadata("logs"))))

    adapter.finish(RuntimeError("pulumi exited with code 255"))
    adapter.finish()

    assert _types(hooks) == ["stack.started", "stack.progress", "stack.failed"]
    assert hooks.events[-1][2]["error_message"] == "RuntimeError: pulumi exited with code 255"


def test_finish_after_a_summary_does_nothing_and_clean_finish_means_deployed() -> None:
    """finish() is safe to call always."""
    hooks = Recorder()
    adapter = AutomationAdapter(hooks, "D1", "network", progress_interval=0)
    play(adapter, recorded("pulumi_up_network.jsonl"))
    count = len(hooks.events)
    adapter.finish()
    assert len(hooks.events) == count

    other = Recorder()
    quiet = AutomationAdapter(other, "D1", "empty")
    quiet.finish()
    assert _types(other) == ["stack.started", "stack.deployed"]
    assert other.events[-1][2]["resource_count"] == 0


@pytest.mark.parametrize(
    "junk", [None, object(), "event", EngineEvent(1, 0, summary_event=SummaryEvent(False, "x", None, {}))]
)
def test_the_adapter_never_raises_into_pulumis_event_thread(
    junk: Any, plugin_log: pytest.LogCaptureFixture
) -> None:
    """An exception there would stop Pulumi's event watcher: it is logged instead."""
    adapter = AutomationAdapter(Recorder(), "D1", "network")
    adapter(junk)
    adapter.finish()
    if not isinstance(junk, EngineEvent):
        assert "cannot map a Pulumi engine event" in plugin_log.text


def test_through_the_plugin_to_the_bus(bus: Bus) -> None:
    """``plugin.automation(...)`` as on_event: the events reach the broadcaster's rule target."""
    with bus.plugin(environment="dev") as plugin:
        on_event = plugin.automation("D1", "database-rds", layer=3, progress_interval=0)
        play(on_event, recorded("pulumi_up_database_rds.jsonl"))

    received = bus.everything()
    assert received[0]["detail-type"] == "stack.started"
    assert received[-1]["detail-type"] == "stack.failed"
    assert "Subnet not found" in details(received)[-1]["data"]["error_message"]
    assert plugin.stats.sent == len(received)


def test_cancel_ends_an_interrupted_stack_once_and_error_message_says_why_it_failed() -> None:
    """An update interrupted before its summary is cancelled, not failed; the failure's cause is readable."""
    hooks = Recorder(environment="dev")
    adapter = AutomationAdapter(hooks, "D1", "storage", layer=2, progress_interval=0)
    adapter(EngineEvent(1, 0, res_outputs_event=ResOutputsEvent(_metadata("logs"))))
    assert adapter.error_message is None
    adapter.cancel("pulumi was interrupted (exit code 255)")
    adapter.cancel()
    adapter.finish()
    assert _types(hooks) == ["stack.started", "stack.progress", "stack.cancelled"]
    cancelled = hooks.events[-1][2]
    assert cancelled["stack_name"] == "storage"
    assert (cancelled["environment"], cancelled["layer"]) == ("dev", 2)
    assert cancelled["error_message"] == "pulumi was interrupted (exit code 255)"

    failing = AutomationAdapter(Recorder(), "D1", "database-rds", progress_interval=0)
    play(failing, recorded("pulumi_up_database_rds.jsonl"))
    assert failing.error_message is not None
    assert failing.error_message.startswith("creating RDS DB Instance (orders)")


# -- the resources list of stack.progress ----------------------------------------------------------


def _resource(
    sequence: int, name: str, step: str, op: OpType = OpType.CREATE, type_: str = "aws:s3/bucketV2:BucketV2"
) -> EngineEvent:
    """One step of a resource: ``pre`` (it starts), ``done`` (its outputs) or ``failed``."""
    metadata = StepEventMetadata(
        op=op, urn=f"urn:pulumi:dev::infra::{type_}::{name}", type=type_, provider=""
    )
    if step == "pre":
        return EngineEvent(sequence, 0, resource_pre_event=ResourcePreEvent(metadata))
    if step == "done":
        return EngineEvent(sequence, 0, res_outputs_event=ResOutputsEvent(metadata))
    return EngineEvent(sequence, 0, res_op_failed_event=ResOpFailedEvent(metadata, 1, 1))


def _entries(hooks: Recorder) -> list[dict[str, Any]]:
    return [entry for t, _, d in hooks.events if t == "stack.progress" for entry in d.get("resources", ())]


def test_300_resources_are_batched_capped_and_all_flushed_before_the_summary() -> None:
    """300 resources' 600 steps within one interval: a handful of events, none over 100 entries,
    every resource's last step (done, with its duration) sent before stack.deployed."""
    now = [0.0]
    hooks = Recorder()
    adapter = AutomationAdapter(hooks, "D1", "app", progress_interval=10, clock=lambda: now[0])
    sequence = 0
    for index in range(300):
        for step in ("pre", "done"):
            sequence += 1
            now[0] += 0.01
            adapter(_resource(sequence, f"bucket-{index:03}", step))
    adapter(EngineEvent(sequence + 1, 0, summary_event=SummaryEvent(False, 6, {OpType.CREATE: 300}, {})))

    types = _types(hooks)
    assert types[0] == "stack.started"
    assert types[-1] == "stack.deployed"
    progress = [d for t, _, d in hooks.events if t == "stack.progress"]
    # The first step at once; the other 300 resources in three full batches before the end.
    assert [len(p["resources"]) for p in progress] == [1, 100, 100, 100]
    assert all(p["resources_done"] == 300 for p in progress[1:])
    assert all(event_schemas.check_data("stack.progress", p) is None for p in progress)  # the document's
    last: dict[str, dict[str, Any]] = {}
    for entry in _entries(hooks):
        last[entry["name"]] = entry
    assert len(last) == 300
    assert {entry["status"] for entry in last.values()} == {"done"}
    assert last["bucket-007"]["duration_seconds"] == pytest.approx(0.01)
    assert last["bucket-007"]["operation"] == "create"


def test_long_and_non_ascii_names_are_cut_and_keep_each_event_small() -> None:
    """Names and types are cut to the documented length; entries are split by JSON size too."""
    hooks = Recorder()
    adapter = AutomationAdapter(hooks, "D1", "app", progress_interval=0)
    adapter(_resource(1, "x" * 500, "pre", type_="custom:module:" + "T" * 300))
    entry = _entries(hooks)[0]
    assert len(entry["name"]) == MAX_RESOURCE_TEXT
    assert entry["name"].endswith("…")
    assert len(entry["type"]) == MAX_RESOURCE_TEXT

    now = [0.0]
    wide = Recorder()
    adapter = AutomationAdapter(wide, "D1", "app", progress_interval=10, clock=lambda: now[0])
    for index in range(MAX_RESOURCES_PER_EVENT):  # one batch by count, several by size: é is \u00e9
        adapter(_resource(index + 1, f"{index:03}" + "é" * 200, "pre", type_="custom:module:" + "É" * 200))
    adapter.finish()
    progress = [d for t, _, d in wide.events if t == "stack.progress"]
    assert len(progress) > 2
    assert all(len(json.dumps(p["resources"])) <= MAX_RESOURCES_BYTES for p in progress)
    assert len(_entries(wide)) == MAX_RESOURCES_PER_EVENT
    assert len(json.dumps(progress[-1])) < 32_000  # one WebSocket frame


def test_a_failed_step_is_failed_and_a_step_whose_start_was_not_seen_has_no_duration() -> None:
    """resOpFailedEvent ends its resource as failed; an end without a start has no duration."""
    now = [100.0]
    hooks = Recorder()
    adapter = AutomationAdapter(hooks, "D1", "db", progress_interval=0, clock=lambda: now[0])
    adapter(_resource(1, "orders", "pre", type_="aws:rds/instance:Instance"))
    now[0] += 42.5
    adapter(_resource(2, "orders", "failed", type_="aws:rds/instance:Instance"))
    adapter(_resource(3, "logs", "done", op=OpType.SAME))
    entries = _entries(hooks)
    assert entries[1] == {
        "name": "orders",
        "type": "aws:rds/instance:Instance",
        "operation": "create",
        "status": "failed",
        "duration_seconds": 42.5,
    }
    assert entries[2] == {
        "name": "logs",
        "type": "aws:s3/bucketV2:BucketV2",
        "operation": "same",
        "status": "done",
    }


def test_steps_held_by_the_interval_are_sent_when_it_is_up_without_another_engine_event() -> None:
    """A resource that starts just after a progress event is shown running once the interval is
    up, even though the engine says nothing more (one long resource); cancel sends nothing twice."""
    hooks = Recorder()
    adapter = AutomationAdapter(hooks, "D1", "db", progress_interval=0.3)
    adapter(_resource(1, "subnets", "pre"))
    adapter(_resource(2, "database", "pre", type_="aws:rds/instance:Instance"))
    assert [e["name"] for e in _entries(hooks)] == ["subnets"]  # the second one is held
    deadline = time.monotonic() + 5
    while len(_entries(hooks)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    shown = [(e["name"], e["status"]) for e in _entries(hooks)]
    assert shown == [("subnets", "running"), ("database", "running")]
    adapter.cancel("interrupted")
    assert _types(hooks)[-1] == "stack.cancelled"
    assert len(_entries(hooks)) == 2
