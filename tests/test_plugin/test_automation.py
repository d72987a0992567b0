"""The Pulumi Automation API adapter, fed recorded engine event streams (Pulumi's JSON event
log, as ``stack.up(on_event=...)`` parses it into ``pulumi.automation`` event objects)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import (
    DiagnosticEvent,
    EngineEvent,
    OpType,
    PolicyEvent,
    ResOutputsEvent,
    StdoutEngineEvent,
    StepEventMetadata,
    SummaryEvent,
)

from plugin import AutomationAdapter
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
    """Every finished resource is progress; diagnostics are logs; the summary is stack.deployed."""
    hooks = Recorder(environment="dev")
    adapter = AutomationAdapter(hooks, "D1", "network", layer=1, progress_interval=0)

    play(adapter, recorded("pulumi_up_network.jsonl"))

    assert _types(hooks) == [
        "stack.started",
        "stack.progress",
        "log.created",
        "stack.progress",
        "stack.progress",
        "log.created",
        "stack.progress",
        "stack.progress",
        "stack.deployed",
    ]
    data = [event[2] for event in hooks.events]
    assert data[0] == {"stack_name": "network", "environment": "dev", "layer": 1}
    assert data[3] == {
        "stack_name": "network",
        "environment": "dev",
        "layer": 1,
        "resources_done": 2,
        "resources_in_progress": 1,
        "resource": "main",
        "resource_type": "aws:ec2/vpc:Vpc",
        "operation": "create",
    }
    assert data[2]["message"] == "Creating the VPC in us-east-1"
    assert data[5] == {  # Pulumi's colour markup is gone, the resource is named
        "level": "warning",
        "message": "map_public_ip_on_launch is deprecated",
        "stack_name": "network",
        "environment": "dev",
        "resource": "private-b",
        "resource_type": "aws:ec2/subnet:Subnet",
    }
    assert [d["resources_done"] for d in data if "resources_done" in d] == [1, 2, 3, 4, 5]
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
    """At most one progress event per interval; the final count is in stack.deployed anyway."""
    now = [0.0]
    hooks = Recorder()
    adapter = AutomationAdapter(hooks, "D1", "network", progress_interval=10, clock=lambda: now[0])

    play(adapter, recorded("pulumi_up_network.jsonl"))

    progress = [d for t, _, d in hooks.events if t == "stack.progress"]
    assert [p["resources_done"] for p in progress] == [1]
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
