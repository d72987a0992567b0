"""``cloud-ws monitor DEPLOYMENT_ID``: watch a deployment live in the terminal.

Three outputs: a live view (attempt, progress over layers, a table of
stacks, the newest log lines, fitted to the terminal) when stdout is a
terminal; one plain line per event when it is not (a pipe, a CI log); one
JSON message per line with ``--json``. The monitor subscribes for live events
only and starts from the ``deployment.snapshot`` that follows the
acknowledgement (the state folded through its ``seq``), so a newcomer to a
long deployment sees where it stands at once instead of replaying its
history; later events fold on top with the shared rules
(:class:`cloud_ws_client.DeploymentState`).

``--until-complete`` ends on the terminal status of the attempt that is
running when the monitor subscribes, or of the next one to start (a
deployment not reported on yet, or one that ended and is run again). If the
deployment has already ended, it exits at once with that outcome.

Exit codes: with ``--until-complete``, 0 once the attempt succeeded and 1
once it failed or was cancelled; 2 for a refused token, an unreachable
endpoint, a refused subscription or bad arguments; 130 after Ctrl-C.

``--stack NAME`` follows one stack: its events, its row and its log lines
(the deployment's own status stays in view, it is what ``--until-complete``
waits for), and its resources: the ``resources`` entries of its
``stack.progress`` events (Pulumi's adapter and ``cloud-ws pulumi`` send
them), folded here since the server's snapshot does not carry them — the
live view lists the running ones and the last finished ones, one line each;
the plain view prints a line per step. A deployment nobody reports on within :data:`HINT_SECONDS`
(a mistyped id, most likely) gets a hint to check the id with
``cloud-ws list``, and the monitor keeps waiting.

A server whose history of the deployment went back (a restarted local
stack forgets everything; an id reused after its history expired) is
reported by the client as a ``history_reset``: the monitor says so, drops
what it folded and starts again from the server's new snapshot.

``--until-complete`` never waits for ever on a lost post: the client's
keep-alive ``pong`` carries the deployment's latest ``seq``, so a terminal
status whose delivery failed for good is fetched with ``since`` at the next
ping (20 s with the client's defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TextIO

# The connection's names stay importable from here (``X as X``: re-exported), where they lived first.
from cloud_ws.connection import TOKEN_ENV as TOKEN_ENV
from cloud_ws.connection import LocalSignIn as LocalSignIn
from cloud_ws.connection import add_connection_arguments, build_client, explain_refusal, given_token
from cloud_ws.connection import diagnose_token as diagnose_token
from cloud_ws.text import clock as _clock
from cloud_ws.text import duration as _duration
from cloud_ws.text import duration_fine as _duration_fine
from cloud_ws.text import parse_time
from handlers.outputs import OutputsError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from cloud_ws_client import CloudWebSocketClient, DeploymentState, LogLine, Message, StackState
    from cloud_ws_client.messages import DeploymentSnapshot

#: Refusals of our ``subscribe`` that waiting cannot fix.
FATAL_SUBSCRIBE_ERRORS = frozenset(
    {"forbidden", "invalid_deployment_id", "invalid_since", "too_many_subscriptions"}
)
#: How often the live view redraws on its own (elapsed times move on between events).
TICK_SECONDS = 0.5
#: After this long with nothing reported on the deployment, the monitor says how to check the id.
HINT_SECONDS = 30.0
#: Resource lines the live view shows at most under ``--stack`` (running ones first, then the
#: last finished ones), fewer when the terminal has no room.
MAX_RESOURCE_LINES = 15
#: Of those, the last finished ones it keeps when many are running.
MIN_FINISHED_LINES = 3
#: The statuses of a ``resources`` entry (docs/asyncapi.yaml ``ResourceStep``).
RESOURCE_STATUSES = frozenset({"running", "done", "failed"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cloud-ws monitor``."""
    parser.add_argument("deployment_id", metavar="DEPLOYMENT_ID", help="the deployment to watch")
    add_connection_arguments(parser)
    parser.add_argument(
        "--json", action="store_true", dest="as_json", help="print every message as one JSON line"
    )
    parser.add_argument(
        "--until-complete",
        action="store_true",
        help="exit when the deployment ends: 0 if it succeeded, 1 if it failed or was cancelled",
    )
    parser.add_argument(
        "--stack", metavar="NAME", help="follow only this stack: its events, resources and log lines"
    )


