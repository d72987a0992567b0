"""Bench helper: one warm "Lambda container" serving fan-out tasks, for the cloud model.

Reads JSON lines ``{"start_at": epoch, "payload": {...}}`` on stdin; for each,
waits until ``start_at`` (the modelled asynchronous-invocation delay), then runs
the broadcaster's real ``FanOut.run`` with the real lean poster against the
stand-in, and prints ``{"done": n, "cpu": seconds}``. Retries of connections that
keep failing run in the same container (there is no Lambda to hand them to).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from botocore.credentials import Credentials

from bench.model_store import ModelStore
from contract import spec
from server.fanout import FanOut, FanOutTask
from server.management import ManagementApi


def main() -> None:
    endpoint, concurrency = sys.argv[1], int(sys.argv[2])
    api = ManagementApi(
        endpoint, "us-east-1", concurrency=concurrency, credentials=Credentials("AKIDMODEL", "model-secret")
    )
    fanout = FanOut(ModelStore(0, 0.0), api, page_size=10**9, max_attempts=10, dispatch=None)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        order = json.loads(line)
        time.sleep(max(0.0, order["start_at"] - time.time()))
        before = resource.getrusage(resource.RUSAGE_SELF)
        task = FanOutTask.from_payload(order["payload"][spec.FANOUT_TASK_KEY])
        summary = fanout.run(task, remaining_seconds=60)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        print(json.dumps({"done": summary.delivered, "posts": summary.posts, "cpu": cpu}), flush=True)


if __name__ == "__main__":
    main()
