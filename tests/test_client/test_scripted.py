"""The client against a scripted WebSocket server on localhost: the failures a real stack
rarely produces on demand (5xx handshakes, token_expired frames, silent replacements,
frames out of order)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

import pytest

from cloud_ws_client import (
    AuthenticationError,
    CloudWebSocketClient,
    CloudWsError,
    ConnectError,
    Event,
    HistoryReset,
    Message,
    Subscribed,
)
from cloud_ws_client.client import _wait as wait_for_event
from tests.support.waiting import eventually
from tests.test_client.conftest import UNIT, Inbox, next_message, options
from tests.test_client.fakes import Gateway


class Counter:
    """A token provider that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return f"token-{self.calls}"


async def test_reconnect_retries_5xx_and_resumes(gateway: Gateway) -> None:
    """503 and 502 on reconnect are retried with backoff; the new connection resumes from the last seq."""
    tokens = Counter()
    client = CloudWebSocketClient(gateway.url, tokens, options=options())
    inbox = Inbox(client)
    async with client:
        await client.subscribe("D1", since=0)
        await gateway.publish("D1")
        await gateway.publish("D1")
        await inbox.until_seq("D1", 2)
        # When the server drops the connection and its next two handshakes fail with 5xx...
        gateway.refuse = [503, 502]
        await gateway.connection(1).close(1011)
        await eventually(lambda: gateway.opened == 2, "the second connection")
        await eventually(lambda: bool(gateway.frames_of(2, "subscribe")), "the resubscribe")
        await gateway.publish("D1")
        # ...then the client retried, resumed after seq 2 and lost nothing.
        assert await inbox.until_seq("D1", 3) == [1, 2, 3]
    assert gateway.frames_of(2, "subscribe") == [{"action": "subscribe", "deployment_id": "D1", "since": 2}]
    stats = client.stats
    assert (stats.connect_attempts, stats.connections, stats.reconnects) == (4, 2, 1)
    assert tokens.calls == 4
    assert gateway.handshakes == 4


@pytest.mark.parametrize(("status", "error"), [(403, AuthenticationError), (404, ConnectError)])
async def test_refused_handshakes_are_not_retried(
    gateway: Gateway, status: int, error: type[Exception]
) -> None:
    """403 (a refused token) and 404 (a wrong URL) fail at once: one attempt."""
    gateway.refuse = [status]
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    with pytest.raises(error, match=str(status)):
        await client.connect()
    assert gateway.handshakes == 1


async def test_first_connect_fails_fast_on_5xx(gateway: Gateway) -> None:
    """A 503 at the very first connect is reported, so a misconfiguration shows at once."""
    gateway.refuse = [503]
    with pytest.raises(ConnectError, match="503"):
        await CloudWebSocketClient(gateway.url, "token", options=options()).connect()


async def test_token_expired_frame_replaces_the_connection_before_closing_it(gateway: Gateway) -> None:
    """Make before break: the new connection is subscribed before the old one is closed."""
    tokens = Counter()
    client = CloudWebSocketClient(gateway.url, tokens, options=options())
    inbox = Inbox(client)
    async with client:
        await client.subscribe("D1", since=0)
        await gateway.publish("D1")
        await inbox.until_seq("D1", 1)
        await gateway.connection(1).send(
            json.dumps(
                {"type": "error", "code": "token_expired", "message": "reconnect", "action": "subscribe"}
            )
        )
        await eventually(lambda: client.stats.rotations == 1, "the replacement")
        await eventually(lambda: 1 in gateway.closed, "the old connection's close")
        await gateway.publish("D1")
        assert await inbox.until_seq("D1", 2) == [1, 2]
    # The second connection subscribed (and was acknowledged) while the first was still open.
    assert gateway.frames_of(2, "subscribe") == [{"action": "subscribe", "deployment_id": "D1", "since": 1}]
    assert gateway.closed.index(1) < gateway.closed.index(2)
    assert client.stats.reconnects == 0
    assert tokens.calls == 2
    assert [m.type for m in inbox.messages].count("error") == 1  # the error is still delivered


