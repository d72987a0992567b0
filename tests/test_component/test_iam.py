"""Least privilege: every statement of every policy the stack deploys, checked against the spec."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import server.store as store_package
from contract import spec
from pulumi_component import policy
from tests.test_component.conftest import REGION, Deployment, Registered

ALL_FUNCTIONS = spec.FUNCTIONS
TABLE_BY_ROLE = {t.role: t for t in spec.TABLES}
#: What the event source mapping (receive, delete, queue attributes) and the broadcaster
#: (shorten a failed message's visibility) do on the delivery queue, written out here.
DELIVERY_QUEUE_ACTIONS = [
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",  # wake messages: a drain handed over, a gap in a producer's numbers timing out
]


def _documents(deployment: Deployment) -> list[tuple[str, dict[str, Any]]]:
    """Every IAM document in the deployment: inline role policies, trust policies, queue policies."""
    found = []
    for resource in deployment.resources.values():
        for key in ("policy", "assumeRolePolicy"):
            value = resource.inputs.get(key)
            if isinstance(value, str) and value.startswith("{"):
                found.append((f"{resource.name}.{key}", json.loads(value)))
    return found


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document["Statement"]
    return statements if isinstance(statements, list) else [statements]


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _role_policy(deployment: Deployment, route: spec.RouteSpec) -> tuple[Registered, dict[str, Any]]:
    resource = deployment.named(f"cloud-ws-{route.function}-policy")
    return resource, json.loads(resource.inputs["policy"])


def _expected_statements(deployment: Deployment, route: spec.RouteSpec) -> list[dict[str, Any]]:
    """What the function may do, derived here straight from the spec (not from the component's code)."""
    (api,) = deployment.of_type("aws:apigatewayv2/api:Api")
    (stage,) = deployment.of_type("aws:apigatewayv2/stage:Stage")
    log_group = deployment.named(f"cloud-ws-{route.function}-logs").outputs["arn"]
    expected: list[dict[str, Any]] = [
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{log_group}:*"],
        }
    ]
    for role, actions in route.tables.items():
        table_arn = deployment.named(f"cloud-ws-{role}").outputs["arn"]
        sid = "".join(word.capitalize() for word in role.split("-"))
        expected.append(
            {"Sid": f"{sid}Table", "Effect": "Allow", "Action": sorted(actions), "Resource": [table_arn]}
        )
        indexes = TABLE_BY_ROLE[role].indexes
        if "dynamodb:Query" in actions and indexes:
            expected.append(
                {
                    "Sid": f"{sid}Indexes",
                    "Effect": "Allow",
                    "Action": ["dynamodb:Query"],
                    "Resource": [f"{table_arn}/index/{i.name}" for i in indexes],
                }
            )
    if route.management_methods:
        expected.append(
            {
                "Sid": "ManageConnections",
                "Effect": "Allow",
                "Action": ["execute-api:ManageConnections"],
                "Resource": [
                    f"{api.outputs['executionArn']}/{stage.inputs['name']}/{m}/@connections/*"
                    for m in route.management_methods
                ],
            }
        )
    if route is spec.BROADCASTER:
        expected += [
            {
                "Sid": "DeadLetterQueue",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": [deployment.named("cloud-ws-dlq").outputs["arn"]],
            },
            {
                "Sid": "DeliveryQueue",
                "Effect": "Allow",
                "Action": DELIVERY_QUEUE_ACTIONS,
                "Resource": [deployment.named("cloud-ws-delivery-queue").outputs["arn"]],
            },
        ]
    return expected


def _role_documents(deployment: Deployment) -> list[tuple[Registered, dict[str, Any]]]:
    """Every inline role policy of the deployment, with its resource."""
    return [
        (resource, json.loads(resource.inputs["policy"]))
        for resource in deployment.of_type("aws:iam/rolePolicy:RolePolicy")
    ]


@pytest.mark.parametrize("route", ALL_FUNCTIONS, ids=lambda r: r.function)
def test_each_function_policy_is_exactly_what_the_spec_lists(dev: Deployment, route: spec.RouteSpec) -> None:
    resource, document = _role_policy(dev, route)
    assert resource.inputs["role"] == dev.named(f"cloud-ws-{route.function}-role").id
    assert document["Version"] == "2012-10-17"
    assert _statements(document) == _expected_statements(dev, route)


