"""The client against a real `cloud-ws local`: delivery, resume, reconnects, keep-alive."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json

import pytest

from cloud_ws.commands import monitor
from cloud_ws_client import (
    AuthenticationError,
    ClientOptions,
    CloudWebSocketClient,
    ConnectError,
    DeploymentSnapshot,
    DeploymentStatus,
    ErrorMessage,
    Event,
    LogCreated,
    StackEvent,
    Subscribed,
    Unsubscribed,
)
from tests.support.local_stack import LocalStackProcess
from tests.support.waiting import PATIENCE, eventually
from tests.test_client.conftest import (
    UNIT,
    Inbox,
    Tokens,
    connection_ids,
    control,
    deployment,
    fan_out_done,
    new_connection,
    next_message,
    options,
    put_events,
)

pytestmark = pytest.mark.slow


async def test_connect_subscribe_receive_typed_messages(stack: LocalStackProcess, tokens: Tokens) -> None:
    """Ack, then each event typed and in seq order, to handlers and to messages() alike."""
    dep = deployment()
    client = CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=options())
    failed: list[StackEvent] = []

    async def on_failed(message: object) -> None:
        assert isinstance(message, StackEvent)
        failed.append(message)

    client.on("stack.failed", on_failed)
    inbox = Inbox(client)
    async with client:
        stream = client.messages()
        await client.subscribe(dep)
        await eventually(lambda: bool(inbox.of_type("subscribed")), "the subscription ack")
        for type_, data in [
            ("deployment.status", {"status": "deploying", "current_layer": 1, "total_layers": 2}),
            ("stack.failed", {"stack_name": "db", "error_message": "Subnet not found"}),
            ("log.created", {"level": "error", "message": "boom"}),
            ("widget.spun", {"rpm": 3}),
        ]:
            await asyncio.to_thread(stack.put_event, dep, type_, data)
        received = [await next_message(stream) for _ in range(6)]
        assert client.connected
        await client.unsubscribe(dep)
        await eventually(lambda: bool(inbox.of_type("unsubscribed")), "the unsubscription ack")

    ack, snapshot, status, stack_failed, log, custom = received
    assert isinstance(ack, Subscribed)
    assert (ack.deployment_id, ack.seq, ack.replay) == (dep, 0, 0)
    assert isinstance(snapshot, DeploymentSnapshot)  # passed through, right after the ack
    assert (snapshot.seq, snapshot.data["attempt"], snapshot.request_id) == (0, 0, ack.request_id)
    assert isinstance(status, DeploymentStatus)
    assert (status.seq, status.status, status.current_layer) == (1, "deploying", 1)
    assert isinstance(stack_failed, StackEvent)
    assert stack_failed.error_message == "Subnet not found"
    assert isinstance(log, LogCreated)
    assert (log.level, log.message) == ("error", "boom")
    assert type(custom) is Event
    assert (custom.type, custom.seq, custom.data) == ("widget.spun", 4, {"rpm": 3})
    assert failed == [stack_failed]
    assert isinstance(inbox.of_type("unsubscribed")[0], Unsubscribed)
    assert inbox.seqs(dep) == [1, 2, 3, 4]
    assert client.closed
    assert not client.connected
    # The stream hands out what is left, then ends after disconnect().
    assert [m.type async for m in stream] == ["unsubscribed"]


async def test_replay_from_since_continues_past_the_replay_limit(
    stack: LocalStackProcess, tokens: Tokens
) -> None:
    """since=0 on a 45-event history with a replay limit of 20: all 45, in order, once."""
    dep = deployment()
    url = stack.outputs["websocket_url"]
    # Given a stored history of 45 events (a watcher sees the last one arrive)...
    async with CloudWebSocketClient(url, tokens, options=options()) as watcher:
        watched = Inbox(watcher)
        await watcher.subscribe(dep)
        await eventually(lambda: bool(watched.of_type("subscribed")), "the watcher's ack")
        await put_events(stack, dep, 45)
        await watched.until_seq(dep, 45)
    # ...when a client subscribes with since=0, the capped replays are continued by gap repair.
    async with CloudWebSocketClient(url, tokens, options=options()) as client:
        inbox = Inbox(client)
        await client.subscribe(dep, since=0)
        assert await inbox.until_seq(dep, 45) == list(range(1, 46))
        assert client.stats.repairs >= 2
        assert client.position(dep) == 45


async def test_server_kill_mid_stream_loses_nothing(stack: LocalStackProcess, tokens: Tokens) -> None:
    """The server closes the connection while events keep coming: every seq exactly once, in order."""
    dep = deployment()
    known = await connection_ids(stack)
    async with CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=options()) as client:
        inbox = Inbox(client)
        await client.subscribe(dep, since=0)
        connection = await new_connection(stack, known)
        producer = asyncio.create_task(put_events(stack, dep, 40, pause=0.01))
        await inbox.until_seq(dep, 8)
        # When the server kills the connection mid-stream...
        await control(stack, f"connections/{connection}/close", {"code": 1011})
        await producer
        # ...then after the reconnect every seq arrived exactly once and in order.
        assert await inbox.until_seq(dep, 40) == list(range(1, 41))
        stats = client.stats
    assert stats.reconnects == 1
    assert stats.connections == 2
    assert tokens.calls == 2  # a fresh token for the new connection


async def test_every_connection_gets_a_fresh_token(stack: LocalStackProcess, tokens: Tokens) -> None:
    """The provider is called on each (re)connect and the new tokens are used: the stream carries on."""
    dep = deployment()
    async with CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=options()) as client:
        inbox = Inbox(client)
        await client.subscribe(dep, since=0)
        for round_ in range(1, 4):
            # seq N arrives only on the connection that replaced the one dropped in round N-1.
            await put_events(stack, dep, 1, first=round_)
            await inbox.until_seq(dep, round_)
            await control(stack, "faults/drop-idle", {"idle_seconds": 0})  # closes every connection
        await put_events(stack, dep, 1, first=4)
        assert await inbox.until_seq(dep, 4) == [1, 2, 3, 4]
    assert tokens.calls == 4
    assert len(set(tokens.issued)) == 4


async def test_refused_token_is_surfaced_at_once(stack: LocalStackProcess, tokens: Tokens) -> None:
    """A 401 at the first connect raises AuthenticationError after a single attempt."""
    tokens.garbage_from = 1
    known = await connection_ids(stack)
    client = CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=options())
    with pytest.raises(AuthenticationError) as refused:
        await client.connect()
    assert refused.value.status == 401
    assert client.state == "idle"
    assert client.stats.connect_attempts == 1
    assert tokens.calls == 1
    assert await connection_ids(stack) - known == set()


async def test_refused_reconnect_stops_without_a_retry_storm(
    stack: LocalStackProcess, tokens: Tokens
) -> None:
    """After a loss, a 401 ends the client: run() raises, one refused attempt, no more."""
    tokens.garbage_from = 2
    known = await connection_ids(stack)
    client = CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=options())
    await client.subscribe(deployment())
    await client.connect()
    connection = await new_connection(stack, known)
    await control(stack, f"connections/{connection}/close", {"code": 1011})
    with pytest.raises(AuthenticationError, match="401"):
        await asyncio.wait_for(client.run(), timeout=15)
    assert client.closed
    assert client.stats.connect_attempts == 2
    assert tokens.calls == 2
    # The client is finished: nothing is left running that could try again.
    with pytest.raises(AuthenticationError):
        async for _ in client.messages():
            pass
    await client.disconnect()
    assert client.stats.connect_attempts == 2


async def test_disconnect_during_backoff_stops_cleanly(stack: LocalStackProcess, tokens: Tokens) -> None:
    """Offline after a loss: the client backs off; disconnect() ends it at once, with no further attempt."""
    tokens.offline_from = 2
    known = await connection_ids(stack)
    slow_backoff = options(backoff_initial=1000 * UNIT, backoff_max=1000 * UNIT)
    client = CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=slow_backoff)
    await client.connect()
    connection = await new_connection(stack, known)
    await control(stack, f"connections/{connection}/close", {"code": 1011})
    # Reconnecting fails (offline), so the client waits a long backoff delay...
    await eventually(lambda: client.state == "waiting", "a backoff delay")
    attempts = client.stats.connect_attempts
    assert not client.connected
    # ...which disconnect() cuts short: the client stops, and tries nothing more.
    await asyncio.wait_for(client.disconnect(), timeout=10)
    await asyncio.wait_for(client.run(), timeout=10)  # returns: stopped, no error
    assert client.state == "closed"
    assert client.stats.connect_attempts == attempts
    assert tokens.calls == attempts


async def test_half_open_connection_is_detected_and_replaced(
    stack: LocalStackProcess, tokens: Tokens
) -> None:
    """API Gateway forgets the connection (pings go nowhere): no pong, so it is replaced and resumed."""
    dep = deployment()
    known = await connection_ids(stack)
    # A pong is given 2 s: on a loaded machine a healthy connection's pong can take longer than
    # a few tenths, and a false "dead" would be counted below.
    keepalive = options(ping_interval=2 * UNIT, pong_timeout=20 * UNIT)
    async with CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=keepalive) as client:
        inbox = Inbox(client)
        await client.subscribe(dep, since=0)
        connection = await new_connection(stack, known)
        await put_events(stack, dep, 1)
        await inbox.until_seq(dep, 1)
        # Keep-alive pings are answered while the connection is healthy.
        await eventually(lambda: client.stats.pongs >= 2, "two keep-alive pongs")
        assert client.stats.dead_connections == 0
        await control(stack, f"connections/{connection}/stale")
        await put_events(stack, dep, 2, first=2)  # lost on the stale connection (410)
        assert await inbox.until_seq(dep, 3) == [1, 2, 3]
        assert client.stats.dead_connections == 1
        assert client.stats.connections == 2


async def test_make_before_break_rotation_has_no_gap(stack: LocalStackProcess, tokens: Tokens) -> None:
    """Connections replaced by age while events flow: no reconnect, every seq once, in order."""
    dep = deployment()
    known = await connection_ids(stack)
    rotating = options(max_connection_age=4 * UNIT, min_uptime=2 * UNIT)
    async with CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=rotating) as client:
        inbox = Inbox(client)
        await client.subscribe(dep, since=0)
        producer = asyncio.create_task(put_events(stack, dep, 30, pause=UNIT / 2))
        await eventually(lambda: client.stats.rotations >= 2, "two rotations")
        await producer
        assert await inbox.until_seq(dep, 30) == list(range(1, 31))
    stats = client.stats
    assert stats.reconnects == 0
    assert stats.rotations >= 2
    # Every connection signed in afresh.
    assert len(set(tokens.issued)) == tokens.calls >= stats.connections

    # Each replaced connection was closed by the client: none of them is left open.
    async def all_closed() -> bool:
        return not await connection_ids(stack) - known

    await eventually(all_closed, "every connection of the client to close")


async def test_a_lost_message_is_repaired_from_the_history(stack: LocalStackProcess, tokens: Tokens) -> None:
    """The broadcaster's post of seq 1 fails (429): seq 2 reveals the gap, a resubscribe fills it."""
    dep = deployment()
    async with CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=options()) as client:
        inbox = Inbox(client)
        await client.subscribe(dep)
        await eventually(lambda: bool(inbox.of_type("subscribed")), "the subscription ack")
        # The next post the stack makes (seq 1's, nothing else is talking) answers 429; the
        # stack makes one attempt per post (STACK_ENV), so seq 1 is stored but never sent.
        await control(stack, "faults/throttle", {"count": 1})
        lost = await asyncio.to_thread(stack.put_event, dep, "log.created", {"message": "lost"})
        await eventually(lambda: fan_out_done(stack, dep, lost), "the failed fan-out of seq 1")
        await put_events(stack, dep, 1, first=2)
        assert await inbox.until_seq(dep, 2) == [1, 2]
        assert client.stats.repairs >= 1


