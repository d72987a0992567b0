"""Virtual time for the cloud model: real threads, one running at a time, time advanced by a scheduler.

Every modelled actor (a Lambda invocation, a queue poller, a producer) is a
*task*: a real thread that blocks only through this clock (``sleep``,
``Signal.wait``). Exactly one task runs at a time; when it blocks, the baton
passes to the next task that is ready at the current virtual time, or, when
none is, time jumps to the earliest wake-up. This is a conservative
discrete-event scheduler over threads (what simpy does with generators), so
our unchanged, blocking handler code can run inside it.

Why one at a time: virtual time must not move while any task could still act
at the current instant, and our code and moto were not written for the
interleavings real parallel threads would produce under a fake clock. Real CPU
time is therefore not counted at all (AWS gives each invocation its own CPU);
the model adds modelled latencies instead.

Threads our code starts itself (the fan-out's hand-over thread) are not
tasks: they run while the task that started them waits for them in a real
``join``; they may read the clock and spawn tasks, but must not sleep on it.
"""

from __future__ import annotations

import heapq
import itertools
import sys
import threading
import time as _real_time
import traceback
import types
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

#: Virtual epoch of every run: 2027-01-15T08:00:00Z (any fixed instant works; TTLs are relative to it).
EPOCH = 1_800_000_000.0


class ClockError(RuntimeError):
    """A thread that is not a task tried to block on virtual time, or every task waits for ever."""


class _Task:
    """One modelled thread: its baton, and a token that invalidates its stale wake-ups."""

    __slots__ = ("name", "notified", "resume", "token", "waiting_on")

    def __init__(self, name: str) -> None:
        self.name = name
        self.resume = threading.Event()
        self.token = 0
        self.notified = False
        self.waiting_on: Signal | None = None


