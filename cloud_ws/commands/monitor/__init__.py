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

The parts, by job: the options and this entry point here; the client set-up
in :mod:`cloud_ws.connection` (shared with ``cloud-ws list``); the watch loop
in :mod:`.watch_loop`; the views in :mod:`.views` (what a view is, JSON and
plain lines), :mod:`.live` (the terminal) and :mod:`.stack_filter`
(``--stack``), whose resources fold in :mod:`.resources`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from cloud_ws.commands.monitor.live import (
    LEVEL_STYLES,
    LINK_LABELS,
    MAX_RESOURCE_LINES,
    MIN_LOG_LINES,
    STYLES,
    TICK_SECONDS,
    LiveView,
    render,
)
from cloud_ws.commands.monitor.resources import (
    MIN_FINISHED_LINES,
    RESOURCE_STATUSES,
    Resource,
    ResourceBoard,
    resource_entries,
)
from cloud_ws.commands.monitor.stack_filter import StackFilter
from cloud_ws.commands.monitor.views import JsonView, PlainView, View, describe, snapshot_failures
from cloud_ws.commands.monitor.watch_loop import (
    FATAL_SUBSCRIBE_ERRORS,
    HINT_SECONDS,
    _hint_later,
    fail,
    following_attempt,
    watch,
)
from cloud_ws.connection import (
    TOKEN_ENV,
    LocalSignIn,
    add_connection_arguments,
    build_client,
    diagnose_token,
    explain_refusal,
    given_token,
)
from cloud_ws.text import parse_time
from contract.outputs import OutputsError

# What this module held before it was split, importable from here still (tests and scripts do).
__all__ = [
    "FATAL_SUBSCRIBE_ERRORS",
    "HINT_SECONDS",
    "LEVEL_STYLES",
    "LINK_LABELS",
    "MAX_RESOURCE_LINES",
    "MIN_FINISHED_LINES",
    "MIN_LOG_LINES",
    "RESOURCE_STATUSES",
    "STYLES",
    "TICK_SECONDS",
    "TOKEN_ENV",
    "JsonView",
    "LiveView",
    "LocalSignIn",
    "PlainView",
    "Resource",
    "ResourceBoard",
    "StackFilter",
    "View",
    "_hint_later",
    "add_arguments",
    "add_connection_arguments",
    "build_client",
    "describe",
    "diagnose_token",
    "explain_refusal",
    "following_attempt",
    "parse_time",
    "render",
    "resource_entries",
    "run",
    "snapshot_failures",
    "watch",
]


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
        return fail(str(exc))
    if args.as_json:
        view = JsonView(sys.stdout)
    elif sys.stdout.isatty():
        # The tick is read here, at run time, so that this module's setting governs it.
        view = LiveView(client, until_complete=args.until_complete, tick_seconds=TICK_SECONDS)
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
