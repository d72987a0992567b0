"""``cloud-ws monitor DEPLOYMENT_ID``: watch a deployment live in the terminal.

Three outputs: a live view (progress over layers, a table of stacks, the
latest log lines) when stdout is a terminal; one plain line per event when it
is not (a pipe, a CI log); one JSON message per line with ``--json``. The
whole history is replayed first (``since`` 0), so starting late shows the same
picture as starting early.

Exit codes: with ``--until-complete``, 0 once the deployment succeeded and 1
once it failed or was cancelled; 2 for a refused token, an unreachable
endpoint, a refused subscription or bad arguments; 130 after Ctrl-C.

``--until-complete`` never waits for ever on a lost post: the client's
keep-alive ``pong`` carries the deployment's latest ``seq``, so a terminal
status whose delivery failed for good is fetched with ``since`` at the next
ping (20 s with the client's defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from cloud_ws.outputs import OutputsError, load_outputs

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from cloud_ws_client import CloudWebSocketClient, DeploymentState, Message

TOKEN_ENV = "CLOUD_WS_TOKEN"
#: Refusals of our ``subscribe`` that waiting cannot fix.
FATAL_SUBSCRIBE_ERRORS = frozenset(
    {"forbidden", "invalid_deployment_id", "invalid_since", "too_many_subscriptions"}
)
#: How often the live view redraws on its own (elapsed times move on between events).
TICK_SECONDS = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cloud-ws monitor``."""
    parser.add_argument("deployment_id", metavar="DEPLOYMENT_ID", help="the deployment to watch")
    parser.add_argument(
        "--outputs", type=Path, default=None, help="stack outputs file (default: .cloud-ws/outputs.json)"
    )
    parser.add_argument("--url", help="WebSocket URL, instead of reading it from the outputs")
    parser.add_argument(
        "--token", help=f"Cognito JWT (default: ${TOKEN_ENV}, else the local stack's dev user)"
    )
    parser.add_argument(
        "--json", action="store_true", dest="as_json", help="print every message as one JSON line"
    )
    parser.add_argument(
        "--until-complete",
        action="store_true",
        help="exit when the deployment ends: 0 if it succeeded, 1 if it failed or was cancelled",
    )


def run(args: argparse.Namespace) -> int:
    """Watch the deployment; returns the exit code."""
    # Imported here: building the CLI parser must not pay for the client or rich.
    from cloud_ws_client import CloudWsError  # noqa: PLC0415

    try:
        client = build_client(args)
    except (OutputsError, CloudWsError, ValueError, OSError) as exc:
        return _fail(str(exc))
    view: View
    if args.as_json:
        view = JsonView(sys.stdout)
    elif sys.stdout.isatty():
        view = LiveView(client)
    else:
        view = PlainView(sys.stdout)
    try:
        return asyncio.run(watch(client, args.deployment_id, view, until_complete=args.until_complete))
    except KeyboardInterrupt:
        return 130


def build_client(args: argparse.Namespace) -> CloudWebSocketClient:
    """The client for ``--url``/``--token``, or for the outputs file.

    Raises:
        ValueError: No way to get a token.
        OutputsError: The outputs file is missing or incomplete.
    """
    from cloud_ws_client import CloudWebSocketClient  # noqa: PLC0415

    token = args.token or os.environ.get(TOKEN_ENV)
    if args.url:
        if not token:
            raise ValueError(f"--url needs --token (or ${TOKEN_ENV})")
        return CloudWebSocketClient(args.url, token)
    outputs = load_outputs(args.outputs)
    if token is None and not outputs.get("aws_endpoint_url"):
        raise ValueError(f"pass --token or set ${TOKEN_ENV} for a cloud stack (`cloud-ws token` prints one)")
    # Without a token the client signs the local dev user in on every
    # connection, so a reconnect an hour later still has a valid token.
    return CloudWebSocketClient.from_outputs(outputs, token)


async def watch(client: CloudWebSocketClient, deployment_id: str, view: View, *, until_complete: bool) -> int:
    """Connect, replay and follow the deployment, showing every message; returns the exit code."""
    from cloud_ws_client import (  # noqa: PLC0415
        CloudWsError,
        DeploymentState,
        ErrorMessage,
        Event,
    )

    state = DeploymentState(deployment_id)
    try:
        await client.subscribe(deployment_id, since=0)
        await client.connect()
    except (CloudWsError, ValueError) as exc:
        return _fail(str(exc))
    view.start(state)
    error: str | None = None
    try:
        async for message in client.messages():
            if isinstance(message, Event):
                state.apply(message)
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
            if until_complete and state.is_complete:
                break
    except CloudWsError as exc:  # a reconnect refused (401/403) or impossible
        error = str(exc)
    finally:
        view.stop(state)
        await client.disconnect()
    if error is not None:
        return _fail(error)
    return 0 if state.succeeded else 1


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


