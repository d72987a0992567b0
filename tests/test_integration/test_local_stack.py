"""`cloud-ws local` end to end: plain websockets and boto3 against the running stack."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
import weakref
from collections import deque
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support import asyncapi
from tests.support.local_stack import CLI, LocalStackProcess, start_local_stack, stop_local_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


#: Messages already received in a frame but not read yet, per connection: a server frame
#: carries one or more messages, one JSON object per line.
_pending: weakref.WeakKeyDictionary[ClientConnection, deque[dict[str, Any]]] = weakref.WeakKeyDictionary()


async def recv_json(ws: ClientConnection, timeout: float = 5, *, validate: bool = True) -> dict[str, Any]:
    """The next message, splitting multi-message frames; each checked against docs/asyncapi.yaml.

    ``validate=False`` is for bytes a test posts itself through the Management API.
    """
    pending = _pending.setdefault(ws, deque())
    if not pending:
        frame = await asyncio.wait_for(ws.recv(), timeout)
        messages = [json.loads(line) for line in str(frame).split("\n")]
        if validate:
            for message in messages:
                asyncapi.validate_server_message(message)
        pending.extend(messages)
    return pending.popleft()


async def subscribe(ws: ClientConnection, deployment_id: str, since: int | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"action": "subscribe", "deployment_id": deployment_id}
    if since is not None:
        frame["since"] = since
    await ws.send(json.dumps(frame))
    ack = await recv_json(ws)
    assert ack["type"] == "subscribed", ack
    snapshot = await recv_json(ws)  # the deployment's state through the ack's seq comes right after
    assert (snapshot["type"], snapshot["deployment_id"], snapshot["seq"]) == (
        "deployment.snapshot",
        deployment_id,
        ack["seq"],
    ), snapshot
    return ack


def deployment() -> str:
    return f"D{uuid.uuid4().hex[:10].upper()}"


async def own_connection_id(stack: LocalStackProcess, known: set[str]) -> str:
    """The id API Gateway gave our connection (clients are never told; the control API knows)."""
    for _ in range(100):
        new = {c["connectionId"] for c in stack.connections()} - known
        if len(new) == 1:
            return new.pop()
        await asyncio.sleep(0.02)
    raise AssertionError("could not identify the connection")


async def test_token_connect_subscribe_put_events_receive(local_stack: LocalStackProcess) -> None:
    """The whole path: embedded Cognito → handshake → subscribe → PutEvents → the event arrives."""
    dep = deployment()
    async with connect(f"{local_stack.outputs['websocket_url']}?token={local_stack.token()}") as ws:
        ack = await subscribe(ws, dep)
        assert ack == {"type": "subscribed", "deployment_id": dep, "seq": 0, "replay": 0}

        data = {"stack_name": "network", "resource_count": 15}
        event_id = local_stack.put_event(dep, "stack.deployed", data)

        message = await recv_json(ws)
        assert message["type"] == "stack.deployed"
        assert message["seq"] == 1
        assert message["event_id"] == event_id
        assert message["data"] == data


@pytest.mark.parametrize("how", ["no token", "garbage token", "tampered signature"])
async def test_refused_handshake_is_http_401(local_stack: LocalStackProcess, how: str) -> None:
    """The handshake itself fails with 401 and nothing is registered."""
    url = local_stack.outputs["websocket_url"]
    if how == "garbage token":
        url += "?token=abc.def.ghi"
    elif how == "tampered signature":
        token = local_stack.token()
        url += "?token=" + token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    before = {c["connectionId"] for c in local_stack.connections()}

    with pytest.raises(InvalidStatus) as refused:
        async with connect(url):
            pass

    assert refused.value.response.status_code == 401
    assert {c["connectionId"] for c in local_stack.connections()} == before


async def test_header_and_subprotocol_tokens(local_stack: LocalStackProcess) -> None:
    """Authorization header (scripts) and the subprotocol (browsers), with the echo browsers need."""
    token = local_stack.token()
    async with connect(
        local_stack.outputs["websocket_url"], additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.send(json.dumps({"action": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"
    async with connect(
        local_stack.outputs["websocket_url"], subprotocols=["cloud-ws", f"bearer.{token}"]
    ) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "cloud-ws"
        await ws.send(json.dumps({"action": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"


async def test_management_api_through_boto3(local_stack: LocalStackProcess) -> None:
    """POST sends, GET describes, DELETE closes; then (and for unknown ids) 410 Gone."""
    mgmt = local_stack.management()
    known = {c["connectionId"] for c in local_stack.connections()}
    async with connect(
        f"{local_stack.outputs['websocket_url']}?token={local_stack.token()}",
        user_agent_header="integration/1.0",
    ) as ws:
        connection_id = await own_connection_id(local_stack, known)

        await asyncio.to_thread(
            mgmt.post_to_connection, ConnectionId=connection_id, Data=b'{"hello":"world"}'
        )
        assert await recv_json(ws, validate=False) == {"hello": "world"}  # our own bytes

        info = await asyncio.to_thread(mgmt.get_connection, ConnectionId=connection_id)
        assert info["Identity"]["SourceIp"] == "127.0.0.1"
        assert info["Identity"]["UserAgent"] == "integration/1.0"
        assert info["ConnectedAt"] <= info["LastActiveAt"]

        await asyncio.to_thread(mgmt.delete_connection, ConnectionId=connection_id)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)

    for call in (mgmt.post_to_connection, mgmt.get_connection, mgmt.delete_connection):
        kwargs: dict[str, Any] = {"ConnectionId": connection_id}
        if call == mgmt.post_to_connection:
            kwargs["Data"] = b"x"
        with pytest.raises(mgmt.exceptions.GoneException):
            await asyncio.to_thread(call, **kwargs)
    with pytest.raises(mgmt.exceptions.GoneException):
        await asyncio.to_thread(mgmt.post_to_connection, ConnectionId="does-not-exist", Data=b"x")
    await eventually(
        lambda: local_stack.connection_row(connection_id) is None, "$disconnect to delete the connection row"
    )


async def test_oversize_frame_closes_with_1009(local_stack: LocalStackProcess) -> None:
    """A 40 KB frame exceeds API Gateway's 32 KB frame limit."""
    async with connect(f"{local_stack.outputs['websocket_url']}?token={local_stack.token()}") as ws:
        await ws.send(json.dumps({"action": "ping", "pad": "x" * 40_000}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


async def test_fragmented_message_within_128_kb_is_accepted_beyond_is_1009(
    local_stack: LocalStackProcess,
) -> None:
    """Frames of 30 KB may make up a message up to 128 KB; a 150 KB message closes with 1009."""
    url = f"{local_stack.outputs['websocket_url']}?token={local_stack.token()}"
    async with connect(url) as ws:
        await ws.send(["x" * 30_000 for _ in range(4)])  # 120 KB in four frames
        error = await recv_json(ws)
        assert error["code"] == "message_too_large"  # delivered to $default, which refuses it politely
        await ws.send(json.dumps({"action": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"
    async with connect(url) as ws:
        await ws.send(["x" * 30_000 for _ in range(5)])  # 150 KB
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


async def test_stale_connection_is_cleaned_up_on_the_next_broadcast(local_stack: LocalStackProcess) -> None:
    """No $disconnect ever comes; the broadcaster's 410 is what removes the rows."""
    dep = deployment()
    known = {c["connectionId"] for c in local_stack.connections()}
    url = f"{local_stack.outputs['websocket_url']}?token={local_stack.token()}"
    async with connect(url) as stale_ws:
        await subscribe(stale_ws, dep)
        stale_id = await own_connection_id(local_stack, known)
        live_ws = await connect(url)
        await subscribe(live_ws, dep)
        local_stack.control(f"connections/{stale_id}/stale")
        assert local_stack.connection_row(stale_id) is not None

        local_stack.put_event(dep)

        assert (await recv_json(live_ws))["seq"] == 1
        await eventually(
            lambda: local_stack.connection_row(stale_id) is None, "$disconnect to delete the connection row"
        )
        subscriptions = local_stack.aws("dynamodb").query(
            TableName=local_stack.outputs["connections_table_name"].replace("connections", "subscriptions"),
            KeyConditionExpression="deploymentId = :d",
            ExpressionAttributeValues={":d": {"S": dep}},
            ConsistentRead=True,
        )["Items"]
        assert len(subscriptions) == 1
        assert subscriptions[0]["connectionId"]["S"] != stale_id
        await live_ws.close()


async def test_drop_idle_closes_with_1001_and_runs_disconnect(local_stack: LocalStackProcess) -> None:
    """The idle timeout, triggered on demand: close 1001, then $disconnect removes the row."""
    known = {c["connectionId"] for c in local_stack.connections()}
    async with connect(f"{local_stack.outputs['websocket_url']}?token={local_stack.token()}") as ws:
        connection_id = await own_connection_id(local_stack, known)
        assert local_stack.connection_row(connection_id) is not None

        dropped = local_stack.control("faults/drop-idle", {"idle_seconds": 0})

        assert connection_id in dropped["closed"]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    await eventually(
        lambda: local_stack.connection_row(connection_id) is None, "$disconnect to delete the connection row"
    )


async def test_throttled_management_api_is_retried_by_the_broadcaster(local_stack: LocalStackProcess) -> None:
    """429 on the next posts: the broadcaster backs off and still delivers."""
    dep = deployment()
    async with connect(f"{local_stack.outputs['websocket_url']}?token={local_stack.token()}") as ws:
        await subscribe(ws, dep)
        local_stack.control("faults/throttle", {"count": 1})

        local_stack.put_event(dep)

        assert (await recv_json(ws, timeout=10))["seq"] == 1


async def test_a_terminal_status_throttled_past_the_posters_retries_is_delivered_by_a_retry_task(
    local_stack: LocalStackProcess,
) -> None:
    """Every post answers 429 for three rounds of the poster's retries: a retry task still delivers it.

    Nothing later reveals the loss and this client never pings, so only the
    broadcaster's own retry (an asynchronous invocation of itself, through the
    stack's Lambda Invoke API) can bring the event.
    """
    dep = deployment()
    async with connect(f"{local_stack.outputs['websocket_url']}?token={local_stack.token()}") as ws:
        await subscribe(ws, dep)
        local_stack.control("faults/throttle", {"count": 12})  # POST_MAX_ATTEMPTS (4) x 3 rounds

        local_stack.put_event(dep, "deployment.status", {"status": "succeeded"})

        message = await recv_json(ws, timeout=30)
        assert (message["type"], message["seq"], message["data"]) == (
            "deployment.status",
            1,
            {"status": "succeeded"},
        )
        local_stack.control("faults/throttle", {"count": 0})  # whatever is left must not reach other tests


async def test_replay_and_duplicates_through_the_stack(local_stack: LocalStackProcess) -> None:
    """Events put before subscribing are replayed after `since`; a re-put event id is not resent."""
    dep = deployment()
    url = f"{local_stack.outputs['websocket_url']}?token={local_stack.token()}"
    async with connect(url) as ws:
        await subscribe(ws, dep)
        ids = [local_stack.put_event(dep, data={"n": n}) for n in range(1, 4)]
        assert [(await recv_json(ws))["seq"] for _ in ids] == [1, 2, 3]
        local_stack.put_event(dep, data={"n": 1}, event_id=ids[0])  # a producer retry
        local_stack.put_event(dep, data={"n": 4})
        assert (await recv_json(ws))["seq"] == 4  # the retry was not resent, not given a seq

    async with connect(url) as ws:
        await ws.send(json.dumps({"action": "subscribe", "deployment_id": dep, "since": 2}))
        # A live event may land before the ack: posts from two Lambdas are not ordered (a
        # broadcaster catching a newcomer up is one), and clients drop what they have by seq.
        ack: dict[str, Any] | None = None
        events: dict[int, Any] = {}
        while ack is None or len(events) < 2:
            message = await recv_json(ws)
            if message["type"] == "subscribed":
                ack = message
            elif message["type"] != "deployment.snapshot":
                events.setdefault(message["seq"], message["data"]["n"])
        assert (ack["seq"], ack["replay"]) == (4, 2)
        assert events == {3: 3, 4: 4}


async def test_malformed_frames_get_errors_and_the_connection_stays(local_stack: LocalStackProcess) -> None:
    """Route selection sends garbage to $default, which answers with error codes."""
    async with connect(f"{local_stack.outputs['websocket_url']}?token={local_stack.token()}") as ws:
        for frame, code in (
            ("nope", "invalid_json"),
            ('{"action": "shout"}', "unknown_action"),
            ("[]", "invalid_message"),
        ):
            await ws.send(frame)
            assert (await recv_json(ws))["code"] == code
        await ws.send(b"\x00\x01binary")
        assert (await recv_json(ws))["code"] == "invalid_json"
        await ws.send(json.dumps({"action": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"


async def test_invalid_bus_event_is_dropped_and_later_events_flow(local_stack: LocalStackProcess) -> None:
    """A producer's bad envelope never blocks the deployment's good events."""
    dep = deployment()
    async with connect(f"{local_stack.outputs['websocket_url']}?token={local_stack.token()}") as ws:
        await subscribe(ws, dep)
        local_stack.put_event(dep, type_="Not A Type")
        local_stack.put_event(dep, type_="log.created", data={"message": "ok"})
        message = await recv_json(ws)
        assert (message["type"], message["seq"]) == ("log.created", 1)


def test_token_command_prints_a_working_token(local_stack: LocalStackProcess) -> None:
    """`cloud-ws token` signs the dev user in through the embedded Cognito."""
    result = subprocess.run(
        [*CLI, "token", "--outputs", str(local_stack.outputs_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = result.stdout.strip()

    async def use() -> str:
        async with connect(f"{local_stack.outputs['websocket_url']}?token={token}") as ws:
            await ws.send(json.dumps({"action": "ping"}))
            return str((await recv_json(ws))["type"])

    assert asyncio.run(use()) == "pong"


def test_taken_port_is_a_clear_error(local_stack: LocalStackProcess, tmp_path: Path) -> None:
    """No traceback: one line that says what to do, exit code 2."""
    port = int(local_stack.outputs["websocket_url"].rsplit(":", 1)[1].split("/")[0])
    result = subprocess.run(
        [
            *CLI,
            "local",
            "--port",
            str(port),
            "--outputs",
            str(tmp_path / "o.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"port {port}" in result.stderr
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unwritable_outputs_is_a_clear_error(tmp_path: Path) -> None:
    """An outputs path under a regular file cannot be created."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = subprocess.run(
        [*CLI, "local", "--port", "0", "--outputs", str(blocker / "o.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot write the outputs file" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


async def _ping_until_closed(ws: ClientConnection) -> ConnectionClosed:
    try:
        while True:
            await ws.send(json.dumps({"action": "ping"}))
            await recv_json(ws)
            await asyncio.sleep(0.2)
    except ConnectionClosed as closed:
        return closed


async def test_maximum_connection_duration(tmp_path: Path) -> None:
    """Connections are closed (1001, then $disconnect) when they reach the maximum duration."""
    stack = start_local_stack(tmp_path, "--max-duration", "1.5")
    try:
        known = {c["connectionId"] for c in stack.connections()}
        async with connect(f"{stack.outputs['websocket_url']}?token={stack.token()}") as ws:
            connection_id = await own_connection_id(stack, known)
            # Pinging all along: activity does not extend the cap, and the idle timeout (600 s by
            # default) is not what closes it. Bounded, so a cap that never fires fails, not hangs.
            closed = await asyncio.wait_for(_ping_until_closed(ws), timeout=60)
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1001
        await eventually(
            lambda: stack.connection_row(connection_id) is None, "$disconnect to delete the connection row"
        )
    finally:
        assert stop_local_stack(stack) == 0


def test_home_redirects_to_the_dashboard_keeping_the_query(local_stack: LocalStackProcess) -> None:
    """`/?deployment=X` (the dashboard_url with a deployment) lands on the dashboard for X."""
    reply = requests.get(f"{local_stack.http}/?deployment=D1BRV40", allow_redirects=False, timeout=5)

    assert reply.status_code == 307
    assert reply.headers["location"] == "/dashboard/?deployment=D1BRV40"
    page = requests.get(f"{local_stack.http}/dashboard/", timeout=5)
    assert page.status_code in (200, 503)  # 503 with instructions when Node.js was not there to build it
    assert "cloud-ws" in page.text.lower()


def test_outputs_endpoint_serves_the_outputs(local_stack: LocalStackProcess) -> None:
    """The dashboard configures itself from the same outputs the file holds."""
    reply = requests.get(f"{local_stack.http}/_cloud-ws/outputs", timeout=5)

    assert reply.json() == local_stack.outputs


def _upgrade_then_leave(stack: LocalStackProcess, token: str) -> None:
    """Send a valid upgrade request and close the socket before the answer comes."""
    import base64
    import os
    import socket

    host, port = stack.outputs["websocket_url"].split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"GET /{stack.outputs['stage']}?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )


def test_a_client_that_leaves_during_its_handshake_leaves_no_connection_row(tmp_path: Path) -> None:
    """$connect stored a row while the client was already gone: the stack removes it, as $disconnect does.

    Its own stack, with handler logs on: the log says $connect ran for a client already gone (so
    the rows were written), and only then is the table's count checked, so the test cannot pass
    merely by looking before $connect wrote anything.
    """
    stack = start_local_stack(tmp_path, "--verbose")
    try:
        ddb = stack.aws("dynamodb")
        table = stack.outputs["connections_table_name"]
        before = ddb.scan(TableName=table, Select="COUNT")["Count"]
        token = stack.token()
        log = tmp_path / "cloud-ws-local.log"

        for _ in range(3):
            _upgrade_then_leave(stack, token)

        deadline = time.monotonic() + 20
        while log.read_text().count("client left during its handshake") < 3:
            assert time.monotonic() < deadline, "the stack never saw the clients leave during $connect"
            time.sleep(0.1)
        deadline = time.monotonic() + 10
        count = -1
        while time.monotonic() < deadline:
            count = ddb.scan(TableName=table, Select="COUNT")["Count"]
            if count == before:
                break
            time.sleep(0.1)
        assert count == before
    finally:
        assert stop_local_stack(stack) == 0


async def test_a_refused_handshake_is_one_quiet_log_line(tmp_path: Path) -> None:
    """A bad token: one INFO line from $connect, no error, no traceback in the stack's log."""
    stack = start_local_stack(tmp_path, "--verbose")
    try:
        with pytest.raises(InvalidStatus):
            async with connect(f"{stack.outputs['websocket_url']}?token=not-a-jwt"):
                pass
        await asyncio.sleep(0.5)
    finally:
        stop_local_stack(stack)
    log = (tmp_path / "cloud-ws-local.log").read_text()
    refusals = [line for line in log.splitlines() if "handshake refused" in line]
    assert len(refusals) == 1, log
    assert json.loads(refusals[0])["level"] == "INFO"
    assert "ASGI callable returned without completing handshake" not in log
    assert "Traceback" not in log
    assert "ERROR" not in log
