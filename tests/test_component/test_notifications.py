"""Notifications under Pulumi's mocks: the bus, the topic and its subscriptions, the API destinations,
their rules filtered by project and outcome, and least-privilege IAM for each hop."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi.runtime import rpc

from contract import environment
from contract import notifications as notify
from tests.test_component.conftest import ACCOUNT, REGION, Deployment, deploy

NOTIFICATIONS = {
    "emails": ["oncall@example.com"],
    "sms": ["+15551234567"],
    "outcomes": ["failed", "cancelled"],
    "dashboardUrl": "https://monitor.example.com",
    "webhooks": [
        {"url": "https://hooks.slack.com/services/T0/B0/xyz", "projects": ["alpha"]},
        {
            "url": "https://ops.example.com/hook",
            "outcomes": ["failed"],
            "headerName": "Authorization",
            "headerValue": "Bearer s3cret",
            "rateLimitPerSecond": 5,
        },
    ],
}


@pytest.fixture(scope="module")
def notifying() -> Deployment:
    return deploy({"notifications": json.dumps(NOTIFICATIONS)})


def _policy(resource: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(resource.inputs["policy"])
    return document


def test_the_broadcaster_may_put_outcomes_on_the_notifications_bus_only(notifying: Deployment) -> None:
    bus = notifying.named("cloud-ws-notifications-bus")
    broadcaster = notifying.named("cloud-ws-broadcaster")
    variables = broadcaster.inputs["environment"]["variables"]
    assert variables[environment.NOTIFY_EVENT_BUS_NAME] == bus.outputs["name"]
    assert variables[environment.NOTIFY_DASHBOARD_URL] == "https://monitor.example.com"
    put = notifying.named("cloud-ws-broadcaster-notify-policy")
    assert put.inputs["role"] == notifying.named("cloud-ws-broadcaster-role").id
    assert _policy(put)["Statement"] == [
        {
            "Sid": "PutOutcomesOnTheNotificationsBus",
            "Effect": "Allow",
            "Action": ["events:PutEvents"],
            "Resource": [bus.outputs["arn"]],
        }
    ]
    # The orchestrator's bus and its delivery rule never carry notifications.
    assert bus.outputs["name"] != notifying.exports["event_bus_name"]
    assert notifying.exports["notification_bus_name"] == bus.outputs["name"]


def test_the_topic_gets_the_filtered_summary_and_only_its_rule_may_publish(notifying: Deployment) -> None:
    topic = notifying.named("cloud-ws-notifications-topic")
    rule = notifying.named("cloud-ws-notify-topic-rule")
    assert rule.inputs["eventBusName"] == notifying.named("cloud-ws-notifications-bus").outputs["name"]
    assert json.loads(rule.inputs["eventPattern"]) == notify.target_pattern([], ["failed", "cancelled"])
    target = notifying.named("cloud-ws-notify-topic-target")
    assert target.inputs["arn"] == topic.outputs["arn"]
    assert target.inputs["inputTransformer"] == {
        "inputPaths": {"summary": "$.detail.summary"},
        "inputTemplate": '"<summary>"',
    }
    (statement,) = _policy(notifying.named("cloud-ws-notifications-topic-policy"))["Statement"]
    assert statement == {
        "Sid": "EventBridgeNotifications",
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sns:Publish",
        "Resource": topic.outputs["arn"],
        "Condition": {"ArnEquals": {"aws:SourceArn": rule.outputs["arn"]}},
    }
    subscriptions = {
        (r.inputs["protocol"], r.inputs["endpoint"])
        for r in notifying.of_type("aws:sns/topicSubscription:TopicSubscription")
    }
    assert subscriptions == {("email", "oncall@example.com"), ("sms", "+15551234567")}
    assert notifying.exports["notification_topic_arn"] == topic.outputs["arn"]


def test_each_webhook_is_an_api_destination_with_its_own_filters(notifying: Deployment) -> None:
    destinations = [notifying.named(f"cloud-ws-notify-webhook-{i}") for i in (0, 1)]
    assert [d.inputs["invocationEndpoint"] for d in destinations] == [
        "https://hooks.slack.com/services/T0/B0/xyz",
        "https://ops.example.com/hook",
    ]
    assert [d.inputs["httpMethod"] for d in destinations] == ["POST", "POST"]
    assert [d.inputs["invocationRateLimitPerSecond"] for d in destinations] == [1, 5]
    connection = notifying.named("cloud-ws-notify-webhook-1-connection")
    assert connection.inputs["authorizationType"] == "API_KEY"
    secret = connection.inputs["authParameters"]  # the header's value makes the whole block secret
    assert secret[rpc._special_sig_key] == rpc._special_secret_sig
    assert secret["value"]["apiKey"] == {"key": "Authorization", "value": "Bearer s3cret"}
    patterns = [
        json.loads(notifying.named(f"cloud-ws-notify-webhook-{i}-rule").inputs["eventPattern"])
        for i in (0, 1)
    ]
    assert patterns == [notify.target_pattern(["alpha"], []), notify.target_pattern([], ["failed"])]
    role = notifying.named("cloud-ws-notify-webhooks-role")
    for index, destination in enumerate(destinations):
        target = notifying.named(f"cloud-ws-notify-webhook-{index}-target")
        assert target.inputs["arn"] == destination.outputs["arn"]
        assert target.inputs["roleArn"] == role.outputs["arn"]
        assert target.inputs["inputPath"] == "$.detail.webhook"
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
    assert _policy(notifying.named("cloud-ws-notify-webhooks-policy"))["Statement"] == [
        {
            "Sid": "InvokeWebhooks",
            "Effect": "Allow",
            "Action": ["events:InvokeApiDestination"],
            "Resource": [d.outputs["arn"] for d in destinations],
        }
    ]


def test_without_notifications_nothing_is_built(dev: Deployment) -> None:
    names = {r.name for r in dev.resources.values()}
    assert not {n for n in names if "notif" in n}
    variables = dev.named("cloud-ws-broadcaster").inputs["environment"]["variables"]
    assert environment.NOTIFY_EVENT_BUS_NAME not in variables
    assert "notification_bus_name" not in dev.exports


def test_a_webhook_without_https_is_refused_naming_the_key() -> None:
    deployment = deploy(
        {"notifications": json.dumps({"webhooks": [{"url": "http://insecure.example.com"}]})},
        allow_error=True,
    )
    assert deployment.error is not None
    assert "cloud-ws:notifications.webhooks[0].url must be a URL starting with https://" in str(
        deployment.error
    )
    assert not deployment.of_type("aws:cloudwatch/eventApiDestination:EventApiDestination")


@pytest.mark.parametrize(
    ("notifications", "message"),
    [
        ({"outcomes": ["exploded"]}, "notifications.outcomes must be a list of cancelled, failed, succeeded"),
        ({"emails": ["not-an-address"]}, "notifications.emails must be a list of email addresses"),
        ({"sms": ["5551234"]}, "notifications.sms must be a list of E.164 phone numbers"),
        ({"topic": False, "emails": ["a@b.co"]}, "leave topic true"),
        ({"webhooks": [{"url": "https://x.example", "rateLimitPerSecond": 0}]}, "rate_limit_per_second"),
        ({"colour": "red"}, "notifications.colour is not a setting"),
    ],
)
def test_bad_notification_settings_are_refused(notifications: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        notify.parse_targets(notifications)


def test_the_mocked_arns_have_aws_forms(notifying: Deployment) -> None:
    """The policies are audited by parliament against ARNs in AWS's own forms."""
    destination = notifying.named("cloud-ws-notify-webhook-0").outputs["arn"]
    assert destination.startswith(f"arn:aws:events:{REGION}:{ACCOUNT}:api-destination/")
    assert (
        notifying.named("cloud-ws-notifications-topic")
        .outputs["arn"]
        .startswith(f"arn:aws:sns:{REGION}:{ACCOUNT}:")
    )
