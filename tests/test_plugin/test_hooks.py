"""The lifecycle hooks: the data each one sends, and that none of them ever raises."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import pytest

from plugin import DeliveryOptions, LifecycleHooks, OrchestratorPlugin
from plugin.hooks import normalize_level


class Recorder(LifecycleHooks):
    """Hooks that keep what they would emit."""

    def __init__(self, environment: str | None = None) -> None:
        self.environment = environment
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.refusals: list[tuple[str, str]] = []

    def emit(self, event_type: str, deployment_id: str, data: Mapping[str, Any] | None = None) -> str | None:
        self.events.append((event_type, deployment_id, dict(data or {})))
        return f"ev-{len(self.events)}"

    def refused(self, hook: str, reason: str) -> None:
        self.refusals.append((hook, reason))


class Unreachable:
    """An EventBridge client whose every request fails like a network outage."""

    def put_events(self, **_: Any) -> dict[str, Any]:
        raise ConnectionError("no route to host")


@pytest.fixture
def hooks() -> Recorder:
    return Recorder(environment="dev")


def test_deployment_hooks_send_deployment_status(hooks: Recorder) -> None:
    """Started, status and completed are all ``deployment.status``, as views expect."""
    hooks.deployment_started("D1", total_layers=4)
    hooks.deployment_status("D1", "deploying", current_layer=2, total_layers=4)
    hooks.deployment_completed(
        "D1", "failed", error_message="stack database-rds failed", duration_seconds=912.5
    )

    assert hooks.events == [
        ("deployment.status", "D1", {"status": "deploying", "current_layer": 0, "total_layers": 4}),
        ("deployment.status", "D1", {"status": "deploying", "current_layer": 2, "total_layers": 4}),
        (
            "deployment.status",
            "D1",
            {"status": "failed", "error_message": "stack database-rds failed", "duration_seconds": 912.5},
        ),
    ]


def test_stack_hooks_carry_the_design_fields(hooks: Recorder) -> None:
    """docs/design.md's stack.deployed / stack.failed shapes, plus the layer when known."""
    hooks.stack_started("D1", "network", layer=1)
    hooks.stack_deployed("D1", "network", duration_seconds=300, resource_count=15)
    hooks.stack_failed("D1", "database-rds", "Subnet not found", environment="prod")
    hooks.stack_progress("D1", "network", resources_done=5, resources_in_progress=2)

    assert [event[2] for event in hooks.events] == [
        {"stack_name": "network", "environment": "dev", "layer": 1},
        {"stack_name": "network", "environment": "dev", "duration_seconds": 300, "resource_count": 15},
        {"stack_name": "database-rds", "environment": "prod", "error_message": "Subnet not found"},
        {"stack_name": "network", "environment": "dev", "resources_done": 5, "resources_in_progress": 2},
    ]
    assert [event[0] for event in hooks.events] == [
        "stack.started",
        "stack.deployed",
        "stack.failed",
        "stack.progress",
    ]


def test_log_hook(hooks: Recorder) -> None:
    """``log.created`` with level, message, stack and environment; extra fields pass through."""
    hooks.log("D1", "Creating VPC", level="WARN", stack_name="network", request_id="r-1")

    assert hooks.events == [
        (
            "log.created",
            "D1",
            {
                "level": "warning",
                "message": "Creating VPC",
                "stack_name": "network",
                "environment": "dev",
                "request_id": "r-1",
            },
        )
    ]


def test_exceptions_make_readable_error_messages(hooks: Recorder) -> None:
    """An orchestrator can pass the exception it caught."""
    hooks.stack_failed("D1", "db", RuntimeError("Subnet not found"))
    assert hooks.events[0][2]["error_message"] == "RuntimeError: Subnet not found"


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("INFO", "info"),
        ("warn", "warning"),
        (logging.ERROR, "error"),
        ("fatal", "critical"),
        ("loud", "info"),
    ],
)
def test_levels_are_normalized(level: Any, expected: str) -> None:
    """Levels from any logging vocabulary map onto ours; unknown ones become info."""
    assert normalize_level(level) == expected


