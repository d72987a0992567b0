"""``cloud-ws pulumi -- <pulumi arguments>``: report a plain ``pulumi up`` as a deployment.

Most deployments are not Automation API programs but ``pulumi up`` in a CI
job. This command runs the user's own ``pulumi`` (from PATH, or ``--pulumi``)
with ``--event-log FILE`` added, follows that file as the engine writes it
(:class:`plugin.eventlog.EventLogTailer`) and feeds each engine event to the
Automation API adapter (:class:`plugin.automation.AutomationAdapter`), so the
stack's start, progress, diagnostics and result reach every watcher.

What it promises the update:

- pulumi's stdin, stdout and stderr are pulumi's own (inherited, not piped):
  its output is untouched, its prompts and colours still work;
- the exit code is pulumi's (128 + N when a signal N ended it);
- SIGINT and SIGTERM reach pulumi once (see :func:`run_pulumi`);
- monitoring never holds the update up: the engine writes a file it never
  waits on, hooks only queue events, and once pulumi has exited, sending what
  is left waits at most ``--close-timeout`` seconds, reachable endpoint or not;
- a missing outputs file or an unreachable endpoint is one line on stderr,
  never a failed update.

Only the commands that run an update are reported (``up``, ``refresh``,
``destroy``); any other ``pulumi`` command runs as it is.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from cloud_ws.connection import add_outputs_argument
from contract.outputs import OutputsError
from contract.protocol import DEPLOYMENT_ID_PATTERN, is_valid_deployment_id

if TYPE_CHECKING:
    from plugin import AutomationAdapter, OrchestratorPlugin
    from plugin.eventlog import LoggedEngineEvent

#: pulumi commands that run an update and take ``--event-log`` (aliases included).
MONITORED_COMMANDS = frozenset({"up", "update", "refresh", "destroy", "down"})
#: pulumi's global flags that take a value as the next argument (``--cwd DIR``); the
#: first argument that is neither a flag nor such a value is pulumi's command.
VALUE_FLAGS = frozenset(
    {
        "-C",
        "--cwd",
        "--color",
        "--memprofilerate",
        "--profiling",
        "--tracing",
        "--tracing-header",
        "-v",
        "--verbose",
    }
)
#: How long reading the rest of the event log may take once pulumi has exited.
DRAIN_SECONDS = 2.0
#: Engine events kept while the stack's name is not known yet (no ``--stack``, no URN so far).
MAX_BUFFERED_EVENTS = 1000
#: Stack name used when neither ``--stack`` nor any engine event names the stack.
FALLBACK_STACK_NAME = "pulumi"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cloud-ws pulumi``."""
    parser.add_argument(
        "--deployment-id",
        metavar="ID",
        help="deployment to report on (default: from the CI run, e.g. gh-<run id>-<attempt>; else a new one)",
    )
    add_outputs_argument(parser)
    parser.add_argument("--project", help="cloud-ws project the deployment belongs to")
    parser.add_argument(
        "--stack-name",
        metavar="NAME",
        help="the stack's name in events (default: pulumi's --stack, else the stack the engine names)",
    )
    parser.add_argument("--environment", help="environment named in the events")
    parser.add_argument("--layer", type=int, metavar="N", help="the layer this stack deploys in (1-based)")
    parser.add_argument("--total-layers", type=int, metavar="M", help="how many layers the deployment has")
    parser.add_argument(
        "--no-complete",
        action="store_true",
        help="do not report the deployment succeeded when pulumi does (another step ends it)",
    )
    parser.add_argument("--pulumi", metavar="PATH", help="the pulumi executable (default: the one on PATH)")
    parser.add_argument(
        "--close-timeout",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="at most this long to send the last events once pulumi has exited (default: 3)",
    )
    parser.add_argument(
        "pulumi_args",
        nargs=argparse.REMAINDER,
        metavar="-- PULUMI_ARGS",
        help="pulumi's own arguments, after --, e.g. -- up --yes --stack dev",
    )


