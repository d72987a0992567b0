"""`list_deployments` in the client and `cloud-ws list`: newest first, matched by id, exit codes."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloud_ws.commands import list_deployments as list_command
from cloud_ws_client import (
    ClientProtocol,
    CloudWebSocketClient,
    CloudWsError,
    Deployments,
    ErrorMessage,
    RequestError,
)
from tests.support.local_stack import CLI, ROOT, LocalStackProcess
from tests.support.waiting import eventually
from tests.test_client.conftest import UNIT, Tokens, deployment, options
from tests.test_client.fakes import Gateway


def put_at(stack: LocalStackProcess, deployment_id: str, when: datetime, data: dict[str, Any]) -> None:
    """One deployment.status stamped ``when`` (the list orders by the latest event's time)."""
    timestamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    stack.put_event(deployment_id, "deployment.status", data, timestamp=timestamp)


def test_protocol_matches_the_deployments_reply_by_id() -> None:
    """The reply to our request is delivered; one with an id we never sent is not."""
    protocol = ClientProtocol()
    request = protocol.list_deployments(limit=5)
    assert json.loads(request.text) == {"action": "list_deployments", "limit": 5, "id": request.request_id}
    row = {"deployment_id": "D1", "status": "failed", "attempt": 2}
    stray = json.dumps({"type": "deployments", "deployments": [row], "id": "nobody"})
    assert protocol.receive(stray, now=0) == []
    reply = json.dumps({"type": "deployments", "deployments": [row, {"no": "id"}], "id": request.request_id})
    (message,) = protocol.receive(reply, now=0)
    assert isinstance(message, Deployments)
    assert message.deployments == (row,)  # an entry without a deployment_id is left out
    assert protocol.pending == 0
    for limit in (0, 201, True):
        with pytest.raises(ValueError, match="limit"):
            protocol.list_deployments(limit=limit)


def test_protocol_delivers_the_refusal_of_a_list_request() -> None:
    """An error answering the request is delivered (the client turns it into RequestError)."""
    protocol = ClientProtocol()
    request = protocol.list_deployments()
    error = {"type": "error", "code": "token_expired", "message": "reconnect", "action": "list_deployments"}
    (message,) = protocol.receive(json.dumps({**error, "id": request.request_id}), now=0)
    assert isinstance(message, ErrorMessage)
    assert (message.code, message.request_id) == ("token_expired", request.request_id)
    assert protocol.pending == 0
    assert protocol.subscriptions == ()  # a list request's refusal drops no subscription


async def test_list_needs_a_connection_and_an_answer(gateway: Gateway) -> None:
    """Not connected: an error at once. A server that never answers: RequestError after the timeout."""
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    with pytest.raises(CloudWsError, match="not connected"):
        await client.list_deployments()
    async with client:
        with pytest.raises(RequestError, match="did not answer") as raised:
            await client.list_deployments(timeout=3 * UNIT)
        assert raised.value.code is None
    assert [frame["action"] for _, frame in gateway.frames] == ["list_deployments"]


@pytest.mark.slow
async def test_list_deployments_newest_first(stack: LocalStackProcess, tokens: Tokens) -> None:
    """Two deployments reported on: the later one first, with status, attempt and layer."""
    older, newer = deployment(), deployment()
    now = datetime.now(UTC) + timedelta(days=1)  # after anything else the session reported on
    await asyncio.to_thread(
        put_at, stack, older, now, {"status": "deploying", "current_layer": 1, "total_layers": 3}
    )
    await asyncio.to_thread(put_at, stack, newer, now + timedelta(seconds=1), {"status": "failed"})
    client = CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=options())
    rows: list[dict[str, Any]] = []

    async def both_listed() -> bool:
        nonlocal rows
        rows = await client.list_deployments(limit=10)
        return {older, newer} <= {row["deployment_id"] for row in rows}

    async with client:
        await eventually(both_listed, "both deployments in the list")
    ids = [row["deployment_id"] for row in rows]
    assert ids.index(newer) < ids.index(older)
    first = next(row for row in rows if row["deployment_id"] == older)
    assert {k: first[k] for k in ("status", "attempt", "current_layer", "total_layers")} == {
        "status": "deploying",
        "attempt": 1,
        "current_layer": 1,
        "total_layers": 3,
    }


def run_cli(*args: str) -> tuple[int, str, str]:
    process = subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=90)
    return process.returncode, process.stdout, process.stderr


@pytest.mark.slow
def test_cloud_ws_list_prints_once(stack: LocalStackProcess) -> None:
    """--json: one JSON array of the deployments objects; without it, a table; exit code 0."""
    dep = deployment()
    put_at(stack, dep, datetime.now(UTC) + timedelta(days=2), {"status": "succeeded", "total_layers": 2})
    outputs = str(stack.outputs_path)
    rows: list[dict[str, Any]] = []
    for _ in range(100):  # the list is folded by the broadcaster: poll until it is there
        code, out, err = run_cli("list", "--outputs", outputs, "--json")
        assert code == 0, err
        assert len(out.splitlines()) == 1
        rows = json.loads(out)
        if rows and rows[0]["deployment_id"] == dep:
            break
    assert rows[0]["deployment_id"] == dep
    assert set(rows[0]) >= {
        "deployment_id",
        "status",
        "attempt",
        "current_layer",
        "total_layers",
        "updated_at",
    }
    code, out, err = run_cli("list", "--outputs", outputs)
    assert code == 0, err
    header, first = out.splitlines()[:2]
    assert header.split() == list(list_command.COLUMNS)
    assert first.split()[:4] == [dep, "succeeded", "1", "-/2"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "complaint"),
    [
        ("refused token", "refused the token (HTTP 401)"),
        ("unreachable", "cannot connect to ws://127.0.0.1:1"),
    ],
)
def test_cloud_ws_list_refused_or_unreachable_exit_2(
    stack: LocalStackProcess, how: str, complaint: str
) -> None:
    """One line on stderr and exit code 2, nothing on stdout."""
    url = stack.outputs["websocket_url"] if how == "refused token" else "ws://127.0.0.1:1/local"
    code, out, err = run_cli("list", "--url", url, "--token", "not.a.token", "--json")
    assert (code, out) == (2, "")
    assert err.startswith("cloud-ws list: ")
    assert len(err.strip().splitlines()) == 1
    assert complaint in err


def test_table_of_no_deployments_and_ages() -> None:
    """An empty list says so; ages are in the largest whole unit."""
    out = io.StringIO()
    list_command.print_table([], out)
    assert out.getvalue() == "no deployments yet\n"
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert list_command.age("2026-12-02T11:59:58Z", now) == "2s ago"
    assert list_command.age("2026-12-02T11:00:00Z", now) == "1h ago"
    assert list_command.age("2026-11-29T12:00:00Z", now) == "3d ago"
    assert list_command.age(None, now) == "-"
    out = io.StringIO()
    row = {"deployment_id": "D1", "status": "failed", "attempt": 2, "current_layer": 3, "total_layers": 4}
    list_command.print_table([{**row, "updated_at": "2026-12-02T11:55:00Z", "environment": "dev"}], out, now)
    assert out.getvalue().splitlines()[1].split() == ["D1", "failed", "2", "3/4", "dev", "5m", "ago"]
