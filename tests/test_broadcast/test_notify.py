"""Notifications: one per attempt outcome on the notifications bus, whatever is redelivered or resent."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from contract import environment as names
from contract import keys, notifications, spec
from contract.events import DeploymentEvent, SequencedEvent
from handlers import broadcaster
from server import notify
from server.runtime import get_runtime, reset_runtime
from tests.support.events import envelope, eventbridge_event
from tests.support.moto_stack import Stack

REGION = "us-east-1"
DASHBOARD = "https://monitor.example.com/"


@pytest.fixture
def outbox(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A notifications bus whose every outcome lands in an SQS queue; the broadcaster told of it."""
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    events.create_event_bus(Name="notifications")
    queue_url = sqs.create_queue(QueueName="outcomes")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="all-outcomes",
        EventBusName="notifications",
        EventPattern=json.dumps(notifications.target_pattern()),
    )
    events.put_targets(
        Rule="all-outcomes", EventBusName="notifications", Targets=[{"Id": "q", "Arn": queue_arn}]
    )
    monkeypatch.setenv(names.NOTIFY_EVENT_BUS_NAME, "notifications")
    monkeypatch.setenv(names.NOTIFY_DASHBOARD_URL, DASHBOARD)
    reset_runtime()

    def received() -> list[dict[str, Any]]:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [json.loads(m["Body"]) for m in reply.get("Messages", [])]

    return received


def _put(deployment_id: str, type_: str, data: dict[str, Any], event_id: str, timestamp: str) -> Any:
    return broadcaster.handler(eventbridge_event(type_, envelope(deployment_id, data, event_id, timestamp)))


def _failed_attempt(deployment_id: str = "D1") -> None:
    _put(deployment_id, "deployment.status", {"status": "deploying"}, "e1", "2026-11-26T10:00:00Z")
    _put(
        deployment_id,
        "stack.failed",
        {"stack_name": "database-rds", "environment": "dev", "error_message": "Subnet not found"},
        "e2",
        "2026-11-26T10:03:00Z",
    )
    _put(deployment_id, "deployment.status", {"status": "failed"}, "e3", "2026-11-26T10:04:12Z")


def test_a_failed_attempt_is_notified_once_with_its_failing_stack(stack: Stack, outbox: Any) -> None:
    """It names the deployment, project, environment, attempt, failing stack, error, duration, link."""
    _failed_attempt()

    (message,) = outbox()
    assert message["source"] == notifications.SOURCE
    assert message["detail-type"] == notifications.DETAIL_TYPE
    detail = message["detail"]
    assert {k: detail[k] for k in ("deployment_id", "project", "environment", "outcome", "attempt")} == {
        "deployment_id": "D1",
        "project": "default",
        "environment": "dev",
        "outcome": "failed",
        "attempt": 1,
    }
    assert (detail["failed_stack"], detail["error"]) == ("database-rds", "Subnet not found")
    assert detail["duration_seconds"] == 252
    assert detail["dashboard_url"] == "https://monitor.example.com/?deployment=D1"
    assert detail["summary"] == (
        "cloud-ws: deployment D1 failed (project default, environment dev, attempt 1) after 4m 12s. "
        "Stack database-rds failed: Subnet not found. https://monitor.example.com/?deployment=D1"
    )
    assert "stack `database-rds` failed: Subnet not found" in detail["webhook"]["text"]


def test_redelivered_and_resent_outcomes_notify_nothing_more(stack: Stack, outbox: Any) -> None:
    """The same terminal event again, the sent batch handed to the hook again, a second terminal status
    of the same attempt: still one notification."""
    _failed_attempt()
    assert len(outbox()) == 1

    again = _put("D1", "deployment.status", {"status": "failed"}, "e3", "2026-11-26T10:04:12Z")
    seq = again["seq"]
    runtime = get_runtime()
    (message,) = runtime.store.messages("D1", [seq])  # the stored event, sent again as a resend would
    wire = json.loads(message)
    event = DeploymentEvent(wire["type"], "D1", wire["event_id"], wire["data"], wire["timestamp"])
    assert notify.after_send(runtime, "D1", [SequencedEvent(event, seq, message)]) == []
    _put("D1", "deployment.status", {"status": "cancelled"}, "e4", "2026-11-26T10:05:00Z")

    assert again["status"] == "duplicate"
    assert outbox() == []


def test_each_attempt_is_notified(stack: Stack, outbox: Any) -> None:
    """A re-run's outcome is a notification of its own (attempt 2)."""
    _failed_attempt()
    _put("D1", "deployment.status", {"status": "deploying"}, "r1", "2026-11-26T11:00:00Z")
    _put("D1", "deployment.status", {"status": "succeeded"}, "r2", "2026-11-26T11:01:30Z")

    messages = outbox()
    assert [(m["detail"]["attempt"], m["detail"]["outcome"]) for m in messages] == [
        (1, "failed"),
        (2, "succeeded"),
    ]
    assert messages[1]["detail"]["failed_stack"] is None
    assert messages[1]["detail"]["summary"].endswith(
        "after 1m 30s. https://monitor.example.com/?deployment=D1"
    )


