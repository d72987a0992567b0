"""Lambda for the cloud model: containers with their own runtime, invocations in virtual time.

A container is one ``server.runtime.Runtime`` (its own ``Store``, so its own
counter hints, as on AWS) reused by one invocation at a time; a new one costs
``COLD_START_MS`` first. Every invocation adds ``INVOKE_OVERHEAD_MS``.
Asynchronous invocations (the broadcaster's fan-out tasks) start
``ASYNC_START_MS`` after the call; a task that raises is retried twice, as
Lambda does (after ``ASYNC_RETRY_SECONDS``).

The runtime is the real ``Runtime`` class with three seams overridden: the
@connections poster (the model's), ``client("sqs")`` (the model's queue) and
``invoke_async`` (a task here). The broadcaster's ``get_runtime`` is pointed
at the current container's runtime.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bench.cloudmodel.clock import VirtualClock
from server.runtime import Runtime

#: Per-invocation overhead of the Lambda service (the brief's figure).
INVOKE_OVERHEAD_MS = 5.0
#: A new container's start (an estimate: Python runtime init plus our imports, boto3 alone 120-180 ms here).
COLD_START_MS = 300.0
#: ``Invoke(InvocationType=Event)`` to the start of the invoked function (the fan-out model's figures: 15 + 40).
ASYNC_START_MS = 55.0
#: Lambda retries a failed asynchronous invocation twice (about a minute, then two, apart).
ASYNC_RETRY_SECONDS = (60.0, 120.0)
#: The broadcaster's timeout (spec.DELIVERY.function_timeout_seconds).
TIMEOUT_SECONDS = 60.0


class ModelRuntime(Runtime):
    """The real runtime, with the poster, SQS and Lambda calls answered by the model."""

    model: LambdaService

    def management(self, endpoint: str) -> Any:
        """The model's @connections poster."""
        return self.model.poster

    def client(self, service: str) -> Any:
        """The model's SQS; nothing else is modelled."""
        if service == "sqs":
            return self.model.sqs
        raise NotImplementedError(f"the cloud model has no {service} client")

    def invoke_async(self, function: str, payload: Mapping[str, Any]) -> None:
        """An asynchronous invocation of the broadcaster, started by the model."""
        self.model.invoke_async(dict(payload))


@dataclass
class Context:
    """What our handlers read of Lambda's context object."""

    aws_request_id: str
    deadline: float
    clock: VirtualClock
    function_name: str = "broadcaster"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the timeout, in virtual time."""
        return max(0, int((self.deadline - self.clock.time()) * 1000))


class LambdaService:
    """The broadcaster function: a pool of containers and the invocations they serve."""

    def __init__(
        self,
        clock: VirtualClock,
        make_runtime: Callable[[LambdaService], ModelRuntime],
        handler: Callable[[Mapping[str, Any], Any], Any],
        poster: Any,
        sqs: Any,
    ) -> None:
        self.clock, self.make_runtime, self.handler = clock, make_runtime, handler
        self.poster, self.sqs = poster, sqs
        self._idle: list[ModelRuntime] = []
        self._current = threading.local()
        self._ids = itertools.count(1)
        self.containers = 0
        self.invocations = 0
        self.async_invocations = 0
        self.async_failures = 0
        self.running = 0
        self.peak_running = 0

    def current_runtime(self) -> Runtime:
        """The runtime of the container the calling task runs in (``get_runtime`` inside the model)."""
        runtime: Runtime = self._current.runtime
        return runtime

    def invoke(self, event: Mapping[str, Any]) -> Any:
        """A synchronous invocation in the calling task (the mapping's)."""
        if self._idle:
            runtime = self._idle.pop()
        else:
            self.containers += 1
            runtime = self.make_runtime(self)
            self.clock.sleep(COLD_START_MS / 1000)
        self.invocations += 1
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        self._current.runtime = runtime
        try:
            self.clock.sleep(INVOKE_OVERHEAD_MS / 1000)
            context = Context(f"req-{next(self._ids)}", self.clock.time() + TIMEOUT_SECONDS, self.clock)
            return self.handler(event, context)
        finally:
            self._current.runtime = None
            self.running -= 1
            self._idle.append(runtime)

    def invoke_async(self, payload: dict[str, Any]) -> None:
        """``Invoke(InvocationType=Event)``: a new task runs the function a little later."""
        self.async_invocations += 1
        self.clock.spawn(self._run_async, payload, delay=ASYNC_START_MS / 1000, name="async-invoke")

    def _run_async(self, payload: dict[str, Any]) -> None:
        for attempt in range(len(ASYNC_RETRY_SECONDS) + 1):
            try:
                self.invoke(payload)
                return
            except Exception:
                self.async_failures += 1
                if attempt < len(ASYNC_RETRY_SECONDS):
                    self.clock.sleep(ASYNC_RETRY_SECONDS[attempt])
