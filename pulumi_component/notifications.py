"""Notifications when nobody is watching: each attempt's outcome to an SNS topic and to webhooks.

The broadcaster puts one ``deployment.outcome`` event per attempt on a
notifications bus of its own (``server/notify.py``: exactly once, whatever
is redelivered). Here, on that bus:

- the SNS topic's rule, filtered by the configured projects and outcomes,
  sends the one-line ``detail.summary`` to the topic (a topic policy lets
  EventBridge publish for that rule only); email and SMS subscriptions from
  the arguments, and any mobile push endpoint subscribed to the topic's ARN;
- per webhook, a connection (an ``API_KEY`` header: a token the endpoint
  wants, or a fixed marker), an API destination (HTTPS POST, rate-limited)
  and a rule with the webhook's own filters, whose target sends
  ``detail.webhook``, a Slack-compatible ``{"text": ...}``. EventBridge
  handles retries (24 h) and the rate limit; one role, trusted by
  EventBridge, may invoke exactly these destinations.

No ``from __future__ import annotations``: the component reads annotations at run time.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from contract import notifications as notify
from pulumi_component import policy
from pulumi_component._shared import child, render_json

#: EventBridge retries a failed delivery to a target for this long (its default and maximum).
NOTIFICATION_MAX_AGE_SECONDS = 24 * 3600
NOTIFICATION_MAX_RETRIES = 185
#: The topic target's input: ``detail.summary`` as the message (a JSON string: the text in quotes).
TOPIC_INPUT_PATHS = {"summary": notify.SNS_INPUT_PATH}
TOPIC_INPUT_TEMPLATE = '"<summary>"'


@dataclass
class Notifications:
    """The notification resources."""

    bus: aws.cloudwatch.EventBus
    topic: aws.sns.Topic | None = None
    destinations: Sequence[aws.cloudwatch.EventApiDestination] = ()


def _pattern(projects: Sequence[str], outcomes: Sequence[str]) -> str:
    return render_json(notify.target_pattern(projects, outcomes))


def _topic_policy(arns: Sequence[str]) -> str:
    topic_arn, rule_arn = arns
    return render_json(policy.notification_topic_policy(topic_arn, rule_arn))


def _put_policy(bus_arn: str) -> str:
    return render_json(policy.notification_put_policy(bus_arn))


def _invoke_policy(arns: Sequence[str]) -> str:
    return render_json(policy.invoke_api_destinations_policy(arns))


def _retry() -> aws.cloudwatch.EventTargetRetryPolicyArgs:
    return aws.cloudwatch.EventTargetRetryPolicyArgs(
        maximum_event_age_in_seconds=NOTIFICATION_MAX_AGE_SECONDS,
        maximum_retry_attempts=NOTIFICATION_MAX_RETRIES,
    )


def notifications_bus(name: str, parent: pulumi.Resource) -> aws.cloudwatch.EventBus:
    """The bus only the broadcaster puts outcomes on (created before it: its name is in its environment)."""
    return aws.cloudwatch.EventBus(
        f"{name}-notifications-bus",
        description="cloud-ws: each deployment attempt's outcome, for notifications",
        opts=child(parent),
    )


def notification_targets(
    name: str,
    parent: pulumi.Resource,
    *,
    bus: aws.cloudwatch.EventBus,
    targets: notify.Targets,
    header_values: Sequence[pulumi.Input[str] | None],
    broadcaster_role: aws.iam.Role,
) -> Notifications:
    """The broadcaster's leave to put on the bus, then the topic and the webhooks with their rules."""
    aws.iam.RolePolicy(
        f"{name}-broadcaster-notify-policy",
        role=broadcaster_role.id,
        policy=bus.arn.apply(_put_policy),
        opts=child(parent),
    )
    built = Notifications(bus)
    if targets.topic:
        built.topic = _topic(name, parent, bus, targets)
    if targets.webhooks:
        built.destinations = _webhooks(name, parent, bus, targets.webhooks, header_values)
    return built


