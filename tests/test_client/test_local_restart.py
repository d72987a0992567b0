"""`cloud-ws local` restarted under a running `cloud-ws monitor` (issue 20, items 2 and 3).

Every start of the local stack is a new stack: a new user pool and app client, new
ports here (`--port 0`), empty tables. The monitor, started with the outputs file and no
token, must not exit 2 on the refused sign-in: it re-reads the file, follows the new stack,
says so, finds the deployment's history gone (a history that went back) and follows the
deployment on the new stack to its end.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cloud_ws.commands import monitor
from cloud_ws_client import AuthenticationError, CloudWebSocketClient
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


class FakeAuth:
    """A sign-in that answers with a token, or raises what it was given."""

    def __init__(self, client_id: str, refusals: dict[str, Exception]) -> None:
        self.client_id = client_id
        self.refusals = refusals

    async def __call__(self) -> str:
        if self.client_id in self.refusals:
            raise self.refusals[self.client_id]
        return f"token-of-{self.client_id}"


def local_outputs(client_id: str, port: int = 9000) -> dict[str, str]:
    return {
        "websocket_url": f"ws://127.0.0.1:{port}/local",
        "aws_endpoint_url": f"http://127.0.0.1:{port + 1}",
        "region": "us-east-1",
        "user_pool_id": f"pool-{client_id}",
        "user_pool_client_id": client_id,
    }


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> dict[str, Exception]:
    """Client ids whose sign-in fails, and how; the rest sign in."""
    from cloud_ws_client import outputs as client_outputs

    failing: dict[str, Exception] = {}
    monkeypatch.setattr(
        client_outputs, "password_auth", lambda outputs: FakeAuth(outputs["user_pool_client_id"], failing)
    )
    return failing


async def test_a_refused_sign_in_follows_the_stack_the_outputs_file_names_now(
    tmp_path: Path, refusals: dict[str, Exception]
) -> None:
    """Refused (or unreachable) by the old stack, with a file naming a new one: sign in there, move the
    client's URL, say so once."""
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(local_outputs("old")))
    said: list[str] = []
    sign_in = monitor.LocalSignIn(path, local_outputs("old"), announce=said.append)
    sign_in.client = CloudWebSocketClient("ws://127.0.0.1:9000/local", sign_in)
    assert await sign_in() == "token-of-old"

    refusals["old"] = AuthenticationError("Cognito refused the sign-in of dev: old")
    path.write_text(json.dumps(local_outputs("new", port=9100)))
    assert await sign_in() == "token-of-new"
    assert sign_in.client.url == "ws://127.0.0.1:9100/local"
    assert len(said) == 1
    assert "the local stack restarted" in said[0]

    refusals["new"] = ConnectionRefusedError("the stack is down")
    path.write_text(json.dumps(local_outputs("newest", port=9200)))
    assert await sign_in() == "token-of-newest"  # an unreachable endpoint re-reads the file too
    assert len(said) == 2


async def test_a_refused_sign_in_waits_for_the_file_then_gives_up(
    tmp_path: Path, refusals: dict[str, Exception]
) -> None:
    """No file (the stack is down or starting) or the same stack for a while: retried (an OSError);
    the same stack still refusing after the grace period: the refusal itself, which is final."""
    path = tmp_path / "outputs.json"
    sign_in = monitor.LocalSignIn(path, local_outputs("old"))
    refusals["old"] = refused = AuthenticationError("Cognito refused the sign-in of dev: old")
    with pytest.raises(ConnectionError, match="waiting for the local stack"):
        await sign_in()  # no file

    path.write_text(json.dumps(local_outputs("old")))
    with pytest.raises(ConnectionError, match="waiting for the local stack to write"):
        await sign_in()  # the same stack: it may not have written its new file yet
    sign_in.grace = 0.0
    with pytest.raises(AuthenticationError) as raised:
        await sign_in()
    assert raised.value is refused

    refusals["old"] = unreachable = ConnectionRefusedError("down")
    with pytest.raises(ConnectionRefusedError) as down:
        await sign_in()  # unreachable, same file: the client retries it as it is
    assert down.value is unreachable
