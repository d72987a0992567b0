"""A stand-in ``pulumi`` for ``cloud-ws pulumi``: engine event logs written from the engine's
event schema (Pulumi's ``sdk/go/common/apitype/events.go``), and a small executable that
writes one to its ``--event-log`` at a realistic pace, prints its own output, and exits with
the code it is told. The tests and bench/bench_pulumi_wrapper.py share it: it lives here,
outside the tests, so the benchmark does not import the tests' helpers, and
``tests.test_plugin.pulumi_standin`` re-exports it under the tests' import path.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

PROJECT = "infra"

#: What the stand-in does: its environment variable points at a JSON scenario file.
SCENARIO_ENV = "PULUMI_STANDIN_SCENARIO"


def urn(stack: str, type_: str, name: str) -> str:
    """The URN the engine gives resource ``name`` of ``type_`` in ``stack`` of the stand-in's project."""
    return f"urn:pulumi:{stack}::{PROJECT}::{type_}::{name}"


def _metadata(stack: str, type_: str, name: str, op: str) -> dict[str, Any]:
    return {"op": op, "urn": urn(stack, type_, name), "type": type_, "provider": ""}


def update_events(
    stack: str = "dev",
    resources: int = 5,
    *,
    fail_at: int | None = None,
    error: str = "creating RDS DB Instance (orders): InvalidSubnet: Subnet not found: subnet-0b7d41",
    warning_at: int | None = None,
    start: int = 1_795_687_200,
) -> list[dict[str, Any]]:
    """The engine events of one ``pulumi up`` creating ``resources`` resources.

    With ``fail_at``, that resource's create fails (an error diagnostic naming it, then
    ``resOpFailedEvent``), the engine says "update failed" and the summary follows, as
    the engine does; the event log always ends with ``cancelEvent``.
    """
    events: list[dict[str, Any]] = []

    def add(kind: str, body: dict[str, Any]) -> None:
        events.append({"sequence": len(events), "timestamp": start + len(events) // 4, kind: body})

    stack_type = "pulumi:pulumi:Stack"
    add("preludeEvent", {"config": {"aws:region": "us-east-1", "db:password": "[secret]"}})
    add("resourcePreEvent", {"metadata": _metadata(stack, stack_type, f"{PROJECT}-{stack}", "create")})
    add("stdoutEvent", {"message": f"Updating ({stack})\n", "color": "never"})
    created = 0
    for index in range(1, resources + 1):
        type_ = "aws:s3/bucketV2:BucketV2" if index % 2 else "aws:ec2/subnet:Subnet"
        name = f"resource-{index}"
        add("resourcePreEvent", {"metadata": _metadata(stack, type_, name, "create")})
        if index == warning_at:
            add(
                "diagnosticEvent",
                {
                    "urn": urn(stack, type_, name),
                    "message": "<{%fg 3%}>map_public_ip_on_launch is deprecated<{%reset%}>\n",
                    "color": "raw",
                    "severity": "warning",
                },
            )
        if index == fail_at:
            add(
                "diagnosticEvent",
                {
                    "urn": urn(stack, type_, name),
                    "message": error + "\n",
                    "color": "never",
                    "severity": "error",
                },
            )
            add(
                "resOpFailedEvent",
                {"metadata": _metadata(stack, type_, name, "create"), "status": 0, "steps": 1},
            )
            break
        add("resOutputsEvent", {"metadata": _metadata(stack, type_, name, "create")})
        created += 1
    if fail_at is not None:
        add(
            "diagnosticEvent",
            {
                "urn": urn(stack, stack_type, f"{PROJECT}-{stack}"),
                "message": "update failed\n",
                "color": "never",
                "severity": "error",
            },
        )
    else:
        add("resOutputsEvent", {"metadata": _metadata(stack, stack_type, f"{PROJECT}-{stack}", "create")})
    add(
        "summaryEvent",
        {
            "maybeCorrupt": False,
            "durationSeconds": max(1, len(events) // 4),
            "resourceChanges": {"create": created + (0 if fail_at is not None else 1)},
            "PolicyPacks": {},
        },
    )
    add("cancelEvent", {})
    return events


def interrupted_events(stack: str = "dev", resources: int = 3) -> list[dict[str, Any]]:
    """The first events of an update that will be interrupted (no summary, no cancel yet)."""
    return [event for event in update_events(stack, resources + 5) if "summaryEvent" not in event][
        : 3 + 2 * resources
    ]


#: The stand-in itself: writes the scenario's events to --event-log, one per ``pace`` seconds
#: (each flushed, as the engine does), prints its lines, exits with the scenario's code.
STANDIN = r"""
import json, os, signal, sys, time

scenario = json.load(open(os.environ["PULUMI_STANDIN_SCENARIO"]))
argv = sys.argv[1:]
if scenario.get("argv_file"):
    with open(scenario["argv_file"], "w") as record:
        json.dump(argv, record)
path = argv[argv.index("--event-log") + 1] if "--event-log" in argv else None
log = open(path, "a") if path else None
interrupted = []


def on_signal(signum, frame):
    interrupted.append(signum)


signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)


def write(event):
    if log is not None:
        log.write(json.dumps(event) + "\n")
        log.flush()


out = scenario.get("stdout", [])
for index, event in enumerate(scenario.get("events", [])):
    write(event)
    if index < len(out):
        sys.stdout.write(out[index])
        sys.stdout.flush()
    time.sleep(scenario.get("pace", 0.0))
for line in out[len(scenario.get("events", [])):]:
    sys.stdout.write(line)
sys.stdout.flush()
sys.stderr.write(scenario.get("stderr", ""))
sys.stderr.flush()
if scenario.get("wait_for_signal"):
    if scenario.get("ready_file"):
        open(scenario["ready_file"], "w").close()
    while not interrupted:
        time.sleep(0.01)
    if scenario.get("signals_file"):
        time.sleep(0.2)  # a second, duplicated signal would arrive meanwhile
        with open(scenario["signals_file"], "w") as record:
            json.dump(interrupted, record)
    canceled = {"message": "update canceled\n", "color": "never", "severity": "error"}
    write({"sequence": 999, "timestamp": 0, "diagnosticEvent": canceled})
    write({"sequence": 1000, "timestamp": 0, "cancelEvent": {}})
    sys.stderr.write("error: update canceled\n")
    sys.exit(255)
sys.exit(scenario.get("exit_code", 0))
"""


def install(directory: Path) -> Path:
    """Write the stand-in as ``directory/pulumi`` (executable, run by this interpreter)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "pulumi"
    path.write_text(f"#!{sys.executable}\n{STANDIN}", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def scenario(directory: Path, **fields: Any) -> dict[str, str]:
    """Write a scenario file; the environment variables that point the stand-in at it."""
    path = directory / f"scenario-{len(list(directory.glob('scenario-*')))}.json"
    path.write_text(json.dumps(fields), encoding="utf-8")
    return {SCENARIO_ENV: str(path)}


def path_with(directory: Path) -> str:
    """PATH with ``directory`` first, so ``pulumi`` is the stand-in."""
    return f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"
