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

The event's shape, its routing pattern and the targets' format are the
contract's (``contract/notifications.py``): the component, the local stack and
the CLI read them too.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from contract import environment as names
from contract import keys, protocol, spec, state
from contract.events import SequencedEvent
from contract.log import get_logger
from contract.notifications import Outcome, outcome_of

log = get_logger("notify")

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
