"""Polling for a condition: every wait in the tests is a poll with a generous deadline,
never a timed assertion, and a wait that runs out says what it was waiting for."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

#: Deadline of every wait for a condition (polled; normally met in well under a second).
PATIENCE = 15.0
#: Pause between two polls.
POLL = 0.01


def eventually_sync(
    condition: Callable[[], object], what: str, timeout: float = PATIENCE, poll: float = POLL
) -> None:
    """Block until ``condition()`` is truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


async def eventually(
    condition: Callable[[], object | Awaitable[object]],
    what: str,
    timeout: float = PATIENCE,
    poll: float = POLL,
) -> None:
    """Wait until ``condition()`` (awaited if it returns an awaitable) is truthy, or fail
    naming ``what``; other tasks run between polls."""

    async def holds() -> object:
        value = condition()
        return await value if inspect.isawaitable(value) else value

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await holds():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(poll)