def run(args: argparse.Namespace) -> int:
    """Watch the deployment; returns the exit code."""
    # Imported here: building the CLI parser must not pay for the client or rich.
    from cloud_ws_client import CloudWsError  # noqa: PLC0415

    view: View | None = None

    def announce(text: str) -> None:
        if view is not None:
            view.hint(text)

    try:
        client = build_client(args, announce=announce)
    except (OutputsError, CloudWsError, ValueError, OSError) as exc:
        return _fail(str(exc))
    if args.as_json:
        view = JsonView(sys.stdout)
    elif sys.stdout.isatty():
        view = LiveView(client, until_complete=args.until_complete)
    else:
        view = PlainView(sys.stdout)
    if args.stack:
        view = StackFilter(view, args.stack)
    try:
        return asyncio.run(
            watch(
                client,
                args.deployment_id,
                view,
                until_complete=args.until_complete,
                token=given_token(args),
            )
        )
    except KeyboardInterrupt:
        return 130


async def watch(
    client: CloudWebSocketClient,
    deployment_id: str,
    view: View,
    *,
    until_complete: bool,
    token: str | None = None,
    hint_after: float | None = HINT_SECONDS,
) -> int:
    """Connect, start from the snapshot, follow the deployment, show every message; return the exit code.

    ``token`` (the one given, if any) lets a refused handshake say whether it
    expired or is no token at all; after ``hint_after`` seconds with nothing
    reported on the deployment, the view is given a hint to check the id.
    """
    from cloud_ws_client import (  # noqa: PLC0415
        CloudWsError,
        DeploymentSnapshot,
        DeploymentState,
        ErrorMessage,
        Event,
        HistoryReset,
    )

    state = DeploymentState(deployment_id)
    # The attempt whose end --until-complete waits for, known from the first snapshot.
    target: int | None = None
    started = False
    try:
        # Live events only: the snapshot that follows the acknowledgement stands for the history.
        await client.subscribe(deployment_id)
        await client.connect()
    except (CloudWsError, ValueError) as exc:
        return _fail(explain_refusal(exc, token))
    view.start(state)
    error: str | None = None
    hint = None if hint_after is None else asyncio.create_task(_hint_later(view, state, hint_after))
    try:
        async for message in client.messages():
            if isinstance(message, HistoryReset) and message.deployment_id == deployment_id:
                # The server's history went back (a restarted local stack, a reused id): what was
                # folded belongs to a history that is gone. Start again from the snapshot that
                # follows, and wait for the end of the attempt it shows (or of the next one).
                state = DeploymentState(deployment_id)
                started, target = False, None
            if isinstance(message, DeploymentSnapshot):
                if not started and message.deployment_id == deployment_id:
                    started = True
                    # The starting point. A later snapshot (after a gap repair) is only shown:
                    # the replay that follows it brings the events themselves, and folding
                    # them keeps each field's exact order key and shows the terminal event.
                    state.apply_snapshot(message)
                    target = following_attempt(state)
            elif isinstance(message, Event):
                state.apply(message)
                if target is None:  # a server that sends no snapshot: the running attempt
                    target = max(state.attempt, 1)
            view.show(message, state)
            if (
                isinstance(message, ErrorMessage)
                and message.action == "subscribe"
                and message.code in FATAL_SUBSCRIBE_ERRORS
                # Errors name the deployment they refuse; one without a name is ours too,
                # as this client subscribes to nothing else.
                and message.deployment_id in (None, deployment_id)
            ):
                error = f"{message.code}: {message.message}"
                break
            if until_complete and target is not None and state.is_complete and state.attempt >= target:
                break
    except CloudWsError as exc:  # a reconnect refused (401/403) or impossible
        error = explain_refusal(exc, token)
    finally:
        if hint is not None:
            hint.cancel()
        view.stop(state)
        await client.disconnect()
    if error is not None:
        return _fail(error)
    return 0 if state.succeeded else 1


async def _hint_later(view: View, state: DeploymentState, after: float) -> None:
    """Once ``after`` seconds have passed with nothing reported on the deployment, hint at the id."""
    await asyncio.sleep(after)
    if state.attempt == 0 and state.events == 0:
        view.hint(
            f"no events yet for {state.deployment_id}; check the id with `cloud-ws list` (still waiting)"
        )


