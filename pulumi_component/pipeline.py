"""The event pipeline: EventBridge → delivery queue → (event source mapping, batches) → broadcaster.

Why a queue sits between the rule and the broadcaster, and how each number was
chosen: docs/delivery.md. Events that could not be delivered, or kept failing,
and fan-out tasks that still failed after Lambda's retries, end in one
dead-letter queue.
"""

from collections.abc import Callable, Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from contract import spec
from pulumi_component import policy
from pulumi_component._shared import child, render_json
from pulumi_component.settings import Settings

#: EventBridge keeps retrying a delivery to the delivery queue for this long, then
#: sends the event to the dead-letter queue: older events are of no use to a live view.
EVENT_MAX_AGE_SECONDS = 3600
EVENT_MAX_RETRIES = 64
#: Lambda's own retries of an asynchronous invocation (a fan-out task) that raised.
ASYNC_MAX_RETRIES = 2
#: SQS's default, stated: a message waits out a broadcaster outage of days. Dead
#: letters keep their first enqueue time, so the DLQ must keep them longer still.
DELIVERY_RETENTION_SECONDS = 4 * 24 * 3600
DEAD_LETTER_RETENTION_SECONDS = spec.DEAD_LETTER_RETENTION_SECONDS
#: AWS asks for a queue visibility timeout of at least six times the function's timeout.
VISIBILITY_TIMEOUT_FACTOR = 6
#: SQS publishes its queue metrics once a minute: the depth alarm looks at each minute.
ALARM_PERIOD_SECONDS = 60
#: The age alarm: a dead letter nobody has redriven or cleared within a day. SQS measures a
#: dead letter's age from its move to the DLQ, but it expires 14 days after its *first* enqueue
#: (standard queues): a day leaves most of that time to act before it is lost.
DEAD_LETTER_AGE_ALARM_SECONDS = 24 * 3600
#: The age alarm's period: the age only grows, a coarser look misses nothing.
AGE_ALARM_PERIOD_SECONDS = 300


def visibility_timeout(function_timeout_seconds: int) -> int:
    """The delivery queue's visibility timeout for a broadcaster timeout.

    The spec's value, raised to six times the function timeout when the timeout
    is configured longer: a batch whose invocation was throttled or timed out is
    then not handed to a second invocation while the first may still run.
    """
    return max(spec.DELIVERY.visibility_timeout_seconds, VISIBILITY_TIMEOUT_FACTOR * function_timeout_seconds)


# -- apply callbacks: documents once the ARNs are known --------------------------------------------


class _Render:
    """``Output.all(queue_arn, rule_arn).apply(...)`` of a queue policy builder, rendered."""

    def __init__(self, build: Callable[[str, str], dict[str, Any]]) -> None:
        self._build = build

    def __call__(self, arns: Sequence[str]) -> str:
        queue_arn, rule_arn = arns
        return render_json(self._build(queue_arn, rule_arn))


def _redrive_policy(dead_letter_queue_arn: str) -> str:
    return render_json(policy.redrive_policy(dead_letter_queue_arn, spec.DELIVERY.max_receive_count))


def _redrive_allow_policy(source_queue_arn: str) -> str:
    return render_json(policy.redrive_allow_policy(source_queue_arn))


def _self_invoke_policy(function_arn: str) -> str:
    return render_json(policy.self_invoke_policy(function_arn))


def _event_pattern(source: str) -> str:
    return render_json(spec.event_pattern(source))


def _producer_policy(arn_and_producers: Sequence[Any]) -> str:
    bus_arn, producers = arn_and_producers
    return render_json(policy.producer_policy(bus_arn, producers))


# -- builders ------------------------------------------------------------------------------------


def dead_letter_queue(name: str, parent: pulumi.Resource) -> aws.sqs.Queue:
    """Where undeliverable events and failed fan-out tasks end (kept 14 days)."""
    return aws.sqs.Queue(
        f"{name}-dlq",
        message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS,
        sqs_managed_sse_enabled=True,
        opts=child(parent),
    )


