"""Trust under Pulumi's mocks: who may put events, who may watch, the alarms, reserved concurrency.

The producer restriction is the bus's resource policy (docs/security.md, "Trusted producers");
the access policy reaches every handler as ``ACCESS_POLICY`` and every watching AppSync resolver
as a constant; AppSync accepts only our app clients; the dead-letter queue has two alarms; the
route functions have reserved concurrency and the delivery mapping a cap.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract import environment, spec
from pulumi_component import WebSocketMonitoring, WebSocketMonitoringArgsError
from pulumi_component.appsync import client_id_regex
from pulumi_component.pipeline import DEAD_LETTER_AGE_ALARM_SECONDS
from pulumi_component.policy import producer_policy
from pulumi_component.settings import MAX_ACCESS_POLICY_BYTES, render_access
from tests.test_component.conftest import ACCOUNT, REGION, STACK_TYPE, Deployment, deploy

OTHER_ACCOUNT = "210987654321"
ORCHESTRATOR_ROLE = f"arn:aws:iam::{ACCOUNT}:role/orchestrator"
CI_ROLE = f"arn:aws:iam::{OTHER_ACCOUNT}:role/ci/deployer"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:cloud-ws-alerts"
ACCESS = {"team-a": ["alpha", "alpha-*"], "sre": ["*"]}
BASE: dict[str, Any] = {"user_pool_id": "eu-west-1_Pool", "user_pool_client_id": "client", "stage_name": "x"}


def _bus_policy(deployment: Deployment) -> dict[str, Any]:
    (resource,) = deployment.of_type("aws:cloudwatch/eventBusPolicy:EventBusPolicy")
    (bus,) = deployment.of_type("aws:cloudwatch/eventBus:EventBus")
    assert resource.name == "cloud-ws-bus-policy"
    assert resource.parent == deployment.component.urn
    assert resource.inputs["eventBusName"] == bus.outputs["name"]
    document: dict[str, Any] = json.loads(resource.inputs["policy"])
    return document


def _bus_arn(deployment: Deployment) -> str:
    (bus,) = deployment.of_type("aws:cloudwatch/eventBus:EventBus")
    arn: str = bus.outputs["arn"]
    return arn


def _variables(deployment: Deployment) -> dict[str, dict[str, str]]:
    functions = deployment.of_type("aws:lambda/function:Function")
    return {f.name: f.inputs["environment"]["variables"] for f in functions}


# -- trusted producers -------------------------------------------------------------------------------


def test_by_default_only_the_stacks_own_account_may_put_events(dev: Deployment) -> None:
    """No producers named: one Deny for every principal outside the account; nothing granted."""
    document = _bus_policy(dev)
    assert document == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OnlyTrustedProducers",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "events:PutEvents",
                "Resource": _bus_arn(dev),
                "Condition": {"StringNotEquals": {"aws:PrincipalAccount": [ACCOUNT]}},
            }
        ],
    }


def test_named_producers_are_the_only_ones_and_other_accounts_are_granted() -> None:
    deployment = deploy({"producers": json.dumps([ORCHESTRATOR_ROLE, CI_ROLE, OTHER_ACCOUNT])})
    bus_arn = _bus_arn(deployment)
    allow, deny = _bus_policy(deployment)["Statement"]
    # Another account's call needs the bus's leave too: its role and that account, nothing of ours.
    assert allow == {
        "Sid": "TrustedProducersInOtherAccounts",
        "Effect": "Allow",
        "Principal": {"AWS": [CI_ROLE, f"arn:aws:iam::{OTHER_ACCOUNT}:root"]},
        "Action": "events:PutEvents",
        "Resource": bus_arn,
    }
    # Denied unless in a listed account or a listed role: the stack's own account is no longer
    # trusted as a whole, only its orchestrator role.
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {
        "StringNotEquals": {"aws:PrincipalAccount": [OTHER_ACCOUNT]},
        "ArnNotEquals": {"aws:PrincipalArn": [ORCHESTRATOR_ROLE, CI_ROLE]},
    }


def test_producer_policy_builder_with_roles_of_the_own_account_only() -> None:
    bus_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/b"
    document = producer_policy(bus_arn, [ORCHESTRATOR_ROLE])
    (deny,) = document["Statement"]  # nothing to grant: our own roles use their IAM policies
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": [ORCHESTRATOR_ROLE]}}
    china = producer_policy("arn:aws-cn:events:cn-north-1:111111111111:event-bus/b", ["222222222222"])
    assert china["Statement"][0]["Principal"] == {"AWS": ["arn:aws-cn:iam::222222222222:root"]}


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"eventBusName": "shared", "producers": json.dumps([ORCHESTRATOR_ROLE])}, "cloud-ws:eventBusName"),
        ({"createEventBus": False, "producers": json.dumps([ACCOUNT])}, "cloud-ws:createEventBus"),
        ({"producers": json.dumps(["arn:aws:sts::123456789012:assumed-role/r/s"])}, "role session"),
        ({"producers": json.dumps(["1234"])}, "12-digit account ids"),
        ({"producers": json.dumps(["arn:aws:iam::123456789012:group/devs"])}, "roles or users"),
        ({"access": json.dumps(["sre"])}, "JSON object mapping Cognito groups"),
        ({"access": json.dumps({"sre": "*"})}, "must map to a list of project patterns"),
        ({"access": json.dumps({"team-a": ["Alpha"]})}, "project pattern 'Alpha'"),
        ({"access": json.dumps({"": ["*"]})}, "group names must be 1 to 128"),
        ({"access": "{not json"}, "JSON"),
        ({"alarmTopicArn": "alerts"}, "SNS topic ARN"),
        ({"routeReservedConcurrency": 0}, "0 would let no request through"),
        ({"routeReservedConcurrency": -2}, "at least 1, or -1"),
        ({"deliveryMaxConcurrency": 1001}, "between 2 and 1000"),
    ],
)
def test_bad_trust_settings_fail_naming_the_key_and_create_nothing(
    config: dict[str, Any], words: str
) -> None:
    deployment = deploy(config, stack="bad", allow_error=True)
    assert deployment.error is not None
    message = str(deployment.error)
    key = next(iter(k for k in config if k not in {"eventBusName", "createEventBus"}))
    assert f"cloud-ws:{key}" in message, message
    assert words in message, message
    assert [r.type for r in deployment.resources.values()] == [STACK_TYPE]


def test_component_refuses_bad_trust_arguments_naming_the_field() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"event_bus_name": "shared", "producers": [ACCOUNT]}, "[producers] cannot be enforced"),
        ({"producers": "123456789012"}, "[producers] must be a list"),
        ({"access": {"sre": ["*"], "ops": [1]}}, "[access] group 'ops' must map to a list"),
        (
            {"access": {f"group-{i}": ["project-*"] for i in range(200)}},
            f"[access] is {len(render_access({f'group-{i}': ['project-*'] for i in range(200)}))} bytes",
        ),
        ({"alarm_topic_arn": "arn:aws:sqs:eu-west-1:123456789012:q"}, "[alarm_topic_arn] must be an SNS"),
        ({"route_reserved_concurrency": 2.5}, "[route_reserved_concurrency] must be a whole number"),
    ]
    for args, message in cases:
        with pytest.raises(WebSocketMonitoringArgsError) as failure:
            WebSocketMonitoring("m", {**BASE, **args})  # type: ignore[typeddict-item]  # deliberately wrong
        assert message in str(failure.value), (args, str(failure.value))


def test_an_empty_producer_list_on_a_shared_bus_is_no_producer_list() -> None:
    deployment = deploy({"eventBusName": "shared", "producers": "[]"})
    assert deployment.of_type("aws:cloudwatch/eventBusPolicy:EventBusPolicy") == []


# -- access policy -----------------------------------------------------------------------------------


def test_access_policy_reaches_every_handler_and_defaults_to_none(bare: Deployment) -> None:
    for name, env in _variables(bare).items():
        assert env[environment.ACCESS_POLICY] == "{}", name  # deny by default
    deployment = deploy({"access": json.dumps(ACCESS)})
    by_function = _variables(deployment)
    assert len(by_function) == len(spec.FUNCTIONS)
    for name, env in by_function.items():
        assert json.loads(env[environment.ACCESS_POLICY]) == ACCESS, name
        assert env[environment.ACCESS_POLICY] == '{"sre":["*"],"team-a":["alpha","alpha-*"]}'


def test_prod_example_sets_an_access_policy(prod: Deployment) -> None:
    for name, env in _variables(prod).items():
        policy = json.loads(env[environment.ACCESS_POLICY])
        assert policy, name
        assert all(isinstance(p, list) for p in policy.values()), name
        assert all(policy.values()), name


def test_access_policy_is_in_every_watching_resolver_and_only_there() -> None:
    deployment = deploy({"access": json.dumps(ACCESS)})
    constant = f"const ACCESS_POLICY = {json.dumps(ACCESS, sort_keys=True)};"
    resolvers = {
        (r.inputs["type"], r.inputs["field"]): r.inputs["code"]
        for r in deployment.of_type("aws:appsync/resolver:Resolver")
    }
    for (type_name, field), code in resolvers.items():
        if type_name == "Mutation":
            assert "ACCESS_POLICY" not in code, field  # the publisher is IAM, not a user
        else:
            assert constant in code, field


def test_the_largest_access_policy_still_fits_lambdas_environment() -> None:
    """Lambda allows 4 KB of environment variables per function, names and values together."""
    access: dict[str, list[str]] = {}
    while len(render_access(access).encode()) < MAX_ACCESS_POLICY_BYTES - 40:
        access[f"team-{len(access):03d}"] = ["project-*"]
    deployment = deploy(
        {"access": json.dumps(access), "extraClientIds": json.dumps(["dash456789abcdefghijklmnop"])}
    )
    for name, env in _variables(deployment).items():
        size = sum(len(k.encode()) + len(v.encode()) for k, v in env.items())
        assert size < 4096, (name, size)


# -- AppSync accepts only our app clients ---------------------------------------------------------


def test_appsync_accepts_only_our_app_clients(dev: Deployment) -> None:
    (api,) = dev.of_type("aws:appsync/graphQLApi:GraphQLApi")
    (client,) = dev.of_type("aws:cognito/userPoolClient:UserPoolClient")
    assert api.inputs["userPoolConfig"]["appIdClientRegex"] == f"^({client.id})$"
    existing = deploy(
        {"userPoolId": "eu-west-1_Existing1", "userPoolClientId": "abc123", "extraClientIds": ["dash+456"]}
    )
    (api,) = existing.of_type("aws:appsync/graphQLApi:GraphQLApi")
    assert api.inputs["userPoolConfig"]["appIdClientRegex"] == r"^(abc123|dash\+456)$"


def test_client_regex_matches_exactly_the_clients() -> None:
    import re

    pattern = re.compile(client_id_regex(["abc", "d+e"]))
    for accepted in ("abc", "d+e"):
        assert pattern.match(accepted), accepted
    for refused in ("abcd", "xabc", "dde"):
        assert not pattern.match(refused), refused


# -- alarms ------------------------------------------------------------------------------------------


def test_dead_letter_queue_alarms_on_depth_and_age(dev: Deployment) -> None:
    queue = dev.named("cloud-ws-dlq")
    alarms = {a.name: a.inputs for a in dev.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert set(alarms) == {"cloud-ws-dlq-depth-alarm", "cloud-ws-dlq-age-alarm"}
    for alarm in alarms.values():
        assert alarm["namespace"] == "AWS/SQS"
        assert alarm["dimensions"] == {"QueueName": queue.outputs["name"]}
        assert alarm["statistic"] == "Maximum"
        assert alarm["comparisonOperator"] == "GreaterThanThreshold"
        assert alarm["treatMissingData"] == "notBreaching"  # an idle, empty queue publishes nothing
        assert "alarmActions" not in alarm  # no topic configured
    depth = alarms["cloud-ws-dlq-depth-alarm"]
    assert depth["metricName"] == "ApproximateNumberOfMessagesVisible"
    assert depth["threshold"] == 0
    assert depth["period"] == 60
    age = alarms["cloud-ws-dlq-age-alarm"]
    assert age["metricName"] == "ApproximateAgeOfOldestMessage"
    assert age["threshold"] == DEAD_LETTER_AGE_ALARM_SECONDS == 24 * 3600
    # SQS drops a dead letter 14 days after its first enqueue: the alarm fires well before.
    assert queue.inputs["messageRetentionSeconds"] // 2 > DEAD_LETTER_AGE_ALARM_SECONDS


def test_alarms_notify_the_configured_topic() -> None:
    deployment = deploy({"alarmTopicArn": TOPIC})
    for alarm in deployment.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
        assert alarm.inputs["alarmActions"] == [TOPIC]
        assert alarm.inputs["okActions"] == [TOPIC]


# -- concurrency -------------------------------------------------------------------------------------


def test_route_functions_have_reserved_concurrency_and_the_broadcaster_a_capped_mapping(
    dev: Deployment,
) -> None:
    for route in spec.ROUTES:
        assert dev.named(f"cloud-ws-{route.function}").inputs["reservedConcurrentExecutions"] == 25
    # The broadcaster is bounded by its mapping's cap instead (its fan-out tasks are not).
    assert "reservedConcurrentExecutions" not in dev.named("cloud-ws-broadcaster").inputs
    (mapping,) = dev.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    assert mapping.inputs["scalingConfig"] == {"maximumConcurrency": 50}


def test_reserved_concurrency_is_configurable_and_can_be_turned_off() -> None:
    for value in (100, -1):
        deployment = deploy({"routeReservedConcurrency": value})
        for route in spec.ROUTES:
            function = deployment.named(f"cloud-ws-{route.function}")
            assert function.inputs["reservedConcurrentExecutions"] == value