def following_attempt(state: DeploymentState) -> int:
    """The attempt ``--until-complete`` ends with, seen from the snapshot the monitor started from.

    The running attempt, or the one that ended (the monitor then exits at
    once); attempt 1 when nothing was reported yet.
    """
    return max(state.attempt, 1)


def _fail(message: str) -> int:
    print(f"cloud-ws monitor: {' '.join(message.split())}", file=sys.stderr)
    return 2


# -- views ----------------------------------------------------------------------------------


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


@dataclass
class Resource:
    """One resource of a stack, as the latest ``resources`` entry about it says."""

    name: str
    type: str
    operation: str
    status: str
    duration_seconds: float | None
    #: When it was first reported running (the event's time), for a running one's clock.
    started_at: datetime | None
    #: Order of its latest change (the last finished ones are the highest).
    changed: int


def resource_entries(data: Mapping[str, Any]) -> list[tuple[str, str, str, str, float | None]]:
    """The well-formed ``resources`` entries of a ``stack.progress``'s data, as
    ``(name, type, operation, status, duration_seconds)``; others are skipped."""
    entries = data.get("resources")
    if not isinstance(entries, list):
        return []
    parsed = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name, status = entry.get("name"), entry.get("status")
        if not isinstance(name, str) or status not in RESOURCE_STATUSES:
            continue
        type_, operation, duration = entry.get("type"), entry.get("operation"), entry.get("duration_seconds")
        parsed.append(
            (
                name,
                type_ if isinstance(type_, str) else "",
                operation if isinstance(operation, str) else "",
                str(status),
                float(duration)
                if isinstance(duration, int | float) and not isinstance(duration, bool) and duration >= 0
                else None,
            )
        )
    return parsed


