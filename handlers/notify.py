"""Notifications when nobody is watching: one per attempt outcome, put on the notifications bus.

After the broadcaster has sent a batch of a deployment's events, a terminal
``deployment.status`` (``succeeded``, ``failed``, ``cancelled``) among them is
an attempt's outcome. For each, exactly once per (deployment, attempt):

1. the attempt is claimed with a conditional PutItem of a marker row in the
   events table (``keys.notified``: ``attribute_not_exists``), so a
   redelivered event, a resent batch or a second terminal status of the same
   attempt notifies nothing;
2. one ``deployment.outcome`` event (source :data:`SOURCE`) goes on the
   *notifications* bus, a bus of its own: the orchestrator's producers cannot
   put notifications there, and the delivery rule never sees them. The
   component's rules route it, filtered by project and outcome
   (:func:`target_pattern`), to the SNS topic (``detail.summary``, one line)
   and to webhooks through EventBridge API destinations (``detail.webhook``, a
   Slack-compatible ``{"text": ...}``), which handle rate limits, retries and
   auth. ``cloud-ws local`` routes the same events to its embedded SNS and
   posts the webhooks for real (``emulator.notifications``).

When the put fails the marker is removed again, so the next resend or
redelivery of the event may notify; nothing here ever fails a delivery.

The message is built from the deployment's state folded through the terminal
event: project, environment, outcome, attempt, the failing stack and its
error, the duration (``started_at`` → ``updated_at``) and a dashboard link
(``NOTIFY_DASHBOARD_URL``). Configuration comes from the environment
(``NOTIFY_EVENT_BUS_NAME``: unset, no notifications and no marker rows).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from handlers import environment as names
from handlers import keys, protocol, spec, state
from handlers.events import SequencedEvent
from handlers.log import get_logger

log = get_logger("notify")

#: EventBridge ``source`` of notification events (never the plugin's: the delivery rule ignores it).
SOURCE = "cloud-ws.notification"
#: EventBridge ``detail-type`` of an attempt's outcome.
DETAIL_TYPE = "deployment.outcome"
#: The outcomes a notification can report (``deployment.status``'s terminal statuses).
OUTCOMES = tuple(sorted(protocol.TERMINAL_STATUSES))
#: The project of a deployment whose events name none.
DEFAULT_PROJECT = "default"
#: Longest error text a notification quotes, in characters (SMS and Slack both stay readable).
ERROR_CHARS = 300
#: The deployment id of ``cloud-ws notify test``'s sample.
SAMPLE_DEPLOYMENT_ID = "cloud-ws-notify-test"

#: Characters the topic's input template cannot carry as they are, and what stands in for them.
_TEMPLATE_SAFE = str.maketrans({'"': "'", "\\": "/", "<": "(", ">": ")"})

_ICONS = {"succeeded": ":white_check_mark:", "failed": ":x:", "cancelled": ":no_entry_sign:"}


@dataclass(frozen=True)
class Outcome:
    """One attempt's outcome, as a notification reports it."""

    deployment_id: str
    project: str
    environment: str | None
    outcome: str
    attempt: int
    failed_stack: str | None
    """The first failed stack (lowest layer), if any."""
    error: str | None
    """Its error message, cut to :data:`ERROR_CHARS`."""
    failed_stacks: int
    """How many stacks of the attempt failed."""
    duration_seconds: float | None
    started_at: str | None
    ended_at: str | None
    dashboard_url: str | None
    """The deployment's page on the dashboard, when a dashboard is configured."""
    seq: int = 0
    sample: bool = False
    """A ``cloud-ws notify test`` sample, not a real deployment."""

    @property
    def summary(self) -> str:
        """One line (SNS: email, SMS, mobile push)."""
        where = f"project {self.project}" + (f", environment {self.environment}" if self.environment else "")
        text = f"cloud-ws: deployment {self.deployment_id} {self.outcome} ({where}, attempt {self.attempt})"
        if self.duration_seconds is not None:
            text += f" after {format_duration(self.duration_seconds)}"
        text += "."
        if self.failed_stack:
            more = f" (and {self.failed_stacks - 1} more)" if self.failed_stacks > 1 else ""
            text += f" Stack {self.failed_stack}{more} failed"
            text += f": {self.error}" if self.error else ""
            text += "."
        if self.dashboard_url:
            text += f" {self.dashboard_url}"
        text = ("[sample] " if self.sample else "") + " ".join(text.split())
        # The topic's input transformer puts it inside a JSON string ("<summary>"): no character that
        # would need escaping there, whatever a stack's error says.
        return text.translate(_TEMPLATE_SAFE)

    @property
    def text(self) -> str:
        """Several lines in Slack's markup (a webhook's ``text``)."""
        title = (
            f"{_ICONS.get(self.outcome, '')} *{self.deployment_id} {self.outcome}* (attempt {self.attempt})"
        )
        facts = [f"project {self.project}"]
        if self.environment:
            facts.append(f"environment {self.environment}")
        if self.duration_seconds is not None:
            facts.append(format_duration(self.duration_seconds))
        lines = [("[sample] " if self.sample else "") + title.strip(), " · ".join(facts)]
        if self.failed_stack:
            more = f" (and {self.failed_stacks - 1} more)" if self.failed_stacks > 1 else ""
            lines.append(
                f"stack `{self.failed_stack}`{more} failed" + (f": {self.error}" if self.error else "")
            )
        if self.dashboard_url:
            lines.append(f"<{self.dashboard_url}|open in the dashboard>")
        return "\n".join(lines)

    def detail(self) -> dict[str, Any]:
        """The notification event's ``detail``: the facts, and the texts the targets send as they are."""
        return {
            "deployment_id": self.deployment_id,
            "project": self.project,
            "environment": self.environment,
            "outcome": self.outcome,
            "attempt": self.attempt,
            "failed_stack": self.failed_stack,
            "error": self.error,
            "failed_stacks": self.failed_stacks,
            "duration_seconds": self.duration_seconds,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "dashboard_url": self.dashboard_url,
            "seq": self.seq,
            "sample": self.sample,
            "summary": self.summary,
            "webhook": {"text": self.text},
        }

    def entry(self, bus_name: str) -> dict[str, Any]:
        """The ``PutEvents`` entry for the notifications bus."""
        return {
            "EventBusName": bus_name,
            "Source": SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": json.dumps(self.detail(), separators=(",", ":"), ensure_ascii=False),
            "Resources": [],
        }


