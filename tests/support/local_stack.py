"""A real `cloud-ws local` in a subprocess, driven only through its contracts: the outputs
file, plain `websockets` connections and plain boto3 clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests

from handlers import protocol
from tests.support.cognito import sign_in
from tests.support.events import TIMESTAMP, envelope

ROOT = Path(__file__).resolve().parents[2]
#: The `cloud-ws` command, run with this interpreter.
CLI = (sys.executable, "-m", "cloud_ws.cli")
#: `cloud-ws demo` plays about 900 simulated seconds; at this speed that is well under a second.
DEMO_SPEED = "60"


def cloud_ws(*args: str) -> subprocess.Popen[str]:
    """Start the `cloud-ws` command, from the repository root, its output piped."""
    return subprocess.Popen(
        [*CLI, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str, str]:
    """Wait for a command started by :func:`cloud_ws`: its exit code, stdout and stderr."""
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


#: The test process as one producer (``put_event``): its id, and each deployment's last number.
_PRODUCER_ID = f"tests-{uuid.uuid4().hex[:12]}"
_NUMBERS: dict[str, int] = {}
_NUMBERED: dict[str, int] = {}


@dataclass
class LocalStackProcess:
    """A running local stack and how to reach it."""

    process: subprocess.Popen[str]
    outputs_path: Path
    outputs: dict[str, Any]

    def aws(self, service: str) -> Any:
        """A plain boto3 client for the embedded AWS endpoint."""
        return boto3.client(
            service,
            endpoint_url=self.outputs["aws_endpoint_url"],
            region_name=self.outputs["region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def management(self) -> Any:
        """A plain boto3 @connections client."""
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=self.outputs["management_endpoint"],
            region_name=self.outputs["region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    @property
    def http(self) -> str:
        """Base URL of the HTTP side (control API, dashboard)."""
        return self.outputs["dashboard_url"].rstrip("/")

    def token(self, username: str | None = None, kind: str = "IdToken") -> str:
        """A real token from the embedded Cognito for a new (or given) user."""
        username = username or f"user-{uuid.uuid4().hex[:8]}"
        result = sign_in(
            self.aws("cognito-idp"),
            self.outputs["user_pool_id"],
            self.outputs["user_pool_client_id"],
            username,
        )
        return str(result[kind])

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

    def connections(self) -> list[dict[str, Any]]:
        """Open connections, from the control API."""
        reply = requests.get(f"{self.http}/_cloud-ws/connections", timeout=5)
        reply.raise_for_status()
        result: list[dict[str, Any]] = reply.json()
        return result

    def control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST to the fault-injection API."""
        reply = requests.post(f"{self.http}/_cloud-ws/{path}", json=body or {}, timeout=5)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    def connection_row(self, connection_id: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = (
            self.aws("dynamodb")
            .get_item(
                TableName=self.outputs["connections_table_name"],
                Key={"connectionId": {"S": connection_id}},
                ConsistentRead=True,
            )
            .get("Item")
        )
        return item


def start_local_stack(directory: Path, *extra: str) -> LocalStackProcess:
    """Start `cloud-ws local` on free ports and wait for its outputs file."""
    outputs_path = directory / "outputs.json"
    log = directory / "cloud-ws-local.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(name, None)
    process = subprocess.Popen(
        [
            *CLI,
            "local",
            "--port",
            "0",
            "--outputs",
            str(outputs_path),
            *extra,
        ],
        cwd=directory,
        env=env,
        # A file, not a pipe: nobody reads the stack's output while it runs, and a
        # full pipe would block its logging (and so the stack) forever.
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not outputs_path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"cloud-ws local exited early:\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("cloud-ws local did not write its outputs within 60 s")
        time.sleep(0.05)
    return LocalStackProcess(process, outputs_path, json.loads(outputs_path.read_text()))


def stop_local_stack(stack: LocalStackProcess) -> int:
    """SIGTERM, as Ctrl-C / a service manager would; returns the exit code."""
    stack.process.send_signal(signal.SIGTERM)
    try:
        return stack.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        raise
