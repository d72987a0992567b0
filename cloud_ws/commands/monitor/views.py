"""The monitor's views of a deployment: what a view is, and the two that print lines.

:class:`JsonView` prints every message as received (``--json``);
:class:`PlainView` prints one line per event for logs and pipes. The
terminal's live view is :mod:`cloud_ws.commands.monitor.live`; the
``--stack`` filter in front of either is :mod:`cloud_ws.commands.monitor.stack_filter`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from cloud_ws.commands.monitor.resources import resource_entries
from cloud_ws.text import format_clock, format_duration, format_duration_fine

if TYPE_CHECKING:
    from cloud_ws.commands.monitor.resources import ResourceBoard
    from cloud_ws_client import DeploymentState, Message


class View(Protocol):
    """Where the monitor shows what it receives."""

    def start(self, state: DeploymentState) -> None:
        """Called once connected, before the first message."""

    def show(self, message: Message, state: DeploymentState) -> None:
        """Called for every delivered message, after ``state`` applied it."""

    def stop(self, state: DeploymentState) -> None:
        """Called once at the end (may be called again: then it does nothing)."""

    def hint(self, text: str) -> None:
        """Called with advice for the person watching (not a message of the deployment)."""


class JsonView:
    """One JSON message per line, exactly as received (acknowledgements and errors too).

    Besides, the client's own ``history_reset`` (the server's history went back and the
    snapshot that follows starts the picture again), as one JSON line of that type.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def start(self, state: DeploymentState) -> None:
        """Nothing to set up."""

    def show(self, message: Message, state: DeploymentState) -> None:
        """Print the message as one line."""
        print(message.to_json(), file=self.out, flush=True)

    def stop(self, state: DeploymentState) -> None:
        """Nothing to tear down."""

    def hint(self, text: str) -> None:
        """On stderr: stdout stays one JSON message per line."""
        print(f"cloud-ws monitor: {text}", file=sys.stderr, flush=True)


class PlainView:
    """One line per event for logs and pipes, then a summary line when the deployment ends."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._done = False
        self._attempt: int | None = None
        #: Set by ``--stack``: each ``stack.progress``'s resource steps get a line each.
        self.resources: ResourceBoard | None = None

    def start(self, state: DeploymentState) -> None:
        """Say what is being watched."""
        self._print(f"watching deployment {state.deployment_id}")

    def show(self, message: Message, state: DeploymentState) -> None:
        """Print the message's line, if it has one, and say when a new attempt starts."""
        from cloud_ws_client import DeploymentSnapshot, Event  # noqa: PLC0415

        line = describe(message)
        if self._attempt is not None and state.attempt > self._attempt:
            self._print(f"attempt {state.attempt} started")
        if isinstance(message, DeploymentSnapshot) or self._attempt is not None:
            self._attempt = state.attempt
        if line is not None:
            self._print(line)
        if self.resources is not None and isinstance(message, Event) and message.type == "stack.progress":
            for name, type_, operation, status, duration in resource_entries(message.data):
                took = f" {format_duration_fine(duration)}" if duration is not None else ""
                self._print(f"  {operation} {type_} {name} {status}{took}")

    def stop(self, state: DeploymentState) -> None:
        """Print the outcome once."""
        if self._done:
            return
        self._done = True
        if state.is_complete:
            self._print(f"deployment {state.deployment_id} {state.status} (attempt {state.attempt})")

    def hint(self, text: str) -> None:
        """On stderr: stdout is the deployment's story, for logs and pipes."""
        print(f"cloud-ws monitor: {text}", file=sys.stderr, flush=True)

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def describe(message: Message) -> str | None:
    """A message as one line of text (``None`` for messages a person need not see)."""
    from cloud_ws_client import (  # noqa: PLC0415
        DeploymentSnapshot,
        DeploymentStatus,
        ErrorMessage,
        Event,
        HistoryReset,
        LogCreated,
        StackEvent,
    )

    if isinstance(message, ErrorMessage):
        return f"error {message.code}: {message.message}"
    if isinstance(message, HistoryReset):
        return (
            f"the history of {message.deployment_id} went back (the server is at #{message.seq}, "
            f"this monitor had #{message.previous}): the stack was restarted, and forgot its "
            "deployments, or the id was reused; starting again from the server's snapshot"
        )
    if isinstance(message, DeploymentSnapshot):
        data = message.data
        if not data.get("attempt"):
            return f"#{message.seq} nothing reported yet"
        text = f"#{message.seq} snapshot: attempt {data.get('attempt')} {data.get('status')}"
        if data.get("current_layer") is not None and data.get("total_layers") is not None:
            text += f", layer {data['current_layer']}/{data['total_layers']}"
        duration = data.get("duration_seconds")
        if isinstance(duration, int | float) and not isinstance(duration, bool):
            text += f", in {format_duration(duration)}"
        reasons = snapshot_failures(data)
        # Why the attempt ended, as its producer's final status said it (a cancelled run has no
        # failed stack to name); left out when a failed stack's line already says it.
        reason = _first_line(data.get("error_message"))
        if reason and not any(reason in failure for failure in reasons):
            reasons.insert(0, reason)
        if reasons:
            text += " — " + "; ".join(reasons)
        return text
    if not isinstance(message, Event):
        return None
    head = f"{format_clock(message.timestamp)} #{message.seq}"
    if isinstance(message, DeploymentStatus):
        text = f"deployment {message.status or '?'}"
        if message.current_layer is not None and message.total_layers is not None:
            text += f", layer {message.current_layer}/{message.total_layers}"
        if message.error_message:
            text += f": {message.error_message}"
        return f"{head} {text}"
    if isinstance(message, StackEvent):
        text = f"stack {message.stack_name} {message.type.removeprefix('stack.')}"
        if message.type == "stack.deployed":
            text += f" in {format_duration(message.duration_seconds)} ({message.resource_count} resources)"
        elif message.type == "stack.progress":
            text += f": {message.resources_done} resources done"
        elif message.type == "stack.failed":
            text += f": {message.error_message}"
        return f"{head} {text}"
    if isinstance(message, LogCreated):
        where = f" [{message.stack_name}]" if message.stack_name else ""
        return f"{head} {message.level}{where} {message.message}"
    return f"{head} {message.type} {dict(message.data)}"


def snapshot_failures(data: Any) -> list[str]:
    """``stack: first line of its error`` for each failed stack of a snapshot's data."""
    stacks = data.get("stacks") if isinstance(data, dict) else None
    if not isinstance(stacks, dict):
        return []
    return [
        failure_line(name, fields.get("error_message"))
        for name, fields in stacks.items()
        if isinstance(fields, dict) and fields.get("status") == "failed"
    ]


def failure_line(stack_name: str, error: object) -> str:
    """``stack: first line of its error``, or ``stack failed`` without one."""
    line = _first_line(error)
    return f"{stack_name}: {line}" if line else f"{stack_name} failed"


def _first_line(text: object) -> str:
    """The first line of an error message, or ``""`` without one."""
    lines = str(text).strip().splitlines() if text else []
    return lines[0] if lines else ""