def test_no_wildcard_action_anywhere(dev: Deployment, prod: Deployment) -> None:
    for deployment in (dev, prod):
        documents = _documents(deployment)
        assert len(documents) >= 2 * len(ALL_FUNCTIONS)
        for where, document in documents:
            for statement in _statements(document):
                assert "NotAction" not in statement, where
                for action in _as_list(statement["Action"]):
                    assert "*" not in action, f"{where}: {action}"
                # The one Deny: the bus policy's refusal of untrusted producers (test_trust.py).
                assert statement["Effect"] == "Allow" or where == "cloud-ws-bus-policy.policy", where


def test_only_connections_on_this_api_stage_may_be_managed(dev: Deployment) -> None:
    (api,) = dev.of_type("aws:apigatewayv2/api:Api")
    for route in ALL_FUNCTIONS:
        _, document = _role_policy(dev, route)
        managed = [s for s in _statements(document) if "execute-api:ManageConnections" in s["Action"]]
        if route.management_methods:
            (statement,) = managed
            # POST for the functions that reply and broadcast; DELETE for the token sweeper only.
            method = "DELETE" if route is spec.SWEEPER else "POST"
            assert statement["Resource"] == [f"{api.outputs['executionArn']}/dev/{method}/@connections/*"]
        else:
            assert managed == [], route.function  # $connect and $disconnect never post


def test_resources_are_exact_arns_never_wildcard_tables(dev: Deployment) -> None:
    tables = {dev.named(f"cloud-ws-{t.role}").outputs["arn"] for t in spec.TABLES}
    for route in ALL_FUNCTIONS:
        _, document = _role_policy(dev, route)
        for statement in _statements(document):
            for resource in statement["Resource"]:
                assert resource != "*"
                if resource.startswith("arn:aws:dynamodb:"):
                    base = resource.split("/index/")[0]
                    assert base in tables, resource
                    assert "*" not in resource, resource