class VirtualClock:
    """Virtual time and the scheduler that passes the one baton between tasks."""

    def __init__(self, start: float = EPOCH) -> None:
        self._lock = threading.Lock()
        self._now = start
        self.start = start
        self._order = itertools.count()
        self._timers: list[tuple[float, int, _Task, int]] = []
        self._ready: deque[_Task] = deque()
        self._local = threading.local()
        self._live = 0
        self._finished = threading.Event()
        self.error: BaseException | None = None
        self.switches = 0

    # -- reading time -----------------------------------------------------------------------------

    def time(self) -> float:
        """Virtual epoch seconds (what ``time.time`` answers inside the model)."""
        return self._now

    def monotonic(self) -> float:
        """Virtual seconds since the run began (``time.monotonic``, ``time.perf_counter``)."""
        return self._now - self.start

    def elapsed(self) -> float:
        """Seconds of virtual time since the clock was made."""
        return self._now - self.start

    def is_task(self) -> bool:
        """Whether the calling thread is a task (may block on virtual time)."""
        return getattr(self._local, "task", None) is not None

    # -- tasks ------------------------------------------------------------------------------------

    def spawn(self, fn: Callable[..., Any], *args: Any, delay: float = 0.0, name: str = "task") -> None:
        """Start ``fn(*args)`` as a task ``delay`` virtual seconds from now (callable from any thread)."""
        task = _Task(name)
        with self._lock:
            self._live += 1
            self._push(self._now + max(0.0, delay), task)
        threading.Thread(target=self._run_task, args=(task, fn, args), name=name, daemon=True).start()

    def run(self, main: Callable[[], Any]) -> None:
        """Run ``main`` as the first task and return when every task has finished.

        Raises:
            BaseException: the first exception any task raised (the run stops there).
        """
        self.spawn(main, name="main")
        with self._lock:
            self._pass_baton()
        while not self._finished.wait(0.5):
            if self.error is not None:
                break
        if self.error is not None:
            raise self.error

    def _run_task(self, task: _Task, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._local.task = task
        task.resume.wait()
        task.resume.clear()
        try:
            fn(*args)
        except BaseException as exc:
            if self.error is None:
                self.error = exc
                traceback.print_exc(file=sys.stderr)
            self._finished.set()
            return  # the baton is not passed on: nothing else runs after a failure
        with self._lock:
            self._live -= 1
            self._pass_baton()

    # -- blocking ---------------------------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        """Block the calling task for ``seconds`` of virtual time (0 lets the other ready tasks run)."""
        task = self._task()
        with self._lock:
            self._push(self._now + max(0.0, seconds), task)
            self._pass_baton()
        self._block(task)

    def sleep_until(self, when: float) -> None:
        """Block the calling task until virtual epoch time ``when``."""
        self.sleep(when - self._now)

    def _task(self) -> _Task:
        task: _Task | None = getattr(self._local, "task", None)
        if task is None:
            raise ClockError(f"{threading.current_thread().name} is not a task of the virtual clock")
        return task

    def _block(self, task: _Task) -> None:
        task.resume.wait()
        task.resume.clear()
        if self.error is not None:  # another task failed: stop here for ever (daemon thread)
            threading.Event().wait()

    def _push(self, when: float, task: _Task) -> None:
        heapq.heappush(self._timers, (when, next(self._order), task, task.token))

    def _pass_baton(self) -> None:
        """Wake the next task (called with the lock held, by the task giving the baton up)."""
        self.switches += 1
        while True:
            if self._ready:
                task = self._ready.popleft()
                break
            if not self._timers:
                if self._live > 0 and self.error is None:
                    self.error = ClockError(f"{self._live} tasks wait on signals that nothing will raise")
                self._finished.set()
                return
            when, _, task, token = heapq.heappop(self._timers)
            if token != task.token:
                continue  # woken by a signal since this timer was set
            if when > self._now:
                self._now = when
            task.token += 1
            task.notified = False
            break
        task.resume.set()


class Signal:
    """A condition in virtual time: tasks wait on it (with a virtual timeout); any task raises it."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._waiters: list[_Task] = []

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`notify_all` or ``timeout`` virtual seconds; True when notified."""
        clock = self._clock
        task = clock._task()
        with clock._lock:
            task.notified = False
            task.waiting_on = self
            self._waiters.append(task)
            if timeout is not None:
                clock._push(clock._now + max(0.0, timeout), task)
            clock._pass_baton()
        clock._block(task)
        with clock._lock:
            notified = task.notified
            task.waiting_on = None
            if not notified:
                self._waiters.remove(task)
        return notified

    def notify(self, n: int = 1) -> None:
        """Make the ``n`` longest-waiting tasks ready (a queue wakes one poller per message, not all)."""
        clock = self._clock
        with clock._lock:
            woken, self._waiters = self._waiters[:n], self._waiters[n:]
            for task in woken:
                task.token += 1
                task.notified = True
                clock._ready.append(task)

    def notify_all(self) -> None:
        """Make every waiting task ready at the current instant (they run after the caller blocks)."""
        clock = self._clock
        with clock._lock:
            for task in self._waiters:
                task.token += 1  # its timeout no longer applies
                task.notified = True
                clock._ready.append(task)
            self._waiters.clear()


_active: VirtualClock | None = None


def activate(clock: VirtualClock) -> None:
    """Make ``clock`` the one the patched modules read (each scenario runs on a fresh clock)."""
    global _active  # noqa: PLW0603 - one model runs at a time in the bench process
    _active = clock


def _clock() -> VirtualClock:
    if _active is None:
        raise ClockError("no virtual clock is active")
    return _active


def virtual_sleep(seconds: float) -> None:
    """``time.sleep`` inside the model: the active clock's."""
    _clock().sleep(seconds)


def time_module() -> types.ModuleType:
    """A stand-in for the ``time`` module whose clocks and sleep are the active virtual clock's."""
    shim = types.ModuleType("time")
    for name in dir(_real_time):
        if not name.startswith("__"):
            setattr(shim, name, getattr(_real_time, name))
    shim.time = lambda: _clock().time()  # type: ignore[attr-defined]
    shim.time_ns = lambda: int(_clock().time() * 1e9)  # type: ignore[attr-defined]
    shim.monotonic = lambda: _clock().monotonic()  # type: ignore[attr-defined]
    shim.monotonic_ns = lambda: int(_clock().monotonic() * 1e9)  # type: ignore[attr-defined]
    shim.perf_counter = lambda: _clock().monotonic()  # type: ignore[attr-defined]
    shim.sleep = virtual_sleep  # type: ignore[attr-defined]
    return shim


_REAL = {
    "time": _real_time.time,
    "monotonic": _real_time.monotonic,
    "perf_counter": _real_time.perf_counter,
    "sleep": _real_time.sleep,
}
_SHIM = time_module()


def patch_time(prefixes: Iterable[str]) -> list[str]:
    """Point every loaded module under ``prefixes`` at the active virtual clock; returns what was patched.

    A module's ``time`` (the module) is replaced by :func:`time_module`'s
    stand-in; a function imported from it by name (``from time import
    monotonic``) by the stand-in's. Defaults bound at definition time
    (``sleep=time.sleep``) are out of reach of this: the bench passes the
    clock's where a seam exists.
    """
    patched: list[str] = []
    wanted = tuple(prefixes)
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(wanted):
            continue
        if getattr(module, "time", None) is _real_time:
            module.time = _SHIM  # type: ignore[attr-defined]
            patched.append(f"{name}.time")
        elif getattr(module, "time", None) is _real_time.time:  # from time import time
            module.time = _SHIM.time  # type: ignore[attr-defined]
            patched.append(f"{name}.time()")
        for attr, real in _REAL.items():
            if attr != "time" and getattr(module, attr, None) is real:
                setattr(module, attr, getattr(_SHIM, attr))
                patched.append(f"{name}.{attr}")
    return patched


def patch_defaults(prefixes: Iterable[str]) -> list[str]:
    """Replace real clocks bound as parameter defaults (``clock=time.time``) in our functions and classes.

    A default is evaluated once, when the function is defined, so patching
    the module's ``time`` does not reach it; where a caller constructs an
    object without passing its clock (a missing seam), this is how the model
    still gets it.
    """
    swaps = {id(real): getattr(_SHIM, name) for name, real in _REAL.items()}
    patched: list[str] = []
    wanted = tuple(prefixes)

    def fix(fn: Any, where: str) -> None:
        code_fn = getattr(fn, "__func__", fn)
        defaults = getattr(code_fn, "__defaults__", None)
        if defaults and any(id(d) in swaps for d in defaults):
            code_fn.__defaults__ = tuple(swaps.get(id(d), d) for d in defaults)
            patched.append(where)
        kwdefaults = getattr(code_fn, "__kwdefaults__", None)
        if kwdefaults and any(id(d) in swaps for d in kwdefaults.values()):
            code_fn.__kwdefaults__ = {k: swaps.get(id(v), v) for k, v in kwdefaults.items()}
            patched.append(where)

    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(wanted):
            continue
        for attr, value in list(vars(module).items()):
            if getattr(value, "__module__", None) != name:
                continue
            if isinstance(value, type):
                for member, fn in list(vars(value).items()):
                    if callable(fn) or isinstance(fn, staticmethod | classmethod):
                        fix(fn, f"{name}.{attr}.{member}")
            elif callable(value):
                fix(value, f"{name}.{attr}")
    return patched


class VirtualFuture:
    """A result that a task produces and another task waits for in virtual time."""

    def __init__(self, clock: VirtualClock) -> None:
        self._signal = Signal(clock)
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        """Whether the work has finished."""
        return self._done

    def result(self, timeout: float | None = None) -> Any:
        """Wait (in virtual time) for the work; its value, or what it raised."""
        while not self._done:
            self._signal.wait()
        if self._error is not None:
            raise self._error
        return self._value

    def _finish(self, value: Any, error: BaseException | None) -> None:
        self._value, self._error, self._done = value, error, True
        self._signal.notify_all()


class VirtualExecutor:
    """``concurrent.futures.ThreadPoolExecutor`` for code that runs inside the model: each job is a task.

    Our handlers run a batch's deployments side by side in a thread pool; in
    the model those threads must be tasks (they block on virtual time), and
    the caller's ``result()`` must wait in virtual time, not hold the baton.
    """

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "", **_: Any) -> None:
        self._clock = _clock()
        self._prefix = thread_name_prefix or "pool"
        self._futures: list[VirtualFuture] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> VirtualFuture:
        """Run ``fn`` as a task starting now."""
        future = VirtualFuture(self._clock)

        def job() -> None:
            try:
                value = fn(*args, **kwargs)
            except BaseException as exc:
                future._finish(None, exc)
            else:
                future._finish(value, None)

        self._futures.append(future)
        self._clock.spawn(job, name=self._prefix)
        return future

    def shutdown(self, wait: bool = True, **_: Any) -> None:
        """Wait for every job (in virtual time)."""
        if wait:
            for future in self._futures:
                while not future.done():
                    future._signal.wait()

    def __enter__(self) -> VirtualExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
