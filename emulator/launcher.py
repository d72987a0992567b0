"""A real `cloud-ws local` in a subprocess, driven only through its contracts: the outputs
file, plain `websockets` connections and plain boto3 clients.

Shared by the benchmarks and the tests (``tests.support.local_stack`` builds on it), so
neither depends on the other's helpers. This is the outside view of the stack: for the
stack itself, in process, see :mod:`emulator.stack`.
"""

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
from typing import Any, TypeVar

import boto3
import requests

from emulator.backend import LOCAL_CREDENTIALS
from emulator.cognito_signin import sign_in

#: The `cloud-ws` command, run with this interpreter.
CLI = (sys.executable, "-m", "cloud_ws.cli")


@dataclass
class LocalStackProcess:
    """A running local stack and how to reach it."""

    process: subprocess.Popen[str]
    outputs_path: Path
    outputs: dict[str, Any]

    def aws(self, service: str) -> Any:
        """A plain boto3 client for the embedded AWS endpoint."""
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.outputs["aws_endpoint_url"],
            region_name=self.outputs["region"],
            **LOCAL_CREDENTIALS,  # moto accepts any credentials; boto3 requires some
        )

    def management(self) -> Any:
        """A plain boto3 @connections client."""
        return boto3.client(  # type: ignore[call-overload]
            "apigatewaymanagementapi",
            endpoint_url=self.outputs["management_endpoint"],
            region_name=self.outputs["region"],
            **LOCAL_CREDENTIALS,
        )

    @property
    def http(self) -> str:
        """Base URL of the HTTP side (control API, dashboard)."""
        return str(self.outputs["dashboard_url"]).rstrip("/")

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
        """The connection's row in the connections table (None once it is gone), read
        consistently."""
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


#: What :func:`start_local_stack` returns: :class:`LocalStackProcess` or a subclass of it
#: (the tests' adds a producer).
StackT = TypeVar("StackT", bound=LocalStackProcess)


def start_local_stack(
    directory: Path,
    *extra: str,
    kind: type[StackT] = LocalStackProcess,  # type: ignore[assignment]
) -> StackT:
    """Start `cloud-ws local` on free ports and wait for its outputs file; ``kind`` is the
    class of the handle returned."""
    outputs_path = directory / "outputs.json"
    log = directory / "cloud-ws-local.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # The stack is its own AWS: a developer's endpoint or profile must not leak into it.
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(name, None)
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
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
    return kind(process, outputs_path, json.loads(outputs_path.read_text()))


def stop_local_stack(stack: LocalStackProcess) -> int:
    """SIGTERM, as Ctrl-C / a service manager would; returns the exit code."""
    stack.process.send_signal(signal.SIGTERM)
    try:
        return stack.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        raise