def event_bus_name(name: str, parent: pulumi.Resource, settings: Settings) -> pulumi.Output[str]:
    """A dedicated bus's name, or the existing (or ``default``) bus the settings name.

    A dedicated bus gets a policy that lets only the trusted producers put events
    on it (``settings.producers``; none named: the stack's own account). A bus the
    component does not create keeps its owner's policy: ``validate_args`` refuses
    ``producers`` there.
    """
    if settings.create_event_bus:
        bus = aws.cloudwatch.EventBus(
            f"{name}-bus", description="cloud-ws deployment events", opts=child(parent)
        )
        # Owns the bus's whole policy (pulumi-aws: it overwrites, and conflicts with EventPermission).
        aws.cloudwatch.EventBusPolicy(
            f"{name}-bus-policy",
            event_bus_name=bus.name,
            policy=pulumi.Output.all(bus.arn, settings.producers).apply(_producer_policy),
            opts=child(parent),
        )
        return bus.name
    return pulumi.Output.from_input(settings.event_bus_name)


def dead_letter_alarms(
    name: str, parent: pulumi.Resource, dead_letters: aws.sqs.Queue, topic_arn: pulumi.Input[str] | None
) -> list[aws.cloudwatch.MetricAlarm]:
    """Two alarms on the dead-letter queue: anything in it, and anything left in it for a day.

    Any dead letter is an event some subscribers did not get live (docs/operations.md, "What to
    watch"). A queue that holds messages is active, so SQS keeps publishing its metrics; a missing
    datapoint means an empty, idle queue: not breaching.
    """
    actions = None if topic_arn is None else [topic_arn]
    common: dict[str, Any] = {
        "namespace": "AWS/SQS",
        "dimensions": {"QueueName": dead_letters.name},
        "statistic": "Maximum",
        "evaluation_periods": 1,
        "comparison_operator": "GreaterThanThreshold",
        "treat_missing_data": "notBreaching",
        "alarm_actions": actions,
        "ok_actions": actions,
    }
    depth = aws.cloudwatch.MetricAlarm(
        f"{name}-dlq-depth-alarm",
        alarm_description="cloud-ws: events or fan-out tasks reached the dead-letter queue; "
        "see docs/operations.md (What to watch) to find the cause and redrive",
        metric_name="ApproximateNumberOfMessagesVisible",
        period=ALARM_PERIOD_SECONDS,
        threshold=0,
        opts=child(parent),
        **common,
    )
    age = aws.cloudwatch.MetricAlarm(
        f"{name}-dlq-age-alarm",
        alarm_description="cloud-ws: a dead letter has waited over a day; redrive or clear it before "
        "SQS drops it (14 days after it was first sent); see docs/operations.md",
        metric_name="ApproximateAgeOfOldestMessage",
        period=AGE_ALARM_PERIOD_SECONDS,
        threshold=DEAD_LETTER_AGE_ALARM_SECONDS,
        opts=child(parent),
        **common,
    )
    return [depth, age]


def delivery_queue(
    name: str, parent: pulumi.Resource, settings: Settings, dead_letters: aws.sqs.Queue
) -> aws.sqs.Queue:
    """The standard, encrypted queue the rule feeds; it redrives to ``dead_letters`` and only it may."""
    queue = aws.sqs.Queue(
        f"{name}-delivery-queue",
        visibility_timeout_seconds=pulumi.Output.from_input(settings.broadcaster_timeout_seconds).apply(
            visibility_timeout
        ),
        message_retention_seconds=DELIVERY_RETENTION_SECONDS,
        sqs_managed_sse_enabled=True,
        redrive_policy=dead_letters.arn.apply(_redrive_policy),
        opts=child(parent),
    )
    # Only the delivery queue may name the dead-letter queue as its own: a separate
    # resource, since the delivery queue's redrive policy already names the DLQ.
    aws.sqs.RedriveAllowPolicy(
        f"{name}-dlq-redrive-allow",
        queue_url=dead_letters.url,
        redrive_allow_policy=queue.arn.apply(_redrive_allow_policy),
        opts=child(parent),
    )
    return queue


def allow_self_invoke(
    name: str, parent: pulumi.Resource, role: aws.iam.Role, broadcaster: aws.lambda_.Function
) -> aws.iam.RolePolicy:
    """The broadcaster's leave to hand fan-out pages to itself (its own ARN only)."""
    # A second policy: the function's ARN exists only once the function (and its first policy) does.
    return aws.iam.RolePolicy(
        f"{name}-{spec.BROADCASTER.function}-fanout-policy",
        role=role.id,
        policy=broadcaster.arn.apply(_self_invoke_policy),
        opts=child(parent),
    )


