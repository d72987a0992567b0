"""Pulumi's engine event log, read while the engine writes it.

``pulumi up --event-log FILE`` appends one JSON engine event per line to FILE
(the stream the Automation API tails; the schema is Pulumi's
``sdk/go/common/apitype/events.go``). :func:`parse_engine_event` turns one line
into an object with the attribute names of ``pulumi.automation.EngineEvent``,
so :class:`~plugin.automation.AutomationAdapter` maps it unchanged, without
Pulumi's SDK installed; :class:`EventLogTailer` follows the file from a
thread of its own.

Nothing here can hold the engine up: the engine writes a file and never waits
for its reader, and a reader that falls behind only reads later.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plugin.ratelog import RateLimitedLog

log = logging.getLogger("cloud_ws.plugin")

#: How long the tailer sleeps when it has read everything the engine wrote so far.
POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class StepMetadata:
    """``StepEventMetadata``: the resource a step is about and the operation."""

    op: str
    urn: str
    type: str
    provider: str = ""


@dataclass(frozen=True, slots=True)
class ResourceStep:
    """``resourcePreEvent`` / ``resOutputsEvent``: a resource step begins or ends."""

    metadata: StepMetadata
    planning: bool | None = None


@dataclass(frozen=True, slots=True)
class ResourceFailure:
    """``resOpFailedEvent``: a resource operation failed."""

    metadata: StepMetadata
    status: int = 0
    steps: int = 0


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """``diagnosticEvent``: a message from the engine, a provider or the program."""

    message: str
    color: str
    severity: str
    stream_id: int | None = None
    ephemeral: bool | None = None
    urn: str | None = None
    prefix: str | None = None


@dataclass(frozen=True, slots=True)
class StdoutMessage:
    """``stdoutEvent``: a message the CLI itself writes."""

    message: str
    color: str


@dataclass(frozen=True, slots=True)
class PolicyViolation:
    """``policyEvent``: a policy pack reported a violation."""

    message: str
    color: str
    policy_name: str
    policy_pack_name: str
    policy_pack_version: str
    policy_pack_version_tag: str
    enforcement_level: str
    resource_urn: str | None = None


@dataclass(frozen=True, slots=True)
class Prelude:
    """``preludeEvent``: the update begins (its configuration is never sent on)."""

    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Summary:
    """``summaryEvent``: the update ended."""

    maybe_corrupt: bool
    duration_seconds: int
    resource_changes: Mapping[str, int]
    policy_packs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Cancel:
    """``cancelEvent``: the engine's last event, after every update, cancelled or not."""


@dataclass(frozen=True, slots=True)
class LoggedEngineEvent:
    """One line of the event log, with ``pulumi.automation.EngineEvent``'s attribute names."""

    sequence: int
    timestamp: int
    cancel_event: Cancel | None = None
    stdout_event: StdoutMessage | None = None
    diagnostic_event: Diagnostic | None = None
    prelude_event: Prelude | None = None
    summary_event: Summary | None = None
    resource_pre_event: ResourceStep | None = None
    res_outputs_event: ResourceStep | None = None
    res_op_failed_event: ResourceFailure | None = None
    policy_event: PolicyViolation | None = None

    @property
    def urn(self) -> str | None:
        """The URN this event names, if any (a step's resource, a diagnostic's, a policy's)."""
        for step in (self.resource_pre_event, self.res_outputs_event, self.res_op_failed_event):
            if step is not None and step.metadata.urn:
                return step.metadata.urn
        if self.diagnostic_event is not None and self.diagnostic_event.urn:
            return self.diagnostic_event.urn
        if self.policy_event is not None and self.policy_event.resource_urn:
            return self.policy_event.resource_urn
        return None


def parse_engine_event(raw: Mapping[str, Any]) -> LoggedEngineEvent:
    """One decoded event-log line as a :class:`LoggedEngineEvent`.

    Fields the engine left out take the defaults the Automation API gives
    them; kinds of event this module does not know (the engine adds some over
    time) leave every field ``None``.

    Raises:
        TypeError, ValueError, AttributeError: ``raw`` is not an engine event.
    """
    if not isinstance(raw, Mapping):
        raise TypeError(f"an engine event is a JSON object, not {type(raw).__name__}")
    diagnostic = raw.get("diagnosticEvent")
    stdout = raw.get("stdoutEvent")
    policy = raw.get("policyEvent")
    summary = raw.get("summaryEvent")
    prelude = raw.get("preludeEvent")
    failed = raw.get("resOpFailedEvent")
    return LoggedEngineEvent(
        sequence=int(raw.get("sequence") or 0),
        timestamp=int(raw.get("timestamp") or 0),
        cancel_event=Cancel() if "cancelEvent" in raw else None,
        stdout_event=(
            StdoutMessage(str(stdout.get("message", "")), str(stdout.get("color", ""))) if stdout else None
        ),
        diagnostic_event=(
            Diagnostic(
                message=str(diagnostic.get("message", "")),
                color=str(diagnostic.get("color", "")),
                severity=str(diagnostic.get("severity", "")),
                stream_id=diagnostic.get("streamId"),
                ephemeral=diagnostic.get("ephemeral"),
                urn=diagnostic.get("urn"),
                prefix=diagnostic.get("prefix"),
            )
            if diagnostic
            else None
        ),
        prelude_event=Prelude(dict(prelude.get("config") or {})) if prelude else None,
        summary_event=(
            Summary(
                maybe_corrupt=bool(summary.get("maybeCorrupt", False)),
                duration_seconds=int(summary.get("durationSeconds") or 0),
                resource_changes=dict(summary.get("resourceChanges") or {}),
                policy_packs=dict(summary.get("PolicyPacks") or {}),
            )
            if summary
            else None
        ),
        resource_pre_event=_step(raw.get("resourcePreEvent")),
        res_outputs_event=_step(raw.get("resOutputsEvent")),
        res_op_failed_event=(
            ResourceFailure(
                _metadata(failed.get("metadata")),
                int(failed.get("status") or 0),
                int(failed.get("steps") or 0),
            )
            if failed
            else None
        ),
        policy_event=(
            PolicyViolation(
                message=str(policy.get("message", "")),
                color=str(policy.get("color", "")),
                policy_name=str(policy.get("policyName", "")),
                policy_pack_name=str(policy.get("policyPackName", "")),
                policy_pack_version=str(policy.get("policyPackVersion", "")),
                policy_pack_version_tag=str(policy.get("policyPackVersionTag", "")),
                enforcement_level=str(policy.get("enforcementLevel", "")),
                resource_urn=policy.get("resourceUrn"),
            )
            if policy
            else None
        ),
    )