def run(args: argparse.Namespace) -> int:
    """Run pulumi, reporting its update; returns pulumi's exit code (2 for our own bad arguments)."""
    pulumi_args = list(args.pulumi_args)
    if pulumi_args[:1] == ["--"]:
        pulumi_args = pulumi_args[1:]
    if not pulumi_args:
        return _fail("give pulumi's arguments after --, e.g. cloud-ws pulumi -- up --yes --stack dev", 2)
    if args.deployment_id is not None and not is_valid_deployment_id(args.deployment_id):
        return _fail(f"--deployment-id must match {DEPLOYMENT_ID_PATTERN}", 2)
    for name in ("layer", "total_layers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return _fail(f"--{name.replace('_', '-')} must be 1 or more", 2)
    if args.total_layers is not None and args.layer is None:
        return _fail("--total-layers needs --layer (the layer this stack deploys in)", 2)
    if args.layer is not None and args.total_layers is not None and args.layer > args.total_layers:
        return _fail("--layer is past --total-layers", 2)
    executable = args.pulumi or shutil.which("pulumi")
    if executable is None:
        return _fail("no pulumi on PATH (install it, or pass --pulumi PATH)", 127)

    index = command_index(pulumi_args)
    if index is None or pulumi_args[index] not in MONITORED_COMMANDS:
        return run_pulumi([executable, *pulumi_args])  # nothing to report: pulumi as it is

    deployment_id = args.deployment_id or ci_deployment_id(os.environ)
    if deployment_id is None:
        deployment_id = f"pulumi-{secrets.token_hex(3)}"
    if args.deployment_id is None:
        _say(f"reporting as deployment {deployment_id} (watch: cloud-ws monitor {deployment_id})")

    temp_dir: str | None = None
    event_log = flag_value(pulumi_args, ("--event-log",))
    argv = [executable, *pulumi_args]
    if event_log is None:  # the user's own --event-log is followed instead of a second one
        temp_dir = tempfile.mkdtemp(prefix="cloud-ws-pulumi-")
        event_log = str(Path(temp_dir) / "events.jsonl")
        Path(event_log).touch()
        argv = [executable, *pulumi_args[: index + 1], "--event-log", event_log, *pulumi_args[index + 1 :]]
    # pulumi starts first: importing and building the plugin (boto3) happens while it
    # starts up, and the tailer reads the event log from its beginning anyway.
    process = PulumiProcess(argv)
    if not process.start():
        return 127
    try:
        plugin = _plugin(args)
        if plugin is None:
            return process.wait().exit_code
        return _report(args, process, plugin, deployment_id, event_log, pulumi_args)
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _report(
    args: argparse.Namespace,
    process: PulumiProcess,
    plugin: OrchestratorPlugin,
    deployment_id: str,
    event_log: str,
    pulumi_args: Sequence[str],
) -> int:
    """Follow the running update's event log until pulumi exits; pulumi's exit code."""
    from plugin.eventlog import EventLogTailer  # noqa: PLC0415

    stack = args.stack_name or _short_stack(flag_value(pulumi_args, ("-s", "--stack")))
    report = Report(
        plugin,
        deployment_id,
        stack_name=stack,
        environment=args.environment,
        layer=args.layer,
        total_layers=args.total_layers,
        complete=not args.no_complete,
    )
    tailer = EventLogTailer(event_log, report.on_event)
    report.started()
    tailer.start()
    outcome = process.wait()
    tailer.stop(DRAIN_SECONDS)
    report.ended(outcome)
    _close(plugin, args.close_timeout)
    return outcome.exit_code


# -- running pulumi ---------------------------------------------------------------------------


@dataclass
class Outcome:
    """How pulumi ended."""

    exit_code: int
    """pulumi's exit code; 128 + N when signal N ended it."""
    interrupted: bool = False
    """Whether we received SIGINT or SIGTERM while it ran (Ctrl-C, a cancelled CI job)."""


def run_pulumi(argv: Sequence[str]) -> int:
    """Run pulumi with our stdin, stdout and stderr, forwarding signals; its exit code."""
    process = PulumiProcess(argv)
    return process.wait().exit_code if process.start() else 127


class PulumiProcess:
    """pulumi running with our stdin, stdout and stderr, SIGINT and SIGTERM forwarded to it.

    Signals: on a terminal (stdin is a tty) pulumi stays in our process group,
    so that its prompts can read the terminal; a Ctrl-C then reaches pulumi
    from the terminal itself, and forwarding it as well would be pulumi's
    "second Ctrl-C", which stops it at once instead of cancelling cleanly.
    Elsewhere (CI) pulumi gets a process group of its own and every SIGINT
    or SIGTERM we receive is forwarded to it, exactly once.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.outcome = Outcome(0)
        self._on_terminal = _stdin_is_tty()
        self._process: subprocess.Popen[bytes] | None = None
        self._previous: dict[int, Any] = {}

    def start(self) -> bool:
        """Start pulumi; False (one line said why) when it cannot be run."""
        # Handlers first: a signal between the start and the handlers would end us, not pulumi.
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._forward)
        try:
            # The user's own pulumi with the arguments they gave: running it is the point.
            self._process = subprocess.Popen(self.argv, process_group=None if self._on_terminal else 0)  # noqa: S603
        except OSError as exc:
            self._restore()
            _say(f"cannot run {self.argv[0]}: {exc.strerror or exc}")
            return False
        return True

    def wait(self) -> Outcome:
        """Wait for pulumi to exit; its exit code, and whether it was interrupted."""
        assert self._process is not None
        try:
            code = self._process.wait()
        finally:
            self._restore()
        self.outcome.exit_code = 128 - code if code < 0 else code
        return self.outcome

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.outcome.interrupted = True
        if self._on_terminal and signum == signal.SIGINT:
            return  # the terminal sent it to pulumi too
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


def command_index(pulumi_args: Sequence[str]) -> int | None:
    """Where pulumi's command (``up``, ``stack``...) is in its arguments, after any global flags."""
    skip = False
    for index, arg in enumerate(pulumi_args):
        if skip:
            skip = False
            continue
        if arg == "--":
            return None
        if arg.startswith("-"):
            skip = arg in VALUE_FLAGS
            continue
        return index
    return None


def flag_value(pulumi_args: Sequence[str], names: Sequence[str]) -> str | None:
    """The value of a flag (``--stack dev``, ``--stack=dev``, ``-s dev``, ``-sdev``), the last one given."""
    found: str | None = None
    for index, arg in enumerate(pulumi_args):
        if arg == "--":
            break
        for name in names:
            if arg == name and index + 1 < len(pulumi_args):
                found = pulumi_args[index + 1]
            elif arg.startswith(name + "="):
                found = arg[len(name) + 1 :]
            elif len(name) == 2 and arg.startswith(name) and len(arg) > 2 and not arg.startswith("--"):
                found = arg[2:]
    return found


def _short_stack(stack: str | None) -> str | None:
    """``org/project/dev`` → ``dev``: the name the engine's URNs carry."""
    return stack.rsplit("/", 1)[-1] if stack else None


# -- the deployment id ----------------------------------------------------------------------------

#: CI systems' run identifiers, in the order they are looked for: (prefix, variables joined by "-").
CI_RUN_IDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gh", ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT")),  # GitHub Actions; each re-run is its own deployment
    ("gl", ("CI_PIPELINE_ID",)),  # GitLab CI
    ("bk", ("BUILDKITE_BUILD_ID",)),  # Buildkite
    ("circle", ("CIRCLE_WORKFLOW_ID",)),  # CircleCI
    ("az", ("BUILD_BUILDID",)),  # Azure Pipelines
    ("bb", ("BITBUCKET_PIPELINE_UUID",)),  # Bitbucket Pipelines
    ("jenkins", ("BUILD_TAG",)),  # Jenkins (job name and build number)
    ("build", ("BUILD_ID",)),  # Google Cloud Build, TeamCity and others
)


