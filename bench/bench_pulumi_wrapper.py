"""What ``cloud-ws pulumi`` adds to a ``pulumi up``: wall time, with the endpoint reachable and not.

The stand-in ``pulumi`` the tests also use (emulator/pulumi_standin.py) goes
through a 300-resource update (about 900 engine events, written to its
``--event-log`` at a realistic pace) three ways, ``RUNS`` times each, interleaved:

1. the stand-in alone (``pulumi up``);
2. through ``cloud-ws pulumi --`` with a real ``cloud-ws local`` to report to;
3. through ``cloud-ws pulumi --`` with outputs whose AWS endpoint refuses
   connections (nothing listens), so every event is retried until the
   wrapper's close deadline (``--close-timeout``, 3 s by default) and dropped.

Each run's wall time is measured from the parent's ``Popen`` to the exit. The
wrapper's own start (a Python interpreter, boto3's import) is part of what it
adds and is counted. Prints the medians and the added time per run; the
subscriber's view is not measured here (tests/test_plugin/test_pulumi_wrapper.py
checks what arrives).

Run: ``.venv/bin/python bench/bench_pulumi_wrapper.py [--runs N] [--pace SECONDS]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator import pulumi_standin as standin  # noqa: E402
from emulator.launcher import CLI, start_local_stack, stop_local_stack  # noqa: E402

RESOURCES = 300
RUNS = 5
#: Seconds between two engine events: 300 resources take ~9 s, a small real update's pace.
PACE = 0.01


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds from start to exit, and the exit code (stdout and stderr discarded)."""
    started = time.perf_counter()
    code = subprocess.run(
        argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ).returncode
    return time.perf_counter() - started, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--pace", type=float, default=PACE)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-pulumi-wrapper-"))
    fake = standin.install(work / "bin")
    events = standin.update_events("dev", RESOURCES, warning_at=150)
    env = {
        **os.environ,
        "PATH": standin.path_with(work / "bin"),
        **standin.scenario(work, events=events, pace=args.pace, stdout=["Updating (dev)\n"]),
    }
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(name, None)
    stack = start_local_stack(work)
    unreachable = work / "unreachable.json"
    unreachable.write_text(json.dumps({**stack.outputs, "aws_endpoint_url": "http://127.0.0.1:1"}))
    try:
        results: dict[str, list[float]] = {"alone": [], "reachable": [], "unreachable": []}
        for run in range(args.runs):
            alone, code = timed([str(fake), "up", "--yes", "-s", "dev"], env)
            assert code == 0
            results["alone"].append(alone)
            for label, outputs in (("reachable", stack.outputs_path), ("unreachable", unreachable)):
                argv = [*CLI, "pulumi", "--outputs", str(outputs), "--deployment-id", f"bench-{label}-{run}"]
                seconds, code = timed([*argv, "--", "up", "--yes", "-s", "dev"], env)
                assert code == 0, f"{label}: exit code {code}"
                results[label].append(seconds)
    finally:
        stop_local_stack(stack)

    print(
        f"{RESOURCES}-resource update, {len(events)} engine events, {args.pace * 1000:g} ms apart, {args.runs} runs"
    )
    base = statistics.median(results["alone"])
    print(f"  stand-in alone           median {base:6.2f} s")
    for label in ("reachable", "unreachable"):
        times = results[label]
        added = [wrapped - alone for wrapped, alone in zip(times, results["alone"], strict=True)]
        print(
            f"  cloud-ws pulumi, {label:<11} median {statistics.median(times):6.2f} s,"
            f" added median {statistics.median(added):5.2f} s (min {min(added):.2f}, max {max(added):.2f})"
        )


if __name__ == "__main__":
    main()