@pytest.mark.parametrize("transport", ["query", "subprotocol"])
async def test_other_token_transports(stack: LocalStackProcess, tokens: Tokens, transport: str) -> None:
    """?token= and the browser's subprotocol pair are accepted too."""
    client = CloudWebSocketClient(
        stack.outputs["websocket_url"], tokens, options=options(token_transport=transport)
    )
    async with client:
        inbox = Inbox(client)
        await client.subscribe(deployment())
        await eventually(lambda: bool(inbox.of_type("subscribed")), "the subscription ack")


async def test_from_outputs_signs_in_the_dev_user(stack: LocalStackProcess) -> None:
    """Without a token the client signs the local dev user in through the embedded Cognito."""
    async with CloudWebSocketClient.from_outputs(stack.outputs_path, options=options()) as client:
        inbox = Inbox(client)
        await client.subscribe(deployment())
        await eventually(lambda: bool(inbox.of_type("subscribed")), "the subscription ack")


async def test_unreachable_endpoint_and_bad_subscriptions(stack: LocalStackProcess, tokens: Tokens) -> None:
    """A closed port is a ConnectError at once; a refused frame is an error message, not a failure."""
    url = stack.outputs["websocket_url"].rsplit(":", 1)[0] + ":1/local"
    with pytest.raises(ConnectError, match="cannot connect"):
        await CloudWebSocketClient(url, "token", options=options()).connect()
    async with CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=options()) as client:
        inbox = Inbox(client)
        with pytest.raises(ValueError, match="deployment_id"):
            await client.subscribe("not valid!")
        for index in range(21):  # one more than a connection may watch
            await client.subscribe(f"{deployment()}{index}")
        await eventually(lambda: bool(inbox.of_type("error")), "the refusal")
        (error,) = inbox.of_type("error")
        assert isinstance(error, ErrorMessage)
        assert (error.code, error.action) == ("too_many_subscriptions", "subscribe")
        assert client.connected
    with pytest.raises(Exception, match="closed"):
        await client.connect()
    with contextlib.suppress(Exception):
        await client.disconnect()