def route_events(
    name: str,
    parent: pulumi.Resource,
    settings: Settings,
    *,
    bus_name: pulumi.Input[str],
    queue: aws.sqs.Queue,
    dead_letters: aws.sqs.Queue,
) -> aws.cloudwatch.EventRule:
    """The rule matching the configured source, its target (the queue), and the queues' policies."""
    rule = aws.cloudwatch.EventRule(
        f"{name}-rule",
        event_bus_name=bus_name,
        description="cloud-ws: deployment events to the delivery queue",
        event_pattern=pulumi.Output.from_input(settings.event_source).apply(_event_pattern),
        opts=child(parent),
    )
    delivery_queue_policy = aws.sqs.QueuePolicy(
        f"{name}-delivery-queue-policy",
        queue_url=queue.url,
        policy=pulumi.Output.all(queue.arn, rule.arn).apply(_Render(policy.delivery_queue_policy)),
        opts=child(parent),
    )
    dead_letter_policy = aws.sqs.QueuePolicy(
        f"{name}-dlq-policy",
        queue_url=dead_letters.url,
        policy=pulumi.Output.all(dead_letters.arn, rule.arn).apply(_Render(policy.dead_letter_queue_policy)),
        opts=child(parent),
    )
    # Same name and type as when the broadcaster itself was the target: an
    # existing stack updates this target in place (a new ARN), nothing is replaced.
    aws.cloudwatch.EventTarget(
        f"{name}-target",
        rule=rule.name,
        event_bus_name=bus_name,
        arn=queue.arn,
        retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
            maximum_event_age_in_seconds=EVENT_MAX_AGE_SECONDS,
            maximum_retry_attempts=EVENT_MAX_RETRIES,
        ),
        dead_letter_config=aws.cloudwatch.EventTargetDeadLetterConfigArgs(arn=dead_letters.arn),
        # EventBridge may send before the target exists: the queues must accept it by then.
        opts=child(parent, depends_on=[delivery_queue_policy, dead_letter_policy]),
    )
    return rule


def feed_broadcaster(
    name: str,
    parent: pulumi.Resource,
    settings: Settings,
    *,
    queue: aws.sqs.Queue,
    dead_letters: aws.sqs.Queue,
    broadcaster: aws.lambda_.Function,
    broadcaster_policy: aws.iam.RolePolicy,
) -> aws.lambda_.EventSourceMapping:
    """The mapping handing the broadcaster batches, and where its failed fan-out tasks go."""
    mapping = aws.lambda_.EventSourceMapping(
        f"{name}-delivery-mapping",
        event_source_arn=queue.arn,
        function_name=broadcaster.arn,
        batch_size=spec.DELIVERY.batch_size,
        maximum_batching_window_in_seconds=spec.DELIVERY.max_batching_window_seconds,
        function_response_types=["ReportBatchItemFailures"],
        # Always a cap: uncapped, the mapping grows to 1,000 batches, an account's whole default
        # Lambda concurrency, and the route functions would be throttled (docs/delivery.md).
        # Provisioned mode caps by pollers instead (AWS refuses both at once).
        scaling_config=(
            aws.lambda_.EventSourceMappingScalingConfigArgs(
                maximum_concurrency=settings.delivery_max_concurrency
            )
            if settings.delivery_min_pollers is None
            else None
        ),
        # Pollers kept ready: a burst on one deployment fills the shared queue, and a standard
        # mapping starts with 5 batches; everyone else's events wait behind it while it scales.
        provisioned_poller_config=(
            aws.lambda_.EventSourceMappingProvisionedPollerConfigArgs(
                minimum_pollers=settings.delivery_min_pollers,
                maximum_pollers=settings.delivery_max_pollers,
            )
            if settings.delivery_min_pollers is not None
            else None
        ),
        # Lambda checks at creation that the role may read the queue.
        opts=child(parent, depends_on=[broadcaster_policy]),
    )
    # Asynchronous invocations are the fan-out tasks the broadcaster hands to itself.
    aws.lambda_.FunctionEventInvokeConfig(
        f"{name}-{spec.BROADCASTER.function}-async",
        function_name=broadcaster.name,
        maximum_retry_attempts=ASYNC_MAX_RETRIES,
        maximum_event_age_in_seconds=EVENT_MAX_AGE_SECONDS,
        destination_config=aws.lambda_.FunctionEventInvokeConfigDestinationConfigArgs(
            on_failure=aws.lambda_.FunctionEventInvokeConfigDestinationConfigOnFailureArgs(
                destination=dead_letters.arn
            )
        ),
        opts=child(parent),
    )
    return mapping
