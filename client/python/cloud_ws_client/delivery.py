"""Handing delivered messages to handlers and iterators, apart from reading them.

A *dispatcher* task takes messages from an inbox and gives each to every
:meth:`~cloud_ws_client.CloudWebSocketClient.messages` iterator and to the
handlers of its type, one at a time in delivery order. Readers only put
messages in the inbox, so a slow handler never delays reading (or a pong).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from cloud_ws_client.messages import Message

log = logging.getLogger("cloud_ws_client")

Handler = Callable[[Message], Awaitable[None] | None]
"""A message handler: a function or coroutine function taking the message."""


class Delivery:
    """The inbox, the handlers and the iterators of one client, and the task between them.

    Args:
        failure: The error the client stopped on (None while running, or after
            a clean stop), raised by iterations once they end.
    """

    def __init__(self, failure: Callable[[], BaseException | None]) -> None:
        self._failure = failure
        self._handlers: dict[str, list[Handler]] = {}
        self._queues: list[asyncio.Queue[Message | None]] = []
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self._consuming = asyncio.Event()
        self._stopped = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None

    def put(self, message: Message) -> None:
        """Queue ``message`` for the handlers and iterators."""
        self._inbox.put_nowait(message)

    def start(self) -> None:
        """Start the dispatcher (once the first connection is up)."""
        self._dispatcher = asyncio.create_task(self._dispatch(), name="cloud-ws dispatcher")

    def consume(self) -> None:
        """A consumer is attached: what was received so far may be handed out."""
        self._consuming.set()

    def on(self, message_type: str, handler: Handler) -> None:
        """Call ``handler`` for every message of ``message_type`` (``"*"`` for all)."""
        self._handlers.setdefault(message_type, []).append(handler)
        self._consuming.set()

    def off(self, message_type: str, handler: Handler) -> None:
        """Stop calling a handler registered with :meth:`on`."""
        with contextlib.suppress(KeyError, ValueError):
            self._handlers[message_type].remove(handler)

    def messages(self) -> AsyncIterator[Message]:
        """A new iterator over the messages delivered from now on (and those kept for it)."""
        queue: asyncio.Queue[Message | None] = asyncio.Queue()
        if self._stopped.is_set():
            queue.put_nowait(None)
        else:
            self._queues.append(queue)
        self._consuming.set()
        return self._iterate(queue)

    async def wait_stopped(self) -> None:
        """Wait until everything received was handed out after :meth:`stop`."""
        await self._stopped.wait()

    def stop(self) -> None:
        """Hand out what is left, then end every iteration."""
        self._inbox.put_nowait(None)
        if self._dispatcher is None:
            self._stopped.set()  # never connected: nothing to drain
            for queue in self._queues:
                queue.put_nowait(None)
        else:
            self._consuming.set()  # let the dispatcher drain what is left and stop

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
            if (failure := self._failure()) is not None:
                raise failure
        finally:
            with contextlib.suppress(ValueError):
                self._queues.remove(queue)
