"""Pulumi Automation API adapter: engine events in, stack/log/progress events out.

An orchestrator that deploys with ``pulumi.automation`` passes one adapter as
``on_event``::

    stack.up(on_event=plugin.automation("D1BRV40", "network", layer=1))

and the stack's start, progress (resources done, and each resource's step:
operation, type, name, running/done/failed, duration), diagnostics (as log
lines), failures (with their diagnostic messages) and result (duration,
resource count) reach the dashboard with no other code.

Pulumi is *not* imported here: the plugin installs without it, and the engine
events are read by attribute, as ``pulumi.automation.events`` defines them
(:mod:`plugin.eventlog` gives the same attributes to the lines of a plain
``pulumi up --event-log FILE``, which ``cloud-ws pulumi`` tails).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from plugin.hooks import LifecycleHooks
from plugin.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from pulumi.automation import (
        DiagnosticEvent,
        EngineEvent,
        PolicyEvent,
        ResOpFailedEvent,
        ResourcePreEvent,
        ResOutputsEvent,
        StdoutEngineEvent,
        SummaryEvent,
    )

    from plugin.eventlog import (
        Diagnostic,
        LoggedEngineEvent,
        PolicyViolation,
        ResourceFailure,
        ResourceStep,
        StdoutMessage,
        Summary,
    )

log = logging.getLogger("cloud_ws.plugin")

#: Diagnostic severity → log level.
SEVERITY_LEVELS: Mapping[str, str] = {
    "debug": "debug",
    "info": "info",
    "info#err": "info",  # an info message the program wrote to stderr
    "warning": "warning",
    "error": "error",
}

#: Step operations after which the resource exists in the stack (counted in ``resource_count``).
EXISTING_OPS = frozenset(
    {"same", "create", "update", "replace", "create-replacement", "read", "refresh", "import"}
)

#: At most this many ``resources`` entries in one ``stack.progress`` (more changes go in several events).
MAX_RESOURCES_PER_EVENT = 100
#: A resource's ``name`` and ``type`` in a ``resources`` entry are cut to this many characters.
MAX_RESOURCE_TEXT = 128
#: The ``resources`` entries of one event stay under this many bytes of JSON, so the whole
#: event fits one 32 KB WebSocket frame however long or non-ASCII the names are
#: (100 entries of 128-character ASCII names and types are ~33 KB: names that long are cut
#: into more events, not into less information).
MAX_RESOURCES_BYTES = 24_000

# ANSI escapes and Pulumi's own colour markup (``<{%fg 1%}>``, ``<{%reset%}>``).
_COLOUR = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|<\{%[^%]*%\}>")


class _Step:
    """What the adapter knows of one resource's step in this update (keyed by URN)."""

    __slots__ = ("duration", "name", "operation", "started_at", "status", "type")

    def __init__(self, name: str, type_: str, operation: str, started_at: float | None) -> None:
        self.name = name
        self.type = type_
        self.operation = operation
        self.started_at = started_at
        self.status = "running"
        self.duration: float | None = None

    def entry(self) -> dict[str, Any]:
        """The step as a ``stack.progress`` ``resources`` entry (docs/asyncapi.yaml ``ResourceStep``)."""
        entry: dict[str, Any] = {
            "name": _cut(self.name),
            "type": _cut(self.type),
            "operation": self.operation,
            "status": self.status,
        }
        if self.duration is not None:
            entry["duration_seconds"] = self.duration
        return entry


