"""The Lambda functions: each with its own log group, its own role and its least-privilege policy.

All of them run the one shared code archive on arm64; their environment is the
contract of ``contract.environment``, read back by ``server.config``.
"""

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from contract import environment, spec
from pulumi_component import policy
from pulumi_component._shared import child, render_json
from pulumi_component.archive import build_archive
from pulumi_component.settings import Settings, render_access


@dataclass(frozen=True)
class LambdaFunction:
    """A function and the IAM it runs with."""

    function: aws.lambda_.Function
    role: aws.iam.Role
    role_policy: aws.iam.RolePolicy
    """The inline policy; whatever Lambda checks at creation against the role depends on it."""


@functools.cache
def lambda_archive() -> pulumi.FileArchive:
    """The code archive, built once per process (every function shares it)."""
    return pulumi.FileArchive(str(build_archive().path))


def _join(values: Sequence[Any]) -> str:
    """Comma-join a list, or lists of lists, of names (handlers read comma-separated sets)."""
    flat: list[str] = []
    for value in values:
        flat += value if isinstance(value, list) else [value]
    return ",".join(dict.fromkeys(flat))


def _as_str(value: Any) -> str:
    return str(value)


def common_environment(
    settings: Settings, tables: Mapping[str, aws.dynamodb.Table]
) -> dict[str, pulumi.Input[str]]:
    """What every function reads: the table names, the Cognito pool, lifetimes, groups, log level.

    The access policy too: every function gets the same one, so whichever handler
    decides who may watch a project reads the policy the stack was given.
    """
    return {
        **{table.env_var: tables[table.role].name for table in spec.TABLES},
        environment.COGNITO_USER_POOL_ID: settings.user_pool_id,
        environment.COGNITO_CLIENT_IDS: pulumi.Output.all(
            settings.user_pool_client_id, settings.extra_client_ids
        ).apply(_join),
        environment.CONNECTION_TTL_HOURS: pulumi.Output.from_input(settings.connection_ttl_hours).apply(
            _as_str
        ),
        environment.HISTORY_TTL_HOURS: pulumi.Output.from_input(settings.history_ttl_hours).apply(_as_str),
        environment.SUBSCRIBE_GROUPS: pulumi.Output.from_input(settings.subscribe_groups).apply(_join),
        environment.LOG_LEVEL: settings.log_level,
        environment.ACCESS_POLICY: pulumi.Output.from_input(settings.access).apply(render_access),
    }


def _function_policy(route: spec.RouteSpec, stage: str, resolved: Mapping[str, Any]) -> str:
    return render_json(
        policy.function_policy(
            route,
            table_arns=resolved["tables"],
            log_group_arn=resolved["log_group"],
            execution_arn=resolved["execution_arn"],
            stage=stage,
            dead_letter_queue_arn=resolved.get("dead_letter_queue"),
            delivery_queue_arn=resolved.get("delivery_queue"),
        )
    )


def lambda_function(
    name: str,
    route: spec.RouteSpec,
    *,
    parent: pulumi.Resource,
    settings: Settings,
    env: Mapping[str, pulumi.Input[str]],
    table_arns: pulumi.Output[dict[str, Any]],
    execution_arn: pulumi.Input[str],
    memory: pulumi.Input[int],
    timeout: pulumi.Input[int],
    dead_letter_queue: aws.sqs.Queue | None = None,
    delivery_queue: aws.sqs.Queue | None = None,
    reserved_concurrency: pulumi.Input[int] | None = None,
) -> LambdaFunction:
    """``route``'s function (``{name}-{function}``) with its log group, role and inline policy.

    ``reserved_concurrency``: Lambda concurrency set aside for the function (and its
    cap); -1 reserves none; None leaves the setting out.

    The policy grants exactly what ``route`` lists in the spec, on the ARNs of
    ``table_arns`` (by table role), this API's stage, and the queues when given.
    """
    prefix = f"{name}-{route.function}"
    log_group = aws.cloudwatch.LogGroup(
        f"{prefix}-logs", retention_in_days=settings.log_retention_days, opts=child(parent)
    )
    role = aws.iam.Role(
        f"{prefix}-role",
        assume_role_policy=render_json(policy.assume_role_policy("lambda.amazonaws.com")),
        description=f"cloud-ws {route.function} function",
        opts=child(parent),
    )
    arns: dict[str, Any] = {"tables": table_arns, "log_group": log_group.arn, "execution_arn": execution_arn}
    if dead_letter_queue is not None:
        arns["dead_letter_queue"] = dead_letter_queue.arn
    if delivery_queue is not None:
        arns["delivery_queue"] = delivery_queue.arn
    role_policy = aws.iam.RolePolicy(
        f"{prefix}-policy",
        role=role.id,
        policy=pulumi.Output.all(**arns).apply(
            functools.partial(_function_policy, route, settings.stage_name)
        ),
        opts=child(parent),
    )
    function = aws.lambda_.Function(
        prefix,
        description=f"cloud-ws {route.route_key or 'delivery queue'} handler",
        runtime=settings.runtime,
        architectures=["arm64"],
        handler=route.handler,
        code=lambda_archive(),
        role=role.arn,
        memory_size=memory,
        timeout=timeout,
        environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(env)),
        logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=log_group.name),
        reserved_concurrent_executions=reserved_concurrency,
        # Both first: Lambda would create the log group itself (with no retention), and a first
        # invocation would meet a role without its policy.
        opts=child(parent, depends_on=[role_policy, log_group]),
    )
    return LambdaFunction(function, role, role_policy)
