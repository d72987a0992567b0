"""``CloudWebSocketClient``: one logical subscription stream over connections that come and go.

The public facade of the client. Each of its jobs sits in a module of its own,
and this class wires them together and keeps the API:

- :mod:`cloud_ws_client.protocol` (sans-I/O): the subscriptions and where each
  stream stands (``since``/``seq``, gaps, snapshots, a history that went back),
  request ids and frames;
- :mod:`cloud_ws_client.connections`: the connection lifecycle, a *supervisor*
  task (keep-alive pings, dead connections, make-before-break replacement,
  reconnects with backoff) and a *reader* task per connection;
- :mod:`cloud_ws_client.pending`: the replies a caller awaits, by request id;
- :mod:`cloud_ws_client.delivery`: a *dispatcher* task that hands delivered
  messages to handlers and :meth:`CloudWebSocketClient.messages` iterators, so
  a slow handler never delays reading (or a pong);
- :mod:`cloud_ws_client.options`: :class:`ClientOptions`, :class:`ClientStats`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self

from websockets.version import version as websockets_version

from cloud_ws_client._protocol_generated import DEFAULT_LIST_LIMIT
from cloud_ws_client.auth import TokenSource
from cloud_ws_client.connections import Connections
from cloud_ws_client.connections import wait_event as _wait
from cloud_ws_client.delivery import Delivery
from cloud_ws_client.delivery import Handler as Handler
from cloud_ws_client.errors import CloudWsError, RequestError
from cloud_ws_client.messages import Deployments, ErrorMessage, Message
from cloud_ws_client.options import ClientOptions as ClientOptions
from cloud_ws_client.options import ClientStats as ClientStats
from cloud_ws_client.options import ConnectionState as ConnectionState
from cloud_ws_client.options import rotation_delay as rotation_delay
from cloud_ws_client.outputs import WEBSOCKET_URL, password_auth, read_outputs
from cloud_ws_client.pending import PendingRequests
from cloud_ws_client.protocol import ClientProtocol

# Kept importable from here, where they were defined before the split (tests use _wait).
__all__ = [
    "USER_AGENT",
    "ClientOptions",
    "ClientStats",
    "CloudWebSocketClient",
    "ConnectionState",
    "Handler",
    "__version__",
    "_wait",
    "rotation_delay",
]

__version__ = "0.1.0"
USER_AGENT = f"cloud-ws-client/{__version__} websockets/{websockets_version}"


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
        options = options or ClientOptions()
        self._protocol = ClientProtocol(
            gap_timeout=options.gap_timeout, max_buffer=options.max_buffered_events
        )
        self._stats = ClientStats()
        self._requests = PendingRequests()
        self._delivery = Delivery(lambda: self._failure)
        self._connections = Connections(
            url,
            token,
            options,
            protocol=self._protocol,
            stats=self._stats,
            requests=self._requests,
            deliver=self._delivery.put,
            stop=self._finish,
            user_agent=USER_AGENT,
        )
        # Stopping is the facade's: it ends the connections, the waiting requests and the delivery.
        self._closing = False
        self._finished = asyncio.Event()
        self._connect_lock = asyncio.Lock()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        """The ``websocket_url``; settable (a token provider that follows a restarted local stack
        does), read by every connection attempt."""
        return self._connections.url

    @url.setter
    def url(self, url: str) -> None:
        self._connections.url = url

    @property
    def options(self) -> ClientOptions:
        """Timing and policy; see :class:`ClientOptions`."""
        return self._connections.options

    @options.setter
    def options(self, options: ClientOptions) -> None:
        self._connections.options = options

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
        return self._connections.is_open and not self._closing

    @property
    def state(self) -> ConnectionState:
        """``idle``, ``connected``, ``reconnecting``, ``waiting`` (a backoff delay) or ``closed``."""
        return "closed" if self._closing else self._connections.phase

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
            if self._connections.active is not None:
                return
            await self._connections.connect()
            self._delivery.start()

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
        await self._connections.send_all(self._protocol.subscribe(deployment_id, since))

    async def unsubscribe(self, deployment_id: str) -> None:
        """Stop watching a deployment; its later events are dropped."""
        await self._connections.send_all(self._protocol.unsubscribe(deployment_id))

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
        reply = await self._requests.ask(
            outgoing.request_id,
            lambda: self._connections.send_all(outgoing),
            timeout=self.options.open_timeout if timeout is None else timeout,
            stopped=self._finished,
        )
        if reply is None:
            self._protocol.forget([outgoing.request_id])
            if self._closing:
                raise (
                    self._failure
                    if isinstance(self._failure, CloudWsError)
                    else CloudWsError("the client stopped before the deployment list came")
                )
            raise RequestError("the server did not answer list_deployments in time")
        if isinstance(reply, ErrorMessage):
            raise RequestError(f"{reply.code}: {reply.message}", reply.code)
        assert isinstance(reply, Deployments)
        return [dict(row) for row in reply.deployments]

    def on(self, message_type: str, handler: Handler) -> Handler:
        """Call ``handler`` for every delivered message of ``message_type`` (``"*"`` for all).

        Handlers run one at a time, in delivery order; an exception is logged
        and does not stop the client. Returns ``handler``.
        """
        self._delivery.on(message_type, handler)
        return handler

    def off(self, message_type: str, handler: Handler) -> None:
        """Stop calling a handler registered with :meth:`on`."""
        self._delivery.off(message_type, handler)

    def messages(self) -> AsyncIterator[Message]:
        """Delivered messages, as an async iterator, beside the handlers.

        Events come in ``seq`` order per deployment, without duplicates;
        acknowledgements, errors and unknown types pass through; keep-alive
        pongs do not. Messages received before the first consumer (handler,
        :meth:`run` or iterator) was attached are kept for it. The iteration
        ends after :meth:`disconnect`, or raises the error the client stopped on.
        """
        return self._delivery.messages()

    async def run(self) -> None:
        """Connect if needed, then deliver messages to the handlers until :meth:`disconnect`.

        Raises:
            AuthenticationError: A reconnect was refused (HTTP 401/403).
            ConnectError: The first connection could not be made.
        """
        if self._connections.active is None and not self._closing:
            await self.connect()
        self._delivery.consume()
        await self._delivery.wait_stopped()
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

    # -- shutdown ---------------------------------------------------------------------------

    async def _finish(self, failure: BaseException | None) -> None:
        if self._closing:
            # Already stopping (on an error, or another disconnect()): wait until it
            # is done, unless this is the supervisor, which the stopping waits for.
            if asyncio.current_task() is not self._connections.supervisor:
                await self._finished.wait()
            return
        self._closing = True
        self._failure = failure
        await self._connections.close()
        self._delivery.stop()
        self._finished.set()
