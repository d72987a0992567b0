"""The token sweeper's schedule: EventBridge runs it every minute (docs/protocol.md, "Token lifetime").

A schedule rule on the account's default bus (scheduled rules live there)
targets the sweeper function with a constant input, the run's horizon; Lambda
lets EventBridge invoke the function only on behalf of that rule. The
function itself, its role and its policy are built like every other
(``functions.lambda_function`` from ``contract.spec.SWEEPER``).
"""

from typing import Any

import pulumi
import pulumi_aws as aws

from contract import spec
from pulumi_component._shared import child, render_json


def sweep_input(horizon_seconds: int = spec.SWEEP.horizon_seconds) -> str:
    """What the schedule hands the sweeper: how far ahead a run closes tokens as they come due."""
    task: dict[str, Any] = {spec.SWEEP_TASK_KEY: {"horizon_seconds": horizon_seconds}}
    return render_json(task)


def schedule_sweeps(
    name: str, parent: pulumi.Resource, sweeper: aws.lambda_.Function
) -> aws.cloudwatch.EventRule:
    """The rule that runs ``sweeper`` every minute, its target, and Lambda's leave for that rule alone."""
    prefix = f"{name}-{spec.SWEEPER.function}"
    rule = aws.cloudwatch.EventRule(
        f"{prefix}-schedule",
        schedule_expression=spec.SWEEP.schedule_expression,
        description="cloud-ws: close connections whose token has expired",
        opts=child(parent),
    )
    permission = aws.lambda_.Permission(
        f"{prefix}-schedule-invoke",
        action="lambda:InvokeFunction",
        function=sweeper.name,
        principal="events.amazonaws.com",
        source_arn=rule.arn,
        opts=child(parent),
    )
    aws.cloudwatch.EventTarget(
        f"{prefix}-schedule-target",
        rule=rule.name,
        arn=sweeper.arn,
        input=sweep_input(),
        # A late run is pointless: the next one is a minute away and reads the past minutes again.
        retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
            maximum_event_age_in_seconds=60, maximum_retry_attempts=0
        ),
        opts=child(parent, depends_on=[permission]),
    )
    return rule
