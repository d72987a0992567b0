"""The monitor's view on a terminal: header, progress over layers, the stacks, the newest log lines.

:class:`LiveView` redraws with rich's ``Live`` on every message and every
:data:`TICK_SECONDS`; :func:`render` builds one picture, fitted to the
terminal's size. Rich is imported only when a live view is built or drawn.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cloud_ws.commands.monitor.views import describe, failure_line
from cloud_ws.text import format_duration, format_duration_fine, parse_time

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from cloud_ws.commands.monitor.resources import ResourceBoard
    from cloud_ws_client import CloudWebSocketClient, DeploymentState, LogLine, Message, StackState

#: How often the live view redraws on its own (elapsed times move on between events).
TICK_SECONDS = 0.5
#: Resource lines the live view shows at most under ``--stack`` (running ones first, then the
#: last finished ones), fewer when the terminal has no room.
MAX_RESOURCE_LINES = 15


class LiveView:
    """The terminal view: attempt, status and progress over layers, the stacks, the newest log lines.

    Every drawing is fitted to the terminal's current size (see :func:`render`):
    rich's ``Live`` crops what is taller than the screen from the bottom,
    which is where the newest log lines are.
    """

    def __init__(
        self,
        client: CloudWebSocketClient,
        console: Console | None = None,
        *,
        until_complete: bool = False,
        tick_seconds: float = TICK_SECONDS,
    ) -> None:
        from rich.console import Console  # noqa: PLC0415
        from rich.live import Live  # noqa: PLC0415

        self.client = client
        #: How often it redraws on its own.
        self.tick_seconds = tick_seconds
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
            await asyncio.sleep(self.tick_seconds)
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
            format_duration(stack.elapsed(ended_at or now) if ended_at or not state.is_complete else None),
            Text(stack.error_message or "", "red"),
        )
    parts: list[RenderableType] = [header, progress]
    # Why it failed, whatever the width: the failed stacks' own errors first (the cause), then
    # the deployment's message; these wrap rather than end in an ellipsis.
    failures = [failure_line(stack.name, stack.error_message) for stack in stacks if stack.status == "failed"]
    parts += [Text(failure, "bold red") for failure in failures]
    if state.error_message:
        parts.append(Text(state.error_message, "red", no_wrap=True, overflow="ellipsis"))
    if quit_hint and state.is_complete:
        took = state.duration_seconds
        if took is None:
            began, ended = parse_time(state.started_at), parse_time(state.updated_at)
            took = (ended - began).total_seconds() if began and ended else None
        finished = f"{state.status} after {format_duration(took)}" if took is not None else state.status
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
            format_duration_fine(seconds),
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