def format_duration(seconds: float) -> str:
    """``42s``, ``4m 12s``, ``1h 3m``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def dashboard_link(base: str | None, deployment_id: str) -> str | None:
    """The dashboard's page of a deployment (``?deployment=``, which its home page keeps)."""
    if not base:
        return None
    return f"{base.rstrip('/')}/?deployment={quote(deployment_id, safe='')}"


def outcome_of(
    deployment_id: str,
    folded: Mapping[str, Any],
    *,
    status: str,
    project: str | None = None,
    dashboard_url: str | None = None,
    seq: int = 0,
    sample: bool = False,
) -> Outcome:
    """The outcome of the attempt ``folded`` (the state through its terminal status) reports."""
    stacks = folded.get("stacks") or {}
    failed = [
        (stack.get("layer") if isinstance(stack.get("layer"), int) else 1 << 30, index, name, stack)
        for index, (name, stack) in enumerate(stacks.items())
        if isinstance(stack, Mapping) and stack.get("status") == "failed"
    ]
    failed.sort(key=lambda item: (item[0], item[1]))
    first = failed[0] if failed else None
    error = first[3].get("error_message") if first else None
    if isinstance(error, str):
        error = " ".join(error.split())
        error = error if len(error) <= ERROR_CHARS else error[: ERROR_CHARS - 1] + "…"
    else:
        error = None
    started, ended = folded.get("started_at"), folded.get("updated_at")
    started_ms, ended_ms = state.epoch_ms(started), state.epoch_ms(ended)
    duration = (ended_ms - started_ms) / 1000 if started_ms is not None and ended_ms is not None else None
    attempt = folded.get("attempt")
    environment = folded.get("environment")
    return Outcome(
        deployment_id=deployment_id,
        project=project or DEFAULT_PROJECT,
        environment=environment if isinstance(environment, str) and environment else None,
        outcome=status,
        attempt=attempt if isinstance(attempt, int) and attempt > 0 else 1,
        failed_stack=first[2] if first else None,
        error=error,
        failed_stacks=len(failed),
        duration_seconds=duration if duration is None or duration >= 0 else None,
        started_at=started if isinstance(started, str) else None,
        ended_at=ended if isinstance(ended, str) else None,
        dashboard_url=dashboard_link(dashboard_url, deployment_id),
        seq=seq,
        sample=sample,
    )


