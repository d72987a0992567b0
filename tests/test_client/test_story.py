"""One deployment's story, end to end against a real `cloud-ws local`: the demo fails in layer 3,
a re-run on the same id succeeds, and every view (snapshot, live monitor, a late monitor, the
list) agrees that attempt 2 succeeded."""

from __future__ import annotations

import json
import time

import pytest

from cloud_ws_client import (
    CloudWebSocketClient,
    DeploymentSnapshot,
    DeploymentState,
    Event,
    Message,
    parse_message,
)
from plugin import OrchestratorPlugin
from tests.support.local_stack import DEMO_SPEED, LocalStackProcess, cloud_ws, finish
from tests.support.waiting import PATIENCE
from tests.test_client.conftest import Tokens, deployment, next_message, options

pytestmark = pytest.mark.slow


async def snapshot_of(stack: LocalStackProcess, tokens: Tokens, deployment_id: str) -> DeploymentSnapshot:
    """What a newcomer is shown: the snapshot after its subscription's ack."""
    client = CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=options())
    async with client:
        await client.subscribe(deployment_id)
        stream = client.messages()
        while not isinstance(message := await next_message(stream), DeploymentSnapshot):
            pass
    return message


def rerun_succeeds(stack: LocalStackProcess, deployment_id: str) -> None:
    """A second, successful run of the deployment, reported through the orchestrator plugin."""
    plugin = OrchestratorPlugin.from_outputs(stack.outputs_path, environment="dev")
    plugin.deployment_started(deployment_id, total_layers=2)
    for layer, name in ((1, "vpc"), (2, "database-rds")):
        plugin.deployment_status(deployment_id, "deploying", current_layer=layer, total_layers=2)
        plugin.stack_started(deployment_id, name, layer=layer)
        plugin.log(deployment_id, f"{name}: created", stack_name=name)
        plugin.stack_deployed(deployment_id, name, layer=layer, duration_seconds=1.5, resource_count=3)
    plugin.deployment_completed(deployment_id, "succeeded", duration_seconds=6.0)
    assert plugin.close(30)
    assert plugin.stats.sent == plugin.stats.accepted


def fold(messages: list[Message]) -> DeploymentState:
    """What the monitor's JSON lines describe: its first snapshot, then the events on top."""
    first = next(m for m in messages if isinstance(m, DeploymentSnapshot))
    state = DeploymentState.from_snapshot(first)
    for message in messages:
        if isinstance(message, Event):
            state.apply(message)
    return state


async def test_a_failed_deployment_run_again_succeeds_in_every_view(
    stack: LocalStackProcess, tokens: Tokens
) -> None:
    """demo (fails in layer 3) → re-run through the plugin (succeeds): attempt 2 succeeded for all."""
    dep = f"D{deployment()}"
    outputs = str(stack.outputs_path)
    code, _, err = finish(cloud_ws("demo", dep, "--outputs", outputs, "--speed", DEMO_SPEED))
    assert code == 0, err

    # Given: the demo's failure is folded (the broadcaster may still be draining its last events).
    deadline = time.monotonic() + PATIENCE
    while (first := await snapshot_of(stack, tokens, dep)).data["status"] != "failed":
        assert time.monotonic() < deadline, f"the demo's failure never reached the snapshot: {first.data}"
    assert (first.data["attempt"], first.data["current_layer"]) == (1, 3)
    assert first.data["stacks"]["database-rds"]["status"] == "failed"

    # A monitor started now, after the end, exits at once with that outcome.
    code, out, err = finish(cloud_ws("monitor", dep, "--outputs", outputs, "--until-complete"))
    assert code == 1, err
    assert out.splitlines()[-1] == f"deployment {dep} failed (attempt 1)"

    # A live monitor, started before the re-run.
    live = cloud_ws("monitor", dep, "--outputs", outputs, "--json")
    try:
        assert live.stdout is not None
        lines = [live.stdout.readline(), live.stdout.readline()]
        assert [json.loads(line)["type"] for line in lines] == ["subscribed", "deployment.snapshot"]

        # When: the same id is run again and succeeds.
        rerun_succeeds(stack, dep)

        # Then: the live monitor saw attempt 2 start and end (it reads on until the success).
        while '"succeeded"' not in lines[-1]:
            line = live.stdout.readline()
            assert line, f"the live monitor stopped: {live.stderr.read() if live.stderr else ''}"
            lines.append(line)
    finally:
        live.terminate()
        live.wait(timeout=30)
    watched = fold([parse_message(line) for line in lines])
    assert (watched.attempt, watched.status, watched.current_layer) == (2, "succeeded", 2)
    assert sorted(watched.stacks) == ["database-rds", "vpc"]
    assert all(stack.status == "deployed" for stack in watched.stacks.values())

    # The snapshot a newcomer gets says the same, with attempt 1's stacks and logs gone.
    deadline = time.monotonic() + PATIENCE
    while (last := await snapshot_of(stack, tokens, dep)).data["status"] != "succeeded":
        assert time.monotonic() < deadline, f"the re-run never reached the snapshot: {last.data}"
    assert (last.data["attempt"], last.data["current_layer"], last.data["total_layers"]) == (2, 2, 2)
    assert {name: s["status"] for name, s in last.data["stacks"].items()} == {
        "vpc": "deployed",
        "database-rds": "deployed",
    }
    assert last.data["log_counts"] == {"info": 2}
    assert watched.to_snapshot() == last.data

    # A fresh monitor --until-complete exits 0 at once.
    code, out, err = finish(cloud_ws("monitor", dep, "--outputs", outputs, "--until-complete"))
    assert code == 0, err
    assert out.splitlines()[-1] == f"deployment {dep} succeeded (attempt 2)"

    # And the list shows it with attempt 2.
    code, out, err = finish(cloud_ws("list", "--outputs", outputs, "--json"))
    assert code == 0, err
    row = next(row for row in json.loads(out) if row["deployment_id"] == dep)
    assert (row["status"], row["attempt"], row["current_layer"], row["total_layers"]) == (
        "succeeded",
        2,
        2,
        2,
    )
