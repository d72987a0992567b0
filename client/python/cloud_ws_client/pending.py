"""The requests whose reply a caller awaits, by request ``id``: the request/reply plumbing.

API Gateway may run one connection's frames concurrently, so replies come in
any order and are matched by ``id``, never by position. The ids themselves,
and the forgetting of replies nobody asked for, belong to the sans-I/O
:class:`~cloud_ws_client.protocol.ClientProtocol`; this table only routes the
reply a caller is waiting for (``list_deployments``) to that caller instead
of the message stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from cloud_ws_client.messages import Message


class PendingRequests:
    """Futures of the requests a caller awaits, by request id."""

    def __init__(self) -> None:
        self._answers: dict[str, asyncio.Future[Message]] = {}
        """Requests whose reply a caller awaits (``list_deployments``), by request id."""

    def resolve(self, message: Message) -> bool:
        """Hand ``message`` to the caller that asked for it.

        Returns False when nobody awaits it, so that it is delivered like any
        other message instead.
        """
        request_id = message.request_id
        if request_id is None or (answer := self._answers.pop(request_id, None)) is None:
            return False
        if not answer.done():
            answer.set_result(message)
        return True

    async def ask(
        self,
        request_id: str,
        send: Callable[[], Awaitable[None]],
        *,
        timeout: float,
        stopped: asyncio.Event,
    ) -> Message | None:
        """Send a request with ``send`` and wait for the reply that echoes ``request_id``.

        Returns None when no reply came within ``timeout`` seconds or
        ``stopped`` was set first (the client stopped while waiting).
        """
        # Registered before sending: the reply may come before send() returns.
        answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._answers[request_id] = answer
        stopping: asyncio.Future[Any] = asyncio.ensure_future(stopped.wait())
        try:
            await send()
            waiting: set[asyncio.Future[Any]] = {answer, stopping}
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            self._answers.pop(request_id, None)
        return answer.result() if answer.done() else None