def _step(raw: Any) -> ResourceStep | None:
    if not raw:
        return None
    return ResourceStep(_metadata(raw.get("metadata")), raw.get("planning"))


def _metadata(raw: Any) -> StepMetadata:
    raw = raw or {}
    return StepMetadata(
        op=str(raw.get("op", "")),
        urn=str(raw.get("urn", "")),
        type=str(raw.get("type", "")),
        provider=str(raw.get("provider", "")),
    )


def stack_of_urn(urn: str | None) -> str | None:
    """The stack a URN belongs to: ``urn:pulumi:dev::infra::aws:ec2/vpc:Vpc::main`` → ``dev``."""
    if not urn or not urn.startswith("urn:pulumi:"):
        return None
    stack = urn.removeprefix("urn:pulumi:").split("::", 1)[0]
    return stack or None


class EventLogTailer:
    """Follows an engine event log from a daemon thread and hands each event to ``on_event``.

    It reads what the engine has appended, waits :data:`POLL_SECONDS` when it
    has caught up, and keeps an incomplete last line until its newline comes.
    It ends at the engine's ``cancelEvent`` (its last), or when :meth:`stop`
    is called: then it reads what is left in the file first, unless the
    deadline given to :meth:`stop` passes.

    ``on_event`` runs on the tailer's thread; what it raises is logged
    (rate-limited) and the next line is read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_event: Callable[[LoggedEngineEvent], object],
        *,
        poll: float = POLL_SECONDS,
    ) -> None:
        self.path = os.fspath(path)
        self.on_event = on_event
        self.poll = poll
        self.events = 0
        """Engine events handed over so far."""
        self.skipped = 0
        """Lines that were not engine events."""
        self._stopping = threading.Event()
        self._deadline: float | None = None
        self._thread = threading.Thread(target=self._run, name="cloud-ws-event-log", daemon=True)
        self._errors = RateLimitedLog(log, interval=30.0)

    @property
    def ended(self) -> bool:
        """True once the tailer's thread has finished."""
        return self._thread.ident is not None and not self._thread.is_alive()

    def start(self) -> None:
        """Start following the file (it may not exist yet)."""
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Read what is left in the file, for at most ``timeout`` seconds, then stop.

        Returns True when the whole file was read (or the engine's last event was).
        """
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._thread.ident is not None:
            self._thread.join(timeout + self.poll)
        return not self._thread.is_alive()

    def _run(self) -> None:
        handle = None
        pending = b""
        try:
            while handle is None:
                try:
                    handle = open(self.path, "rb")  # noqa: SIM115 - held open while the engine writes
                except FileNotFoundError:
                    if self._stopping.is_set():
                        return
                    self._stopping.wait(self.poll)
            while True:
                chunk = handle.readline()
                if chunk:
                    pending += chunk
                    if not pending.endswith(b"\n"):
                        continue  # the engine is mid-write: the rest of the line comes later
                    line, pending = pending, b""
                    if self._handle(line):
                        return
                    if self._past_deadline():
                        return
                    continue
                if self._stopping.is_set():
                    # The engine has exited: a last line without its newline is still an event.
                    if pending.strip():
                        self._handle(pending)
                    return
                time.sleep(self.poll)
        except OSError as exc:
            self._errors.warning("cannot read the Pulumi event log %s: %s", self.path, exc)
        finally:
            if handle is not None:
                handle.close()

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    def _handle(self, line: bytes) -> bool:
        """Hand one line over; True when it was the engine's last event."""
        if not line.strip():
            return False
        try:
            event = parse_engine_event(json.loads(line))
        except (ValueError, TypeError, AttributeError) as exc:
            self.skipped += 1
            self._errors.warning(
                "skipped a line of the Pulumi event log that is not an engine event: %s", exc
            )
            return False
        self.events += 1
        try:
            self.on_event(event)
        except Exception as exc:  # noqa: BLE001 - one bad event must not end the tailing
            self._errors.warning("cannot handle a Pulumi engine event: %s: %s", type(exc).__name__, exc)
        return event.cancel_event is not None
