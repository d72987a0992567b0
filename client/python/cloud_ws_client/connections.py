"""The connection lifecycle: open, authenticate, keep alive, replace and reconnect.

:class:`Connections` keeps one client's WebSocket connections; the protocol
state stays in :class:`~cloud_ws_client.protocol.ClientProtocol`, and this
module only opens connections, moves frames and keeps time:

- a *supervisor* task watches the active connection: it sends keep-alive
  pings, declares the connection dead when a pong does not come back (so a
  connection API Gateway forgot, whose frames go nowhere, is noticed within
  ``ping_interval + pong_timeout``, 40 s by default),
  replaces it before API Gateway's 2 h cap or the token's expiry (a new
  connection is subscribed before the old one closes), and reconnects after
  a loss with the policy of :mod:`cloud_ws_client.backoff`;
- a *reader* task per connection feeds frames to the protocol, and hands the
  messages to the caller awaiting them (:class:`~cloud_ws_client.pending.PendingRequests`)
  or to delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from cloud_ws_client.auth import TokenSource, handshake, resolve_token, token_expiry
from cloud_ws_client.backoff import backoff, process_exception
from cloud_ws_client.errors import ConnectError
from cloud_ws_client.messages import ErrorMessage, Message, Pong, Subscribed
from cloud_ws_client.options import ClientOptions, ClientStats, ConnectionState, rotation_delay
from cloud_ws_client.pending import PendingRequests
from cloud_ws_client.protocol import RECONNECT_ERROR_CODES, ClientProtocol, Outgoing

log = logging.getLogger("cloud_ws_client")

_Reason = Literal["closed", "dead", "rotate"]


@dataclass(eq=False)
class Link:
    """One WebSocket connection and the supervisor's bookkeeping for it."""

    ws: ClientConnection
    number: int
    opened_at: float
    rotate_at: float
    """Loop time at which to replace the connection."""
    rotate_wall_at: float
    """The same moment on the wall clock, which (unlike the loop's) advances while a laptop sleeps."""
    next_ping_at: float
    ping_sent_at: float | None = None
    ping_id: str | None = None
    """The ``id`` of the ping in flight: only the pong that echoes it proves the connection alive."""
    replace: bool = False
    """The server asked, through an error frame, for a new connection."""
    pending: set[str] = field(default_factory=set)
    """Ids of the resubscribes sent on this connection and not answered yet."""
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once every resubscribe got its answer (or the connection closed)."""
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None


class Connections:
    """The connections of one client, and the supervisor that keeps one of them working.

    Args:
        url: The endpoint; read again at every attempt (a token provider may move it).
        token: A fixed token, or a provider called before every connection attempt.
        options: Timing and policy.
        protocol: The client's sans-I/O protocol: frames in, frames and messages out.
        stats: The client's counters; the connection ones are kept here.
        requests: The replies callers await, taken out of the stream.
        deliver: Takes every other message to deliver.
        stop: Stops the whole client on the error the supervisor gave up on.
        user_agent: The handshake's ``User-Agent``.
    """

    def __init__(
        self,
        url: str,
        token: TokenSource,
        options: ClientOptions,
        *,
        protocol: ClientProtocol,
        stats: ClientStats,
        requests: PendingRequests,
        deliver: Callable[[Message], None],
        stop: Callable[[BaseException], Awaitable[None]],
        user_agent: str,
    ) -> None:
        self.url = url
        self.options = options
        self._token = token
        self._protocol = protocol
        self._stats = stats
        self._requests = requests
        self._deliver = deliver
        self._stop = stop
        self._user_agent = user_agent
        self._wake = asyncio.Event()
        self._links: list[Link] = []
        """Connections that get every frame the API sends (the active one, and a new one being set up)."""
        self._open_links: set[Link] = set()
        """Every connection not yet closed, for the final clean-up."""
        self._closers: set[asyncio.Task[None]] = set()
        self._delays: Iterator[float] | None = None
        self._closing = False
        self.active: Link | None = None
        """The connection in use (None before the first one opened)."""
        self.supervisor: asyncio.Task[None] | None = None
        self.phase: ConnectionState = "idle"
        """``idle``, ``connected``, ``reconnecting`` or ``waiting``: :meth:`close` does not change it."""

    @property
    def is_open(self) -> bool:
        """True while the active connection is open."""
        return self.active is not None and not self.active.closed.is_set()

    async def connect(self) -> None:
        """Open the first connection, restore the subscriptions on it and start the supervisor.

        The first connection fails fast: nothing is retried here.

        Raises:
            AuthenticationError: The token was refused (HTTP 401/403).
            ConnectError: The endpoint could not be reached or refused the handshake.
        """
        try:
            link = await self._open_link()
        except Exception as exc:
            decision = process_exception(exc)
            if decision is None:
                raise ConnectError(f"cannot connect to {self.url}: {describe(exc)}") from exc
            if decision is exc:
                raise
            raise decision from exc
        await self._install(link)
        self.active = link
        self.phase = "connected"
        self.supervisor = asyncio.create_task(self._supervise(), name="cloud-ws supervisor")

    async def close(self) -> None:
        """Stop the supervisor (unless it is the caller) and close every connection."""
        self._closing = True
        supervisor = self.supervisor
        if supervisor is not None and supervisor is not asyncio.current_task() and not supervisor.done():
            supervisor.cancel()
            await asyncio.wait({supervisor})
        self._links.clear()
        links = list(self._open_links)
        await asyncio.gather(*(self._close(link) for link in links), return_exceptions=True)
        if self._closers:
            await asyncio.wait(set(self._closers))

    async def send_all(self, outgoing: Outgoing) -> None:
        """Send a request on every connection that gets frames (none when not connected)."""
        # During a replacement both connections get the request, with one id: the first
        # reply answers it, and the protocol ignores the second.
        if not self._links:
            # Not connected: the new connection's resubscribes ask for it instead.
            self._protocol.forget([outgoing.request_id])
        for link in list(self._links):
            await self._send(link, outgoing)

    # -- connections ------------------------------------------------------------------------

    async def _open_link(self) -> Link:
        self._stats.connect_attempts += 1
        token = await resolve_token(self._token)
        url, headers, subprotocols = handshake(self.url, token, self.options.token_transport)
        ws = await websockets_connect(
            url,
            additional_headers=headers,
            subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols else None,
            user_agent_header=self._user_agent,
            open_timeout=self.options.open_timeout,
            close_timeout=self.options.close_timeout,
            # Liveness is checked with the protocol's own ping/pong, which
            # proves the whole path (API Gateway, the route, the Lambda); a
            # WebSocket-level pong only proves the TCP connection.
            ping_interval=None,
            compression=None,  # API Gateway does not negotiate permessage-deflate
        )
        now, now_wall = asyncio.get_running_loop().time(), time.time()
        options = self.options
        # Replacing a connection before its token expires only helps when a
        # provider can hand out a fresh one; a fixed token would be refused on
        # the replacement while the connection it has keeps working.
        exp = token_expiry(token) if callable(self._token) else None
        if exp is not None and exp - now_wall < options.min_uptime:
            log.warning(
                "cloud-ws: the token expires in %.0f s; the provider should return fresh ones", exp - now_wall
            )
        delay = rotation_delay(
            max_age=options.max_connection_age,
            token_exp=exp,
            now_wall=now_wall,
            margin=options.token_refresh_margin,
            floor=options.min_uptime,
        )
        self._stats.connections += 1
        link = Link(
            ws,
            self._stats.connections,
            opened_at=now,
            rotate_at=now + delay,
            rotate_wall_at=now_wall + delay,
            next_ping_at=now + options.ping_interval,
        )
        self._open_links.add(link)
        link.reader = asyncio.create_task(self._read(link), name=f"cloud-ws reader {link.number}")
        log.info("cloud-ws: connection %d open to %s", link.number, self.url)
        return link

    async def _install(self, link: Link) -> None:
        """Make ``link`` receive every frame from now on, and restore the subscriptions on it."""
        # Added before the first await: a subscribe() racing with this goes to
        # the new connection too.
        self._links.append(link)
        frames = self._protocol.resubscribe_frames()
        link.pending = {outgoing.request_id for outgoing in frames}
        if not frames:
            link.answered.set()
        for outgoing in frames:
            await self._send(link, outgoing)

    def _retire(self, link: Link) -> None:
        """Stop using ``link`` and close it in the background."""
        with contextlib.suppress(ValueError):
            self._links.remove(link)
        closer = asyncio.create_task(self._close(link))
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    async def _close(self, link: Link) -> None:
        with contextlib.suppress(Exception):
            await link.ws.close()
        if link.reader is not None:
            await asyncio.wait({link.reader})
        self._open_links.discard(link)

    async def _read(self, link: Link) -> None:
        try:
            async for frame in link.ws:
                try:
                    self._on_frame(link, frame)
                except Exception:  # a bug here must not cost the connection
                    log.exception("cloud-ws: could not handle a frame")
        except ConnectionClosed:
            pass
        finally:
            log.info(
                "cloud-ws: connection %d closed (%s)",
                link.number,
                link.ws.close_code if link.ws.close_code is not None else "no close frame",
            )
            link.closed.set()
            link.answered.set()
            # Replies to what was sent on this connection will never come.
            self._protocol.forget({*link.pending, *([link.ping_id] if link.ping_id else [])})
            self._wake.set()

    def _on_frame(self, link: Link, frame: str | bytes) -> None:
        now = asyncio.get_running_loop().time()
        repair_at = self._protocol.next_repair_at()
        for message in self._protocol.receive(frame, now):
            request_id = message.request_id
            if isinstance(message, Pong):
                # The protocol passes only pongs that answer a ping of ours (or, from a
                # server without ids, carry none); a connection has one ping in flight.
                if request_id is None or request_id == link.ping_id:
                    link.ping_sent_at = link.ping_id = None
                    self._stats.pongs += 1
                continue
            if isinstance(message, ErrorMessage) and request_id is not None and request_id == link.ping_id:
                # An answer to our ping, even a refusal (``rate_limited`` while the connection
                # floods, ``token_expired``), proves the connection alive: replacing it would
                # orphan every request still waiting for an answer on it.
                link.ping_sent_at = link.ping_id = None
            if request_id is not None and request_id in link.pending:
                link.pending.discard(request_id)
                if not link.pending:
                    link.answered.set()
            elif request_id is None and link.pending and _answers_subscribe(message):
                link.pending.pop()  # a server without ids: count the answers instead
                if not link.pending:
                    link.answered.set()
            if isinstance(message, ErrorMessage) and message.code in RECONNECT_ERROR_CODES:
                link.replace = True
                self._wake.set()
            if self._requests.resolve(message):
                continue  # the caller that asked gets it
            self._deliver(message)
        after = self._protocol.next_repair_at()
        if after is not None and (repair_at is None or after < repair_at):
            # A gap opened: the supervisor must wake up in time to repair it. (A gap that
            # closed or moved later needs nothing: it wakes at the old time and finds none.)
            self._wake.set()

    async def _send(self, link: Link, outgoing: Outgoing) -> None:
        with contextlib.suppress(ConnectionClosed):  # the reader notices and the supervisor acts
            await link.ws.send(outgoing.text)

    # -- supervision ------------------------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            # disconnect() cancels this task; the loop condition is a second line of defence.
            while not self._closing:
                link = self.active
                assert link is not None
                reason = await self._watch(link)
                if reason == "rotate":
                    await self._rotate(link)
                else:
                    self.active = await self._reconnect(link)
        except Exception as exc:  # noqa: BLE001 - whatever stops the client is surfaced by run()
            log.error("cloud-ws: giving up: %s", describe(exc))
            await self._stop(exc)

    async def _watch(self, link: Link) -> _Reason:
        """Keep ``link`` alive until it must be replaced; returns why."""
        options, loop = self.options, asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if link.closed.is_set():
                return "closed"
            now = loop.time()
            if link.ping_sent_at is not None and now - link.ping_sent_at >= options.pong_timeout:
                self._stats.dead_connections += 1
                log.warning(
                    "cloud-ws: no pong in %.1f s: connection %d is dead", options.pong_timeout, link.number
                )
                return "dead"
            if link.replace or now >= link.rotate_at or time.time() >= link.rotate_wall_at:
                return "rotate"
            if now >= link.next_ping_at:
                link.next_ping_at = now + options.ping_interval
                if link.ping_sent_at is None:
                    ping = self._protocol.ping()
                    link.ping_sent_at, link.ping_id = now, ping.request_id
                    await self._send(link, ping)
            frames, released = self._protocol.repair(now)
            for message in released:
                self._deliver(message)
            for outgoing in frames:
                await self._send(link, outgoing)
            if self._delays is not None and now - link.opened_at >= options.min_uptime:
                self._delays = None  # the connection stayed up: the next failure starts afresh
            deadlines = [link.next_ping_at, link.rotate_at]
            if link.ping_sent_at is not None:
                deadlines.append(link.ping_sent_at + options.pong_timeout)
            if (repair_at := self._protocol.next_repair_at()) is not None:
                deadlines.append(repair_at)
            if self._delays is not None:
                deadlines.append(link.opened_at + options.min_uptime)
            await wait_event(self._wake, min(deadlines) - loop.time())

    async def _rotate(self, old: Link) -> None:
        """Make before break: subscribe a new connection, then close the old one."""
        log.info("cloud-ws: replacing connection %d", old.number)
        try:
            new = await self._open_link()
        except Exception as exc:  # noqa: BLE001 - process_exception decides: retry later or raise
            raise_if_fatal(exc)
            self._postpone(old, f"could not open a replacement: {describe(exc)}")
            return
        await self._install(new)
        await wait_event(new.answered, self.options.open_timeout)
        if new.closed.is_set() or not new.answered.is_set():
            self._retire(new)
            self._postpone(old, "the replacement did not answer its subscriptions")
            return
        # The new connection asked for everything after the last seq delivered,
        # so whatever the old one still had in flight is replayed or arrives
        # twice (and is dropped by seq): closing it now loses nothing.
        self.active = new
        self._retire(old)
        self._stats.rotations += 1

    def _postpone(self, link: Link, why: str) -> None:
        """Keep using ``link`` and try replacing it again after a backoff delay."""
        delay = self._next_delay()
        log.warning("cloud-ws: %s; retrying in %.1f s", why, delay)
        link.replace = False
        link.rotate_at = asyncio.get_running_loop().time() + delay
        link.rotate_wall_at = time.time() + delay

    async def _reconnect(self, old: Link) -> Link:
        """Break before make: the old connection is gone; open and subscribe a new one."""
        self._retire(old)
        self._stats.reconnects += 1
        stayed_up = asyncio.get_running_loop().time() - old.opened_at >= self.options.min_uptime
        if stayed_up:
            self._delays = None
        # Like websockets' reconnecting iterator: the first attempt after a
        # connection that stayed up is immediate; every later one waits.
        wait = not stayed_up
        while True:
            if wait:
                delay = self._next_delay()
                log.info("cloud-ws: reconnecting in %.2f s", delay)
                self.phase = "waiting"
                await asyncio.sleep(delay)  # disconnect() cancels this task, also here
            wait = True
            self.phase = "reconnecting"
            try:
                link = await self._open_link()
            except Exception as exc:  # noqa: BLE001 - process_exception decides: retry or raise
                raise_if_fatal(exc)
                log.info("cloud-ws: connection attempt failed: %s", describe(exc))
                continue
            await self._install(link)
            self.phase = "connected"
            return link

    def _next_delay(self) -> float:
        if self._delays is None:
            options = self.options
            self._delays = backoff(options.backoff_initial, options.backoff_max, options.backoff_factor)
        return next(self._delays)


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds have passed.

    Neither ``asyncio.wait_for`` nor ``asyncio.timeout``: on Python 3.11 the
    former swallows a cancellation that arrives as the event is set (so
    disconnect() would wait for ever for the supervisor), and the latter times
    out by throwing a cancellation into the waiting task, which coverage.py's
    tracer loses track of. ``asyncio.wait`` just stops waiting.
    """
    if event.is_set():
        return
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=max(0.0, timeout))
    finally:
        waiter.cancel()


def _answers_subscribe(message: Message) -> bool:
    return isinstance(message, Subscribed) or (
        isinstance(message, ErrorMessage) and message.action == "subscribe"
    )


def describe(exc: BaseException) -> str:
    """``exc`` in a few words, for logs and one-line errors."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def raise_if_fatal(exc: Exception) -> None:
    """Raise what :func:`~cloud_ws_client.backoff.process_exception` makes of ``exc``; return to retry."""
    decision = process_exception(exc)
    if decision is exc:
        raise exc
    if decision is not None:
        raise decision from exc
