"""`cloud-ws local` benchmarks (issue: the local stack).

Everything runs for real: the stack in its own process (moto, the emulator, the
real handlers), clients in another process (plain `websockets`), events put on
the bus with boto3. Prints figures and ratios:

1. time from PutEvents to receipt, for 1 and for 1,000 subscribers;
2. delivered messages per second to 1,000 subscribers, as a ratio to a bare
   `websockets.broadcast()` server reaching the same 1,000 client connections in
   the same run;
3. handshakes per second with real Cognito token verification (and a DynamoDB
   write) vs bare handshakes;
4. server memory per idle connection at 10,000 connections, vs the bare server.

Set BENCH_SMALL=1 for a quick run with fewer connections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.launcher import LocalStackProcess, start_local_stack, stop_local_stack  # noqa: E402

SMALL = bool(os.environ.get("BENCH_SMALL"))
FANOUT = 100 if SMALL else 1_000
IDLE = 500 if SMALL else 10_000
HANDSHAKES = 100 if SMALL else 300
EVENTS = 10


class Helper:
    """A helper script in its own process, spoken to in JSON lines."""

    def __init__(self, script: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def send(self, command: dict[str, Any] | str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((command if isinstance(command, str) else json.dumps(command)) + "\n")
        self.process.stdin.flush()
        return self.read()

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("helper exited")
        result: dict[str, Any] = json.loads(line)
        return result

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def put_events(stack: LocalStackProcess, deployment: str, count: int) -> float:
    """Put ``count`` events in one PutEvents call; returns the time just before the call."""
    events = stack.aws("events")
    entries = []
    sent_at = time.time()
    for i in range(count):
        detail = {
            "deployment_id": deployment,
            "event_id": str(uuid.uuid4()),
            "data": {"sent_at": sent_at, "i": i},
        }
        entries.append(
            {
                "Source": stack.outputs["event_source"],
                "DetailType": "log.created",
                "Detail": json.dumps(detail),
                "EventBusName": stack.outputs["event_bus_name"],
            }
        )
    for start in range(0, len(entries), 10):
        reply = events.put_events(Entries=entries[start : start + 10])
        assert reply["FailedEntryCount"] == 0, reply
    return sent_at


def quiesce(stack: LocalStackProcess, timeout: float = 300) -> None:
    """Wait until every closed connection's $disconnect has run (they queue behind each other)."""
    ddb = stack.aws("dynamodb")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = ddb.scan(TableName=stack.outputs["connections_table_name"], Select="COUNT")["Count"]
        if count == 0 and not stack.connections():
            return
        time.sleep(0.5)
    raise RuntimeError("the stack did not settle")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def latency(stack: LocalStackProcess, url: str, subscribers: int) -> dict[str, float]:
    """Events one at a time (each after the previous reached everyone): PutEvents → receipt."""
    clients = Helper("ws_clients.py")
    deployment = f"LAT{uuid.uuid4().hex[:8].upper()}"
    try:
        clients.send(
            {"cmd": "open", "url": url, "n": subscribers, "subscribe": deployment, "concurrency": 50}
        )
        p50s, p99s, maxes = [], [], []
        for i in range(5):
            clients.send({"cmd": "reset"})
            put_events(stack, deployment, 1)
            result = clients.send({"cmd": "wait", "count": subscribers, "timeout": 60})
            assert result["received"] == subscribers, result
            if i:  # the first event warms the broadcaster's clients and pools
                p50, p99, worst = result["latencies"]
                p50s.append(p50)
                p99s.append(p99)
                maxes.append(worst)
        return {"p50": sorted(p50s)[len(p50s) // 2], "p99": sorted(p99s)[len(p99s) // 2], "max": max(maxes)}
    finally:
        clients.send({"cmd": "close"})
        clients.stop()
        quiesce(stack)


def throughput(stack: LocalStackProcess, url: str, bare_port: int, bare: Helper) -> tuple[float, float]:
    """Messages/s delivered to FANOUT connections: local stack vs bare broadcast, same clients process."""
    deployment = f"TPT{uuid.uuid4().hex[:8].upper()}"
    clients = Helper("ws_clients.py")
    try:
        clients.send({"cmd": "open", "url": url, "n": FANOUT, "subscribe": deployment, "concurrency": 50})
        put_events(stack, deployment, 1)  # warm-up
        clients.send({"cmd": "wait", "count": FANOUT, "timeout": 60})
        clients.send({"cmd": "reset"})
        start = put_events(stack, deployment, EVENTS)
        result = clients.send({"cmd": "wait", "count": FANOUT * EVENTS, "timeout": 300})
        assert result["received"] == FANOUT * EVENTS, result
        stack_rate = FANOUT * EVENTS / (result["last_received"] - start)
        clients.send({"cmd": "close"})
        quiesce(stack)

        clients.send({"cmd": "reset"})
        clients.send({"cmd": "open", "url": f"ws://127.0.0.1:{bare_port}/", "n": FANOUT, "concurrency": 50})
        started = bare.send(f"broadcast {EVENTS}")["broadcast_started"]
        result = clients.send({"cmd": "wait", "count": FANOUT * EVENTS, "timeout": 60})
        assert result["received"] == FANOUT * EVENTS, result
        bare_rate = FANOUT * EVENTS / (result["last_received"] - started)
        return stack_rate, bare_rate
    finally:
        clients.send({"cmd": "close"})
        clients.stop()


def handshakes(stack_process: LocalStackProcess, url: str, bare_port: int) -> tuple[float, float]:
    clients = Helper("ws_clients.py")
    try:
        stack = clients.send({"cmd": "open", "url": url, "n": HANDSHAKES, "concurrency": 20})
        clients.send({"cmd": "close"})
        quiesce(stack_process)
        bare = clients.send(
            {"cmd": "open", "url": f"ws://127.0.0.1:{bare_port}/", "n": HANDSHAKES, "concurrency": 20}
        )
        return HANDSHAKES / stack["seconds"], HANDSHAKES / bare["seconds"]
    finally:
        clients.send({"cmd": "close"})
        clients.stop()


def memory(stack: LocalStackProcess, url: str, bare_port: int, bare: Helper) -> tuple[float, float]:
    """KiB of server RSS per idle connection at IDLE connections."""
    clients = Helper("ws_clients.py")
    try:
        time.sleep(1)
        before = rss_kib(stack.process.pid)
        clients.send({"cmd": "open", "url": url, "n": IDLE, "concurrency": 50})
        time.sleep(2)
        after = rss_kib(stack.process.pid)
        assert len(stack.connections()) >= IDLE
        clients.send({"cmd": "close"})

        bare_before = bare.send("rss")["rss_kib"]
        clients.send({"cmd": "open", "url": f"ws://127.0.0.1:{bare_port}/", "n": IDLE, "concurrency": 50})
        time.sleep(2)
        bare_after = bare.send("rss")
        assert bare_after["connections"] >= IDLE, bare_after
        return (after - before) / IDLE, (bare_after["rss_kib"] - bare_before) / IDLE
    finally:
        clients.send({"cmd": "close"})
        clients.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_local_stack(Path(tmp))
        bare = Helper("bare_server.py")
        try:
            bare_port = bare.read()["port"]
            url = f"{stack.outputs['websocket_url']}?token={stack.token('bench')}"

            one = latency(stack, url, 1)
            many = latency(stack, url, FANOUT)
            print("1. PutEvents → receipt (median of 4 events, each after the previous was delivered)")
            print(f"   1 subscriber:      p50 {ms(one['p50'])}, max {ms(one['max'])}")
            print(
                f"   {FANOUT} subscribers: p50 {ms(many['p50'])}, p99 {ms(many['p99'])}, "
                f"last subscriber {ms(many['max'])}"
            )

            stack_rate, bare_rate = throughput(stack, url, bare_port, bare)
            print(f"2. delivered messages/s to {FANOUT} connections ({EVENTS} events)")
            print(
                f"   local stack {stack_rate:,.0f}/s; bare websockets.broadcast {bare_rate:,.0f}/s; "
                f"ratio {stack_rate / bare_rate:.3f} ({bare_rate / stack_rate:.0f}x slower)"
            )

            with_auth, bare_hs = handshakes(stack, url, bare_port)
            print(f"3. handshakes/s ({HANDSHAKES}, 20 at a time)")
            print(
                f"   with token verification + DynamoDB {with_auth:,.0f}/s; bare {bare_hs:,.0f}/s; "
                f"ratio {with_auth / bare_hs:.2f}"
            )

            per_conn, bare_per_conn = memory(stack, url, bare_port, bare)
            print(f"4. server memory per idle connection at {IDLE:,} connections")
            print(
                f"   local stack {per_conn:.1f} KiB; bare websockets {bare_per_conn:.1f} KiB; "
                f"ratio {per_conn / bare_per_conn:.1f}"
            )
        finally:
            bare.stop()
            stop_local_stack(stack)


if __name__ == "__main__":
    main()
