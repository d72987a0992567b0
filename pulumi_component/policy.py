"""IAM policy documents, built as data from ``contract.spec``.

Each function gets exactly what its handler uses: the DynamoDB actions the spec
lists for it, on the ARNs of those tables (and, for ``Query``, their indexes);
``execute-api:ManageConnections`` for the @connections methods it calls, on this
API's stage only; and writing to its own log group. The broadcaster also reads
the delivery queue (its event source mapping polls with the function's role)
and invokes itself for large fan-outs, each on that one ARN. No statement has a
wildcard action. These functions take plain ARN strings; the component calls them once
the ARNs are known.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from contract import spec

PolicyDocument = dict[str, Any]
Statement = dict[str, Any]

VERSION = "2012-10-17"

#: Actions a function needs on its own log group (the group exists before the function).
LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")

#: What the broadcaster needs to hand a failed event to the dead-letter queue (Lambda's own
#: dead-letter of failed fan-out tasks, and events DynamoDB refuses as invalid, sent at once).
DEAD_LETTER_ACTIONS = ("sqs:SendMessage",)

#: What the delivery queue's event source mapping does with the function's role
#: (ReceiveMessage, DeleteMessageBatch, GetQueueAttributes), plus what the
#: broadcaster itself does: ChangeMessageVisibilityBatch on failed records so they
#: come back in seconds, and SendMessage of wake messages (a drain handed over, a
#: gap in a producer's numbers timing out: server/delivery.py). Batch calls are
#: authorised by their single-message action.
DELIVERY_QUEUE_ACTIONS = (
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
)

#: A fan-out too large for one invocation continues in asynchronous invocations of itself.
SELF_INVOKE_ACTIONS = ("lambda:InvokeFunction",)

#: AWS managed policy API Gateway needs to write execution and access logs (account-wide setting).
API_GATEWAY_LOGS_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"


def _sid(*words: str) -> str:
    """An IAM ``Sid`` (alphanumeric) from words such as ``event-ids``, ``table``."""
    return "".join(part.capitalize() for word in words for part in word.replace("_", "-").split("-"))


def table_spec(role: str) -> spec.TableSpec:
    """The spec of the table with this role (``ValueError`` names unknown roles)."""
    for table in spec.TABLES:
        if table.role == role:
            return table
    known = ", ".join(t.role for t in spec.TABLES)
    raise ValueError(f"contract.spec route uses table role {role!r}, which is not one of: {known}")


def index_arns(table_arn: str, table: spec.TableSpec) -> list[str]:
    """The ARN of each of the table's indexes."""
    return [f"{table_arn}/index/{index.name}" for index in table.indexes]


def connections_resources(execution_arn: str, stage: str, methods: Sequence[str]) -> list[str]:
    """``@connections`` resources of one stage of one API, one per HTTP method."""
    return [f"{execution_arn}/{stage}/{method}/@connections/*" for method in methods]


def table_statements(route: spec.RouteSpec, table_arns: Mapping[str, str]) -> list[Statement]:
    """One statement per table the route's handler touches (and one for its indexes when it queries)."""
    statements: list[Statement] = []
    for role, actions in route.tables.items():
        table = table_spec(role)
        arn = table_arns[role]
        statements.append(
            {"Sid": _sid(role, "table"), "Effect": "Allow", "Action": sorted(actions), "Resource": [arn]}
        )
        if "dynamodb:Query" in actions and table.indexes:
            statements.append(
                {
                    "Sid": _sid(role, "indexes"),
                    "Effect": "Allow",
                    "Action": ["dynamodb:Query"],
                    "Resource": index_arns(arn, table),
                }
            )
    return statements


def function_policy(
    route: spec.RouteSpec,
    *,
    table_arns: Mapping[str, str],
    log_group_arn: str,
    execution_arn: str,
    stage: str,
    dead_letter_queue_arn: str | None = None,
    delivery_queue_arn: str | None = None,
) -> PolicyDocument:
    """The inline policy of the function that serves ``route``.

    Args:
        table_arns: table role (``connections``, ...) → table ARN.
        log_group_arn: the function's log group (``arn:...:log-group:NAME``).
        execution_arn: the API's execution ARN (``arn:aws:execute-api:REGION:ACCOUNT:API``).
        stage: the stage the function posts through.
        dead_letter_queue_arn: where failed asynchronous invocations go (the broadcaster).
        delivery_queue_arn: the queue the function is fed from (the broadcaster).
    """
    statements = [
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": list(LOG_ACTIONS),
            "Resource": [f"{log_group_arn}:*"],
        },
        *table_statements(route, table_arns),
    ]
    if route.management_methods:
        statements.append(
            {
                "Sid": "ManageConnections",
                "Effect": "Allow",
                "Action": ["execute-api:ManageConnections"],
                "Resource": connections_resources(execution_arn, stage, route.management_methods),
            }
        )
    if dead_letter_queue_arn is not None:
        statements.append(
            {
                "Sid": "DeadLetterQueue",
                "Effect": "Allow",
                "Action": list(DEAD_LETTER_ACTIONS),
                "Resource": [dead_letter_queue_arn],
            }
        )
    if delivery_queue_arn is not None:
        statements.append(
            {
                "Sid": "DeliveryQueue",
                "Effect": "Allow",
                "Action": list(DELIVERY_QUEUE_ACTIONS),
                "Resource": [delivery_queue_arn],
            }
        )
    return {"Version": VERSION, "Statement": statements}