async def test_failed_replacements_keep_the_old_connection(gateway: Gateway) -> None:
    """A replacement that is refused, or that never answers, is given up; the old one keeps working."""
    client = CloudWebSocketClient(
        gateway.url, "token", options=options(max_connection_age=3 * UNIT, open_timeout=3 * UNIT)
    )
    inbox = Inbox(client)
    gateway.refuse = []
    async with client:
        await client.subscribe("D1", since=0)
        await eventually(lambda: bool(inbox.of_type("subscribed")), "the ack")
        # The first replacement is refused (503); the next one opens but never answers.
        gateway.refuse = [503]
        gateway.answer_subscribe = False
        await eventually(lambda: gateway.opened >= 2, "a silent replacement")
        await eventually(lambda: 2 in gateway.closed, "the silent replacement given up")
        assert 1 not in gateway.closed
        await gateway.publish("D1")
        assert await inbox.until_seq("D1", 1) == [1]  # still delivered by the first connection
        gateway.answer_subscribe = True
        await eventually(lambda: client.stats.rotations >= 1, "a successful replacement")
    assert client.stats.reconnects == 0


async def test_dead_connection_without_pong_is_replaced(gateway: Gateway) -> None:
    """Pings that get no pong: the connection is declared dead and a new one resumes."""
    client = CloudWebSocketClient(
        gateway.url, "token", options=options(ping_interval=UNIT, pong_timeout=2 * UNIT)
    )
    inbox = Inbox(client)
    async with client:
        await client.subscribe("D1", since=0)
        await eventually(lambda: client.stats.pongs >= 1, "a pong")
        gateway.answer_ping = False
        await eventually(lambda: client.stats.dead_connections == 1, "the dead connection")
        gateway.answer_ping = True
        await eventually(lambda: client.connected and gateway.opened == 2, "the new connection")
        await gateway.publish("D1")
        assert await inbox.until_seq("D1", 1) == [1]