async def test_a_forgotten_connection_is_noticed_with_the_default_options(
    stack: LocalStackProcess, tokens: Tokens
) -> None:
    """The gateway forgets the connection (no $disconnect): the default keep-alive notices, a new one resumes.

    Takes up to ``ClientOptions().detection_bound`` (40 s): the first ping after the
    connection went stale gets no pong.
    """
    dep = deployment()
    known = await connection_ids(stack)
    defaults = ClientOptions()
    async with CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=defaults) as client:
        inbox = Inbox(client)
        await client.subscribe(dep, since=0)
        connection = await new_connection(stack, known)
        await put_events(stack, dep, 1)
        await inbox.until_seq(dep, 1)
        # When the gateway forgets the connection (frames go nowhere, posts answer 410)...
        await control(stack, f"connections/{connection}/stale")
        await put_events(stack, dep, 2, first=2)
        # ...the missing pong gives it away, and the replacement replays what was lost.
        await eventually(
            lambda: client.stats.dead_connections == 1,
            "the forgotten connection noticed",
            timeout=defaults.detection_bound + PATIENCE,
        )
        assert await inbox.until_seq(dep, 3) == [1, 2, 3]
        stats = client.stats
    assert (stats.connections, stats.reconnects) == (2, 1)
    assert connection not in await connection_ids(stack)


