"""``CloudWebSocketClient``: one logical subscription stream over connections that come and go.

The I/O half of the client. The protocol state (subscriptions, ``seq``
ordering, gap repair) lives in :class:`~cloud_ws_client.protocol.ClientProtocol`;
this module opens connections, moves frames and keeps time:

- a *supervisor* task watches the active connection: it sends keep-alive
  pings, declares the connection dead when a pong does not come back (so a
  connection API Gateway forgot, whose frames go nowhere, is noticed within
  ``ping_interval + pong_timeout``, 40 s by default),
  replaces it before API Gateway's 2 h cap or the token's expiry (a new
  connection is subscribed before the old one closes), and reconnects after
  a loss with the policy of :mod:`cloud_ws_client.backoff`;
- a *reader* task per connection feeds frames to the protocol;
- a *dispatcher* task hands delivered messages to handlers and to
  :meth:`CloudWebSocketClient.messages` iterators, so a slow handler never
  delays reading (or a pong).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import Any, Literal, Self

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol
from websockets.version import version as websockets_version

from cloud_ws_client._protocol_generated import DEFAULT_LIST_LIMIT
from cloud_ws_client.auth import TokenSource, TokenTransport, handshake, resolve_token, token_expiry
from cloud_ws_client.backoff import backoff, process_exception
from cloud_ws_client.errors import CloudWsError, ConnectError, RequestError
from cloud_ws_client.messages import Deployments, ErrorMessage, Message, Pong, Subscribed
from cloud_ws_client.outputs import WEBSOCKET_URL, password_auth, read_outputs
from cloud_ws_client.protocol import RECONNECT_ERROR_CODES, ClientProtocol, Outgoing

log = logging.getLogger("cloud_ws_client")

__version__ = "0.1.0"
USER_AGENT = f"cloud-ws-client/{__version__} websockets/{websockets_version}"

Handler = Callable[[Message], Awaitable[None] | None]
"""A message handler: a function or coroutine function taking the message."""


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """How the client keeps its connection; every duration is in seconds.

    The defaults suit API Gateway: it closes a connection idle for 10 minutes
    and any connection after 2 hours, and it can forget a connection without
    closing it (frames then go nowhere): with the default keep-alive such a
    connection is noticed within :attr:`detection_bound` (40 s, under a
    minute) and replaced, and the new one resumes from the last ``seq``.
    """

    token_transport: TokenTransport = "header"
    """Where the handshake carries the token (``header``, ``query``, ``subprotocol``)."""
    open_timeout: float = 10.0
    """Longest wait for a handshake, and for a new connection's acknowledgements."""
    close_timeout: float = 5.0
    """Longest wait for a closing handshake."""
    ping_interval: float = 20.0
    """Keep-alive ``ping`` period. Each ``pong`` also carries every subscription's latest
    ``seq``, so a deployment's lost last event is caught up within this period too."""
    pong_timeout: float = 20.0
    """A connection whose pong has not come back after this long is dead (half-open)."""
    gap_timeout: float = 1.0
    """How long a gap in ``seq`` may last without progress before resubscribing with ``since``."""
    max_connection_age: float = 6600.0
    """Replace a connection after this long: 1 h 50 min, before API Gateway's 2 h cap."""
    token_refresh_margin: float = 60.0
    """Replace a connection this long before its token's ``exp`` (a third of the token's remaining
    lifetime, for tokens that live less than three margins)."""
    backoff_initial: float = 1.0
    """Upper bound of the first retry delay (full jitter)."""
    backoff_max: float = 30.0
    """Cap of the retry delay."""
    backoff_factor: float = 2.0
    """Growth of the retry delay bound per failed attempt."""
    min_uptime: float = 5.0
    """A connection that stayed up this long resets the backoff; none is replaced sooner."""
    max_buffered_events: int = 10_000
    """Most out-of-order events held per deployment while a gap is filled."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, int | float) and not value > 0:
                raise ValueError(f"ClientOptions.{item.name} must be positive, got {value!r}")
        if self.token_transport not in ("header", "query", "subprotocol"):
            raise ValueError(
                f"token_transport must be header, query or subprotocol, not {self.token_transport!r}"
            )

    @property
    def detection_bound(self) -> float:
        """Longest time a dead or forgotten connection goes unnoticed: ``ping_interval + pong_timeout``.

        Worst case: the connection dies just after a pong came back; the next
        ping goes out ``ping_interval`` later, and its pong is given up on
        ``pong_timeout`` after that.
        """
        return self.ping_interval + self.pong_timeout


@dataclass
class ClientStats:
    """Counters of what the client did (for logs, metrics and tests)."""

    connect_attempts: int = 0
    """Handshakes attempted (including refused and failed ones)."""
    connections: int = 0
    """Handshakes that succeeded."""
    reconnects: int = 0
    """Connections lost and replaced after the fact."""
    rotations: int = 0
    """Connections replaced before they closed (age, token expiry, server request)."""
    dead_connections: int = 0
    """Connections declared dead because a pong did not come back."""
    pongs: int = 0
    """Keep-alive pongs received (matched to their ping by ``id``)."""
    catch_ups: int = 0
    """Times a pong's ``latest`` showed a deployment ahead of what was delivered."""
    unmatched: int = 0
    """Replies whose ``id`` answers no request of ours (ignored)."""
    duplicates: int = 0
    """Events dropped because their ``seq`` was already delivered."""
    repairs: int = 0
    """Resubscribes sent to fill a gap in ``seq``."""
    history_resets: int = 0
    """Deployments whose history went backwards and were started again from the snapshot."""


