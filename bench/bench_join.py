"""Joining a long deployment: time to a complete view, from the snapshot vs replaying the history.

A deployment of 5,000 events (status changes, stacks, mostly log lines) is
reported through the real plugin to `cloud-ws local`. Then a newcomer joins,
two ways, with a plain `websockets` client:

- **snapshot**: ``subscribe`` without ``since``: the ack and the
  ``deployment.snapshot`` (the state folded through the ack's ``seq``) are the
  complete view;
- **replay**: ``subscribe`` with ``since: 0``: the view is complete when every
  event up to the ack's ``seq`` has arrived (the server replays at most
  ``REPLAY_LIMIT`` per request, so the client asks again from where it got to).

Prints the time to a complete view and the bytes received for each, and their ratio.
Set BENCH_SMALL=1 for 1,000 events.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import connect  # noqa: E402

from emulator.launcher import LocalStackProcess, start_local_stack, stop_local_stack  # noqa: E402
from plugin import OrchestratorPlugin  # noqa: E402

EVENTS = 1_000 if os.environ.get("BENCH_SMALL") else 5_000
DEPLOYMENT = "JOIN5000"


def report(stack: LocalStackProcess) -> int:
    """A long deployment: 4 layers of 5 stacks, the rest log lines; returns its last seq."""
    with OrchestratorPlugin.from_outputs(stack.outputs_path, environment="dev") as plugin:
        plugin.deployment_started(DEPLOYMENT, total_layers=4)
        emitted = 1
        per_stack = (EVENTS - 2 - 4 * 5 * 2) // (4 * 5)
        for layer in range(1, 5):
            for index in range(5):
                name = f"stack-{layer}-{index}"
                plugin.stack_started(DEPLOYMENT, name, layer=layer)
                for line in range(per_stack):
                    plugin.log(DEPLOYMENT, f"{name}: step {line}", stack_name=name)
                plugin.stack_deployed(DEPLOYMENT, name, duration_seconds=1.0, resource_count=10, layer=layer)
                emitted += 2 + per_stack
        plugin.deployment_completed(DEPLOYMENT, "succeeded")
        emitted += 1
        assert plugin.flush(timeout=300), "the plugin could not deliver every event"
    return emitted


async def join(url: str, since: int | None, last: int) -> tuple[float, int]:
    """Seconds to a complete view, and bytes received."""
    start = time.perf_counter()
    received = 0
    async with connect(url, max_size=None, ping_interval=None) as ws:
        frame = {"action": "subscribe", "deployment_id": DEPLOYMENT}
        if since is not None:
            frame["since"] = since
        await ws.send(json.dumps(frame))
        have = 0
        while True:
            raw = await ws.recv()
            received += len(raw)
            for line in str(raw).split("\n"):
                message = json.loads(line)
                if message["type"] == "deployment.snapshot" and since is None:
                    assert message["seq"] == last and message["data"]["status"] == "succeeded", message
                    return time.perf_counter() - start, received
                if message.get("deployment_id") == DEPLOYMENT and message["type"] not in (
                    "subscribed",
                    "deployment.snapshot",
                ):
                    have = max(have, message["seq"])
            if since is not None:
                if have >= last:
                    return time.perf_counter() - start, received
                if message["seq"] == have:  # the capped replay ended: ask from where we got to
                    await ws.send(
                        json.dumps({"action": "subscribe", "deployment_id": DEPLOYMENT, "since": have})
                    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_local_stack(Path(tmp))
        try:
            emitted = report(stack)
            url = f"{stack.outputs['websocket_url']}?token={stack.token('bench')}"
            deadline = time.monotonic() + 300
            last = 0
            while last < emitted and time.monotonic() < deadline:  # wait until every event is stored
                ddb = stack.aws("dynamodb")
                table = next(n for n in ddb.list_tables()["TableNames"] if n.endswith("-events"))
                item = ddb.get_item(
                    TableName=table, Key={"deploymentId": {"S": DEPLOYMENT}, "seq": {"N": "0"}}
                )
                last = int(item.get("Item", {}).get("lastSeq", {"N": "0"})["N"])
                time.sleep(0.5)
            results = {}
            for label, since in (("snapshot", None), ("replay from since=0", 0)):
                runs = [asyncio.run(join(url, since, last)) for _ in range(3)]
                results[label] = min(runs)
            snap, replay = results["snapshot"], results["replay from since=0"]
            print(f"joining a deployment of {last:,} events (cloud-ws local, best of 3)")
            print(f"  snapshot:            complete view in {snap[0] * 1000:7.0f} ms, {snap[1]:>9,} bytes")
            print(
                f"  replay from since=0: complete view in {replay[0] * 1000:7.0f} ms, {replay[1]:>9,} bytes"
            )
            print(
                f"  replay / snapshot: {replay[0] / snap[0]:.0f}x the time, {replay[1] / snap[1]:.0f}x the bytes"
            )
        finally:
            stop_local_stack(stack)


if __name__ == "__main__":
    main()