async def test_frames_out_of_order_duplicated_or_malformed(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever order the server sends, handlers see seq order once; junk is skipped and logged."""
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    inbox = Inbox(client)
    async with client:
        await client.subscribe("D1", since=0)
        await eventually(lambda: bool(inbox.of_type("subscribed")), "the ack")
        ws = gateway.connection(1)
        for seq in (3, 1, 2, 2):
            await ws.send(
                json.dumps({"type": "stack.started", "deployment_id": "D1", "seq": seq, "data": {}})
            )
        await ws.send("not json at all")
        await ws.send(json.dumps({"type": "maintenance", "at": "noon"}))
        await eventually(lambda: bool(inbox.of_type("maintenance")), "the unknown message")
    assert inbox.seqs("D1") == [1, 2, 3]
    assert client.stats.duplicates == 1
    assert "malformed frame" in caplog.text


async def test_handlers_iterators_and_lifecycle(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    """Async and sync handlers run in order; one that raises is logged and the others carry on."""
    seen: list[str] = []

    async def slow(message: Message) -> None:
        await asyncio.sleep(0)
        seen.append(f"async {message.type}")

    def broken(message: Message) -> None:
        raise RuntimeError("handler bug")

    def removed(message: Message) -> None:
        seen.append("removed handler called")

    client = CloudWebSocketClient(gateway.url, "token", options=options())
    client.on("log.created", slow)
    client.on("log.created", broken)
    client.on("log.created", removed)
    client.off("log.created", removed)
    client.off("never.registered", removed)
    await client.subscribe("D1", since=0)
    runner = asyncio.create_task(client.run())  # run() connects
    await eventually(lambda: client.connected, "the connection")
    await gateway.publish("D1")
    await eventually(lambda: seen == ["async log.created"], "the handler")
    assert client.subscriptions == ("D1",)
    assert client.state == "connected"
    await client.disconnect()
    await asyncio.wait_for(runner, timeout=10)
    assert "handler bug" in caplog.text
    with pytest.raises(CloudWsError, match="closed"):
        await client.connect()
    assert [m async for m in client.messages()] == []


async def test_disconnect_before_connect(gateway: Gateway) -> None:
    """A client that never connected stops at once; its iterators end."""
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    stream = client.messages()
    await client.disconnect()
    await client.disconnect()  # twice is fine
    assert [m async for m in stream] == []
    await asyncio.wait_for(client.run(), timeout=5)
    assert client.state == "closed"
    assert gateway.handshakes == 0


async def test_events_before_any_consumer_are_kept(gateway: Gateway) -> None:
    """Messages that arrive before messages() is first iterated are not lost."""
    async with CloudWebSocketClient(gateway.url, "token", options=options()) as client:
        await client.subscribe("D1", since=0)
        await gateway.publish("D1")
        await eventually(lambda: client.position("D1") == 1, "seq 1 received")
        logging.getLogger("test").info("consumer attaches late")
        stream = client.messages()
        ack, first = await next_message(stream), await next_message(stream)
        assert ack.type == "subscribed"
        assert isinstance(first, Event)
        assert first.seq == 1


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
async def test_supervisor_wait_never_swallows_a_cancellation(turns: int) -> None:
    """Cancelled a few loop turns after its event was set, a running wait raises CancelledError.

    Regression: ``asyncio.wait_for`` (Python 3.11) returned normally in that window, so
    the supervisor went on and disconnect() waited for it for ever.
    """
    event = asyncio.Event()
    waiter = asyncio.create_task(wait_for_event(event, 100.0))
    await asyncio.sleep(0)
    event.set()
    for _ in range(turns):
        await asyncio.sleep(0)
    if waiter.cancel():  # still running, so the cancellation must be honoured
        with pytest.raises(asyncio.CancelledError):
            await waiter
    else:
        await waiter  # it had already returned


def expiring_token() -> str:
    """A JWT-shaped token whose exp is inside the refresh margin (the fake server does not verify):
    3 s, so a provider's is replaced after 2 s (a short token is refreshed with a third of its
    lifetime left)."""
    payload = base64.urlsafe_b64encode(json.dumps({"exp": time.time() + 3}).encode()).decode().rstrip("=")
    return f"e30.{payload}.c2ln"


async def test_provider_tokens_are_replaced_before_they_expire(gateway: Gateway) -> None:
    """A provider's token close to exp: the connection is replaced (make before break) with a fresh one."""
    tokens: list[str] = []

    def provider() -> str:
        tokens.append(expiring_token())
        return tokens[-1]

    client = CloudWebSocketClient(gateway.url, provider, options=options(min_uptime=UNIT))
    async with client:
        await eventually(lambda: client.stats.rotations >= 1, "a replacement before expiry")
    assert len(tokens) >= 2
    assert client.stats.reconnects == 0


async def test_a_fixed_token_is_not_replaced_for_its_expiry(gateway: Gateway) -> None:
    """A fixed token cannot be refreshed, so its expiry does not trigger a futile replacement."""
    client = CloudWebSocketClient(
        gateway.url, expiring_token(), options=options(min_uptime=UNIT, ping_interval=UNIT)
    )
    async with client:
        # Three keep-alive rounds take longer than the replacement would have waited (UNIT).
        await eventually(lambda: client.stats.pongs >= 3, "three pongs")
        assert client.stats.rotations == 0
    assert gateway.handshakes == 1


async def test_concurrent_connects_and_disconnects(gateway: Gateway) -> None:
    """Two connect() calls at once open one connection; two disconnect() calls both wait for the end."""
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    await asyncio.gather(client.connect(), client.connect())
    assert gateway.handshakes == 1
    await asyncio.gather(client.disconnect(), client.disconnect())
    assert client.state == "closed"
    await eventually(lambda: gateway.closed == [1], "the server to see the close")


async def test_multi_message_frames_are_split(gateway: Gateway) -> None:
    """An ack with its replay in one frame, and a batch of live events in another: each message once."""
    for _ in range(3):
        await gateway.publish("D1", deliver=False)
    gateway.pack = True
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    inbox = Inbox(client)
    async with client:
        await client.subscribe("D1", since=0)
        assert await inbox.until_seq("D1", 3) == [1, 2, 3]
        batch = [
            json.dumps({"type": "log.created", "deployment_id": "D1", "seq": seq, "data": {}})
            for seq in (5, 4, 6)
        ]
        await gateway.connection(1).send("\n".join(batch))
        assert await inbox.until_seq("D1", 6) == [1, 2, 3, 4, 5, 6]
    assert inbox.messages[0].type == "subscribed"
    assert client.stats.repairs == 0


