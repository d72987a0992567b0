"""Switchable faults of the local stack, and the control routes that switch them.

A contract (docs/design.md, "Local fault injection"): tests and demos drive
them over the local stack's HTTP port, under ``/_cloud-ws/faults/``.

- ``throttle`` ``{"count": 5}``: the next ``count`` @connections posts answer 429.
- ``shuffle`` ``{"max_delay_ms": 200}``: every invocation of the delivery
  queue's event source mapping first waits a random 0..``max_delay_ms``, so
  batches in flight together finish in a shuffled order (the worst
  interleavings the mapping's concurrency allows on AWS); ``0`` turns it off.
  ``GET`` answers the current setting.

The connection faults (stale, close, drop-idle) act on the gateway's
connections; their routes are in ``emulator.fault_routes``.
"""

from __future__ import annotations

import json
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

#: The longest shuffle delay accepted: a minute, far under the delivery queue's visibility
#: timeout (360 s), so a delayed batch is never handed out a second time while it waits.
MAX_SHUFFLE_DELAY_MS = 60_000


def shuffle_refusal(value: Any) -> str | None:
    """Why ``value`` cannot be a shuffle's ``max_delay_ms``, or None if it can."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_SHUFFLE_DELAY_MS
    ):
        return f"max_delay_ms must be a number of milliseconds from 0 (off) to {MAX_SHUFFLE_DELAY_MS}"
    return None


class ShuffleFault:
    """Makes each invocation of the delivery mapping wait a random 0..``max_delay_ms`` first.

    Thread-safe: the control route sets it on the event loop while the mapping's
    receiver draws delays in its own thread. ``random`` (a source of floats in
    [0, 1)) is replaceable so tests can choose the interleaving.
    """

    def __init__(self, max_delay_ms: float = 0, random: Callable[[], float] = random.random) -> None:
        refusal = shuffle_refusal(max_delay_ms)
        if refusal is not None:
            raise ValueError(refusal)
        self._max_delay_ms = float(max_delay_ms)
        self._random = random
        self._lock = threading.Lock()

    @property
    def max_delay_ms(self) -> float:
        """The current bound; 0 when the fault is off."""
        return self._max_delay_ms

    def set(self, max_delay_ms: float) -> None:
        """Change the bound (0 turns the fault off); ``ValueError`` for a bad one, nothing changed."""
        refusal = shuffle_refusal(max_delay_ms)
        if refusal is not None:
            raise ValueError(refusal)
        self._max_delay_ms = float(max_delay_ms)

    def delay_seconds(self) -> float:
        """The wait before the next invocation: 0 when off, else a random 0..max_delay_ms."""
        bound = self._max_delay_ms
        if bound <= 0:
            return 0.0
        with self._lock:  # the replaceable source need not be thread-safe
            fraction = self._random()
        return fraction * bound / 1000.0


@dataclass
class Faults:
    """Every switchable fault that is not about one connection."""

    throttle_remaining: int = 0
    shuffle: ShuffleFault = field(default_factory=ShuffleFault)

    def take_throttle(self) -> bool:
        """True if this post must answer 429 (and counts it)."""
        if self.throttle_remaining > 0:
            self.throttle_remaining -= 1
            return True
        return False


def _refused(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=400)


async def _json_object(request: Request) -> dict[str, Any] | None:
    """The request's body as a JSON object ({} when empty); None when it is not one."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


class FaultRoutes:
    """The ``/_cloud-ws/faults/throttle`` and ``/_cloud-ws/faults/shuffle`` control routes."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    async def throttle(self, request: Request) -> Response:
        """``POST /_cloud-ws/faults/throttle`` ``{"count": 5}``: the next posts answer 429."""
        body = await _json_object(request) or {}
        count = body.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return _refused("count must be a non-negative integer")
        self.faults.throttle_remaining = count
        return JSONResponse({"throttle_remaining": count})

    async def shuffle(self, request: Request) -> Response:
        """``POST /_cloud-ws/faults/shuffle`` ``{"max_delay_ms": 200}``; ``GET`` answers the setting."""
        shuffle = self.faults.shuffle
        if request.method == "POST":
            body = await _json_object(request)
            if body is None:
                return _refused('the body must be a JSON object such as {"max_delay_ms": 200}')
            unknown = sorted(set(body) - {"max_delay_ms"})
            if unknown:
                return _refused(f"unknown field(s) {', '.join(unknown)}: only max_delay_ms is accepted")
            if "max_delay_ms" not in body:
                return _refused('max_delay_ms is required, e.g. {"max_delay_ms": 200}; 0 turns it off')
            refusal = shuffle_refusal(body["max_delay_ms"])
            if refusal is not None:
                return _refused(refusal)
            shuffle.set(body["max_delay_ms"])
        value = shuffle.max_delay_ms
        return JSONResponse({"max_delay_ms": int(value) if value.is_integer() else value})

    def routes(self, prefix: str = "/_cloud-ws/faults") -> list[BaseRoute]:
        """The routes, under ``prefix``."""
        return [
            Route(f"{prefix}/throttle", self.throttle, methods=["POST"]),
            Route(f"{prefix}/shuffle", self.shuffle, methods=["GET", "POST"]),
        ]
