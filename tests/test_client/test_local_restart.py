"""`cloud-ws local` restarted under a running `cloud-ws monitor` (issue 20, items 2 and 3).

Every start of the local stack is a new stack: a new user pool and app client, new
ports here (`--port 0`), empty tables. The monitor, started with the outputs file and no
token, must not exit 2 on the refused sign-in: it re-reads the file, follows the new stack,
says so, finds the deployment's history gone (a history that went back) and follows the
deployment on the new stack to its end.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.local_stack import CLI, ROOT, start_local_stack, stop_local_stack
from tests.support.waiting import eventually_sync
from tests.test_client.conftest import deployment

pytestmark = pytest.mark.slow

#: Long enough for the monitor's reconnect backoff (a few seconds) and the new stack's start.
RESTART_PATIENCE = 90.0


def test_a_monitor_follows_a_restarted_local_stack(tmp_path: Path) -> None:
    """The stack restarts under the monitor: it signs in to the new one, says the stack restarted
    and the history went back, and exits with the outcome of the deployment on the new stack."""
    dep = deployment()
    first = start_local_stack(tmp_path)
    out, err = tmp_path / "monitor.out", tmp_path / "monitor.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        watching = subprocess.Popen(
            [*CLI, "monitor", dep, "--outputs", str(first.outputs_path), "--until-complete"],
            cwd=ROOT,
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
    second = None
    try:
        eventually_sync(lambda: "watching deployment" in out.read_text(), "the monitor to connect")
        first.put_event(
            dep, "deployment.status", {"status": "deploying", "current_layer": 1, "total_layers": 2}
        )
        # The event line, or the snapshot line of a monitor whose subscription came after it.
        eventually_sync(lambda: "deploying" in out.read_text(), "the monitor to follow the first stack")

        # When the stack stops and starts again (same outputs file, a new pool, other ports)...
        assert stop_local_stack(first) == 0
        second = start_local_stack(tmp_path)
        assert second.outputs["user_pool_client_id"] != first.outputs["user_pool_client_id"]
        eventually_sync(lambda: "went back" in out.read_text(), "the history reset line", RESTART_PATIENCE)
        second.put_event(
            dep, "deployment.status", {"status": "deploying", "current_layer": 1, "total_layers": 1}
        )
        second.put_event(
            dep, "deployment.status", {"status": "succeeded", "current_layer": 1, "total_layers": 1}
        )

        # ...the monitor follows the deployment on the new stack to its end, and said what happened.
        assert watching.wait(timeout=RESTART_PATIENCE) == 0, err.read_text()
    finally:
        if watching.poll() is None:
            watching.kill()
        if second is not None:
            stop_local_stack(second)
        elif first.process.poll() is None:
            stop_local_stack(first)
    lines = out.read_text().splitlines()
    assert "the local stack restarted" in err.read_text()
    assert "every restart starts with no deployments and no history" in err.read_text()
    reset = next(index for index, line in enumerate(lines) if "went back" in line)
    assert lines[reset + 1] == "#0 nothing reported yet", lines
    assert lines[-1] == f"deployment {dep} succeeded (attempt 1)", lines