async def test_a_throttled_terminal_status_still_reaches_the_client_and_ends_the_monitor(
    stack: LocalStackProcess, tokens: Tokens
) -> None:
    """The posts of the last event answer 429 past every retry: monitor --until-complete still ends.

    Nothing follows a terminal status to reveal its loss; the next pong's ``latest`` does
    (or, when the keep-alive's own pongs are throttled too, the reconnect's replay).
    """
    dep = deployment()
    client = CloudWebSocketClient(
        stack.outputs["websocket_url"], tokens, options=options(ping_interval=3 * UNIT, pong_timeout=5 * UNIT)
    )
    out = io.StringIO()
    watching = asyncio.create_task(monitor.watch(client, dep, monitor.JsonView(out), until_complete=True))
    await eventually(lambda: '"subscribed"' in out.getvalue(), "the subscription")
    await asyncio.to_thread(
        stack.put_event,
        dep,
        "deployment.status",
        {"status": "deploying", "current_layer": 1, "total_layers": 1},
    )
    await eventually(lambda: '"deploying"' in out.getvalue(), "the first status")
    # When the next posts the stack makes (the terminal status's first) answer 429, more of
    # them than the poster retries (STACK_ENV: one attempt, one fan-out round)...
    await control(stack, "faults/throttle", {"count": 3})
    last = await asyncio.to_thread(
        stack.put_event, dep, "deployment.status", {"status": "failed", "error_message": "db failed"}
    )
    await eventually(lambda: fan_out_done(stack, dep, last), "the fan-out of the terminal status")
    # ...the monitor still learns the outcome and exits with it.
    assert await asyncio.wait_for(watching, PATIENCE) == 1
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (lines[-1]["type"], lines[-1]["seq"], lines[-1]["data"]["status"]) == (
        "deployment.status",
        2,
        "failed",
    )
    assert [m["seq"] for m in lines if m["type"] == "deployment.status"] == [1, 2]
    # The post was lost for good (one attempt, one round), so the client caught up itself.
    assert client.stats.catch_ups + client.stats.reconnects >= 1
    # Disarm what is left of the fault: the stack is shared, and later replies must not be lost.
    await control(stack, "faults/throttle", {"count": 0})