class JsonView:
    """One JSON message per line, exactly as received (acknowledgements and errors too)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def start(self, state: DeploymentState) -> None:
        """Nothing to set up."""

    def show(self, message: Message, state: DeploymentState) -> None:
        """Print the message as one line."""
        print(message.to_json(), file=self.out, flush=True)

    def stop(self, state: DeploymentState) -> None:
        """Nothing to tear down."""


class PlainView:
    """One line per event for logs and pipes, then a summary line when the deployment ends."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._done = False

    def start(self, state: DeploymentState) -> None:
        """Say what is being watched."""
        self._print(f"watching deployment {state.deployment_id}")

    def show(self, message: Message, state: DeploymentState) -> None:
        """Print the message's line, if it has one."""
        line = describe(message)
        if line is not None:
            self._print(line)

    def stop(self, state: DeploymentState) -> None:
        """Print the outcome once."""
        if self._done:
            return
        self._done = True
        if state.is_complete:
            self._print(f"deployment {state.deployment_id} {state.status}")

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def describe(message: Message) -> str | None:
    """A message as one line of text (``None`` for messages a person need not see)."""
    from cloud_ws_client import DeploymentStatus, ErrorMessage, Event, LogCreated, StackEvent  # noqa: PLC0415

    if isinstance(message, ErrorMessage):
        return f"error {message.code}: {message.message}"
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


class LiveView:
    """The terminal view: status and progress over layers, the stacks, the latest log lines."""

    def __init__(self, client: CloudWebSocketClient, console: Console | None = None) -> None:
        from rich.console import Console  # noqa: PLC0415
        from rich.live import Live  # noqa: PLC0415

        self.client = client
        self.console = console or Console()
        self._state: DeploymentState | None = None
        # Redrawn from the event loop only (auto_refresh would read the state from a thread).
        self._live = Live(console=self.console, auto_refresh=False, transient=False)
        self._ticker: asyncio.Task[None] | None = None
        self._errors: list[str] = []

    def start(self, state: DeploymentState) -> None:
        """Start drawing, and redrawing every tick for the elapsed times."""
        self._state = state
        self._live.start()
        self._live.update(self._render(state), refresh=True)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def show(self, message: Message, state: DeploymentState) -> None:
        """Redraw with the new state."""
        from cloud_ws_client import ErrorMessage  # noqa: PLC0415

        if isinstance(message, ErrorMessage):
            self._errors = [*self._errors[-2:], f"{message.code}: {message.message}"]
        self._live.update(self._render(state), refresh=True)

    def stop(self, state: DeploymentState) -> None:
        """Draw the final picture and leave it on the screen."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._live.is_started:
            self._live.update(self._render(state), refresh=True)
            self._live.stop()

    def _render(self, state: DeploymentState) -> RenderableType:
        return render(state, self.client.state, self._errors)

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


def render(
    state: DeploymentState, link: str, errors: list[str] | None = None, now: datetime | None = None
) -> RenderableType:
    """The live view of ``state`` as a rich renderable; ``link`` is the client's connection state."""
    from rich.console import Group  # noqa: PLC0415
    from rich.progress_bar import ProgressBar  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    now = now or datetime.now(UTC)
    status = state.status or "waiting for events"
    header = Text.assemble(
        ("Deployment ", "bold"),
        (state.deployment_id, "bold cyan"),
        "  ",
        (status, STYLES.get(status, "")),
        "  ",
        LINK_LABELS.get(link, (link, "")),
    )
    total = state.total_layers or 0
    progress = Table.grid(padding=(0, 1))
    progress.add_row(
        ProgressBar(
            total=max(total, 1),
            completed=state.layers_done,
            width=40,
            complete_style="red" if state.status in ("failed", "cancelled") else "yellow",
            finished_style="green",
        ),
        Text(f"layer {state.current_layer or 0}/{total or '?'}"),
    )

    stacks = Table(expand=False, box=None, header_style="bold", pad_edge=False)
    for column in ("layer", "stack", "status", "resources", "duration", ""):
        stacks.add_column(column)
    for stack in state.stacks_in_order():
        resources = "" if stack.resources_done is None else str(stack.resources_done)
        if stack.resource_count is not None and stack.resource_count != stack.resources_done:
            resources += f"/{stack.resource_count}"
        stacks.add_row(
            "" if stack.layer is None else str(stack.layer),
            stack.name,
            Text(stack.status, STYLES.get(stack.status, "")),
            resources,
            _duration(stack.elapsed(now)),
            Text(stack.error_message or "", "red"),
        )

    logs = Table.grid(padding=(0, 1))
    for line in state.logs:
        logs.add_row(
            Text(line.time.strftime("%H:%M:%S") if line.time else "", "dim"),
            Text(line.level, LEVEL_STYLES.get(line.level, "")),
            Text(line.stack_name or "", "cyan"),
            Text(line.message, overflow="ellipsis", no_wrap=True),
        )
    parts: list[RenderableType] = [header, progress]
    if state.error_message:
        parts.append(Text(state.error_message, "red"))
    parts += [Text(""), stacks, Text(""), Text("latest logs", "bold"), logs]
    parts += [Text(error, "red") for error in errors or ()]
    return Group(*parts)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _clock(timestamp: str | None) -> str:
    """``HH:MM:SS`` of an ISO timestamp (as sent), or blanks."""
    from cloud_ws_client.state import parse_timestamp  # noqa: PLC0415

    parsed = parse_timestamp(timestamp)
    return parsed.strftime("%H:%M:%S") if parsed else "--:--:--"