def self_invoke_policy(function_arn: str) -> PolicyDocument:
    """A function may invoke itself, and nothing else (its fan-out workers).

    A separate document from :func:`function_policy`: it names the function's own
    ARN, which exists only after the function, which needs its first policy first.
    """
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "FanOutToItself",
                "Effect": "Allow",
                "Action": list(SELF_INVOKE_ACTIONS),
                "Resource": [function_arn],
            }
        ],
    }


def assume_role_policy(service: str) -> PolicyDocument:
    """Trust policy that lets ``service`` (e.g. ``lambda.amazonaws.com``) assume a role."""
    return {
        "Version": VERSION,
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def delivery_queue_policy(queue_arn: str, rule_arn: str) -> PolicyDocument:
    """Queue policy: EventBridge may send to the delivery queue only on behalf of our rule."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "EventBridgeDeliveries",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }


def redrive_allow_policy(source_queue_arn: str) -> dict[str, Any]:
    """The dead-letter queue's redrive-allow policy: only the delivery queue may use it as its DLQ."""
    return {"redrivePermission": "byQueue", "sourceQueueArns": [source_queue_arn]}


def redrive_policy(dead_letter_queue_arn: str, max_receive_count: int) -> dict[str, Any]:
    """A queue's redrive policy: after ``max_receive_count`` receives a message moves to the DLQ."""
    return {"deadLetterTargetArn": dead_letter_queue_arn, "maxReceiveCount": max_receive_count}


def dead_letter_queue_policy(queue_arn: str, rule_arn: str) -> PolicyDocument:
    """Queue policy: only our rule's EventBridge deliveries may send dead letters."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "EventBridgeDeadLetters",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }


# -- the bus: who may put events -----------------------------------------------------------------

#: The one action a producer needs on the bus.
PUT_EVENTS_ACTION = "events:PutEvents"


def _arn_part(arn: str, index: int) -> str:
    """One ``:``-separated field of an ARN (1: partition, 4: account)."""
    return arn.split(":")[index]


def producer_account(producer: str) -> str:
    """The account of a trusted producer: the id itself, or the account field of its ARN."""
    return producer if producer.isdigit() else _arn_part(producer, 4)


def producer_policy(bus_arn: str, producers: Sequence[str]) -> PolicyDocument:
    """The bus's resource policy: only ``producers`` may put events on it (docs/security.md).

    ``producers`` holds account ids and ARNs of IAM roles and users; empty means
    the bus's own account. One ``Deny`` refuses ``events:PutEvents`` to every
    principal that is neither in a listed account (``aws:PrincipalAccount``) nor
    a listed role or user (``aws:PrincipalArn``, which for a role session is the
    role's ARN): the two conditions of one statement must both hold for it to
    apply. An explicit deny in a resource policy overrides any allow, in the
    bus's own account too. It grants nothing in the bus's account (principals
    there still need ``events:PutEvents`` in their own IAM policy); producers in
    other accounts also need this policy's ``Allow``, since a cross-account call
    needs both sides to allow it.
    """
    own_account = _arn_part(bus_arn, 4)
    partition = _arn_part(bus_arn, 1)
    trusted = list(producers) or [own_account]
    accounts = [p for p in trusted if p.isdigit()]
    principals = [p for p in trusted if not p.isdigit()]
    statements: list[Statement] = []
    foreign = [
        p if not p.isdigit() else f"arn:{partition}:iam::{p}:root"
        for p in trusted
        if producer_account(p) != own_account
    ]
    if foreign:
        statements.append(
            {
                "Sid": "TrustedProducersInOtherAccounts",
                "Effect": "Allow",
                "Principal": {"AWS": foreign},
                "Action": PUT_EVENTS_ACTION,
                "Resource": bus_arn,
            }
        )
    condition: dict[str, dict[str, list[str]]] = {}
    if accounts:
        condition["StringNotEquals"] = {"aws:PrincipalAccount": accounts}
    if principals:
        condition["ArnNotEquals"] = {"aws:PrincipalArn": principals}
    statements.append(
        {
            "Sid": "OnlyTrustedProducers",
            "Effect": "Deny",
            "Principal": "*",
            "Action": PUT_EVENTS_ACTION,
            "Resource": bus_arn,
            "Condition": condition,
        }
    )
    return {"Version": VERSION, "Statement": statements}


# -- notifications: the broadcaster puts outcomes on their bus, rules deliver them ----------------

#: What EventBridge needs to call an API destination with a rule's role.
INVOKE_API_DESTINATION_ACTION = "events:InvokeApiDestination"


def notification_put_policy(bus_arn: str) -> PolicyDocument:
    """The broadcaster may put each attempt's outcome on the notifications bus, and on no other."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "PutOutcomesOnTheNotificationsBus",
                "Effect": "Allow",
                "Action": [PUT_EVENTS_ACTION],
                "Resource": [bus_arn],
            }
        ],
    }


def notification_topic_policy(topic_arn: str, rule_arn: str) -> PolicyDocument:
    """Topic policy: EventBridge may publish to the topic only on behalf of the topic's rule."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "EventBridgeNotifications",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }


def invoke_api_destinations_policy(destination_arns: Sequence[str]) -> PolicyDocument:
    """The webhook rules' role may call exactly these API destinations."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "InvokeWebhooks",
                "Effect": "Allow",
                "Action": [INVOKE_API_DESTINATION_ACTION],
                "Resource": list(destination_arns),
            }
        ],
    }
