"""Plugin benchmarks (issue 5): what a hook call costs the orchestrator.

1. Hook call overhead, µs per call (p50 / p99 / max), for ``plugin.log(...)``
   versus a no-op function with the same signature:
   - bus healthy: a moto server in a separate process (real HTTP, so the
     sender thread does the same signing/serialization work as against AWS);
   - bus down: an endpoint that refuses connections, so the sender is retrying
     and the queue fills to its bound and sheds.
   Each is measured paced (1 call per ms, the sender gets the GIL between calls,
   as in a real deployment) and in a burst (back-to-back calls, worst case for
   GIL contention with the sender thread).
2. Hook → accepted by EventBridge latency against the local moto server
   (hook, then ``flush()``), for context: this is the plugin's share of the
   "tens of milliseconds" budget.

Prints figures and ratios. Run: ``.venv/bin/python bench/bench_plugin.py``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3

from plugin import DeliveryOptions, OrchestratorPlugin

REGION = "us-east-1"
BUS = "bench-bus"
MESSAGE = "created aws:ec2/subnet:Subnet private-a (subnet-0b7d41c9) in 2.3 s"
PACED_CALLS = 2_000
BURST_CALLS = 10_000
LATENCY_SAMPLES = 200
DOWN_QUEUE_BOUND = 5_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server in its own process (its CPU is not the orchestrator's)."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


def _noop(deployment_id: str, message: str, *, level: str = "info", stack_name: str | None = None) -> None:
    return None


def measure(call: Callable[[int], Any], count: int, pace: float | None) -> list[float]:
    """Per-call durations in µs; ``pace`` seconds between calls (None: back to back)."""
    durations: list[float] = []
    clock = time.perf_counter_ns
    gc.collect()  # every run starts from the same heap, whatever ran before it
    for index in range(count):
        start = clock()
        call(index)
        durations.append((clock() - start) / 1000)
        if pace:
            time.sleep(pace)
    return durations


def summary(durations: list[float]) -> dict[str, float]:
    ordered = sorted(durations)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[int(len(ordered) * 0.99) - 1],
        "max": ordered[-1],
    }


def _row(name: str, figures: dict[str, float], baseline: dict[str, float] | None) -> str:
    ratio = (
        ""
        if baseline is None
        else f"   x{figures['p50'] / baseline['p50']:>6.0f} / x{figures['p99'] / baseline['p99']:>5.0f}"
    )
    return f"  {name:<34} {figures['p50']:>8.2f} {figures['p99']:>9.2f} {figures['max']:>10.1f}{ratio}"


class GcPauses:
    """Records garbage-collection pauses: a gen-2 pass over boto3's loaded service models is
    the one multi-millisecond stall any thread of a boto3 process can see."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], (time.perf_counter() - self._started) * 1000))

    def longest(self, generation: int) -> float:
        return max((ms for gen, ms in self.pauses if gen == generation), default=0.0)


def main() -> None:
    # The bus-down runs make the plugin warn (rate-limited); the figures are the output here.
    logging.getLogger("cloud_ws.plugin").setLevel(logging.ERROR)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    results: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    gc_pauses = GcPauses()

    with moto_server() as endpoint:
        boto3.client("events", region_name=REGION, endpoint_url=endpoint).create_event_bus(Name=BUS)
        for mode, count, pace in (("paced", PACED_CALLS, 0.001), ("burst", BURST_CALLS, None)):
            results[f"no-op function, {mode}"] = summary(
                measure(lambda i: _noop("D1", MESSAGE, level="info", stack_name="network"), count, pace)
            )

            healthy = OrchestratorPlugin(BUS, region=REGION, endpoint_url=endpoint)
            healthy.log("D1", "warm-up")
            healthy.flush(10)  # client built, connection open: measure the steady state
            results[f"plugin.log, bus healthy, {mode}"] = summary(
                measure(
                    lambda i, p=healthy: p.log("D1", MESSAGE, level="info", stack_name="network"), count, pace
                )
            )
            healthy.close(30)
            stats = healthy.stats
            notes.append(
                f"healthy {mode}: {stats.sent}/{stats.accepted} sent in {stats.put_calls} PutEvents calls "
                f"({stats.sent / max(stats.put_calls, 1):.1f} events per call, packed when the plugin fell behind), {stats.dropped} dropped"
            )

            down = OrchestratorPlugin(
                BUS,
                region=REGION,
                endpoint_url=f"http://127.0.0.1:{_free_port()}",  # nothing listens: connection refused
                # A bound below the burst, so the measurement includes shedding.
                options=DeliveryOptions(connect_timeout=0.5, max_queue_events=DOWN_QUEUE_BOUND),
            )
            down.log("D1", "warm-up")
            time.sleep(0.5)  # let the sender reach its retry loop
            results[f"plugin.log, bus down, {mode}"] = summary(
                measure(
                    lambda i, p=down: p.log("D1", MESSAGE, level="info", stack_name="network"), count, pace
                )
            )
            down.close(0.1)
            stats = down.stats
            notes.append(
                f"down {mode}: {stats.sent} sent, {stats.queued + stats.in_flight + stats.abandoned} held "
                f"until close, {stats.dropped} dropped (bound {down.options.max_queue_events})"
            )

        latency_plugin = OrchestratorPlugin(BUS, region=REGION, endpoint_url=endpoint)
        latency_plugin.log("D1", "warm-up")
        latency_plugin.flush(10)
        latencies: list[float] = []
        for index in range(LATENCY_SAMPLES):
            start = time.perf_counter_ns()
            latency_plugin.log("D1", f"latency {index}")
            latency_plugin.flush(5)
            latencies.append((time.perf_counter_ns() - start) / 1e6)
        latency_plugin.close(5)

    print("Hook call overhead (µs per call)")
    print(f"  {'':<34} {'p50':>8} {'p99':>9} {'max':>10}   vs no-op p50 / p99")
    for mode in ("paced", "burst"):
        baseline = results[f"no-op function, {mode}"]
        for name in (
            f"no-op function, {mode}",
            f"plugin.log, bus healthy, {mode}",
            f"plugin.log, bus down, {mode}",
        ):
            print(_row(name, results[name], None if name.startswith("no-op") else baseline))
    healthy_paced = results["plugin.log, bus healthy, paced"]
    down_paced = results["plugin.log, bus down, paced"]
    print(f"  bus down / bus healthy (paced p50): x{down_paced['p50'] / healthy_paced['p50']:.2f}")
    print()
    print("Delivery during the runs")
    for note in notes:
        print(f"  {note}")
    print()
    print(
        f"Garbage collection during the runs: {sum(1 for g, _ in gc_pauses.pauses if g == 2)} gen-2 passes, "
        f"longest {gc_pauses.longest(2):.1f} ms ({len(gc.get_objects()):,} objects tracked); "
        f"longest gen-0/1 pass {max(gc_pauses.longest(0), gc_pauses.longest(1)):.1f} ms"
    )
    print()
    lat = sorted(latencies)
    print(
        f"Hook -> accepted by EventBridge (local moto server, {LATENCY_SAMPLES} samples): "
        f"p50 {statistics.median(lat):.1f} ms, p99 {lat[int(len(lat) * 0.99) - 1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
