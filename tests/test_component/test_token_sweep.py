"""The token sweeper in the cloud: its function, its least-privilege policy and its every-minute schedule."""

from __future__ import annotations

import json

from contract import spec
from server.config import load_config
from tests.test_component.conftest import ACCOUNT, REGION, Deployment


def test_the_sweeper_runs_the_handler_with_the_management_endpoint(dev: Deployment) -> None:
    function = dev.named(f"cloud-ws-{spec.SWEEPER.function}")
    assert function.inputs["handler"] == "handlers.sweeper.handler" == spec.SWEEPER.handler
    assert function.inputs["timeout"] == spec.SWEEP.function_timeout_seconds
    assert spec.SWEEP.function_timeout_seconds > spec.SWEEP.horizon_seconds  # a run can wait out its horizon
    variables = function.inputs["environment"]["variables"]
    config = load_config({**variables, "AWS_REGION": REGION})
    assert config.management_endpoint == dev.exports["management_endpoint"]
    assert variables[spec.CONNECTIONS.env_var] == dev.named("cloud-ws-connections").outputs["name"]


def test_an_eventbridge_schedule_runs_it_every_minute_with_its_horizon(dev: Deployment) -> None:
    rule = dev.named("cloud-ws-sweeper-schedule")
    assert rule.inputs["scheduleExpression"] == "rate(1 minute)" == spec.SWEEP.schedule_expression
    assert "eventBusName" not in rule.inputs  # schedules run on the account's default bus
    assert "eventPattern" not in rule.inputs
    target = dev.named("cloud-ws-sweeper-schedule-target")
    assert target.inputs["rule"] == rule.outputs["name"]
    assert target.inputs["arn"] == dev.named("cloud-ws-sweeper").outputs["arn"]
    assert json.loads(target.inputs["input"]) == {
        spec.SWEEP_TASK_KEY: {"horizon_seconds": spec.SWEEP.horizon_seconds}
    }
    # A late or failed run is not retried: the next one is a minute away and reads the past minutes.
    assert target.inputs["retryPolicy"] == {"maximumEventAgeInSeconds": 60, "maximumRetryAttempts": 0}
    # The target waits for Lambda's leave, so the first run is not refused.
    permission = dev.named("cloud-ws-sweeper-schedule-invoke")
    assert permission.urn in target.dependencies
    assert permission.inputs == {
        "action": "lambda:InvokeFunction",
        "function": dev.named("cloud-ws-sweeper").outputs["name"],
        "principal": "events.amazonaws.com",
        "sourceArn": rule.outputs["arn"],
    }


def test_its_policy_is_the_index_query_the_deletes_and_delete_on_connections(dev: Deployment) -> None:
    """Least privilege: Query on the by-expiry index, the rows' deletion, @connections DELETE; no POST."""
    (api,) = dev.of_type("aws:apigatewayv2/api:Api")
    connections = dev.named("cloud-ws-connections").outputs["arn"]
    subscriptions = dev.named("cloud-ws-subscriptions").outputs["arn"]
    document = json.loads(dev.named("cloud-ws-sweeper-policy").inputs["policy"])
    by_sid = {statement["Sid"]: statement for statement in document["Statement"]}
    assert set(by_sid) == {
        "WriteOwnLogs",
        "ConnectionsTable",
        "ConnectionsIndexes",
        "SubscriptionsTable",
        "SubscriptionsIndexes",
        "ManageConnections",
    }
    assert by_sid["ConnectionsTable"]["Action"] == ["dynamodb:DeleteItem", "dynamodb:Query"]
    assert by_sid["ConnectionsTable"]["Resource"] == [connections]
    assert by_sid["ConnectionsIndexes"] == {
        "Sid": "ConnectionsIndexes",
        "Effect": "Allow",
        "Action": ["dynamodb:Query"],
        "Resource": [f"{connections}/index/{spec.CONNECTIONS_BY_EXPIRY_INDEX}"],
    }
    # A connection that answers 410 has its subscriptions removed as $disconnect would.
    assert by_sid["SubscriptionsTable"]["Resource"] == [subscriptions]
    assert by_sid["ManageConnections"]["Action"] == ["execute-api:ManageConnections"]
    assert by_sid["ManageConnections"]["Resource"] == [
        f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api.id}/dev/DELETE/@connections/*"
    ]


def test_the_connections_table_has_the_sparse_expiry_index(dev: Deployment) -> None:
    table = dev.named("cloud-ws-connections")
    (index,) = table.inputs["globalSecondaryIndexes"]
    assert index["name"] == spec.CONNECTIONS_BY_EXPIRY_INDEX
    assert index["projectionType"] == "KEYS_ONLY"
    assert {k["attributeName"]: k["keyType"] for k in index["keySchemas"]} == {
        "expiresMinute": "HASH",
        "tokenExpiresAt": "RANGE",
    }
    assert {a["name"]: a["type"] for a in table.inputs["attributes"]} == {
        "connectionId": "S",
        "expiresMinute": "N",
        "tokenExpiresAt": "N",
    }