def ci_deployment_id(environ: Mapping[str, str]) -> str | None:
    """A deployment id from the CI run this process is part of, or None outside CI.

    Every job of one run (one per layer or per stack) derives the same id, so
    they all report on one deployment. Characters a deployment id may not hold
    become ``-``; the id is cut to 64 characters.
    """
    for prefix, names in CI_RUN_IDS:
        first = environ.get(names[0], "").strip()
        if not first:
            continue
        parts = [first, *(environ.get(name, "").strip() or "1" for name in names[1:])]
        text = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{prefix}-{'-'.join(parts)}").strip("-")
        return text[:64]
    return None


# -- reporting ------------------------------------------------------------------------------------


@dataclass
class Report:
    """The deployment and stack events of one pulumi update.

    Engine events go to an :class:`~plugin.automation.AutomationAdapter` as
    soon as the stack's name is known: from ``--stack`` / ``--stack-name``, or
    from the first engine event that carries a URN (events before it wait,
    :data:`MAX_BUFFERED_EVENTS` at most).
    """

    plugin: OrchestratorPlugin
    deployment_id: str
    stack_name: str | None = None
    environment: str | None = None
    layer: int | None = None
    total_layers: int | None = None
    complete: bool = True
    """Report the deployment succeeded when pulumi does (unless a later layer is still to come)."""
    clock: Callable[[], float] = time.monotonic
    adapter: AutomationAdapter | None = None
    _waiting: list[LoggedEngineEvent] = field(default_factory=list)
    _started_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self) -> None:
        """The update is about to start: the deployment deploys this stack's layer."""
        self._started_at = self.clock()
        self.plugin.deployment_status(
            self.deployment_id,
            "deploying",
            current_layer=self.layer or 1,
            total_layers=self.total_layers if self.layer is not None else 1,
        )
        if self.stack_name is not None:
            self._adapter(self.stack_name)

    def on_event(self, event: LoggedEngineEvent) -> None:
        """One engine event from the tailer's thread."""
        with self._lock:
            if self.adapter is None:
                from plugin.eventlog import stack_of_urn  # noqa: PLC0415

                name = stack_of_urn(event.urn)
                if name is None and len(self._waiting) < MAX_BUFFERED_EVENTS:
                    self._waiting.append(event)
                    return
                self._adapter(name or FALLBACK_STACK_NAME)
            assert self.adapter is not None
        self.adapter(event)

    def ended(self, outcome: Outcome) -> None:
        """pulumi exited: the stack's and, when this run ends it, the deployment's terminal events."""
        with self._lock:
            if self.adapter is None and self._waiting:
                self._adapter(FALLBACK_STACK_NAME)
        adapter = self.adapter
        code = outcome.exit_code
        if outcome.interrupted and code != 0:
            reason = f"pulumi was interrupted (exit code {code})"
            if adapter is not None:
                adapter.cancel(reason)
            self.plugin.deployment_completed(self.deployment_id, "cancelled", error_message=reason)
            return
        if code == 0:
            if adapter is not None:
                adapter.finish()
            last_layer = self.layer is None or (
                self.total_layers is not None and self.layer >= self.total_layers
            )
            if self.complete and last_layer:
                duration = self.clock() - self._started_at if self.layer is None else None
                self.plugin.deployment_completed(self.deployment_id, "succeeded", duration_seconds=duration)
            return
        if adapter is not None:
            adapter.finish(f"pulumi exited with code {code}")
        cause = adapter.error_message if adapter is not None else None
        first = cause.splitlines()[0] if cause else f"pulumi exited with code {code}"
        message = f"stack {adapter.stack_name} failed: {first}" if adapter is not None else first
        self.plugin.deployment_completed(self.deployment_id, "failed", error_message=message)

    def _adapter(self, stack_name: str) -> None:
        self.adapter = self.plugin.automation(
            self.deployment_id, stack_name, environment=self.environment, layer=self.layer
        )
        waiting, self._waiting = self._waiting, []
        for event in waiting:
            self.adapter(event)