def sample_outcome(
    dashboard_url: str | None = None, project: str = DEFAULT_PROJECT, outcome: str = "failed"
) -> Outcome:
    """What ``cloud-ws notify test`` sends: a failed attempt, its stack and error, marked a sample."""
    folded = {
        "attempt": 1,
        "environment": "dev",
        "started_at": "2026-01-01T10:00:00Z",
        "updated_at": "2026-01-01T10:04:12Z",
        "stacks": {
            "network": {"status": "deployed", "layer": 1},
            "database-rds": {"status": "failed", "layer": 2, "error_message": "Subnet not found"},
        }
        if outcome == "failed"
        else {"network": {"status": "deployed", "layer": 1}},
    }
    return outcome_of(
        SAMPLE_DEPLOYMENT_ID,
        folded,
        status=outcome,
        project=project,
        dashboard_url=dashboard_url,
        sample=True,
    )


# -- routing: what the component's rules and the local stack's match --------------------------------


def target_pattern(projects: Sequence[str] = (), outcomes: Sequence[str] = ()) -> dict[str, Any]:
    """The EventBridge pattern of one notification target: its projects and outcomes (empty: all)."""
    pattern: dict[str, Any] = {"source": [SOURCE], "detail-type": [DETAIL_TYPE]}
    detail: dict[str, Any] = {}
    if projects:
        detail["project"] = sorted(dict.fromkeys(projects))
    if outcomes:
        detail["outcome"] = sorted(dict.fromkeys(outcomes))
    if detail:
        pattern["detail"] = detail
    return pattern


def matches(detail: Mapping[str, Any], projects: Sequence[str] = (), outcomes: Sequence[str] = ()) -> bool:
    """Whether :func:`target_pattern` of these filters matches a notification's ``detail``."""
    return (not projects or detail.get("project") in projects) and (
        not outcomes or detail.get("outcome") in outcomes
    )


#: The SNS target's input: the one-line summary (an input path: the string as it is).
SNS_INPUT_PATH = "$.detail.summary"
#: A webhook target's input: the Slack-compatible ``{"text": ...}`` object.
WEBHOOK_INPUT_PATH = "$.detail.webhook"


# -- after a batch is sent: claim, then put ----------------------------------------------------------


@dataclass(frozen=True)
class NotifySettings:
    """Where notifications go, from the broadcaster's environment."""

    bus_name: str
    dashboard_url: str | None


def settings_from(env: Mapping[str, str] | None = None) -> NotifySettings | None:
    """The notification settings, or None when notifications are off (no bus named)."""
    env = os.environ if env is None else env
    bus = env.get(names.NOTIFY_EVENT_BUS_NAME, "").strip()
    if not bus:
        return None
    return NotifySettings(bus, env.get(names.NOTIFY_DASHBOARD_URL, "").strip() or None)


def _terminal(events: Iterable[SequencedEvent]) -> list[SequencedEvent]:
    return sorted(
        (
            e
            for e in events
            if e.event.type == "deployment.status"
            and e.event.data.get("status") in protocol.TERMINAL_STATUSES
        ),
        key=lambda e: e.seq,
    )