class AutomationAdapter:
    """Callable passed as ``on_event``; one per ``stack.up()`` (one stack of one deployment).

    It never raises into Pulumi's event thread. :meth:`finish` sends a terminal
    stack event if the engine stopped before its summary (e.g. the CLI crashed).
    """

    def __init__(
        self,
        hooks: LifecycleHooks,
        deployment_id: str,
        stack_name: str,
        *,
        environment: str | None = None,
        layer: int | None = None,
        progress_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Args:
        hooks: The plugin (or any :class:`LifecycleHooks`).
        deployment_id: The deployment this stack belongs to.
        stack_name: The stack's name in events (``network``, ``database-rds``...).
        environment: Its environment; the plugin's default when omitted.
        layer: The layer it deploys in, if the orchestrator has layers.
        progress_interval: At most one ``stack.progress`` per this many seconds
            (0 sends one per resource step: started, done, failed). The steps
            of the interval are batched in its ``resources``; what changed
            since the last one is sent when the interval is up even if the
            engine says nothing more (a timer), and before the stack's
            terminal event in any case.
        clock: Monotonic seconds; tests pass a fake.
        """
        self.hooks = hooks
        self.deployment_id = deployment_id
        self.stack_name = stack_name
        self.environment = environment
        self.layer = layer
        self.progress_interval = progress_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._started = False
        self._finished = False
        self._started_at: float | None = None
        self._in_progress: set[str] = set()
        self._done = 0
        self._progress_sent_at: float | None = None
        # Every resource step of the update by URN, and the URNs changed since the last
        # stack.progress (a dict as an ordered set: the order they changed in).
        self._steps: dict[str, _Step] = {}
        self._changed: dict[str, None] = {}
        self._last_finished: _Step | None = None
        self._timer: threading.Timer | None = None
        self._failed_urns: list[str] = []
        self._errors: list[tuple[str | None, str]] = []  # (urn, message) of error diagnostics
        self._error_log = RateLimitedLog(log, interval=30.0)

    @property
    def finished(self) -> bool:
        """True once a terminal stack event (deployed or failed) was sent."""
        return self._finished

    @property
    def error_message(self) -> str | None:
        """Why the stack failed, as its ``stack.failed`` says it (None while nothing failed)."""
        with self._lock:
            return self._error_message() if self._failed_urns or self._errors else None

    def __call__(self, event: EngineEvent | LoggedEngineEvent) -> None:
        """Handle one engine event; never raises."""
        try:
            with self._lock:
                self._handle(event)
        except Exception as exc:  # noqa: BLE001 - raising would kill Pulumi's event thread
            self._error_log.warning("cannot map a Pulumi engine event: %s: %s", type(exc).__name__, exc)

    def cancel(self, reason: str | None = None) -> None:
        """Send ``stack.cancelled`` if no terminal stack event was sent yet; never raises.

        For an update that was interrupted (Ctrl-C, a CI job cancelled) before
        the engine's summary: the stack neither deployed nor failed.
        """
        try:
            with self._lock:
                if self._finished:
                    return
                self._ensure_started()
                self._send_progress()  # the steps seen so far, before the stack's last event
                self._finished = True
                self._stop_timer()
                duration = None if self._started_at is None else self._clock() - self._started_at
                data = {
                    "stack_name": self.stack_name,
                    "environment": self.environment or self.hooks.environment,
                    "layer": self.layer,
                    "error_message": reason,
                    "duration_seconds": None if duration is None else round(duration, 3),
                }
                self.hooks.emit(
                    "stack.cancelled", self.deployment_id, {k: v for k, v in data.items() if v is not None}
                )
        except Exception as exc:  # noqa: BLE001 - called from the orchestrator's finally
            self._error_log.warning("cannot cancel the Pulumi stack event: %s: %s", type(exc).__name__, exc)

    def finish(self, error: BaseException | str | None = None) -> None:
        """Send the stack's terminal event if the engine's summary never came; never raises.

        Call it after ``stack.up()`` returns or raises (``finally``). With
        ``error``, or when error diagnostics were seen, the stack failed.
        """
        try:
            with self._lock:
                if self._finished:
                    return
                if error is not None:
                    self._errors.append((None, _as_text(error)))
                self._terminal(duration=None, resource_count=self._done, changes=None)
        except Exception as exc:  # noqa: BLE001 - called from the orchestrator's finally
            self._error_log.warning("cannot finish the Pulumi stack event: %s: %s", type(exc).__name__, exc)

    # -- mapping --------------------------------------------------------------------

    def _handle(self, event: EngineEvent | LoggedEngineEvent) -> None:
        # Anything the engine says about this update means the stack is under way,
        # except a preview's planned steps and the closing cancel event.
        resource = event.resource_pre_event or event.res_outputs_event
        if (resource is None or not resource.planning) and event.cancel_event is None:
            self._ensure_started()
        if event.resource_pre_event is not None:
            self._resource_pre(event.resource_pre_event)
        elif event.res_outputs_event is not None:
            self._resource_done(event.res_outputs_event)
        elif event.res_op_failed_event is not None:
            self._resource_failed(event.res_op_failed_event)
        elif event.diagnostic_event is not None:
            self._diagnostic(event.diagnostic_event)
        elif event.stdout_event is not None:
            self._stdout(event.stdout_event)
        elif event.policy_event is not None:
            self._policy(event.policy_event)
        elif event.summary_event is not None:
            self._summary(event.summary_event)
        # prelude (handled above), cancel (also sent on normal completion) and debugging
        # events carry nothing more to show.

    def _ensure_started(self) -> None:
        if not self._started:
            self._started = True
            self._started_at = self._clock()
            self.hooks.stack_started(self.deployment_id, self.stack_name, **self._where())

    def _resource_pre(self, event: ResourcePreEvent | ResourceStep) -> None:
        if event.planning:
            return
        urn = event.metadata.urn
        self._in_progress.add(urn)
        name, type_ = _split_urn(urn)
        self._steps[urn] = _Step(name, type_ or event.metadata.type, _op(event.metadata.op), self._clock())
        self._step_changed(urn)

    def _resource_done(self, event: ResOutputsEvent | ResourceStep) -> None:
        if event.planning:
            return
        urn = event.metadata.urn
        self._in_progress.discard(urn)
        self._done += 1
        step = self._end_step(urn, event.metadata.type, _op(event.metadata.op), "done")
        self._last_finished = step
        self._step_changed(urn)

    def _resource_failed(self, event: ResOpFailedEvent | ResourceFailure) -> None:
        urn = event.metadata.urn
        self._in_progress.discard(urn)
        self._failed_urns.append(urn)
        self._end_step(urn, event.metadata.type, _op(event.metadata.op), "failed")
        self._step_changed(urn)

    def _end_step(self, urn: str, type_: str, operation: str, status: str) -> _Step:
        step = self._steps.get(urn)
        if step is None:  # its start was not seen (a log read from the middle): no duration
            name, urn_type = _split_urn(urn)
            step = self._steps[urn] = _Step(name, urn_type or type_, operation, None)
        step.status = status
        if step.started_at is not None:
            step.duration = round(max(0.0, self._clock() - step.started_at), 3)
        return step

    # -- progress ---------------------------------------------------------------------

    def _step_changed(self, urn: str) -> None:
        """A step started or ended: send progress now if the interval is up, else once it is."""
        self._changed.pop(urn, None)  # moved to the end: the order steps changed in
        self._changed[urn] = None
        now = self._clock()
        if self._progress_sent_at is None or now - self._progress_sent_at >= self.progress_interval:
            self._send_progress()
        elif self._timer is None:
            # One long resource and a quiet engine must not hide the steps already seen.
            delay = max(0.0, self.progress_interval - (now - self._progress_sent_at))
            self._timer = threading.Timer(delay, self._progress_due)
            self._timer.daemon = True
            self._timer.start()

    def _progress_due(self) -> None:
        """The timer's end: send what changed since the last progress; never raises."""
        try:
            with self._lock:
                self._timer = None
                if not self._finished:
                    self._send_progress()
        except Exception as exc:  # noqa: BLE001 - a timer thread has nobody to raise to
            self._error_log.warning("cannot send Pulumi progress: %s: %s", type(exc).__name__, exc)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _send_progress(self) -> None:
        """``stack.progress`` with the counts and every step changed since the last one.

        Nothing changed, nothing sent. More changes than one event holds
        (:data:`MAX_RESOURCES_PER_EVENT`, :data:`MAX_RESOURCES_BYTES`) go in
        consecutive events, each with the same counts: none is dropped here.
        """
        if not self._changed:
            return
        self._progress_sent_at = self._clock()
        entries = [self._steps[urn].entry() for urn in self._changed]
        self._changed.clear()
        last: dict[str, Any] = {}
        if self._last_finished is not None:  # as before the resources list: the last one finished
            last = {
                "resource": self._last_finished.name,
                "resource_type": self._last_finished.type,
                "operation": self._last_finished.operation,
            }
        for batch in _batches(entries):
            self.hooks.stack_progress(
                self.deployment_id,
                self.stack_name,
                resources_done=self._done,
                resources_in_progress=len(self._in_progress),
                **last,
                resources=batch,
                **self._where(),
            )

    def _diagnostic(self, event: DiagnosticEvent | Diagnostic) -> None:
        if event.ephemeral:
            return  # progress-display chatter, not meant to be kept
        message = _clean(event.message)
        if not message:
            return
        level = SEVERITY_LEVELS.get(event.severity, "info")
        if level == "error":
            self._errors.append((event.urn, message))
        extra: dict[str, Any] = {}
        if event.urn:
            extra["resource"], extra["resource_type"] = _split_urn(event.urn)
        self.hooks.log(
            self.deployment_id,
            message,
            level=level,
            stack_name=self.stack_name,
            environment=self.environment,
            **extra,
        )

    def _stdout(self, event: StdoutEngineEvent | StdoutMessage) -> None:
        message = _clean(event.message)
        if message:
            self.hooks.log(
                self.deployment_id,
                message,
                level="info",
                stack_name=self.stack_name,
                environment=self.environment,
            )

    def _policy(self, event: PolicyEvent | PolicyViolation) -> None:
        level = "error" if event.enforcement_level == "mandatory" else "warning"
        message = f"policy {event.policy_pack_name}/{event.policy_name}: {_clean(event.message)}"
        if level == "error":
            self._errors.append((event.resource_urn, message))
        self.hooks.log(
            self.deployment_id, message, level=level, stack_name=self.stack_name, environment=self.environment
        )

    def _summary(self, event: SummaryEvent | Summary) -> None:
        if self._finished:
            return
        changes = {_op(op): int(count) for op, count in (event.resource_changes or {}).items()}
        if event.maybe_corrupt:
            self.hooks.log(
                self.deployment_id,
                "Pulumi reports the stack's state may be corrupt",
                level="warning",
                stack_name=self.stack_name,
                environment=self.environment,
            )
        resource_count = sum(count for op, count in changes.items() if op in EXISTING_OPS)
        self._terminal(duration=event.duration_seconds, resource_count=resource_count, changes=changes)

    def _terminal(
        self, *, duration: float | None, resource_count: int, changes: dict[str, int] | None
    ) -> None:
        self._ensure_started()
        self._send_progress()  # the last steps, before the stack's last event
        self._finished = True
        self._stop_timer()
        if duration is None and self._started_at is not None:
            duration = self._clock() - self._started_at
        extra: dict[str, Any] = {} if changes is None else {"changes": changes}
        if self._failed_urns or self._errors:
            self.hooks.stack_failed(
                self.deployment_id,
                self.stack_name,
                self._error_message(),
                duration_seconds=duration,
                failed_resources=[_split_urn(urn)[0] for urn in self._failed_urns] or None,
                **self._where(),
                **extra,
            )
        else:
            self.hooks.stack_deployed(
                self.deployment_id,
                self.stack_name,
                duration_seconds=duration,
                resource_count=resource_count,
                **self._where(),
                **extra,
            )

    def _error_message(self) -> str:
        """The failed resources' diagnostics first (the cause), then any other errors."""
        failed = set(self._failed_urns)
        causes = [message for urn, message in self._errors if urn in failed]
        others = [message for urn, message in self._errors if urn not in failed]
        messages = list(dict.fromkeys(causes + others))  # unique, in order
        if messages:
            return "\n".join(messages)
        names = ", ".join(_split_urn(urn)[0] for urn in self._failed_urns)
        return f"resource operations failed: {names}"

    def _where(self) -> dict[str, Any]:
        return {"environment": self.environment, "layer": self.layer}

    def _log_where(self) -> dict[str, Any]:
        return {"stack_name": self.stack_name, "environment": self.environment}


def _split_urn(urn: str | None) -> tuple[str, str]:
    """``urn:pulumi:dev::proj::aws:ec2/vpc:Vpc::main`` → (``main``, ``aws:ec2/vpc:Vpc``)."""
    if not urn:
        return "", ""
    parts = urn.split("::")
    if len(parts) < 4:
        return urn, ""
    return parts[-1], parts[-2].rsplit("$", 1)[-1]


def _cut(text: str) -> str:
    """A name or type cut to :data:`MAX_RESOURCE_TEXT` characters (ending in ``…`` when cut)."""
    return text if len(text) <= MAX_RESOURCE_TEXT else text[: MAX_RESOURCE_TEXT - 1] + "…"


def _batches(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Entries in order, split so no batch exceeds the count or JSON-size cap of one event."""
    batches: list[list[dict[str, Any]]] = []
    batch: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        # ensure_ascii: the broadcaster's encoding, the larger one for non-ASCII names.
        entry_size = len(json.dumps(entry)) + 2
        if batch and (len(batch) >= MAX_RESOURCES_PER_EVENT or size + entry_size > MAX_RESOURCES_BYTES):
            batches.append(batch)
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch:
        batches.append(batch)
    return batches


def _op(op: Any) -> str:
    """``OpType.CREATE`` or ``"create"`` → ``"create"``."""
    return str(getattr(op, "value", op))


def _clean(message: str | None) -> str:
    return _COLOUR.sub("", message or "").strip()


def _as_text(error: BaseException | str) -> str:
    return error if isinstance(error, str) else f"{type(error).__name__}: {error}"
