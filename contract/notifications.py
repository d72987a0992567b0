"""Notifications' contract: the outcome event, its routing, and the targets' format.

The broadcaster puts one ``deployment.outcome`` event (source :data:`SOURCE`)
on the notifications bus per attempt outcome (``server/notify.py`` decides when
and sends it). What that event carries (:class:`Outcome`), the EventBridge
pattern each target's rule matches (:func:`target_pattern`), the inputs the SNS
topic and webhooks receive, and the format of the notification targets
(:func:`parse_targets`: the component's ``notifications`` argument and
``cloud-ws local``'s option) are read by the component, the local stack and the
CLI as well, so they live here, standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from contract import protocol, state

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
