"""Cloud model: one event to N subscribers, time to the last delivery against API Gateway's throttle.

What runs for real: the broadcaster's fan-out (``server.fanout.FanOut``:
shares of subscribers, hand-over to other invocations, retry rounds) and the
lean poster (``server.management.ManagementApi``: SigV4-signed posts over
kept-alive connections, 429s retried with backoff), against a stand-in for the
@connections API in its own process that answers after 20 ms and applies the
account's token bucket (10,000 posts/s, 5,000 burst, 429 beyond it).

What is modelled: a DynamoDB Query page of subscribers takes ``QUERY_MS``; a
Lambda ``Invoke`` call takes ``INVOKE_CALL_MS`` and the invoked (warm)
function starts ``INVOKE_START_MS`` after it; each "invocation" is a warm
worker process. Every figure is from the moment the broadcaster starts the
fan-out (the event is stored) to the stand-in's last 200.

This machine has 2 cores for the coordinator, every worker and the stand-in,
where AWS gives each invocation its own CPU; the CPU the posts took is printed
so the contention can be judged. Prints, for each N, T_last beside the floor
max(0, N - 5,000) / 10,000 s that the throttle alone imposes.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from botocore.credentials import Credentials  # noqa: E402

from bench.model_store import ModelStore  # noqa: E402
from contract import spec  # noqa: E402
from contract.events import DeploymentEvent, SequencedEvent  # noqa: E402
from server.fanout import FanOut, FanOutTask  # noqa: E402
from server.management import ManagementApi  # noqa: E402

QUERY_MS = float(os.environ.get("QUERY_MS", 8))
INVOKE_CALL_MS = float(os.environ.get("INVOKE_CALL_MS", 15))
INVOKE_START_MS = float(os.environ.get("INVOKE_START_MS", 40))
CONCURRENCY = int(os.environ.get("CONCURRENCY", 64))
PAGE = int(os.environ.get("PAGE", spec.DELIVERY.fanout_page_size))
SIZES = [int(n) for n in os.environ.get("SIZES", "1000,10000").split(",")]
RUNS = int(os.environ.get("RUNS", 3))


class Process:
    """A helper process spoken to in JSON lines."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        result: dict[str, Any] = json.loads(self.process.stdout.readline())
        return result

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def event() -> list[SequencedEvent]:
    """One terminal status, as the broadcaster stored it."""
    parsed = DeploymentEvent(
        "deployment.status",
        "D1BRV40",
        "ev-1",
        {"status": "succeeded", "current_layer": 4, "total_layers": 4},
        "2026-12-02T10:00:00Z",
    )
    return [SequencedEvent(parsed, 138, parsed.render(138))]


def run(n: int, standin: Process, endpoint: str, workers: list[Process]) -> dict[str, Any]:
    standin.send("reset")
    standin.read()
    busy: list[Process] = []
    lock = threading.Lock()

    def dispatch(task: FanOutTask) -> None:
        time.sleep(INVOKE_CALL_MS / 1000)  # the Invoke call's round trip
        with lock:  # a share per warm container; a retry goes to the next one along
            worker = workers[len(busy) % len(workers)]
            busy.append(worker)
        worker.send(json.dumps({"start_at": time.time() + INVOKE_START_MS / 1000, "payload": task.payload()}))

    api = ManagementApi(
        endpoint, "us-east-1", concurrency=CONCURRENCY, credentials=Credentials("AKIDMODEL", "s")
    )
    fanout = FanOut(ModelStore(n, QUERY_MS / 1000), api, PAGE, 10, dispatch, query_page_size=1000)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.time()
    summary = fanout.broadcast("D1BRV40", event())
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    coordinator_cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    worker_cpu = 0.0
    posts = summary.posts
    for worker in busy:
        done = worker.read()
        worker_cpu += done["cpu"]
        posts += done["posts"]
    deadline = time.time() + 30
    while True:
        standin.send("report")
        report = standin.read()
        if report["connections"] >= n or time.time() > deadline:
            break
        time.sleep(0.05)
    return {
        "t_last": report["last_delivery"] - start,
        "delivered": report["connections"],
        "throttled": report["throttled"],
        "invocations": 1 + summary.tasks,
        "cpu_per_post_us": (coordinator_cpu + worker_cpu) / max(1, posts) * 1e6,
        "posts": posts,
    }


def main() -> None:
    standin = Process("bench/apigw_standin.py", "--latency", "0.020", "--rate", "10000", "--burst", "5000")
    port = standin.read()["port"]
    endpoint = f"http://127.0.0.1:{port}/model"
    most = max(math.ceil(n / PAGE) - 1 for n in SIZES)
    workers = [Process("bench/fanout_worker.py", endpoint, str(CONCURRENCY)) for _ in range(most)]
    try:
        for worker in workers:
            worker.read()  # warm: imports done, like a warm container
        print(
            f"cloud model: stand-in 20 ms per post, token bucket 10,000/s + 5,000 burst; shares of {PAGE}, "
            f"{CONCURRENCY} posts in flight per invocation; Query {QUERY_MS:.0f} ms/page, "
            f"Invoke {INVOKE_CALL_MS:.0f} ms + start {INVOKE_START_MS:.0f} ms (modelled)"
        )
        for n in SIZES:
            results = []
            for _ in range(RUNS):
                run(n, standin, endpoint, workers)  # warm the connections of this share layout
                results.append(run(n, standin, endpoint, workers))
                time.sleep(1)  # the bucket refills
            best = min(results, key=lambda r: r["t_last"])
            floor = max(0, n - 5000) / 10000
            print(
                f"  N={n:>6,}: T_last {best['t_last']:.3f} s (best of {RUNS}; all "
                f"{', '.join(format(r['t_last'], '.3f') for r in results)}), floor {floor:.3f} s, "
                f"{best['invocations']} invocations, delivered {best['delivered']:,}, "
                f"throttled posts {best['throttled']:,}, CPU {best['cpu_per_post_us']:.0f} µs/post"
            )
    finally:
        for worker in workers:
            worker.stop()
        standin.stop()


if __name__ == "__main__":
    main()
