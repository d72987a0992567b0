"""The lifecycle hooks an orchestrator calls while it deploys layers of stacks.

Each hook validates its arguments, shapes the ``data`` of one docs/design.md
message and hands it to :meth:`LifecycleHooks.emit`. Hooks never raise: a bad
argument is logged and counted as *refused*, and the deployment carries on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from contract.protocol import DEPLOYMENT_STATUSES, TERMINAL_STATUSES
from plugin.ratelog import RateLimitedLog

log = logging.getLogger("cloud_ws.plugin")

#: The log levels a ``log.created`` event carries.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_LEVEL_ALIASES = {"warn": "warning", "err": "error", "fatal": "critical", "trace": "debug", "notice": "info"}

#: Longest stack name accepted (longer ones are refused, not cut: they are identifiers).
MAX_STACK_NAME = 256

_Hook = TypeVar("_Hook", bound=Callable[..., str | None])


class HookArgumentError(ValueError):
    """A hook argument cannot go into an event; the message says which and why."""


def never_raises(method: _Hook) -> _Hook:
    """Turn any exception of a hook into a logged refusal and a ``None`` result.

    The orchestrator's deployment matters more than its monitoring: nothing a
    hook does, not even a call with the wrong arguments, may raise into it.
    """

    @functools.wraps(method)
    def hook(self: LifecycleHooks, *args: Any, **kwargs: Any) -> str | None:
        try:
            result: str | None = method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the point: nothing reaches the orchestrator
            with contextlib.suppress(Exception):  # not even from a subclass's refused()
                self.refused(method.__name__, f"{type(exc).__name__}: {exc}")
            return None
        return result

    return cast(_Hook, hook)


class LifecycleHooks(ABC):
    """Deployment, stack and log hooks; subclasses say how an event is sent.

    Every hook returns the new event's ``event_id`` once the event is queued,
    or ``None`` when it was refused or dropped. Extra keyword arguments are
    added to the event's ``data`` as they are.
    """

    environment: str | None = None
    """Environment put in stack and log events when the hook does not name one."""

    _refusal_log = RateLimitedLog(log, interval=30.0)

    @abstractmethod
    def emit(self, event_type: str, deployment_id: str, data: Mapping[str, Any] | None = None) -> str | None:
        """Queue one event of any ``domain.verb`` type; returns its ``event_id``."""

    def refused(self, hook: str, reason: str) -> None:
        """Called when a hook cannot make an event; logs it (rate-limited)."""
        self._refusal_log.warning("cloud-ws hook %s refused its arguments: %s", hook, reason[:300])

    # -- deployment ---------------------------------------------------------------

    @never_raises
    def deployment_started(
        self, deployment_id: str, *, total_layers: int | None = None, **extra: Any
    ) -> str | None:
        """The deployment began: ``deployment.status`` ``deploying`` at layer 0 of ``total_layers``."""
        data = {
            "status": "deploying",
            "current_layer": 0,
            "total_layers": _count("total_layers", total_layers),
        }
        return self.emit("deployment.status", deployment_id, _data(extra, data))

    @never_raises
    def deployment_status(
        self,
        deployment_id: str,
        status: str,
        *,
        current_layer: int | None = None,
        total_layers: int | None = None,
        **extra: Any,
    ) -> str | None:
        """Progress of the deployment: ``status`` and the layer being deployed (1-based) of how many."""
        if status not in DEPLOYMENT_STATUSES:
            raise HookArgumentError(f"status must be one of {', '.join(sorted(DEPLOYMENT_STATUSES))}")
        current = _count("current_layer", current_layer)
        total = _count("total_layers", total_layers)
        if current is not None and total is not None and current > total:
            raise HookArgumentError(f"current_layer {current} is past total_layers {total}")
        data = {"status": status, "current_layer": current, "total_layers": total}
        return self.emit("deployment.status", deployment_id, _data(extra, data))

    @never_raises
    def deployment_completed(
        self,
        deployment_id: str,
        status: str = "succeeded",
        *,
        error_message: str | BaseException | None = None,
        duration_seconds: float | None = None,
        **extra: Any,
    ) -> str | None:
        """The deployment ended: a terminal ``deployment.status`` (succeeded, failed, cancelled)."""
        if status not in TERMINAL_STATUSES:
            raise HookArgumentError(f"status must be one of {', '.join(sorted(TERMINAL_STATUSES))}")
        data = {
            "status": status,
            "error_message": _text_or_none(error_message),
            "duration_seconds": _seconds("duration_seconds", duration_seconds),
        }
        return self.emit("deployment.status", deployment_id, _data(extra, data))

    # -- stacks ---------------------------------------------------------------------

    @never_raises
    def stack_started(
        self,
        deployment_id: str,
        stack_name: str,
        *,
        environment: str | None = None,
        layer: int | None = None,
        **extra: Any,
    ) -> str | None:
        """A stack began deploying: ``stack.started``."""
        data = self._stack(stack_name, environment, layer)
        return self.emit("stack.started", deployment_id, _data(extra, data))

    @never_raises
    def stack_progress(
        self,
        deployment_id: str,
        stack_name: str,
        *,
        resources_done: int,
        resources_in_progress: int | None = None,
        environment: str | None = None,
        layer: int | None = None,
        **extra: Any,
    ) -> str | None:
        """Resources of a stack done so far: ``stack.progress`` (shed first when the queue is full)."""
        data = {
            **self._stack(stack_name, environment, layer),
            "resources_done": _count("resources_done", resources_done),
            "resources_in_progress": _count("resources_in_progress", resources_in_progress),
        }
        return self.emit("stack.progress", deployment_id, _data(extra, data))

    @never_raises
    def stack_deployed(
        self,
        deployment_id: str,
        stack_name: str,
        *,
        duration_seconds: float | None = None,
        resource_count: int | None = None,
        environment: str | None = None,
        layer: int | None = None,
        **extra: Any,
    ) -> str | None:
        """A stack deployed: ``stack.deployed`` with its duration and resource count."""
        data = {
            **self._stack(stack_name, environment, layer),
            "duration_seconds": _seconds("duration_seconds", duration_seconds),
            "resource_count": _count("resource_count", resource_count),
        }
        return self.emit("stack.deployed", deployment_id, _data(extra, data))

    @never_raises
    def stack_failed(
        self,
        deployment_id: str,
        stack_name: str,
        error_message: str | BaseException,
        *,
        duration_seconds: float | None = None,
        environment: str | None = None,
        layer: int | None = None,
        **extra: Any,
    ) -> str | None:
        """A stack failed: ``stack.failed`` with the error (cut to fit one frame if long)."""
        data = {
            **self._stack(stack_name, environment, layer),
            "error_message": _text_or_none(error_message) or "unknown error",
            "duration_seconds": _seconds("duration_seconds", duration_seconds),
        }
        return self.emit("stack.failed", deployment_id, _data(extra, data))

    # -- logs -----------------------------------------------------------------------

    @never_raises
    def log(
        self,
        deployment_id: str,
        message: str,
        *,
        level: str | int = "info",
        stack_name: str | None = None,
        environment: str | None = None,
        **extra: Any,
    ) -> str | None:
        """A log line: ``log.created``, its message cut with a marker to fit one WebSocket frame."""
        data = {
            "level": normalize_level(level),
            "message": _text_or_none(message) or "",
            "stack_name": None if stack_name is None else _stack_name(stack_name),
            "environment": self._environment(environment),
        }
        return self.emit("log.created", deployment_id, _data(extra, data))

    # -- shared ---------------------------------------------------------------------

    def _stack(self, stack_name: Any, environment: Any, layer: Any) -> dict[str, Any]:
        return {
            "stack_name": _stack_name(stack_name),
            "environment": self._environment(environment),
            "layer": _count("layer", layer),
        }

    def _environment(self, environment: Any) -> str | None:
        value = self.environment if environment is None else environment
        if value is not None and not isinstance(value, str):
            raise HookArgumentError(f"environment must be a string, got {type(value).__name__}")
        return value


def normalize_level(level: Any) -> str:
    """A log level as one of :data:`LOG_LEVELS` (``"WARN"``, ``logging.ERROR`` accepted); else ``info``."""
    if isinstance(level, int) and not isinstance(level, bool):
        level = logging.getLevelName(level)
    name = str(level).strip().lower()
    name = _LEVEL_ALIASES.get(name, name)
    return name if name in LOG_LEVELS else "info"


def _data(extra: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """Named fields over extra ones; ``None`` values are left out rather than sent as null."""
    merged = {**extra, **fields}
    return {key: value for key, value in merged.items() if value is not None}


def _stack_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise HookArgumentError(f"stack_name must be a non-empty string, got {value!r:.80}")
    if len(value) > MAX_STACK_NAME:
        raise HookArgumentError(f"stack_name is longer than {MAX_STACK_NAME} characters")
    return value


def _count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HookArgumentError(f"{name} must be a non-negative integer, got {value!r:.80}")
    return value


def _seconds(name: str, value: Any) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise HookArgumentError(f"{name} must be a non-negative number of seconds, got {value!r:.80}")
    return round(value, 3) if isinstance(value, float) else value


def _text_or_none(value: Any) -> str | None:
    """Free text from a string, bytes or an exception (``"ValueError: ..."``)."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return str(value)
