"""Runs the real ``handlers`` modules as Lambda would: one event in, one result out, off the event loop.

The handlers are synchronous (boto3); each invocation runs in a worker thread
so a slow DynamoDB call or a large replay never stalls the WebSocket server,
which keeps serving the @connections posts those same handlers make.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from contract import spec
from contract.log import get_logger

log = get_logger("emulator.lambdas")

Handler = Callable[[Mapping[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The parts of Lambda's context object handlers may read."""

    function_name: str
    timeout_seconds: float = 30.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 256
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (emulated) timeout."""
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


class LambdaRuntime:
    """Invokes handler functions by spec name in a bounded thread pool."""

    def __init__(self, concurrency: int = 32) -> None:
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="lambda")
        self._handlers: dict[str, Handler] = {}
        self._warm: set[str] = set()
        for route in spec.FUNCTIONS:
            module = importlib.import_module(f"handlers.{route.module}")
            self._handlers[route.function] = module.handler
        gc.collect()
        gc.freeze()  # the handlers' modules (and the stack's own) are never garbage

    def has(self, function: str) -> bool:
        """Whether a function of this name exists."""
        return function in self._handlers

    def invoke_sync(self, function: str, event: Mapping[str, Any]) -> Any:
        """Invoke in the calling thread."""
        try:
            return self._handlers[function](event, LambdaContext(function))
        finally:
            if function not in self._warm:
                # A cold start's clients and service models live as long as the process: kept
                # out of the garbage collector's full passes (60-130 ms each, every thread stopped).
                self._warm.add(function)
                gc.freeze()

    async def invoke(self, function: str, event: Mapping[str, Any]) -> Any:
        """Invoke in a worker thread and await the result; exceptions propagate as in Lambda."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.invoke_sync, function, event)

    def shutdown(self) -> None:
        """Drop invocations not started yet, wait for the running ones, release the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)