class ResourceBoard:
    """One stack's resources, folded from its ``stack.progress`` events' ``resources`` entries.

    By type and name, the later entry winning (each entry is a step that
    started or ended since the producer's previous event). The server's fold
    and snapshot do not carry them: a monitor that joined late knows the
    resources of the events it received.
    """

    def __init__(self) -> None:
        self.resources: dict[tuple[str, str], Resource] = {}
        self._changes = 0

    def clear(self) -> None:
        """Forget every resource (a new attempt, a history that went back)."""
        self.resources.clear()

    def apply(self, data: Mapping[str, Any], timestamp: str | None) -> None:
        """Fold one ``stack.progress``'s entries."""
        at = parse_time(timestamp)
        for name, type_, operation, status, duration in resource_entries(data):
            key = (type_, name)
            previous = self.resources.get(key)
            still = previous is not None and previous.status == "running" and previous.operation == operation
            self._changes += 1
            self.resources[key] = Resource(
                name=name,
                type=type_,
                operation=operation,
                status=status,
                duration_seconds=duration,
                started_at=previous.started_at if still and previous else at if status == "running" else None,
                changed=self._changes,
            )

    def counts(self) -> dict[str, int]:
        """How many resources are running, done and failed."""
        counts = dict.fromkeys(("running", "done", "failed"), 0)
        for resource in self.resources.values():
            counts[resource.status] += 1
        return counts

    def lines(self, room: int) -> tuple[list[Resource], int]:
        """At most ``room`` resources to show: the last finished ones (oldest first), then the
        running ones (longest running first); and how many running ones did not fit."""
        if room <= 0:
            return [], sum(1 for r in self.resources.values() if r.status == "running")
        running = [r for r in self.resources.values() if r.status == "running"]
        finished = sorted(
            (r for r in self.resources.values() if r.status != "running"), key=lambda r: r.changed
        )
        keep_finished = min(len(finished), max(room - len(running), min(MIN_FINISHED_LINES, room // 2)))
        shown_running = running[: room - keep_finished]
        shown = (finished[-keep_finished:] if keep_finished else []) + shown_running
        return shown, len(running) - len(shown_running)


class StackFilter:
    """Shows another view only one stack's part of the deployment.

    Events about other stacks, and log lines of other stacks (or of none),
    are not shown; the deployment's own status still is, and so is what the
    view draws from the state (header, progress), with only that stack's row
    and log lines. The stack's resources are folded here (:class:`ResourceBoard`)
    and handed to the views that draw them.
    """

    def __init__(self, view: View, stack_name: str) -> None:
        self.view = view
        self.stack_name = stack_name
        self.resources = ResourceBoard()
        self._attempt: int | None = None
        if isinstance(view, LiveView | PlainView):
            view.resources = self.resources

    def start(self, state: DeploymentState) -> None:
        """Start the view on the filtered state."""
        self.view.start(self._state(state))

    def show(self, message: Message, state: DeploymentState) -> None:
        """Pass the message on if it is about the stack (or the deployment itself)."""
        from cloud_ws_client import DeploymentSnapshot, Event, HistoryReset  # noqa: PLC0415

        # A new attempt deploys the stack afresh; a history that went back is another history.
        new_attempt = self._attempt is not None and state.attempt != self._attempt
        if isinstance(message, HistoryReset) or new_attempt:
            self.resources.clear()
        self._attempt = state.attempt
        if isinstance(message, DeploymentSnapshot):
            message = self._snapshot(message)
        elif (
            isinstance(message, Event)
            and message.type != "deployment.status"
            and message.data.get("stack_name") != self.stack_name
        ):
            return
        if isinstance(message, Event) and message.type == "stack.progress":
            self.resources.apply(message.data, message.timestamp)
        self.view.show(message, self._state(state))

    def stop(self, state: DeploymentState) -> None:
        """Stop the view."""
        self.view.stop(self._state(state))

    def hint(self, text: str) -> None:
        """Pass the hint on."""
        self.view.hint(text)

    def _state(self, state: DeploymentState) -> DeploymentState:
        """A copy of the state with only the stack and its log lines (the views only read it)."""
        from dataclasses import replace  # noqa: PLC0415

        return replace(
            state,
            stacks={name: stack for name, stack in state.stacks.items() if name == self.stack_name},
            recent_logs=[line for line in state.recent_logs if line.stack_name == self.stack_name],
        )

    def _snapshot(self, snapshot: DeploymentSnapshot) -> DeploymentSnapshot:
        from cloud_ws_client import parse_message  # noqa: PLC0415

        raw = dict(snapshot.raw)
        data = dict(raw.get("data") or {})
        stacks = data.get("stacks") or {}
        data["stacks"] = {name: value for name, value in stacks.items() if name == self.stack_name}
        logs = data.get("recent_logs") or []
        data["recent_logs"] = [
            line for line in logs if isinstance(line, dict) and line.get("stack_name") == self.stack_name
        ]
        filtered = parse_message(json.dumps({**raw, "data": data}))
        return filtered if isinstance(filtered, type(snapshot)) else snapshot


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
                took = f" {_duration_fine(duration)}" if duration is not None else ""
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
            text += f", in {_duration(duration)}"
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
    head = f"{_clock(message.timestamp)} #{message.seq}"
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
            text += f" in {_duration(message.duration_seconds)} ({message.resource_count} resources)"
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
        _failure(name, fields.get("error_message"))
        for name, fields in stacks.items()
        if isinstance(fields, dict) and fields.get("status") == "failed"
    ]


def _failure(stack_name: str, error: object) -> str:
    line = _first_line(error)
    return f"{stack_name}: {line}" if line else f"{stack_name} failed"


def _first_line(text: object) -> str:
    """The first line of an error message, or ``""`` without one."""
    lines = str(text).strip().splitlines() if text else []
    return lines[0] if lines else ""


class LiveView:
    """The terminal view: attempt, status and progress over layers, the stacks, the newest log lines.

    Every drawing is fitted to the terminal's current size (see :func:`render`):
    rich's ``Live`` crops what is taller than the screen from the bottom,
    which is where the newest log lines are.
    """

    def __init__(
        self, client: CloudWebSocketClient, console: Console | None = None, *, until_complete: bool = False
    ) -> None:
        from rich.console import Console  # noqa: PLC0415
        from rich.live import Live  # noqa: PLC0415

        self.client = client
        self.console = console or Console()
        self._state: DeploymentState | None = None
        # Redrawn from the event loop only (auto_refresh would read the state from a thread).
        self._live = Live(console=self.console, auto_refresh=False, transient=False)
        self._ticker: asyncio.Task[None] | None = None
        self._errors: list[str] = []
        self._hints: list[str] = []
        # Without --until-complete the monitor stays after the end (a re-run may follow):
        # the finished view says how to leave.
        self._stays = not until_complete
        #: Set by ``--stack``: the stack's resources, drawn under its row.
        self.resources: ResourceBoard | None = None

    def start(self, state: DeploymentState) -> None:
        """Start drawing, and redrawing every tick for the elapsed times."""
        self._state = state
        self._live.start()
        self._live.update(self._render(state), refresh=True)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def show(self, message: Message, state: DeploymentState) -> None:
        """Redraw with the new state."""
        from cloud_ws_client import ErrorMessage, HistoryReset  # noqa: PLC0415

        if isinstance(message, ErrorMessage):
            self._errors = [*self._errors[-2:], f"{message.code}: {message.message}"]
        elif isinstance(message, HistoryReset):
            self._hints = [describe(message) or ""]
        self._state = state  # the ticks redraw the latest (a filtered view passes a new copy each time)
        self._live.update(self._render(state), refresh=True)

    def stop(self, state: DeploymentState) -> None:
        """Draw the final picture and leave it on the screen."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._live.is_started:
            self._live.update(self._render(state), refresh=True)
            self._live.stop()

    def hint(self, text: str) -> None:
        """Show the hint under the header."""
        self._hints = [text]
        if self._state is not None:
            self._live.update(self._render(self._state), refresh=True)

    def _render(self, state: DeploymentState) -> RenderableType:
        return render(
            state,
            self.client.state,
            [*self._hints, *self._errors],
            console=self.console,
            quit_hint=self._stays,
            resources=self.resources,
        )

    async def _tick(self) -> None:
        while self._state is not None:
            await asyncio.sleep(TICK_SECONDS)
            self._live.update(self._render(self._state), refresh=True)


#: Colour of each status, in the live view.
STYLES = {
    "pending": "dim",
    "deploying": "yellow",
    "deployed": "green",
    "succeeded": "bold green",
    "failed": "bold red",
    "cancelled": "magenta",
}
#: How the connection state reads in the live view's header.
LINK_LABELS = {
    "connected": ("live", "green"),
    "idle": ("connecting…", "yellow"),
    "reconnecting": ("reconnecting…", "yellow"),
    "waiting": ("offline, retrying soon…", "yellow"),
    "closed": ("closed", "dim"),
}
LEVEL_STYLES = {"debug": "dim", "info": "", "warning": "yellow", "error": "red", "critical": "bold red"}


#: Log lines the live view keeps on screen even when the stacks must be cut short for them.
MIN_LOG_LINES = 3


def render(
    state: DeploymentState,
    link: str,
    errors: list[str] | None = None,
    now: datetime | None = None,
    *,
    console: Console | None = None,
    quit_hint: bool = False,
    resources: ResourceBoard | None = None,
) -> RenderableType:
    """The live view of ``state`` as a rich renderable; ``link`` is the client's connection state.

    With ``resources`` (``--stack``), a block under the stacks lists the
    stack's running resources and its last finished ones, one line each (up
    to :data:`MAX_RESOURCE_LINES`, as many as the height leaves beside
    :data:`MIN_LOG_LINES` log lines).

    With ``console``, the view fits its height (one line is left for the
    cursor): the newest log lines always show, as many as there is room for,
    and when the stacks leave no room for :data:`MIN_LOG_LINES` of them, the
    earliest stacks are summed up in one line. Every row is one line (long
    cells end in an ellipsis), so what is measured is what is drawn, except
    the failed stacks' errors under the header, which wrap (they say why the
    deployment failed, and a narrow terminal must not cut that off).

    Once the deployment has ended, stacks still marked deploying stop their
    clocks at its end; with ``quit_hint`` the view says how long it took and
    how to quit. With ``NO_COLOR`` set (or a console without colour) the
    progress bar is drawn in plain characters.
    """
    from rich.console import Group  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    now = now or datetime.now(UTC)
    lines = list(state.logs)
    stacks = state.stacks_in_order()
    plain = bool(os.environ.get("NO_COLOR")) or (console is not None and console.no_color)

    def _top(
        state: DeploymentState,
        link: str,
        errors: list[str] | None,
        now: datetime,
        stacks: list[StackState],
        hidden: int,
    ) -> list[RenderableType]:
        parts = _top_parts(state, link, errors, now, stacks, hidden, plain=plain, quit_hint=quit_hint)
        if resources is None:
            return parts
        # Under the stack's row, above "latest logs" (the last two parts).
        block = _resource_parts(state, resources, now, room)
        return [*parts[:-2], *block, *parts[-2:]]

    room = MAX_RESOURCE_LINES
    if console is None:
        return Group(*_top(state, link, errors, now, stacks, 0), _logs_table(lines))
    budget = max(1, console.size.height - 1)
    options = console.options.update(width=console.size.width)

    def height(parts: list[RenderableType]) -> int:
        return len(console.render_lines(Group(*parts), options, pad=False))

    if resources is not None:
        # Each resource is one line: the room is what the rest leaves beside a few log lines
        # (measured with none shown; the "more running" line is counted then too).
        room = 0
        spare = budget - height(_top(state, link, errors, now, stacks, 0)) - min(MIN_LOG_LINES, len(lines))
        room = max(0, min(MAX_RESOURCE_LINES, spare))
    hidden = 0
    top = _top(state, link, errors, now, stacks, hidden)
    # The earliest stacks make room for the newest log lines (a deployment has few layers on screen).
    while hidden < len(stacks) and height(top) + min(MIN_LOG_LINES, len(lines)) > budget:
        hidden += 1
        top = _top(state, link, errors, now, stacks, hidden)
    room = max(0, budget - height(top))
    shown = lines[-room:] if room else []
    if not shown and lines:
        return Group(*top[: max(1, budget - 1)], _logs_table(lines[-1:]))
    return Group(*top, _logs_table(shown)) if shown else Group(*top, Text("no log lines yet", "dim"))


def _top_parts(
    state: DeploymentState,
    link: str,
    errors: list[str] | None,
    now: datetime,
    stacks: list[StackState],
    hidden: int,
    *,
    plain: bool = False,
    quit_hint: bool = False,
) -> list[RenderableType]:
    """Everything above the log lines: header, progress, stacks (the first ``hidden`` summed up)."""
    from rich.progress_bar import ProgressBar  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    status = state.status if state.attempt else "waiting for events"
    header = Text.assemble(
        ("Deployment ", "bold"),
        (state.deployment_id, "bold cyan"),
        "  ",
        (f"attempt {state.attempt}  " if state.attempt else "", "bold"),
        (status, STYLES.get(status, "")),
        "  ",
        LINK_LABELS.get(link, (link, "")),
        no_wrap=True,
        overflow="ellipsis",
    )
    total = state.total_layers or 0
    progress = Table.grid(padding=(0, 1))
    bar: RenderableType = (
        Text(_plain_bar(state.layers_done, max(total, 1), 40), no_wrap=True)
        if plain
        else ProgressBar(
            total=max(total, 1),
            completed=state.layers_done,
            width=40,
            complete_style="red" if state.status in ("failed", "cancelled") else "yellow",
            finished_style="green",
        )
    )
    progress.add_row(bar, Text(f"layer {state.current_layer or 0}/{total or '?'}"))
    # Once the deployment has ended, nothing deploys any more: clocks stop at its end.
    ended_at = parse_time(state.updated_at) if state.is_complete else None

    # Expanded so that the error column alone takes what is left, and ends in an ellipsis.
    table = Table(expand=True, box=None, header_style="bold", pad_edge=False)
    for column in ("layer", "stack", "status", "resources", "duration"):
        table.add_column(column, no_wrap=True)
    table.add_column("", no_wrap=True, overflow="ellipsis", ratio=1)
    for stack in stacks[hidden:]:
        resources = "" if stack.resources_done is None else str(stack.resources_done)
        if stack.resource_count is not None and stack.resource_count != stack.resources_done:
            resources += f"/{stack.resource_count}"
        status = stack.status
        if state.is_complete and status in ("pending", "deploying"):
            status = "cancelled" if state.status == "cancelled" else "unfinished"
        table.add_row(
            "" if stack.layer is None else str(stack.layer),
            stack.name,
            Text(status, STYLES.get(status, "")),
            resources,
            _duration(stack.elapsed(ended_at or now) if ended_at or not state.is_complete else None),
            Text(stack.error_message or "", "red"),
        )
    parts: list[RenderableType] = [header, progress]
    # Why it failed, whatever the width: the failed stacks' own errors first (the cause), then
    # the deployment's message; these wrap rather than end in an ellipsis.
    failures = [_failure(stack.name, stack.error_message) for stack in stacks if stack.status == "failed"]
    parts += [Text(failure, "bold red") for failure in failures]
    if state.error_message:
        parts.append(Text(state.error_message, "red", no_wrap=True, overflow="ellipsis"))
    if quit_hint and state.is_complete:
        took = state.duration_seconds
        if took is None:
            began, ended = parse_time(state.started_at), parse_time(state.updated_at)
            took = (ended - began).total_seconds() if began and ended else None
        finished = f"{state.status} after {_duration(took)}" if took is not None else state.status
        parts.append(Text(f"{finished} · still watching for a re-run; Ctrl-C to quit", "dim", no_wrap=True))
    parts.append(Text(""))
    if hidden:
        done = sum(1 for stack in stacks[:hidden] if stack.status == "deployed")
        parts.append(Text(f"… {hidden} earlier stacks ({done} deployed)", "dim", no_wrap=True))
    parts.append(table)
    parts += [Text(error, "red", no_wrap=True, overflow="ellipsis") for error in errors or ()]
    parts += [Text(""), Text("latest logs", "bold")]
    return parts


def _resource_parts(
    state: DeploymentState, board: ResourceBoard, now: datetime, room: int
) -> list[RenderableType]:
    """The stack's resources: a line of counts, then up to ``room`` resources, one line each."""
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    counts = board.counts()
    total = len(board.resources)
    summary = f"resources  {total} · {counts['running']} running · {counts['done']} done"
    if counts["failed"]:
        summary += f" · {counts['failed']} failed"
    if not total:
        summary = "resources  none reported yet"
    parts: list[RenderableType] = [Text(""), Text(summary, "bold", no_wrap=True, overflow="ellipsis")]
    shown, more = board.lines(room)
    if more and room > 0:
        shown, more = board.lines(room - 1)  # a line for "… N more running"
    # A running resource's clock stops when its stack (or the deployment) no longer deploys.
    deploying = any(stack.status == "deploying" for stack in state.stacks.values())
    stack_running = deploying and not state.is_complete
    # One line each: the type and the name share what the fixed columns leave, and end in "…".
    table = Table(expand=True, box=None, show_header=False, pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=2)
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=3)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, justify="right")
    for resource in shown:
        seconds = resource.duration_seconds
        if resource.status == "running":
            seconds = (
                max(0.0, (now - resource.started_at).total_seconds())
                if stack_running and resource.started_at is not None
                else None
            )
        style = {"running": "yellow", "done": "green", "failed": "bold red"}[resource.status]
        table.add_row(
            resource.operation,
            Text(resource.type, "dim", no_wrap=True, overflow="ellipsis"),
            Text(resource.name, no_wrap=True, overflow="ellipsis"),
            Text(resource.status, style),
            _duration_fine(seconds),
        )
    if shown:
        parts.append(table)
    if more:
        parts.append(Text(f"… {more} more running", "dim", no_wrap=True))
    return parts


def _logs_table(lines: list[LogLine]) -> RenderableType:
    """Log lines, one screen line each, oldest first (the newest is the last line)."""
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    logs = Table.grid(padding=(0, 1), expand=True)
    for _ in range(3):
        logs.add_column(no_wrap=True)
    logs.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    for line in lines:
        when = line.time
        logs.add_row(
            Text(when.strftime("%H:%M:%S") if when else "", "dim"),
            Text(line.level, LEVEL_STYLES.get(line.level, "")),
            Text(line.stack_name or "", "cyan"),
            Text(line.message, overflow="ellipsis", no_wrap=True),
        )
    return logs


def _plain_bar(done: int, total: int, width: int) -> str:
    """A progress bar in plain characters: ``[##########----------]``."""
    filled = round(width * min(done, total) / total) if total else 0
    return "[" + "#" * filled + "-" * (width - filled) + "]"