def test_roles_trust_only_lambda(dev: Deployment) -> None:
    for route in ALL_FUNCTIONS:
        role = dev.named(f"cloud-ws-{route.function}-role")
        trust = json.loads(role.inputs["assumeRolePolicy"])
        assert trust["Statement"] == [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
        assert "managedPolicyArns" not in role.inputs


def test_every_dynamodb_call_in_the_store_is_granted_somewhere() -> None:
    """A store method the spec forgot would fail with AccessDenied on AWS only; catch it here."""
    # The store is a package split by job (connections, subscriptions, event log): read every part.
    parts = sorted(Path(store_package.__file__).parent.glob("*.py"))
    source = "\n".join(part.read_text() for part in parts)
    operations = set(re.findall(r"self\._db\.(\w+)\(", source))
    assert operations, "no DynamoDB calls found: has server/store/ moved?"
    # TransactWriteItems is authorised on the items it carries (DynamoDB's "Using IAM with
    # DynamoDB transactions"): Put → PutItem, Update → UpdateItem, Delete → DeleteItem,
    # ConditionCheck → ConditionCheckItem. A condition on a Put or an Update needs nothing more.
    item_actions = {
        "Put": "PutItem",
        "Update": "UpdateItem",
        "Delete": "DeleteItem",
        "ConditionCheck": "ConditionCheckItem",
    }
    kinds = set(re.findall(r'"(Put|Update|Delete|ConditionCheck)":\s*\{', source))
    needed: set[str] = set()
    for operation in operations:
        if operation == "transact_write_items":
            assert kinds, "a transaction with no Put/Update/Delete/ConditionCheck items found"
            names = {item_actions[kind] for kind in kinds}
        else:
            names = {"".join(p.capitalize() for p in operation.split("_"))}
        needed |= {f"dynamodb:{name}" for name in names}
    granted = {action for route in ALL_FUNCTIONS for actions in route.tables.values() for action in actions}
    assert needed <= granted, sorted(needed - granted)


def test_policy_builder_refuses_a_table_the_spec_does_not_define() -> None:
    route = spec.RouteSpec("x", "x", "x", tables={"nope": ("dynamodb:GetItem",)})
    with pytest.raises(ValueError, match="'nope'"):
        policy.function_policy(
            route, table_arns={"nope": "arn"}, log_group_arn="lg", execution_arn="ex", stage="s"
        )


def test_policy_builder_with_plain_arns() -> None:
    table = f"arn:aws:dynamodb:{REGION}:1:table/subs"
    document = policy.function_policy(
        spec.route_for("subscribe"),
        table_arns={"connections": "c", "subscriptions": table, "events": "e"},
        log_group_arn="arn:aws:logs:r:1:log-group:g",
        execution_arn="arn:aws:execute-api:r:1:abc",
        stage="live",
    )
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["SubscriptionsIndexes"]["Resource"] == [f"{table}/index/byConnection"]
    assert by_sid["ManageConnections"]["Resource"] == ["arn:aws:execute-api:r:1:abc/live/POST/@connections/*"]
    assert "DeadLetterQueue" not in by_sid


# -- the delivery engine: queue and self-invocation ---------------------------------------------


def test_broadcaster_has_exactly_the_sqs_actions_on_the_delivery_queue(dev: Deployment) -> None:
    _, document = _role_policy(dev, spec.BROADCASTER)
    queue_arn = dev.named("cloud-ws-delivery-queue").outputs["arn"]
    statements = [s for s in _statements(document) if any(a.startswith("sqs:") for a in s["Action"])]
    by_queue = {tuple(s["Resource"]): s["Action"] for s in statements}
    assert by_queue == {
        (queue_arn,): DELIVERY_QUEUE_ACTIONS,
        # Lambda's on-failure destination for fan-out tasks, and events refused as invalid.
        (dev.named("cloud-ws-dlq").outputs["arn"],): ["sqs:SendMessage"],
    }


def test_broadcaster_may_invoke_itself_and_nothing_else(dev: Deployment) -> None:
    broadcaster = dev.named("cloud-ws-broadcaster")
    resource = dev.named("cloud-ws-broadcaster-fanout-policy")
    assert resource.inputs["role"] == dev.named("cloud-ws-broadcaster-role").id
    assert json.loads(resource.inputs["policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "FanOutToItself",
                "Effect": "Allow",
                "Action": ["lambda:InvokeFunction"],
                "Resource": [broadcaster.outputs["arn"]],
            }
        ],
    }
    # No other role may invoke any function.
    for where, document in _role_documents(dev):
        for statement in _statements(document):
            if "lambda:InvokeFunction" in _as_list(statement["Action"]):
                assert where.name == resource.name, where.name


def test_only_the_broadcaster_touches_queues(dev: Deployment, prod: Deployment) -> None:
    for deployment in (dev, prod):
        queues = {q.outputs["arn"] for q in deployment.of_type("aws:sqs/queue:Queue")}
        for resource, document in _role_documents(deployment):
            for statement in _statements(document):
                if any(a.startswith("sqs:") for a in _as_list(statement["Action"])):
                    assert resource.name == "cloud-ws-broadcaster-policy", resource.name
                    assert set(statement["Resource"]) <= queues


def test_policy_builders_for_the_delivery_engine() -> None:
    queue = f"arn:aws:sqs:{REGION}:1:delivery"
    rule = f"arn:aws:events:{REGION}:1:rule/bus/r"
    document = policy.function_policy(
        spec.BROADCASTER,
        table_arns={t.role: f"arn:aws:dynamodb:{REGION}:1:table/{t.role}" for t in spec.TABLES},
        log_group_arn="arn:aws:logs:r:1:log-group:g",
        execution_arn="arn:aws:execute-api:r:1:abc",
        stage="live",
        delivery_queue_arn=queue,
    )
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["DeliveryQueue"]["Resource"] == [queue]
    assert "DeadLetterQueue" not in by_sid
    (statement,) = policy.delivery_queue_policy(queue, rule)["Statement"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule}}
    assert policy.redrive_policy("dlq", 5) == {"deadLetterTargetArn": "dlq", "maxReceiveCount": 5}
    assert policy.redrive_allow_policy(queue) == {"redrivePermission": "byQueue", "sourceQueueArns": [queue]}