def _topic(
    name: str, parent: pulumi.Resource, bus: aws.cloudwatch.EventBus, targets: notify.Targets
) -> aws.sns.Topic:
    topic = aws.sns.Topic(f"{name}-notifications-topic", opts=child(parent))
    rule = aws.cloudwatch.EventRule(
        f"{name}-notify-topic-rule",
        event_bus_name=bus.name,
        description="cloud-ws: attempt outcomes to the notifications topic",
        event_pattern=_pattern(targets.projects, targets.outcomes),
        opts=child(parent),
    )
    topic_policy = aws.sns.TopicPolicy(
        f"{name}-notifications-topic-policy",
        arn=topic.arn,
        policy=pulumi.Output.all(topic.arn, rule.arn).apply(_topic_policy),
        opts=child(parent),
    )
    aws.cloudwatch.EventTarget(
        f"{name}-notify-topic-target",
        rule=rule.name,
        event_bus_name=bus.name,
        arn=topic.arn,
        input_transformer=aws.cloudwatch.EventTargetInputTransformerArgs(
            input_paths=TOPIC_INPUT_PATHS, input_template=TOPIC_INPUT_TEMPLATE
        ),
        retry_policy=_retry(),
        # EventBridge may publish before the target exists: the topic must accept it by then.
        opts=child(parent, depends_on=[topic_policy]),
    )
    for protocol, endpoints in (("email", targets.emails), ("sms", targets.sms)):
        for index, endpoint in enumerate(endpoints):
            aws.sns.TopicSubscription(
                f"{name}-notify-{protocol}-{index}",
                topic=topic.arn,
                protocol=protocol,
                endpoint=endpoint,
                opts=child(parent),
            )
    return topic


def _webhooks(
    name: str,
    parent: pulumi.Resource,
    bus: aws.cloudwatch.EventBus,
    webhooks: Sequence[notify.Webhook],
    header_values: Sequence[pulumi.Input[str] | None],
) -> list[aws.cloudwatch.EventApiDestination]:
    role = aws.iam.Role(
        f"{name}-notify-webhooks-role",
        assume_role_policy=render_json(policy.assume_role_policy("events.amazonaws.com")),
        description="cloud-ws: EventBridge calls the notification webhooks",
        opts=child(parent),
    )
    destinations: list[aws.cloudwatch.EventApiDestination] = []
    for index, hook in enumerate(webhooks):
        value: Any = header_values[index] if index < len(header_values) else None
        connection = aws.cloudwatch.EventConnection(
            f"{name}-notify-webhook-{index}-connection",
            description="cloud-ws: a notification webhook",
            authorization_type="API_KEY",
            auth_parameters=aws.cloudwatch.EventConnectionAuthParametersArgs(
                api_key=aws.cloudwatch.EventConnectionAuthParametersApiKeyArgs(
                    key=hook.header_name, value=pulumi.Output.secret(value or "cloud-ws")
                )
            ),
            opts=child(parent),
        )
        destinations.append(
            aws.cloudwatch.EventApiDestination(
                f"{name}-notify-webhook-{index}",
                description="cloud-ws: a notification webhook",
                connection_arn=connection.arn,
                invocation_endpoint=hook.url,
                http_method="POST",
                invocation_rate_limit_per_second=hook.rate_limit_per_second,
                opts=child(parent),
            )
        )
    role_policy = aws.iam.RolePolicy(
        f"{name}-notify-webhooks-policy",
        role=role.id,
        policy=pulumi.Output.all(*(d.arn for d in destinations)).apply(_invoke_policy),
        opts=child(parent),
    )
    for index, (hook, destination) in enumerate(zip(webhooks, destinations, strict=True)):
        rule = aws.cloudwatch.EventRule(
            f"{name}-notify-webhook-{index}-rule",
            event_bus_name=bus.name,
            description="cloud-ws: attempt outcomes to a notification webhook",
            event_pattern=_pattern(hook.projects, hook.outcomes),
            opts=child(parent),
        )
        aws.cloudwatch.EventTarget(
            f"{name}-notify-webhook-{index}-target",
            rule=rule.name,
            event_bus_name=bus.name,
            arn=destination.arn,
            role_arn=role.arn,
            input_path=notify.WEBHOOK_INPUT_PATH,
            retry_policy=_retry(),
            opts=child(parent, depends_on=[role_policy]),
        )
    return destinations
