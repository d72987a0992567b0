"""How long a retry waits: capped exponential backoff with jitter, the one rule of every retry loop.

The wait before retry ``attempt`` (1 for the first) is uniform in
``[floor * c, c]`` with ``c = min(cap, base * 2**(attempt - 1))``. With the
default ``floor=0`` that is AWS's *full jitter*: spreading retries at random
keeps many failing callers from coming back at the same moment, which matters
most when the other side is throttling. This module only computes delays; who
waits (``time.sleep``, an injected fake, an ``Event``) is the caller's business.

Stdlib only: imported on a Lambda cold start and by the plugin. The Python
client (``cloud_ws_client.backoff``) installs without this package and keeps
its own copy of the rule; a test holds the two to the same vectors.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_MAX_EXPONENT = 64
"""Past this the cap has long been reached; bounding it keeps ``2.0**n`` from overflowing."""


def ceiling(attempt: int, *, base: float, cap: float) -> float:
    """The longest wait before retry ``attempt`` (1 for the first): ``min(cap, base * 2**(attempt-1))``."""
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    return min(cap, base * 2.0 ** min(attempt - 1, _MAX_EXPONENT))


def delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    rng: random.Random | None = None,
    floor: float = 0.0,
) -> float:
    """Seconds to wait before retry ``attempt``: uniform in ``[floor * c, c]``, ``c`` its :func:`ceiling`.

    Args:
        attempt: 1 for the first retry, 2 for the second...
        base: ceiling of the first retry's wait.
        cap: no wait is longer than this.
        rng: the source of randomness (tests pass a seeded one); the ``random`` module's by default.
        floor: the shortest wait as a fraction of the ceiling; 0 is full jitter.
    """
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor is a fraction of the ceiling, got {floor}")
    top = ceiling(attempt, base=base, cap=cap)
    low = floor * top
    draw = rng.random() if rng is not None else random.random()
    return low + (top - low) * draw


@dataclass(frozen=True)
class Backoff:
    """One retry loop's parameters of :func:`delay`."""

    base: float
    """Ceiling of the first retry's wait, in seconds."""
    cap: float
    """No wait is longer than this."""
    floor: float = 0.0
    """The shortest wait as a fraction of the ceiling (0: full jitter)."""

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must not be negative")
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError("floor is a fraction of the ceiling, within 0..1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``attempt`` (1 for the first)."""
        return delay(attempt, base=self.base, cap=self.cap, rng=rng, floor=self.floor)
