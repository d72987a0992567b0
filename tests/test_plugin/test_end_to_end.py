"""The plugin against a real `cloud-ws local`, built from nothing but its outputs file, watched
through a plain WebSocket subscription: hook order is seq order, a retried event is shown
once, a huge log line is one frame, and `cloud-ws demo` plays a whole deployment."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from websockets.sync.client import connect

from contract.protocol import TERMINAL_STATUSES
from plugin import OrchestratorPlugin
from plugin.envelope import FRAME_BYTES
from tests.support import asyncapi
from tests.support.local_stack import CLI, LocalStackProcess, start_local_stack, stop_local_stack
from tests.test_plugin.conftest import FAST

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackProcess]:
    """One local stack for this module."""
    stack = start_local_stack(tmp_path_factory.mktemp("plugin-local"))
    yield stack
    stop_local_stack(stack)


@pytest.fixture(autouse=True)
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a developer laptop: the plugin must reach the local stack without any."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def watch(local: LocalStackProcess, deployment_id: str, timeout: float = 60.0) -> list[str]:
    """Raw messages of a deployment from seq 1 (replayed, then live), in seq order, up to its
    terminal status. While a replay is being sent a live event may come first, or twice;
    like any client, this orders by seq and drops a seq it already has."""
    frames: dict[int, str] = {}
    terminal: int | None = None
    deadline = time.monotonic() + timeout
    with connect(f"{local.outputs['websocket_url']}?token={local.token()}") as ws:
        ws.send(json.dumps({"action": "subscribe", "deployment_id": deployment_id, "since": 0}))
        while terminal is None or len(frames) < terminal:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{deployment_id}: seqs {sorted(frames)}, terminal at {terminal}")
            received = ws.recv(timeout=remaining)
            assert isinstance(received, str)
            for frame in received.split("\n"):  # a server frame carries one or more messages
                message = json.loads(frame)
                asyncapi.validate_server_message(message)  # every message, acks and snapshot too
                if "seq" not in message or message["type"] in ("subscribed", "deployment.snapshot"):
                    continue
                seen = frames.get(message["seq"])
                if seen is not None:  # a live event also in the replay: clients drop it (docs/design.md)
                    assert json.loads(seen)["event_id"] == message["event_id"]
                    continue
                frames[message["seq"]] = frame
                if (
                    message["type"] == "deployment.status"
                    and message["data"].get("status") in TERMINAL_STATUSES
                ):
                    terminal = message["seq"]
    return [frames[seq] for seq in sorted(frames)]


class LostReplies:
    """A real client that loses the reply to the first delivery of every event: the entry
    was delivered, the plugin hears it failed and sends it again (same event_id)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.sent: dict[str, int] = {}

    def put_events(self, *, Entries: list[dict[str, str]]) -> dict[str, Any]:
        reply: dict[str, Any] = self.real.put_events(Entries=Entries)
        results = []
        for entry, result in zip(Entries, reply["Entries"], strict=True):
            event_id = json.loads(entry["Detail"])["event_id"]
            self.sent[event_id] = self.sent.get(event_id, 0) + 1
            first = self.sent[event_id] == 1
            results.append({"ErrorCode": "InternalFailure"} if first else result)
        failed = sum("ErrorCode" in r for r in results)
        return {"FailedEntryCount": failed, "Entries": results}


def test_hook_order_is_seq_order_and_a_huge_log_is_one_frame(local: LocalStackProcess) -> None:
    """Built from the outputs file alone; every event shown once, in hook order, seq 1, 2, 3..."""
    deployment = "E2E-ORDER"
    with OrchestratorPlugin.from_outputs(local.outputs_path, environment="dev", options=FAST) as plugin:
        ids = [plugin.deployment_started(deployment, total_layers=1)]
        ids.append(plugin.stack_started(deployment, "network", layer=1))
        ids += [plugin.log(deployment, f"line {index}", stack_name="network") for index in range(20)]
        ids.append(plugin.log(deployment, 'é🚀"\n' * 300_000, level="error", stack_name="network"))
        ids.append(plugin.stack_failed(deployment, "network", "Subnet not found", duration_seconds=3))
        ids.append(plugin.deployment_completed(deployment, "failed"))
    assert plugin.stats.sent == len(ids)

    frames = watch(local, deployment)

    messages = [json.loads(frame) for frame in frames]
    assert [m["event_id"] for m in messages] == ids
    assert [m["seq"] for m in messages] == list(range(1, len(ids) + 1))
    big = frames[22]
    assert len(big.encode("utf-8")) <= FRAME_BYTES
    assert json.loads(big)["data"]["truncated"] is True


def test_an_event_sent_twice_is_shown_once(local: LocalStackProcess) -> None:
    """A retry after a lost reply resends the same event_id; the broadcaster keeps the first."""
    deployment = "E2E-RETRY"
    real = boto3.client(
        "events",
        endpoint_url=local.outputs["aws_endpoint_url"],
        region_name=local.outputs["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    client = LostReplies(real)
    with OrchestratorPlugin.from_outputs(local.outputs, client=client, options=FAST) as plugin:
        ids = [plugin.deployment_started(deployment, total_layers=1)]
        ids.append(plugin.deployment_completed(deployment, "succeeded"))
    assert client.sent == dict.fromkeys(ids, 2)  # each event really reached the bus twice

    messages = [json.loads(frame) for frame in watch(local, deployment)]
    assert [m["event_id"] for m in messages] == ids
    assert [m["seq"] for m in messages] == [1, 2]


def test_cloud_ws_demo_plays_a_deployment_to_its_failure(local: LocalStackProcess) -> None:
    """The command a person runs to see the product: layers, logs, one failure, the end."""
    result = subprocess.run(
        [*CLI, "demo", "E2E-DEMO", "--outputs", str(local.outputs_path), "--speed", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    messages = [json.loads(frame) for frame in watch(local, "E2E-DEMO")]
    assert f"{len(messages)} events delivered" in result.stdout
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert [m["type"] for m in messages].count("stack.failed") == 1
    assert messages[-1]["data"]["status"] == "failed"
    layers = {m["data"].get("current_layer") for m in messages if m["type"] == "deployment.status"}
    assert {1, 2, 3} <= layers