def test_a_failed_put_releases_the_claim_so_a_resend_notifies(stack: Stack, outbox: Any) -> None:
    """The bus refusing the outcome leaves no marker: the next try notifies."""
    runtime = get_runtime()
    calls: list[int] = []

    def refuse(entries: list[dict[str, Any]]) -> dict[str, Any]:
        calls.append(len(entries))
        return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure"}]}

    settings = notify.settings_from()
    assert settings is not None
    events_table = runtime.config.tables.events
    refusing = notify.Notifier(
        runtime.store.client, events_table, refuse, settings, lambda d, s: {"status": "failed", "attempt": 1}
    )
    event = DeploymentEvent("deployment.status", "D9", "x", {"status": "failed"}, "2026-11-26T10:00:00Z")
    assert refusing.after_send("D9", [SequencedEvent(event, 3, "{}")]) == []
    assert calls == [1]
    marker = runtime.store.client.get_item(TableName=events_table, Key=keys.notified("D9", 1)).get("Item")
    assert marker is None

    accepting = notify.Notifier(
        runtime.store.client,
        events_table,
        lambda entries: {"FailedEntryCount": 0},
        settings,
        lambda d, s: {"status": "failed", "attempt": 1},
    )
    (sent,) = accepting.after_send("D9", [SequencedEvent(event, 3, "{}")])
    assert sent.attempt == 1
    marker = runtime.store.client.get_item(TableName=events_table, Key=keys.notified("D9", 1))["Item"]
    assert marker["outcome"] == {"S": "failed"}
    assert spec.TTL_ATTRIBUTE in marker


def test_without_a_notifications_bus_nothing_is_claimed(stack: Stack) -> None:
    """Notifications off (the default): no marker rows, no puts."""
    _failed_attempt("D2")

    table = get_runtime().config.tables.events
    assert stack.ddb.get_item(TableName=table, Key=keys.notified("D2", 1)).get("Item") is None


def test_target_patterns_filter_by_project_and_outcome() -> None:
    """The pattern's filters and :func:`notifications.matches` agree."""
    pattern = notifications.target_pattern(["alpha", "beta"], ["failed"])
    assert pattern == {
        "source": [notifications.SOURCE],
        "detail-type": [notifications.DETAIL_TYPE],
        "detail": {"project": ["alpha", "beta"], "outcome": ["failed"]},
    }
    assert notifications.target_pattern() == {
        "source": [notifications.SOURCE],
        "detail-type": [notifications.DETAIL_TYPE],
    }
    assert notifications.matches({"project": "alpha", "outcome": "failed"}, ["alpha", "beta"], ["failed"])
    assert not notifications.matches({"project": "alpha", "outcome": "succeeded"}, ["alpha"], ["failed"])
    assert not notifications.matches({"project": "gamma", "outcome": "failed"}, ["alpha"], [])
    assert notifications.matches({"project": "gamma", "outcome": "cancelled"})


def test_the_delivery_rule_never_matches_a_notification() -> None:
    """Notifications carry a source of their own, which the delivery rule's pattern does not name."""
    assert notifications.SOURCE not in spec.event_pattern()["source"]


def test_message_formatting() -> None:
    """Durations, several failed stacks, long errors cut, no environment or dashboard."""
    assert [notifications.format_duration(s) for s in (0, 42, 252, 3780)] == ["0s", "42s", "4m 12s", "1h 3m"]
    folded = {
        "attempt": 2,
        "started_at": "2026-11-26T10:00:00Z",
        "updated_at": "2026-11-26T10:00:42Z",
        "stacks": {
            "app": {"status": "failed", "layer": 3, "error_message": "later"},
            "db": {"status": "failed", "layer": 2, "error_message": "x" * 400},
            "net": {"status": "deployed", "layer": 1},
        },
    }
    outcome = notifications.outcome_of("D1", folded, status="failed", project="alpha")
    assert (outcome.failed_stack, outcome.failed_stacks, outcome.attempt) == ("db", 2, 2)
    assert outcome.error is not None
    assert len(outcome.error) == notifications.ERROR_CHARS
    assert outcome.summary.startswith(
        "cloud-ws: deployment D1 failed (project alpha, attempt 2) after 42s. "
        "Stack db (and 1 more) failed: xxx"
    )
    assert outcome.dashboard_url is None
    quoted = notifications.outcome_of(
        "D1",
        {"stacks": {"db": {"status": "failed", "error_message": 'bad "name" in C:\\x <y>'}}},
        status="failed",
    )
    assert "Stack db failed: bad 'name' in C:/x (y)." in quoted.summary
    assert 'bad "name"' in quoted.text
    sample = notifications.sample_outcome("http://127.0.0.1:8080/")
    assert sample.summary.startswith("[sample] cloud-ws: deployment cloud-ws-notify-test failed")
    assert "database-rds" in sample.text


def test_the_project_comes_from_the_event(stack: Stack, outbox: Any) -> None:
    """The deployment's project as its events carry it (``detail.project``), for the filters."""
    runtime = get_runtime()
    settings = notify.settings_from()
    assert settings is not None
    puts: list[dict[str, Any]] = []

    def put(entries: list[dict[str, Any]]) -> dict[str, Any]:
        puts.extend(entries)
        return {"FailedEntryCount": 0}

    notifier = notify.Notifier(
        runtime.store.client,
        runtime.config.tables.events,
        put,
        settings,
        lambda d, s: {"status": "succeeded", "attempt": 3, "environment": "prod"},
    )
    event = SimpleNamespace(type="deployment.status", data={"status": "succeeded"}, project="alpha")
    (outcome,) = notifier.after_send("D7", [SequencedEvent(event, 9, "{}")])  # type: ignore[arg-type]

    assert (outcome.project, outcome.attempt, outcome.environment) == ("alpha", 3, "prod")
    detail = json.loads(puts[0]["Detail"])
    assert notifications.matches(detail, ["alpha"], ["succeeded"])
    assert not notifications.matches(detail, ["beta"], [])
