"""A token's lifetime is the connection's, through real sockets on `cloud-ws local --token-lifetime`.

The embedded Cognito mints tokens that live ``LIFETIME`` seconds (a local-only
option: Cognito's own minimum is 5 minutes). A connection is refused
``token_expired`` after its token's ``exp`` and closed by the token sweeper no
later than 60 s after it; a client with a token provider refreshes ahead of
``exp`` and resumes with ``since``, losing nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from cloud_ws_client import ClientOptions, CloudWebSocketClient, Event
from tests.support.local_stack import LocalStackProcess, cloud_ws, finish, start_local_stack, stop_local_stack
from tests.support.waiting import eventually
from tests.test_integration.test_local_stack import recv_json, subscribe

pytestmark = pytest.mark.slow

#: Seconds a token lives on this stack: long enough to connect and subscribe, short enough to wait out.
LIFETIME = 15
#: The verifier's clock-skew leeway (server.config): requests are refused from exp + LEEWAY on.
LEEWAY = 5
#: The contract: the server closes a connection no later than this long after its token's exp.
CLOSE_BOUND = 60


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackProcess]:
    """A local stack whose tokens live LIFETIME seconds."""
    stack = start_local_stack(tmp_path_factory.mktemp("short-tokens"), "--token-lifetime", str(LIFETIME))
    yield stack
    assert stop_local_stack(stack) == 0


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def _exp(token: str) -> float:
    exp = _claims(token)["exp"]
    assert isinstance(exp, int)
    return float(exp)


def _deployment() -> str:
    return f"D{uuid.uuid4().hex[:10].upper()}"


async def _sleep_until(epoch: float) -> None:
    await asyncio.sleep(max(0.0, epoch - time.time()))


def test_the_option_sets_the_lifetime_of_the_tokens_it_mints(short_lived: LocalStackProcess) -> None:
    claims = _claims(short_lived.token())
    assert claims["exp"] == claims["iat"] + LIFETIME  # type: ignore[operator]


async def test_after_exp_requests_are_refused_and_the_connection_is_closed(
    short_lived: LocalStackProcess,
) -> None:
    """A ping after exp is answered token_expired; the server closes the connection within 60 s of exp."""
    token = short_lived.token()
    exp = _exp(token)
    known = {c["connectionId"] for c in short_lived.connections()}
    async with connect(f"{short_lived.outputs['websocket_url']}?token={token}") as ws:
        await subscribe(ws, _deployment())
        await ws.send(json.dumps({"action": "ping", "id": "before"}))
        pong = await recv_json(ws)
        assert (pong["type"], pong["id"]) == ("pong", "before")
        (connection_id,) = {c["connectionId"] for c in short_lived.connections()} - known

        # When the token has expired (and the verifier's leeway with it)
        await _sleep_until(exp + LEEWAY + 0.5)
        await ws.send(json.dumps({"action": "ping", "id": "after"}))
        # Then the ping is refused, as every request is
        refused = await recv_json(ws)
        assert (refused["type"], refused["code"], refused["id"]) == ("error", "token_expired", "after")

        # And the server closes the connection, within the bound
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), max(1.0, exp + CLOSE_BOUND - time.time()))
        closed_at = time.time()
    assert closed_at - exp <= CLOSE_BOUND
    assert closed.value.rcvd is not None
    assert (
        closed.value.rcvd.code == 1000
    )  # as API Gateway's DeleteConnection closes ("Connection Closed Normally")
    # $disconnect follows the close: the connection's row goes.
    await eventually(
        lambda: short_lived.connection_row(connection_id) is None, "$disconnect to delete the connection row"
    )


async def test_a_client_with_a_token_provider_loses_nothing_across_expiries(
    short_lived: LocalStackProcess,
) -> None:
    """Events put before, across and after several token expiries all arrive, in order, once each."""
    dep = _deployment()
    minted: list[str] = []

    async def provider() -> str:  # called before every connection the client opens
        token = await asyncio.to_thread(short_lived.token, "refresher")
        minted.append(token)
        return token

    client = CloudWebSocketClient(
        short_lived.outputs["websocket_url"],
        provider,
        options=ClientOptions(ping_interval=2.0, pong_timeout=5.0),
    )
    received: list[int] = []
    async with client:
        await client.subscribe(dep, since=0)
        stream = client.messages()

        async def collect() -> None:
            async for message in stream:
                if isinstance(message, Event) and message.deployment_id == dep:
                    received.append(message.seq)

        collector = asyncio.create_task(collect())
        # Given events put steadily over more than two token lifetimes
        first_exp = _exp(minted[0])
        put = 0
        while time.time() < first_exp + 2 * LIFETIME + LEEWAY:
            await asyncio.to_thread(short_lived.put_event, dep, "log.created", {"message": f"line {put}"})
            put += 1
            await asyncio.sleep(0.25)
        # Then every one arrives, in seq order, none twice
        await eventually(lambda: len(received) >= put, f"all {put} events", timeout=30)
        await asyncio.sleep(1.0)  # a late duplicate would show now
        await client.disconnect()
        await collector
    assert received == list(range(1, put + 1))
    # The client refreshed its token ahead of each expiry: three or more tokens were used,
    # and no connection was left to be closed by the sweeper with an expired token.
    assert len(minted) >= 3
    assert client.stats.rotations >= 2


def test_cloud_ws_monitor_survives_its_token_expiring(short_lived: LocalStackProcess) -> None:
    """`cloud-ws monitor` on local outputs signs in again for each connection: every event, once, in order."""
    dep = _deployment()
    watcher = cloud_ws(
        "monitor", dep, "--outputs", str(short_lived.outputs_path), "--json", "--until-complete"
    )
    assert watcher.stdout is not None
    head = [json.loads(watcher.stdout.readline()) for _ in range(2)]  # subscribed before the first event
    assert [m["type"] for m in head] == ["subscribed", "deployment.snapshot"]
    started = time.time()
    short_lived.put_event(dep, "deployment.status", {"status": "deploying", "total_layers": 1})
    put = 1
    while time.time() < started + 2 * LIFETIME + LEEWAY:  # across two expiries of the monitor's token
        short_lived.put_event(dep, "log.created", {"message": f"line {put}"})
        put += 1
        time.sleep(0.25)
    short_lived.put_event(dep, "deployment.status", {"status": "succeeded", "total_layers": 1})
    put += 1
    code, out, err = finish(watcher, timeout=60)
    assert code == 0, err
    messages = [json.loads(line) for line in out.splitlines()]
    events = [m for m in messages if m["type"] not in ("subscribed", "deployment.snapshot")]
    assert [m["seq"] for m in events] == list(range(1, put + 1))
    # It reconnected with fresh tokens along the way (each connection re-subscribes).
    assert sum(1 for m in messages if m["type"] == "subscribed") >= 2


def test_local_refuses_a_token_lifetime_too_short_to_refresh(tmp_path: Path) -> None:
    code, out, err = finish(
        cloud_ws("local", "--port", "0", "--outputs", str(tmp_path / "o.json"), "--token-lifetime", "5")
    )
    assert code == 2
    assert "--token-lifetime must be at least 10" in out + err
    assert not (tmp_path / "o.json").exists()