class Notifier:
    """Claims each attempt's outcome once and puts it on the notifications bus."""

    def __init__(
        self,
        dynamodb: Any,
        events_table: str,
        put_events: Callable[[list[dict[str, Any]]], Mapping[str, Any]],
        settings: NotifySettings,
        fold_through: Callable[[str, int], Mapping[str, Any]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Wire the table, the bus and how to fold a deployment's state through a ``seq``."""
        self._db = dynamodb
        self._table = events_table
        self._put_events = put_events
        self._settings = settings
        self._fold_through = fold_through
        self._clock = clock

    @property
    def settings(self) -> NotifySettings:
        """Where this notifier sends."""
        return self._settings

    def after_send(self, deployment_id: str, events: Sequence[SequencedEvent]) -> list[Outcome]:
        """Notify each attempt outcome among these sent events not notified before; never raises."""
        notified: list[Outcome] = []
        for event in _terminal(events):
            try:
                outcome = self._outcome(deployment_id, event)
                if self._claim(outcome):
                    if self._put(outcome):
                        notified.append(outcome)
                    else:
                        self._unclaim(outcome)
            except Exception:  # a notification never fails a delivery
                log.exception(
                    "could not notify an attempt's outcome",
                    extra={"deployment_id": deployment_id, "seq": event.seq},
                )
        return notified

    def _outcome(self, deployment_id: str, event: SequencedEvent) -> Outcome:
        folded = self._fold_through(deployment_id, event.seq)
        status = folded.get("status")
        if status not in protocol.TERMINAL_STATUSES:  # cannot be, folded through it; the event says
            status = event.event.data.get("status")
        project = getattr(event.event, "project", None) or event.event.data.get("project")
        return outcome_of(
            deployment_id,
            folded,
            status=str(status),
            project=project if isinstance(project, str) else None,
            dashboard_url=self._settings.dashboard_url,
            seq=event.seq,
        )

    def _claim(self, outcome: Outcome) -> bool:
        """The attempt's marker row, put only if absent: True when this call put it."""
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    **keys.notified(outcome.deployment_id, outcome.attempt),
                    "outcome": {"S": outcome.outcome},
                    "notifiedSeq": {"N": str(outcome.seq)},
                    spec.TTL_ATTRIBUTE: {"N": str(int(self._clock()) + spec.IDENTITY_TTL_SECONDS)},
                },
                ConditionExpression="attribute_not_exists(deploymentId)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                log.info(
                    "attempt's outcome already notified",
                    extra={"deployment_id": outcome.deployment_id, "attempt": outcome.attempt},
                )
                return False
            raise
        return True

    def _unclaim(self, outcome: Outcome) -> None:
        self._db.delete_item(TableName=self._table, Key=keys.notified(outcome.deployment_id, outcome.attempt))

    def _put(self, outcome: Outcome) -> bool:
        try:
            reply = self._put_events([outcome.entry(self._settings.bus_name)])
        except Exception:
            log.exception("could not put the outcome on the notifications bus")
            return False
        if reply.get("FailedEntryCount"):
            log.error(
                "the notifications bus refused the outcome",
                extra={"deployment_id": outcome.deployment_id, "entries": reply.get("Entries")},
            )
            return False
        log.info(
            "attempt's outcome notified",
            extra={
                "deployment_id": outcome.deployment_id,
                "attempt": outcome.attempt,
                "outcome": outcome.outcome,
                "project": outcome.project,
            },
        )
        return True


def fold_through(store: Any, deployment_id: str, seq: int) -> dict[str, Any]:
    """The deployment's state folded through ``seq``: its checkpoint and the history after it.

    Read through the store's public readers, not its cache (which the delivery
    advances itself, right after the send this runs in).
    """
    upto, folded = store.checkpoint(deployment_id)
    if upto > seq:  # a later checkpoint: fold from the start of what is still stored
        upto, folded = 0, state.initial()
    if upto < seq:
        messages = (json.loads(m) for m in store.events_between(deployment_id, upto + 1, seq))
        folded = state.fold(folded, messages)
    return dict(folded)