def rotation_delay(
    *, max_age: float, token_exp: float | None, now_wall: float, margin: float, floor: float
) -> float:
    """Seconds from opening a connection to replacing it.

    The earlier of ``max_age`` and ``margin`` before the token expires, but
    never less than ``floor``: a provider that hands out nearly expired tokens
    must not make the client reconnect in a tight loop. A token that lives
    less than three margins is refreshed when a third of its remaining
    lifetime is left (a 30 s token after 20 s), so its connection is used
    for most of it and still replaced well before ``exp``.
    """
    delay = max_age
    if token_exp is not None:
        remaining = token_exp - now_wall
        delay = min(delay, remaining - min(margin, max(remaining, 0.0) / 3))
    return max(delay, floor)


_Reason = Literal["closed", "dead", "rotate"]

ConnectionState = Literal["idle", "connected", "reconnecting", "waiting", "closed"]
"""Where the client stands: not connected yet, connected, opening a replacement after a
loss, waiting out a backoff delay before the next attempt, or closed for good."""


@dataclass(eq=False)
class _Link:
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


class CloudWebSocketClient:
    """A cloud-ws client: subscribe to deployments and receive their events, nothing missed.

    Example:
        ```python
        client = CloudWebSocketClient.from_outputs(".cloud-ws/outputs.json")
        client.on("stack.failed", lambda event: print(event.data))
        async with client:
            await client.subscribe("D1BRV40", since=0)
            async for message in client.messages():
                print(message.type, message.raw)
        ```

    Args:
        url: The ``websocket_url`` output (``wss://…/{stage}``).
        token: A fixed token, or a provider (sync or async callable) called
            before every connection attempt.
        options: Timing and policy; see :class:`ClientOptions`.
    """

    def __init__(self, url: str, token: TokenSource, *, options: ClientOptions | None = None) -> None:
        self.url = url
        self.options = options or ClientOptions()
        self._token = token
        self._protocol = ClientProtocol(
            gap_timeout=self.options.gap_timeout, max_buffer=self.options.max_buffered_events
        )
        self._stats = ClientStats()
        self._handlers: dict[str, list[Handler]] = {}
        self._queues: list[asyncio.Queue[Message | None]] = []
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self._consuming = asyncio.Event()
        self._stopped = asyncio.Event()
        self._wake = asyncio.Event()
        self._links: list[_Link] = []
        """Connections that get every frame the API sends (the active one, and a new one being set up)."""
        self._open_links: set[_Link] = set()
        """Every connection not yet closed, for the final clean-up."""
        self._closers: set[asyncio.Task[None]] = set()
        self._active: _Link | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._delays: Iterator[float] | None = None
        self._closing = False
        self._finished = asyncio.Event()
        self._connect_lock = asyncio.Lock()
        self._failure: BaseException | None = None
        self._phase: ConnectionState = "idle"
        self._answers: dict[str, asyncio.Future[Message]] = {}
        """Requests whose reply a caller awaits (``list_deployments``), by request id."""

    @classmethod
    def from_outputs(
        cls,
        outputs: Mapping[str, Any] | str | os.PathLike[str],
        token: TokenSource | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        options: ClientOptions | None = None,
    ) -> Self:
        """A client for the stack described by its outputs (a mapping or a JSON file).

        Without ``token``, every connection signs in through the stack's
        Cognito user pool: as the dev user against ``cloud-ws local``, or as
        ``username``/``password`` against a cloud stack.

        Raises:
            ValueError: The outputs are incomplete, or a cloud stack was given
                neither a token nor credentials.
            OSError: The outputs file cannot be read.
        """
        data = read_outputs(outputs)
        source = token if token is not None else password_auth(data, username, password)
        return cls(str(data[WEBSOCKET_URL]), source, options=options)

    # -- state ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._active is not None and not self._active.closed.is_set() and not self._closing

    @property
    def state(self) -> ConnectionState:
        """``idle``, ``connected``, ``reconnecting``, ``waiting`` (a backoff delay) or ``closed``."""
        return "closed" if self._closing else self._phase

    @property
    def closed(self) -> bool:
        """True once :meth:`disconnect` was called or the client stopped on an error."""
        return self._closing

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The subscribed deployment ids."""
        return self._protocol.subscriptions

    def position(self, deployment_id: str) -> int | None:
        """The last ``seq`` delivered in order for a deployment (``None`` if not known yet)."""
        return self._protocol.position(deployment_id)

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the client's counters."""
        snapshot = ClientStats(**vars(self._stats))
        snapshot.duplicates = self._protocol.duplicates
        snapshot.repairs = self._protocol.repairs
        snapshot.catch_ups = self._protocol.catch_ups
        snapshot.unmatched = self._protocol.unmatched
        snapshot.history_resets = self._protocol.history_resets
        return snapshot

    # -- the API ----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection and send the subscriptions made so far.

        The first connection fails fast, so a wrong URL or token is reported
        at once; after it, connections lost are re-established in the
        background until :meth:`disconnect`.

        Raises:
            AuthenticationError: The token was refused (HTTP 401/403).
            ConnectError: The endpoint could not be reached or refused the handshake.
            CloudWsError: The client was already closed.
        """
        async with self._connect_lock:  # two concurrent calls open one connection
            if self._closing:
                raise CloudWsError("this client is closed; create a new one")
            if self._active is not None:
                return
            try:
                link = await self._open_link()
            except Exception as exc:
                decision = process_exception(exc)
                if decision is None:
                    raise ConnectError(f"cannot connect to {self.url}: {_describe(exc)}") from exc
                if decision is exc:
                    raise
                raise decision from exc
            await self._install(link)
            self._active = link
            self._phase = "connected"
            self._supervisor = asyncio.create_task(self._supervise(), name="cloud-ws supervisor")
            self._dispatcher = asyncio.create_task(self._dispatch(), name="cloud-ws dispatcher")

    async def subscribe(self, deployment_id: str, since: int | None = None) -> None:
        """Watch a deployment; sent now if connected, else on :meth:`connect`.

        Args:
            deployment_id: The deployment to watch.
            since: Replay stored events after this ``seq`` first (``0`` = the
                whole history); ``None`` = live events only. A deployment that
                is already subscribed keeps its position.

        Raises:
            ValueError: The deployment id or ``since`` would be refused by the server.
        """
        await self._send_all(self._protocol.subscribe(deployment_id, since))

    async def unsubscribe(self, deployment_id: str) -> None:
        """Stop watching a deployment; its later events are dropped."""
        await self._send_all(self._protocol.unsubscribe(deployment_id))

    async def list_deployments(
        self, limit: int = DEFAULT_LIST_LIMIT, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """The deployments the caller may watch, newest first (by their latest event).

        Each is a dict with ``deployment_id``, ``status``, ``attempt``,
        ``current_layer``, ``total_layers``, ``updated_at`` and ``environment``.
        The reply is matched to the request by its ``id``.

        Args:
            limit: At most this many (1 to 200).
            timeout: Longest wait for the answer (default: ``options.open_timeout``).

        Raises:
            ValueError: ``limit`` would be refused.
            RequestError: The server refused the request (its ``code``), or did not answer in time.
            CloudWsError: The client is not connected, or stopped while waiting.
        """
        outgoing = self._protocol.list_deployments(limit)
        if not self.connected:
            self._protocol.forget([outgoing.request_id])
            raise CloudWsError("not connected: call connect() first")
        answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._answers[outgoing.request_id] = answer
        stopped: asyncio.Future[Any] = asyncio.ensure_future(self._finished.wait())
        try:
            await self._send_all(outgoing)
            waiting: set[asyncio.Future[Any]] = {answer, stopped}
            await asyncio.wait(
                waiting,
                timeout=self.options.open_timeout if timeout is None else timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stopped.cancel()
            self._answers.pop(outgoing.request_id, None)
        if not answer.done():
            self._protocol.forget([outgoing.request_id])
            if self._closing:
                raise (
                    self._failure
                    if isinstance(self._failure, CloudWsError)
                    else CloudWsError("the client stopped before the deployment list came")
                )
            raise RequestError("the server did not answer list_deployments in time")
        reply = answer.result()
        if isinstance(reply, ErrorMessage):
            raise RequestError(f"{reply.code}: {reply.message}", reply.code)
        assert isinstance(reply, Deployments)
        return [dict(row) for row in reply.deployments]

    def on(self, message_type: str, handler: Handler) -> Handler:
        """Call ``handler`` for every delivered message of ``message_type`` (``"*"`` for all).

        Handlers run one at a time, in delivery order; an exception is logged
        and does not stop the client. Returns ``handler``.
        """
        self._handlers.setdefault(message_type, []).append(handler)
        self._consuming.set()
        return handler

    def off(self, message_type: str, handler: Handler) -> None:
        """Stop calling a handler registered with :meth:`on`."""
        with contextlib.suppress(KeyError, ValueError):
            self._handlers[message_type].remove(handler)

    def messages(self) -> AsyncIterator[Message]:
        """Delivered messages, as an async iterator, beside the handlers.

        Events come in ``seq`` order per deployment, without duplicates;
        acknowledgements, errors and unknown types pass through; keep-alive
        pongs do not. Messages received before the first consumer (handler,
        :meth:`run` or iterator) was attached are kept for it. The iteration
        ends after :meth:`disconnect`, or raises the error the client stopped on.
        """
        queue: asyncio.Queue[Message | None] = asyncio.Queue()
        if self._stopped.is_set():
            queue.put_nowait(None)
        else:
            self._queues.append(queue)
        self._consuming.set()
        return self._iterate(queue)

    async def run(self) -> None:
        """Connect if needed, then deliver messages to the handlers until :meth:`disconnect`.

        Raises:
            AuthenticationError: A reconnect was refused (HTTP 401/403).
            ConnectError: The first connection could not be made.
        """
        if self._active is None and not self._closing:
            await self.connect()
        self._consuming.set()
        await self._stopped.wait()
        if self._failure is not None:
            raise self._failure

    async def disconnect(self) -> None:
        """Close every connection and stop reconnecting, also in the middle of a backoff.

        Messages already received are still delivered; then :meth:`run`
        returns and :meth:`messages` iterations end. Safe to call more than
        once, and from a handler.
        """
        await self._finish(None)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.disconnect()

    # -- connections ------------------------------------------------------------------------

    async def _open_link(self) -> _Link:
        self._stats.connect_attempts += 1
        token = await resolve_token(self._token)
        url, headers, subprotocols = handshake(self.url, token, self.options.token_transport)
        ws = await websockets_connect(
            url,
            additional_headers=headers,
            subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols else None,
            user_agent_header=USER_AGENT,
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
        link = _Link(
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

    async def _install(self, link: _Link) -> None:
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

    def _retire(self, link: _Link) -> None:
        """Stop using ``link`` and close it in the background."""
        with contextlib.suppress(ValueError):
            self._links.remove(link)
        closer = asyncio.create_task(self._close(link))
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    async def _close(self, link: _Link) -> None:
        with contextlib.suppress(Exception):
            await link.ws.close()
        if link.reader is not None:
            await asyncio.wait({link.reader})
        self._open_links.discard(link)

    async def _read(self, link: _Link) -> None:
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

    def _on_frame(self, link: _Link, frame: str | bytes) -> None:
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
            if request_id is not None and (answer := self._answers.pop(request_id, None)) is not None:
                if not answer.done():
                    answer.set_result(message)
                continue  # the caller that asked gets it
            self._inbox.put_nowait(message)
        after = self._protocol.next_repair_at()
        if after is not None and (repair_at is None or after < repair_at):
            # A gap opened: the supervisor must wake up in time to repair it. (A gap that
            # closed or moved later needs nothing: it wakes at the old time and finds none.)
            self._wake.set()

    async def _send(self, link: _Link, outgoing: Outgoing) -> None:
        with contextlib.suppress(ConnectionClosed):  # the reader notices and the supervisor acts
            await link.ws.send(outgoing.text)

    async def _send_all(self, outgoing: Outgoing) -> None:
        # During a replacement both connections get the request, with one id: the first
        # reply answers it, and the protocol ignores the second.
        if not self._links:
            # Not connected: the new connection's resubscribes ask for it instead.
            self._protocol.forget([outgoing.request_id])
        for link in list(self._links):
            await self._send(link, outgoing)

    # -- supervision ------------------------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            # disconnect() cancels this task; the loop condition is a second line of defence.
            while not self._closing:
                link = self._active
                assert link is not None
                reason = await self._watch(link)
                if reason == "rotate":
                    await self._rotate(link)
                else:
                    self._active = await self._reconnect(link)
        except Exception as exc:  # noqa: BLE001 - whatever stops the client is surfaced by run()
            log.error("cloud-ws: giving up: %s", _describe(exc))
            await self._finish(exc)

    async def _watch(self, link: _Link) -> _Reason:
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
                self._inbox.put_nowait(message)
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
            await _wait(self._wake, min(deadlines) - loop.time())

    async def _rotate(self, old: _Link) -> None:
        """Make before break: subscribe a new connection, then close the old one."""
        log.info("cloud-ws: replacing connection %d", old.number)
        try:
            new = await self._open_link()
        except Exception as exc:  # noqa: BLE001 - process_exception decides: retry later or raise
            self._raise_if_fatal(exc)
            self._postpone(old, f"could not open a replacement: {_describe(exc)}")
            return
        await self._install(new)
        await _wait(new.answered, self.options.open_timeout)
        if new.closed.is_set() or not new.answered.is_set():
            self._retire(new)
            self._postpone(old, "the replacement did not answer its subscriptions")
            return
        # The new connection asked for everything after the last seq delivered,
        # so whatever the old one still had in flight is replayed or arrives
        # twice (and is dropped by seq): closing it now loses nothing.
        self._active = new
        self._retire(old)
        self._stats.rotations += 1

    def _postpone(self, link: _Link, why: str) -> None:
        """Keep using ``link`` and try replacing it again after a backoff delay."""
        delay = self._next_delay()
        log.warning("cloud-ws: %s; retrying in %.1f s", why, delay)
        link.replace = False
        link.rotate_at = asyncio.get_running_loop().time() + delay
        link.rotate_wall_at = time.time() + delay

    async def _reconnect(self, old: _Link) -> _Link:
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
                self._phase = "waiting"
                await asyncio.sleep(delay)  # disconnect() cancels this task, also here
            wait = True
            self._phase = "reconnecting"
            try:
                link = await self._open_link()
            except Exception as exc:  # noqa: BLE001 - process_exception decides: retry or raise
                self._raise_if_fatal(exc)
                log.info("cloud-ws: connection attempt failed: %s", _describe(exc))
                continue
            await self._install(link)
            self._phase = "connected"
            return link

    def _next_delay(self) -> float:
        if self._delays is None:
            options = self.options
            self._delays = backoff(options.backoff_initial, options.backoff_max, options.backoff_factor)
        return next(self._delays)

    @staticmethod
    def _raise_if_fatal(exc: Exception) -> None:
        decision = process_exception(exc)
        if decision is exc:
            raise exc
        if decision is not None:
            raise decision from exc

    # -- delivery and shutdown --------------------------------------------------------------

    async def _dispatch(self) -> None:
        # Nothing is handed out before a consumer exists, so a subscribe()
        # followed by messages() cannot lose what arrived in between.
        await self._consuming.wait()
        while (message := await self._inbox.get()) is not None:
            for queue in list(self._queues):
                queue.put_nowait(message)
            for handler in (*self._handlers.get(message.type, ()), *self._handlers.get("*", ())):
                try:
                    result = handler(message)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("cloud-ws: a handler for %s raised", message.type)
        for queue in self._queues:
            queue.put_nowait(None)
        self._stopped.set()

    async def _iterate(self, queue: asyncio.Queue[Message | None]) -> AsyncIterator[Message]:
        try:
            while (message := await queue.get()) is not None:
                yield message
            if self._failure is not None:
                raise self._failure
        finally:
            with contextlib.suppress(ValueError):
                self._queues.remove(queue)

    async def _finish(self, failure: BaseException | None) -> None:
        if self._closing:
            # Already stopping (on an error, or another disconnect()): wait until it
            # is done, unless this is the supervisor, which the stopping waits for.
            if asyncio.current_task() is not self._supervisor:
                await self._finished.wait()
            return
        self._closing = True
        self._failure = failure
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not asyncio.current_task() and not supervisor.done():
            supervisor.cancel()
            await asyncio.wait({supervisor})
        self._links.clear()
        links = list(self._open_links)
        await asyncio.gather(*(self._close(link) for link in links), return_exceptions=True)
        if self._closers:
            await asyncio.wait(set(self._closers))
        self._inbox.put_nowait(None)
        if self._dispatcher is None:
            self._stopped.set()  # never connected: nothing to drain
            for queue in self._queues:
                queue.put_nowait(None)
        else:
            self._consuming.set()  # let the dispatcher drain what is left and stop
        self._finished.set()


async def _wait(event: asyncio.Event, timeout: float) -> None:
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


def _describe(exc: BaseException) -> str:
    """``exc`` in a few words, for logs and one-line errors."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