@pytest.mark.parametrize(
    ("call", "complaint"),
    [
        (lambda h: h.deployment_status("D1", "exploded"), "status must be one of"),
        (
            lambda h: h.deployment_status("D1", "deploying", current_layer=5, total_layers=4),
            "past total_layers",
        ),
        (lambda h: h.deployment_status("D1", "deploying", current_layer=-1), "non-negative integer"),
        (lambda h: h.deployment_status("D1", "deploying", current_layer=True), "non-negative integer"),
        (lambda h: h.deployment_completed("D1", "deploying"), "status must be one of"),
        (lambda h: h.stack_deployed("D1", "", resource_count=1), "stack_name"),
        (lambda h: h.stack_deployed("D1", "x" * 300), "longer than"),
        (lambda h: h.stack_deployed("D1", "net", duration_seconds=math.inf), "seconds"),
        (lambda h: h.stack_deployed("D1", "net", duration_seconds="300"), "seconds"),
        (lambda h: h.stack_started("D1", None), "stack_name"),
        (lambda h: h.log("D1", "m", environment=3), "environment"),
        (lambda h: h.stack_progress("D1", "net"), "resources_done"),
        (lambda h: h.log(), "deployment_id"),
    ],
)
def test_bad_arguments_are_refused_not_raised(hooks: Recorder, call: Any, complaint: str) -> None:
    """A refused call returns None, sends nothing, and says why."""
    assert call(hooks) is None
    assert hooks.events == []
    ((_, reason),) = hooks.refusals
    assert complaint in reason


GARBAGE: list[Any] = [
    None,
    "",
    "D 1",
    "x" * 10_000,
    -1,
    2**70,
    math.nan,
    b"\xff\xfe",
    object(),
    {"a": object()},
    ["list"],
    {1: 2},
    Exception("boom"),
]


@pytest.mark.parametrize("value", GARBAGE, ids=lambda v: type(v).__name__)
def test_no_hook_raises_whatever_it_is_given(value: Any) -> None:
    """Every hook, every argument position, a garbage value: never an exception."""
    plugin = OrchestratorPlugin("bus", client=Unreachable(), autostart=False, options=DeliveryOptions())
    hook_names = [
        "deployment_started",
        "deployment_status",
        "deployment_completed",
        "stack_started",
        "stack_progress",
        "stack_deployed",
        "stack_failed",
        "log",
        "emit",
    ]
    for name in hook_names:
        hook = getattr(plugin, name)
        hook(value)
        hook("D1", value)
        hook(value, value, value)
        hook("D1", "stack", value)
        hook("D1", "stack", "message", value, value)
        hook("D1", "stack", level=value, environment=value, layer=value, duration_seconds=value)
        hook("D1", "stack", resources_done=value, extra=value)
        hook(deployment_id=value)
    stats = plugin.stats
    assert stats.refused > 0
    assert stats.accepted + stats.refused >= len(hook_names)
    assert plugin.close(0) is (stats.accepted == 0)


def test_hooks_do_not_raise_when_refusing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken log handler, or a subclass whose refused() raises: still no exception."""

    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("disk full")

    logger = logging.getLogger("cloud_ws.plugin")
    handler = Broken()
    logger.addHandler(handler)
    monkeypatch.setattr(logging, "raiseExceptions", False)
    try:
        plugin = OrchestratorPlugin("bus", client=Unreachable(), autostart=False)
        assert plugin.deployment_status("D1", "exploded") is None
        assert plugin.close(0)
    finally:
        logger.removeHandler(handler)

    class Touchy(Recorder):
        def refused(self, hook: str, reason: str) -> None:
            raise RuntimeError("refusing to refuse")

    assert Touchy().deployment_status("D1", "exploded") is None