_lock = threading.Lock()
_notifiers: dict[int, tuple[Any, Notifier]] = {}


def notifier_for(runtime: Any) -> Notifier | None:
    """The container's notifier, or None when notifications are off."""
    settings = settings_from()
    if settings is None:
        return None
    with _lock:
        known = _notifiers.get(id(runtime))
        if known is not None and known[0] is runtime and known[1].settings == settings:
            return known[1]
        store = runtime.store

        def put_events(entries: list[dict[str, Any]]) -> Mapping[str, Any]:
            reply: Mapping[str, Any] = runtime.client("events").put_events(Entries=entries)
            return reply

        made = Notifier(
            store.client,
            runtime.config.tables.events,
            put_events,
            settings,
            lambda deployment_id, seq: fold_through(store, deployment_id, seq),
        )
        if len(_notifiers) >= 64:  # bounded: tests build many runtimes
            _notifiers.clear()
        _notifiers[id(runtime)] = (runtime, made)
        return made


def after_send(runtime: Any, deployment_id: str, events: Sequence[SequencedEvent]) -> list[Outcome]:
    """The broadcaster's hook: notify the attempt outcomes among a sent batch (never raises)."""
    if not _terminal(events):
        return []
    try:
        notifier = notifier_for(runtime)
    except Exception:
        log.exception("notifications are misconfigured", extra={"deployment_id": deployment_id})
        return []
    return [] if notifier is None else notifier.after_send(deployment_id, events)


# -- where notifications go: the component's argument, cloud-ws local's option ---------------------

#: The header a webhook's connection sends when none is named (API destinations need an
#: authorization; a plain incoming webhook, Slack's included, ignores it).
DEFAULT_HEADER_NAME = "X-Cloud-Ws-Notification"
#: Requests a second per webhook unless one says otherwise (Slack's incoming webhooks allow about one).
DEFAULT_RATE_LIMIT = 1
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")


@dataclass(frozen=True)
class Webhook:
    """One webhook: an HTTPS endpoint that takes a Slack-compatible ``{"text": ...}`` POST."""

    url: str
    projects: tuple[str, ...] = ()
    """Only these projects' outcomes (empty: every project's)."""
    outcomes: tuple[str, ...] = ()
    """Only these outcomes (empty: all three)."""
    header_name: str = DEFAULT_HEADER_NAME
    header_value: str | None = None
    """Sent as ``header_name`` (a secret such as a token); none: a fixed marker value."""
    rate_limit_per_second: int = DEFAULT_RATE_LIMIT


@dataclass(frozen=True)
class Targets:
    """Where each attempt's outcome goes: an SNS topic and its subscribers, and webhooks."""

    topic: bool = True
    """Publish to an SNS topic (the component creates it; email, SMS and push endpoints subscribe)."""
    emails: tuple[str, ...] = ()
    sms: tuple[str, ...] = ()
    """Phone numbers in E.164 form (``+15551234567``)."""
    projects: tuple[str, ...] = ()
    """The topic's filter: only these projects (empty: every project)."""
    outcomes: tuple[str, ...] = ()
    """The topic's filter: only these outcomes (empty: all three)."""
    webhooks: tuple[Webhook, ...] = ()
    dashboard_url: str | None = None
    """The dashboard's base URL, linked from every notification."""

    @property
    def any(self) -> bool:
        """Whether anything is to be notified at all."""
        return self.topic or bool(self.webhooks)


_TARGET_FIELDS = {"topic", "emails", "sms", "projects", "outcomes", "webhooks", "dashboard_url"}
_WEBHOOK_FIELDS = {"url", "projects", "outcomes", "header_name", "header_value", "rate_limit_per_second"}