# -- the plugin -----------------------------------------------------------------------------------


def _plugin(args: argparse.Namespace) -> OrchestratorPlugin | None:
    """The plugin from the outputs file; None (one line said why) when there is none to build."""
    import logging  # noqa: PLC0415

    from plugin import OrchestratorPlugin  # noqa: PLC0415

    # One line at the end says what was not delivered; the sender's retry warnings
    # would land in the middle of pulumi's output.
    logging.getLogger("cloud_ws.plugin").setLevel(logging.ERROR)
    options: dict[str, Any] = {"environment": args.environment}
    if args.project is not None:
        if "project" in inspect.signature(OrchestratorPlugin.from_outputs).parameters:
            options["project"] = args.project
        else:
            _say("this plugin does not tag projects yet; reporting without --project")
    try:
        return OrchestratorPlugin.from_outputs(args.outputs, **options)
    except (OutputsError, ValueError) as exc:
        _say(f"not reporting this update: {' '.join(str(exc).split())}")
        return None


def _close(plugin: OrchestratorPlugin, timeout: float) -> None:
    """Send what is left for at most ``timeout`` seconds; one line when something was not delivered."""

    class _Abort(Exception):
        pass

    def abort(signum: int, frame: FrameType | None) -> None:
        raise _Abort

    previous = {signum: signal.signal(signum, abort) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        plugin.close(max(0.0, timeout))
    except _Abort:
        plugin.close(0)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    stats = plugin.stats
    lost = stats.accepted - stats.sent
    if lost:
        reason = stats.last_error or f"not sent within {timeout:g} s"
        _say(f"{lost} of {stats.accepted} monitoring events not delivered: {' '.join(reason.split())}")


def _stdin_is_tty() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, ValueError, OSError):
        return False


def _say(message: str) -> None:
    print(f"cloud-ws pulumi: {message}", file=sys.stderr, flush=True)


def _fail(message: str, code: int) -> int:
    _say(message)
    return code
