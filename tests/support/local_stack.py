"""A real `cloud-ws local` in a subprocess, driven only through its contracts: the outputs
file, plain `websockets` connections and plain boto3 clients.

Starting, reaching and stopping the stack live in :mod:`emulator.launcher`, shared with the
benchmarks; this module adds what only the tests need (a numbering producer over the
sample events, the `cloud-ws` command run from the repository root) and keeps the tests'
import path for the rest."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

from contract import protocol
from emulator import launcher
from emulator.launcher import CLI, stop_local_stack
from tests.support.events import TIMESTAMP, envelope

__all__ = [
    "CLI",
    "DEMO_SPEED",
    "ROOT",
    "LocalStackProcess",
    "cloud_ws",
    "finish",
    "monitor_stack",
    "start_local_stack",
    "stop_local_stack",
]

ROOT = Path(__file__).resolve().parents[2]
#: `cloud-ws demo` plays about 900 simulated seconds; at this speed that is well under a second.
DEMO_SPEED = "60"


def cloud_ws(*args: str) -> subprocess.Popen[str]:
    """Start the `cloud-ws` command, from the repository root, its output piped."""
    return subprocess.Popen(
        [*CLI, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def monitor_stack(outputs: Path, deployment_id: str, stack_name: str) -> subprocess.Popen[str]:
    """`cloud-ws monitor <id> --until-complete --stack <name>`, once its first two lines are read.

    Those lines say it is watching and that nothing was reported yet: the subscription is
    stored, so every event put after this returns reaches it live.
    """
    watcher = cloud_ws(
        "monitor", deployment_id, "--outputs", str(outputs), "--until-complete", "--stack", stack_name
    )
    assert watcher.stdout is not None
    assert watcher.stdout.readline() == f"watching deployment {deployment_id}\n"
    assert watcher.stdout.readline() == "#0 nothing reported yet\n"
    return watcher


def finish(process: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str, str]:
    """Wait for a command started by :func:`cloud_ws`: its exit code, stdout and stderr."""
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


#: The test process as one producer (``put_event``): its id, and each deployment's last number.
_PRODUCER_ID = f"tests-{uuid.uuid4().hex[:12]}"
_NUMBERS: dict[str, int] = {}
_NUMBERED: dict[str, int] = {}


class LocalStackProcess(launcher.LocalStackProcess):
    """A running local stack and how to reach it, with a producer's ``put_event``."""

    def put_event(
        self,
        deployment_id: str,
        type_: str = "deployment.status",
        data: dict[str, Any] | None = None,
        event_id: str | None = None,
        timestamp: str = TIMESTAMP,
    ) -> str:
        """Put one envelope on the bus with boto3, as any producer could; returns its event_id."""
        detail = envelope(deployment_id, data, event_id, timestamp)  # data: the sample status
        # A numbering producer, as the plugin is: events put one after another keep that order
        # however the stack's concurrent delivery batches interleave.
        # (The same event put again, a redelivery, keeps its number, as the plugin's retries do;
        # an event of no valid type gets none, as the plugin refuses it before numbering.)
        if protocol.is_valid_event_type(type_):
            number = _NUMBERED.get(detail["event_id"])
            if number is None:
                number = _NUMBERS.get(deployment_id, 0) + 1
                _NUMBERS[deployment_id] = number
                _NUMBERED[detail["event_id"]] = number
            detail.update(producer_id=_PRODUCER_ID, producer_seq=number)
        event_id = detail["event_id"]
        reply = self.aws("events").put_events(
            Entries=[
                {
                    "Source": self.outputs["event_source"],
                    "DetailType": type_,
                    "Detail": json.dumps(detail),
                    "EventBusName": self.outputs["event_bus_name"],
                }
            ]
        )
        assert reply["FailedEntryCount"] == 0, reply
        return event_id


def start_local_stack(directory: Path, *extra: str) -> LocalStackProcess:
    """Start `cloud-ws local` on free ports and wait for its outputs file."""
    return launcher.start_local_stack(directory, *extra, kind=LocalStackProcess)