def _snake(name: str) -> str:
    """``dashboardUrl`` → ``dashboard_url`` (Pulumi config keys are camelCase, arguments snake_case)."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _fields(value: Any, where: str, known: set[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be an object, got {value!r}")
    given = {_snake(str(k)): v for k, v in value.items() if v is not None}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]} is not a setting; expected one of {', '.join(sorted(known))}")
    return given


def _texts(value: Any, where: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and pattern.match(v) for v in value):
        raise ValueError(f"{where} must be a list of {what}, got {value!r}")
    return tuple(dict.fromkeys(value))


def _outcomes(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(v in OUTCOMES for v in value):
        raise ValueError(f"{where} must be a list of {', '.join(OUTCOMES)}; got {value!r}")
    return tuple(dict.fromkeys(value))


def _url(value: Any, where: str, schemes: tuple[str, ...] = ("https://",)) -> str:
    if not isinstance(value, str) or not value.startswith(schemes) or any(c.isspace() for c in value):
        raise ValueError(f"{where} must be a URL starting with {' or '.join(schemes)}, got {value!r}")
    return value


def parse_targets(value: Any, *, local: bool = False) -> Targets:
    """The ``notifications`` setting checked into :class:`Targets`.

    Raises ``ValueError`` naming the field (``notifications.webhooks[0].url ...``).
    ``local``: webhooks may be plain ``http://`` (the local stack posts them itself;
    API destinations take only HTTPS).
    """
    given = _fields(value, "notifications", _TARGET_FIELDS)
    topic = given.get("topic", True)
    if not isinstance(topic, bool):
        raise ValueError(f"notifications.topic must be true or false, got {topic!r}")
    schemes = ("https://", "http://") if local else ("https://",)
    webhooks: list[Webhook] = []
    raw_hooks = given.get("webhooks", [])
    if not isinstance(raw_hooks, list | tuple):
        raise ValueError(f"notifications.webhooks must be a list of objects, got {raw_hooks!r}")
    for index, raw in enumerate(raw_hooks):
        where = f"notifications.webhooks[{index}]"
        hook = _fields(raw, where, _WEBHOOK_FIELDS)
        rate = hook.get("rate_limit_per_second", DEFAULT_RATE_LIMIT)
        if isinstance(rate, bool) or not isinstance(rate, int) or not 1 <= rate <= 300:
            raise ValueError(
                f"{where}.rate_limit_per_second must be a whole number from 1 to 300, got {rate!r}"
            )
        header = hook.get("header_name", DEFAULT_HEADER_NAME)
        if not isinstance(header, str) or not _HEADER.match(header):
            raise ValueError(f"{where}.header_name must be an HTTP header name, got {header!r}")
        secret = hook.get("header_value")
        if secret is not None and not (isinstance(secret, str) and secret):
            raise ValueError(f"{where}.header_value must be a non-empty string")
        webhooks.append(
            Webhook(
                url=_url(hook.get("url"), f"{where}.url", schemes),
                projects=_texts(hook.get("projects", []), f"{where}.projects", _PROJECT, "project names"),
                outcomes=_outcomes(hook.get("outcomes", []), f"{where}.outcomes"),
                header_name=header,
                header_value=secret,
                rate_limit_per_second=rate,
            )
        )
    dashboard = given.get("dashboard_url")
    targets = Targets(
        topic=topic,
        emails=_texts(given.get("emails", []), "notifications.emails", _EMAIL, "email addresses"),
        sms=_texts(given.get("sms", []), "notifications.sms", _PHONE, "E.164 phone numbers (+15551234567)"),
        projects=_texts(given.get("projects", []), "notifications.projects", _PROJECT, "project names"),
        outcomes=_outcomes(given.get("outcomes", []), "notifications.outcomes"),
        webhooks=tuple(webhooks),
        dashboard_url=None
        if dashboard is None
        else _url(dashboard, "notifications.dashboard_url", ("https://", "http://")),
    )
    if not targets.topic and (targets.emails or targets.sms):
        raise ValueError(
            "notifications.emails and notifications.sms subscribe to the topic: leave topic true"
        )
    return targets
