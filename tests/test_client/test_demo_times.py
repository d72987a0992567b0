"""`cloud-ws demo` reports the durations that really elapsed, not the script's simulated ones."""

from __future__ import annotations

import io
import random
import re
from typing import Any

from cloud_ws.commands import demo


class Recorder:
    """Stands in for the plugin's hooks: records every call with the clock's time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, hook: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> str:
            self.calls.append((self.clock.now, hook, args, kwargs))
            return "event-id"

        return call


class FakeClock:
    """A monotonic clock that only moves when the player sleeps."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_reported_durations_are_the_elapsed_ones() -> None:
    """Each stack's and the deployment's duration_seconds is the time between its start and end calls."""
    clock = FakeClock()
    hooks = Recorder(clock)
    out = io.StringIO()
    steps = demo.script("D1", random.Random("D1"))
    demo.play(steps, hooks, speed=2.0, out=out, sleep=clock.sleep, clock=clock)  # type: ignore[arg-type]

    started = {args[1]: when for when, hook, args, _ in hooks.calls if hook == "stack_started"}
    ended = [
        (when, args, kwargs)
        for when, hook, args, kwargs in hooks.calls
        if hook in ("stack_deployed", "stack_failed")
    ]
    assert len(ended) >= 6
    for when, args, kwargs in ended:
        assert kwargs["duration_seconds"] == round(when - started[args[1]], 1)
        # A stack of the script takes minutes of simulated time; played at 60x it takes seconds.
        assert kwargs["duration_seconds"] < 330 / (demo.SIMULATED_PER_SECOND * 2) + 1
    first = hooks.calls[0][0]
    (last_when, _, _, last_kwargs) = hooks.calls[-1]
    assert last_kwargs["duration_seconds"] == round(last_when - first, 1)

    # The printed times are the elapsed ones too, and a finished stack says how long it took.
    lines = out.getvalue().splitlines()
    assert float(lines[-1].split("s", 1)[0]) == round(last_when - first, 1)
    failed = next(line for line in lines if "FAILED" in line)
    assert re.search(r" after \d+\.\ds$", failed)