async def test_replies_out_of_order_are_matched_by_id(gateway: Gateway) -> None:
    """Acks of two live-only subscriptions answered in reverse: each stream starts at its own ack."""
    for _ in range(5):
        await gateway.publish("D1", deliver=False)
    await gateway.publish("D2", deliver=False)
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    inbox = Inbox(client)
    async with client:
        gateway.hold = True
        await client.subscribe("D1")
        await client.subscribe("D2")
        await eventually(lambda: len(gateway.held) == 2, "both subscribes held")
        await gateway.release(reverse=True)
        await eventually(lambda: len(inbox.of_type("subscribed")) == 2, "both acks")
        assert (client.position("D1"), client.position("D2")) == (5, 1)
        await gateway.publish("D2")
        await gateway.publish("D1")
        await inbox.until_seq("D1", 6)
        await inbox.until_seq("D2", 2)
    acks = [m for m in inbox.messages if isinstance(m, Subscribed)]
    assert [(a.deployment_id, a.request_id) for a in acks] == [
        ("D2", gateway.ids_of(1, "subscribe")[1]),
        ("D1", gateway.ids_of(1, "subscribe")[0]),
    ]
    assert (inbox.seqs("D1"), inbox.seqs("D2")) == ([6], [2])
    assert client.stats.unmatched == 0


async def test_a_replacement_is_complete_only_when_its_own_ids_are_answered(gateway: Gateway) -> None:
    """Stray replies do not count as a new connection's answers; its own, in any order, do."""
    client = CloudWebSocketClient(
        gateway.url, "token", options=options(max_connection_age=5 * UNIT, open_timeout=5 * UNIT)
    )
    inbox = Inbox(client)
    async with client:
        for deployment_id in ("D1", "D2", "D3"):
            await client.subscribe(deployment_id, since=0)
        await eventually(lambda: len(inbox.of_type("subscribed")) == 3, "the first acks")
        # Given a replacement whose resubscribes get only replies with ids it never sent...
        gateway.hold = True
        await eventually(lambda: len(gateway.held) == 3, "the replacement's resubscribes held")
        for deployment_id in ("D1", "D2", "D3"):
            stray = {
                "type": "subscribed",
                "deployment_id": deployment_id,
                "seq": 0,
                "id": f"x-{deployment_id}",
            }
            await gateway.connection(2).send(json.dumps(stray))
        # ...it is given up, and the first connection stays.
        await eventually(lambda: 2 in gateway.closed, "the unanswered replacement given up")
        assert client.stats.rotations == 0
        assert 1 not in gateway.closed
        gateway.held.clear()
        # When the next replacement's own replies come back in reverse order, it takes over.
        gateway.hold = True
        await eventually(lambda: len(gateway.held) == 3, "the next replacement's resubscribes held")
        await gateway.release(reverse=True)
        await eventually(lambda: client.stats.rotations == 1, "the replacement")
        await gateway.publish("D3")
        assert await inbox.until_seq("D3", 1) == [1]
    assert client.stats.unmatched >= 3
    assert client.stats.reconnects == 0


async def test_a_pong_with_an_unknown_id_does_not_keep_a_connection_alive(gateway: Gateway) -> None:
    """Only the pong that echoes the ping's id proves the path: stray pongs leave the connection dead."""
    client = CloudWebSocketClient(
        gateway.url, "token", options=options(ping_interval=UNIT, pong_timeout=2 * UNIT)
    )
    async with client:
        await client.subscribe("D1", since=0)
        await eventually(lambda: client.stats.pongs >= 1, "a matched pong")
        gateway.pong_id = "not-a-ping-of-ours"
        await eventually(lambda: client.stats.dead_connections == 1, "the connection given up")
        gateway.pong_id = None
        await eventually(lambda: client.connected and gateway.opened == 2, "the new connection")
    assert client.stats.unmatched >= 1


async def test_pong_latest_ahead_catches_up_with_since(gateway: Gateway) -> None:
    """The last event is lost (nothing later reveals it): the next pong does, and since fetches it."""
    client = CloudWebSocketClient(gateway.url, "token", options=options(ping_interval=2 * UNIT))
    inbox = Inbox(client)
    async with client:
        await client.subscribe("D1", since=0)
        await gateway.publish("D1")
        await inbox.until_seq("D1", 1)
        await gateway.publish("D1", "the end", deliver=False)  # stored, never sent
        assert await inbox.until_seq("D1", 2) == [1, 2]
    assert client.stats.catch_ups >= 1
    assert {"action": "subscribe", "deployment_id": "D1", "since": 1} in gateway.frames_of(1, "subscribe")
    assert client.stats.reconnects == 0


async def test_a_server_without_request_ids_still_works(gateway: Gateway) -> None:
    """Replies without ids are taken as they come: pongs keep the connection, acks complete a replacement."""
    gateway.echo_ids = False
    client = CloudWebSocketClient(
        gateway.url, "token", options=options(ping_interval=UNIT, max_connection_age=5 * UNIT)
    )
    inbox = Inbox(client)
    async with client:
        await client.subscribe("D1", since=0)
        await client.subscribe("D2", since=0)
        await eventually(lambda: client.stats.pongs >= 2, "two pongs")
        await eventually(lambda: client.stats.rotations >= 1, "a replacement")
        await gateway.publish("D2")
        assert await inbox.until_seq("D2", 1) == [1]
    assert client.stats.dead_connections == 0
    assert client.stats.unmatched == 0


async def test_a_history_that_went_back_is_reported_and_followed(gateway: Gateway) -> None:
    """The server forgets the deployment under a connected client (a restarted local stack): the
    resubscribe with since 3 is answered at seq 0; the client hands over a HistoryReset, drops its
    position and delivers the new history's events instead of dropping them as duplicates."""
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    inbox = Inbox(client)
    async with client:
        await client.subscribe("D1", since=0)
        for _ in range(3):
            await gateway.publish("D1")
        await inbox.until_seq("D1", 3)
        # When the server restarts with an empty history...
        gateway.history["D1"] = []
        await gateway.connection(1).close(1012)
        await eventually(lambda: bool(inbox.of_type("history_reset")), "the history reset")
        await gateway.publish("D1", "new 1")
        await gateway.publish("D1", "new 2")
        # ...the new history is delivered from its start, after the report.
        await eventually(lambda: len(inbox.seqs("D1")) == 5, "the new history's two events")
        assert inbox.seqs("D1") == [1, 2, 3, 1, 2]
        assert client.position("D1") == 2
    (reset,) = inbox.of_type("history_reset")
    assert isinstance(reset, HistoryReset)
    assert (reset.deployment_id, reset.seq, reset.previous) == ("D1", 0, 3)
    assert reset.raw == {"type": "history_reset", "deployment_id": "D1", "seq": 0, "previous": 3}
    kinds = [m.type for m in inbox.messages if m.type in ("subscribed", "history_reset")]
    assert kinds == ["subscribed", "subscribed", "history_reset"]
    assert gateway.frames_of(2, "subscribe") == [{"action": "subscribe", "deployment_id": "D1", "since": 3}]
    assert client.stats.history_resets == 1


async def test_a_refused_ping_still_proves_the_connection_alive(gateway: Gateway) -> None:
    """A ping answered ``rate_limited`` (the connection is flooding) is an answer: the connection
    is not declared dead and replaced, which would orphan every request waiting on it."""
    gateway.limit_pings = True
    client = CloudWebSocketClient(
        gateway.url, "token", options=options(ping_interval=UNIT, pong_timeout=2 * UNIT)
    )
    async with client:
        await eventually(
            lambda: sum(1 for _, f in gateway.frames if f["action"] == "ping") >= 5, "five pings"
        )
        assert client.stats.dead_connections == 0
    assert gateway.handshakes == 1
