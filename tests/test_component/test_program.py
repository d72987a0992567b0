"""The Pulumi program and the component, run for real under Pulumi's mocks: the resource graph."""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pytest
from moto.events.models import EventPattern

from contract import spec
from contract.outputs import GRAPHQL_REALTIME_URL, GRAPHQL_URL, REQUIRED_KEYS
from pulumi_component.archive import build_archive
from server.config import load_config
from tests.test_component.conftest import ACCOUNT, COMPONENT_TYPE, REGION, STACK_TYPE, Deployment, Registered

OUTPUT_KEYS = REQUIRED_KEYS  # the outputs contract, as its consumers read it
GRAPHQL_KEYS = frozenset({GRAPHQL_URL, GRAPHQL_REALTIME_URL})  # exported when AppSync is enabled
PROGRAM_TYPES = {"aws:cognito/userPool:UserPool", "aws:cognito/userPoolClient:UserPoolClient"}
ALL_FUNCTIONS = spec.FUNCTIONS


def _function(deployment: Deployment, route: spec.RouteSpec) -> Registered:
    return deployment.named(f"cloud-ws-{route.function}")


def _by_name(resources: list[Registered]) -> dict[str, Registered]:
    return {r.name: r for r in resources}


# -- the graph ------------------------------------------------------------------------------------


def test_everything_but_the_user_pool_is_inside_the_component(dev: Deployment) -> None:
    """Every resource the component creates descends from it; the program's user pool sits beside it."""
    component = dev.component
    (stack,) = dev.of_type(STACK_TYPE)
    assert component.parent == stack.urn
    outside = []
    for resource in dev.resources.values():
        if resource.type in {STACK_TYPE, COMPONENT_TYPE}:
            continue
        if resource.type in PROGRAM_TYPES:
            assert resource.parent == stack.urn
            continue
        if component not in dev.ancestors(resource):
            outside.append(resource.name)
    assert outside == []
    assert {r.type for r in dev.resources.values()} >= PROGRAM_TYPES


def test_children_are_named_after_the_component(dev: Deployment) -> None:
    for resource in dev.resources.values():
        if resource.parent == dev.component.urn:
            assert resource.name.startswith("cloud-ws-"), resource.name


def test_one_of_each_resource_per_spec_entry(dev: Deployment) -> None:
    counts: dict[str, int] = {}
    for resource in dev.resources.values():
        counts[resource.type] = counts.get(resource.type, 0) + 1
    routes, functions = len(spec.ROUTES), len(ALL_FUNCTIONS)
    assert counts["aws:dynamodb/table:Table"] == len(spec.TABLES)
    assert counts["aws:lambda/function:Function"] == functions
    # + API Gateway's logging role (dev sets it), AppSync's logging and history roles
    assert counts["aws:iam/role:Role"] == functions + 3
    # + the broadcaster's self-invocation and its AppSync publishing, AppSync's logging and history
    assert counts["aws:iam/rolePolicy:RolePolicy"] == functions + 4
    assert counts["aws:cloudwatch/logGroup:LogGroup"] == functions + 2  # + the access logs, AppSync's
    assert counts["aws:appsync/dataSource:DataSource"] == 2  # NONE (publish, subscribe) and the history
    assert counts["aws:appsync/resolver:Resolver"] == 6  # every Mutation, Subscription and Query field
    assert counts["aws:apigatewayv2/integration:Integration"] == routes
    assert counts["aws:apigatewayv2/route:Route"] == routes
    # + the sweeper's schedule (the delivery rule reaches a queue, not a function)
    assert counts["aws:lambda/permission:Permission"] == routes + 1
    assert counts["aws:cloudwatch/eventRule:EventRule"] == 2  # the delivery rule and the sweeper's schedule
    assert counts["aws:cloudwatch/eventTarget:EventTarget"] == 2
    assert counts["aws:sqs/queue:Queue"] == 2  # the delivery queue and its dead-letter queue
    assert counts["aws:sqs/queuePolicy:QueuePolicy"] == 2
    for single in (
        "aws:apigatewayv2/api:Api",
        "aws:apigatewayv2/deployment:Deployment",
        "aws:apigatewayv2/stage:Stage",
        "aws:cloudwatch/eventBus:EventBus",
        "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy",
        "aws:lambda/eventSourceMapping:EventSourceMapping",
        "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig",
        "aws:apigateway/account:Account",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:cognito/userPool:UserPool",
        "aws:cognito/userPoolClient:UserPoolClient",
        "aws:appsync/graphQLApi:GraphQLApi",
    ):
        assert counts.get(single) == 1, single


# -- API Gateway --------------------------------------------------------------------------------------


def test_websocket_api_routes_on_the_action_field(dev: Deployment) -> None:
    (api,) = dev.of_type("aws:apigatewayv2/api:Api")
    assert api.inputs["protocolType"] == "WEBSOCKET"
    assert api.inputs["routeSelectionExpression"] == "$request.body.action" == spec.ROUTE_SELECTION_EXPRESSION


def test_each_spec_route_reaches_its_handler(dev: Deployment) -> None:
    (api,) = dev.of_type("aws:apigatewayv2/api:Api")
    routes = {r.inputs["routeKey"]: r for r in dev.of_type("aws:apigatewayv2/route:Route")}
    integrations = {i.id: i for i in dev.of_type("aws:apigatewayv2/integration:Integration")}
    assert (
        set(routes)
        == {r.route_key for r in spec.ROUTES}
        == {
            "$connect",
            "$disconnect",
            "$default",
            "subscribe",
            "unsubscribe",
            "ping",
            "list_deployments",
        }
    )
    for route in spec.ROUTES:
        api_route = routes[route.route_key]
        assert api_route.inputs["apiId"] == api.id
        assert api_route.inputs["authorizationType"] == "NONE"
        integration = integrations[api_route.inputs["target"].removeprefix("integrations/")]
        function = _function(dev, route)
        assert integration.inputs["apiId"] == api.id
        assert integration.inputs["integrationType"] == "AWS_PROXY"
        assert integration.inputs["integrationMethod"] == "POST"
        assert integration.inputs["integrationUri"] == function.outputs["invokeArn"]
        assert function.inputs["handler"] == route.handler == f"handlers.{route.module}.handler"


def test_stage_throttling_comes_from_config(dev: Deployment, prod: Deployment, bare: Deployment) -> None:
    for deployment, burst, rate in ((dev, 200, 100.0), (prod, 5000, 10000.0), (bare, 5000, 10000.0)):
        (stage,) = deployment.of_type("aws:apigatewayv2/stage:Stage")
        settings = stage.inputs["defaultRouteSettings"]
        assert settings["throttlingBurstLimit"] == burst
        assert settings["throttlingRateLimit"] == rate


def test_stage_logs_errors_and_never_a_token(dev: Deployment) -> None:
    (stage,) = dev.of_type("aws:apigatewayv2/stage:Stage")
    (deployment,) = dev.of_type("aws:apigatewayv2/deployment:Deployment")
    settings = stage.inputs["defaultRouteSettings"]
    assert settings["loggingLevel"] == "ERROR"
    assert settings["dataTraceEnabled"] is False  # data trace would log whole frames
    assert stage.inputs["deploymentId"] == deployment.id
    assert stage.inputs["name"] == "dev"
    access = stage.inputs["accessLogSettings"]
    assert access["destinationArn"] == dev.named("cloud-ws-access-logs").outputs["arn"]
    log_format = json.loads(access["format"])
    values = list(log_format.values())
    assert "$context.connectionId" in values
    assert "$context.routeKey" in values
    assert all(re.fullmatch(r"\$context\.[A-Za-z.]+", v) for v in values), values
    lowered = access["format"].lower()
    for secret in (
        "token",
        "querystring",
        "header",
        "authorization",
        "protocol",
        "body",
        "$request",
        "$input",
    ):
        assert secret not in lowered, secret


def test_deployment_is_redone_when_the_wiring_changes(dev: Deployment, prod: Deployment) -> None:
    (deployment,) = dev.of_type("aws:apigatewayv2/deployment:Deployment")
    trigger = deployment.inputs["triggers"]["routes"]
    assert re.fullmatch(r"[0-9a-f]{64}", trigger)
    (other,) = prod.of_type("aws:apigatewayv2/deployment:Deployment")
    assert other.inputs["triggers"]["routes"] == trigger  # same routes and integrations, same deployment


def test_api_gateway_logging_role_only_where_asked(dev: Deployment, prod: Deployment) -> None:
    (account,) = dev.of_type("aws:apigateway/account:Account")
    role = dev.named("cloud-ws-apigw-logs-role")
    assert account.inputs["cloudwatchRoleArn"] == role.outputs["arn"]
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    (attachment,) = dev.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.inputs["role"] == role.outputs["name"]
    assert attachment.inputs["policyArn"].endswith(
        ":policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
    )
    assert prod.of_type("aws:apigateway/account:Account") == []
    assert prod.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []


# -- DynamoDB -------------------------------------------------------------------------------------------


def test_tables_are_built_from_the_spec(dev: Deployment) -> None:
    for table in spec.TABLES:
        resource = dev.named(f"cloud-ws-{table.role}")
        shape = table.create_table_kwargs("x")
        inputs = resource.inputs
        assert inputs["billingMode"] == "PAY_PER_REQUEST" == shape["BillingMode"]
        keys = {k["KeyType"]: k["AttributeName"] for k in shape["KeySchema"]}
        assert inputs["hashKey"] == keys["HASH"]
        assert inputs.get("rangeKey") == keys.get("RANGE")
        assert sorted((a["name"], a["type"]) for a in inputs["attributes"]) == sorted(
            (a["AttributeName"], a["AttributeType"]) for a in shape["AttributeDefinitions"]
        )
        expected_indexes = [
            (
                i["IndexName"],
                i["Projection"]["ProjectionType"],
                [(k["AttributeName"], k["KeyType"]) for k in i["KeySchema"]],
            )
            for i in shape.get("GlobalSecondaryIndexes", [])
        ]
        actual_indexes = [
            (i["name"], i["projectionType"], [(k["attributeName"], k["keyType"]) for k in i["keySchemas"]])
            for i in inputs.get("globalSecondaryIndexes", [])
        ]
        assert actual_indexes == expected_indexes
        assert inputs["ttl"] == {"attributeName": table.ttl_attribute, "enabled": True}
        assert inputs["pointInTimeRecovery"] == {"enabled": True}
        assert inputs["serverSideEncryption"] == {"enabled": True}
        assert "name" not in inputs  # Pulumi names it: two stacks in one account never collide


def test_subscriptions_index_exists_for_disconnect_cleanup(dev: Deployment) -> None:
    inputs = dev.named("cloud-ws-subscriptions").inputs
    assert [i["name"] for i in inputs["globalSecondaryIndexes"]] == [spec.SUBSCRIPTIONS_BY_CONNECTION_INDEX]


# -- Lambda ----------------------------------------------------------------------------------------------


def test_functions_run_arm64_python_from_the_shared_archive(dev: Deployment, bare: Deployment) -> None:
    archives = set()
    for route in ALL_FUNCTIONS:
        function = _function(dev, route)
        assert function.inputs["runtime"] == "python3.13"
        assert function.inputs["architectures"] == ["arm64"]
        assert function.inputs["handler"] == route.handler
        code = function.inputs["code"]
        assert isinstance(code, pulumi.FileArchive)
        archives.add(code.path)
        broadcaster = route is spec.BROADCASTER
        assert function.inputs["memorySize"] == (512 if broadcaster else 256)
        timeout = 60 if broadcaster else spec.SWEEP.function_timeout_seconds if route is spec.SWEEPER else 10
        assert function.inputs["timeout"] == timeout
        assert function.inputs["role"] == dev.named(f"cloud-ws-{route.function}-role").outputs["arn"]
    assert archives == {str(build_archive().path)}


def test_each_function_logs_to_its_own_group_with_retention(dev: Deployment, prod: Deployment) -> None:
    for deployment, days in ((dev, 7), (prod, 90)):
        for route in ALL_FUNCTIONS:
            function = _function(deployment, route)
            group = deployment.named(f"cloud-ws-{route.function}-logs")
            assert group.inputs["retentionInDays"] == days
            assert function.inputs["loggingConfig"] == {
                "logFormat": "Text",
                "logGroup": group.outputs["name"],
            }
        assert deployment.named("cloud-ws-access-logs").inputs["retentionInDays"] == days


def test_function_environment_is_what_the_handlers_validate(dev: Deployment) -> None:
    pool = dev.of_type("aws:cognito/userPool:UserPool")[0]
    client = dev.of_type("aws:cognito/userPoolClient:UserPoolClient")[0]
    endpoint = dev.exports["management_endpoint"]
    for route in ALL_FUNCTIONS:
        variables = _function(dev, route).inputs["environment"]["variables"]
        for table in spec.TABLES:
            assert variables[table.env_var] == dev.named(f"cloud-ws-{table.role}").outputs["name"]
        assert variables["COGNITO_USER_POOL_ID"] == pool.id
        assert variables["COGNITO_CLIENT_IDS"] == client.id
        assert variables["CONNECTION_TTL_HOURS"] == "12"
        assert variables["HISTORY_TTL_HOURS"] == "24"
        assert variables["LOG_LEVEL"] == "DEBUG"
        # The handlers' own start-up validation accepts exactly this environment.
        config = load_config({**variables, "AWS_REGION": REGION})
        assert config.connection_ttl_seconds == 12 * 3600
        assert config.auth.issuer == f"https://cognito-idp.{REGION}.amazonaws.com/{pool.id}"
        if route is spec.BROADCASTER:
            queue_url = dev.named("cloud-ws-delivery-queue").outputs["url"]
            assert variables["MANAGEMENT_ENDPOINT"] == endpoint == config.management_endpoint
            assert variables["DELIVERY_QUEUE_URL"] == queue_url == config.delivery_queue_url
            # Lambda names the function itself (AWS_LAMBDA_FUNCTION_NAME): no variable, no cycle.
            assert "FANOUT_FUNCTION_NAME" not in variables
            name = _function(dev, route).outputs["name"]
            lambda_env = {**variables, "AWS_REGION": REGION, "AWS_LAMBDA_FUNCTION_NAME": name}
            assert load_config(lambda_env).fanout_function == name
        elif route is spec.SWEEPER:
            assert variables["MANAGEMENT_ENDPOINT"] == endpoint == config.management_endpoint  # no event
            assert "DELIVERY_QUEUE_URL" not in variables
        else:
            assert "MANAGEMENT_ENDPOINT" not in variables  # route handlers use the event's own endpoint
            assert "DELIVERY_QUEUE_URL" not in variables
            assert "APPSYNC_GRAPHQL_URL" not in variables  # only the broadcaster publishes


def test_subscribe_groups_reach_the_handlers(prod: Deployment) -> None:
    from tests.test_component.conftest import deploy

    # A YAML list (Pulumi.prod.yaml) or "a, b" as `pulumi config set` stores it.
    for deployment in (prod, deploy({"subscribeGroups": "deployers, sre"})):
        for route in ALL_FUNCTIONS:
            variables = _function(deployment, route).inputs["environment"]["variables"]
            assert load_config({**variables, "AWS_REGION": REGION}).subscribe_groups == {"deployers", "sre"}


# -- permissions ---------------------------------------------------------------------------------------


def test_api_gateway_may_invoke_each_route_function_only_through_this_api_and_stage(dev: Deployment) -> None:
    (api,) = dev.of_type("aws:apigatewayv2/api:Api")
    permissions = _by_name(dev.of_type("aws:lambda/permission:Permission"))
    for route in spec.ROUTES:
        permission = permissions[f"cloud-ws-{route.function}-invoke"]
        assert permission.inputs["action"] == "lambda:InvokeFunction"
        assert permission.inputs["principal"] == "apigateway.amazonaws.com"
        assert permission.inputs["function"] == _function(dev, route).outputs["name"]
        execution_arn = api.outputs["executionArn"]
        assert execution_arn == f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api.id}"
        assert permission.inputs["sourceArn"] == f"{execution_arn}/dev/{route.route_key}"


def test_only_api_gateway_may_invoke_functions_from_outside(dev: Deployment) -> None:
    """The broadcaster has no resource policy: its mapping and its fan-out use its own role.

    Besides API Gateway, EventBridge may invoke the token sweeper, on behalf of its schedule only.
    """
    permissions = dev.of_type("aws:lambda/permission:Permission")
    from_events = [p for p in permissions if p.inputs["principal"] == "events.amazonaws.com"]
    assert [p.name for p in from_events] == ["cloud-ws-sweeper-schedule-invoke"]
    assert from_events[0].inputs["function"] == _function(dev, spec.SWEEPER).outputs["name"]
    assert from_events[0].inputs["sourceArn"] == dev.named("cloud-ws-sweeper-schedule").outputs["arn"]
    permissions = [p for p in permissions if p not in from_events]
    assert {p.inputs["principal"] for p in permissions} == {"apigateway.amazonaws.com"}  # not empty
    broadcaster = _function(dev, spec.BROADCASTER).outputs["name"]
    assert all(p.inputs["function"] != broadcaster for p in permissions)


# -- EventBridge --------------------------------------------------------------------------------------


def _envelope(source: str, detail: dict[str, Any], detail_type: str = "deployment.status") -> Any:
    """The plugin's envelope as EventBridge hands it to rules (docs/design.md, "Event envelope")."""
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": "2026-11-26T10:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": detail,
    }


DETAIL = {
    "deployment_id": "D1BRV40",
    "event_id": "9f1c6f5e-8a43-4c55-9d0e-0b0d2f3c6a11",
    "data": {"status": "deploying", "current_layer": 2, "total_layers": 4},
    "timestamp": "2026-11-26T10:05:00Z",
}


def test_rule_pattern_matches_the_plugin_envelope(dev: Deployment) -> None:
    rule = dev.named("cloud-ws-rule")
    assert json.loads(rule.inputs["eventPattern"]) == spec.event_pattern("cloud.orchestrator")
    pattern = EventPattern.load(rule.inputs["eventPattern"])
    for detail_type in ("deployment.status", "stack.deployed", "stack.failed", "log.created", "custom.thing"):
        assert pattern.matches_event(_envelope("cloud.orchestrator", DETAIL, detail_type))
    assert not pattern.matches_event(_envelope("someone.else", DETAIL))
    assert not pattern.matches_event(_envelope("cloud.orchestrator", {"data": {}}))  # no deployment


def test_rule_uses_the_configured_source_and_bus() -> None:
    from tests.test_component.conftest import deploy

    deployment = deploy({"eventSource": "acme.deployer", "eventBusName": "shared"})
    rule = deployment.named("cloud-ws-rule")
    assert rule.inputs["eventBusName"] == "shared"
    pattern = EventPattern.load(rule.inputs["eventPattern"])
    assert pattern.matches_event(_envelope("acme.deployer", DETAIL))
    assert not pattern.matches_event(_envelope("cloud.orchestrator", DETAIL))
    assert deployment.of_type("aws:cloudwatch/eventBus:EventBus") == []
    assert deployment.exports["event_bus_name"] == "shared"
    assert deployment.exports["event_source"] == "acme.deployer"


def test_dedicated_bus_feeds_the_delivery_queue_with_retries_and_a_dead_letter_queue(dev: Deployment) -> None:
    (bus,) = dev.of_type("aws:cloudwatch/eventBus:EventBus")
    rule = dev.named("cloud-ws-rule")
    target = dev.named("cloud-ws-target")
    queue = dev.named("cloud-ws-delivery-queue")
    dead_letters = dev.named("cloud-ws-dlq")
    assert rule.inputs["eventBusName"] == bus.outputs["name"] == dev.exports["event_bus_name"]
    assert target.inputs["rule"] == rule.outputs["name"]
    assert target.inputs["eventBusName"] == bus.outputs["name"]
    # The rule feeds the queue, never the function.
    assert target.inputs["arn"] == queue.outputs["arn"]
    assert target.inputs["arn"] != _function(dev, spec.BROADCASTER).outputs["arn"]
    assert "roleArn" not in target.inputs  # SQS targets are authorised by the queue policy
    assert "sqsTarget" not in target.inputs  # a standard queue: no message group
    assert target.inputs["retryPolicy"] == {"maximumEventAgeInSeconds": 3600, "maximumRetryAttempts": 64}
    assert target.inputs["deadLetterConfig"] == {"arn": dead_letters.outputs["arn"]}
    assert dead_letters.inputs["sqsManagedSseEnabled"] is True
    assert dead_letters.inputs["messageRetentionSeconds"] == 14 * 24 * 3600


def test_delivery_queue_is_standard_encrypted_and_redrives_to_the_dead_letter_queue(dev: Deployment) -> None:
    queue = dev.named("cloud-ws-delivery-queue")
    dead_letters = dev.named("cloud-ws-dlq")
    assert queue.inputs.get("fifoQueue") in (None, False)
    assert queue.inputs["sqsManagedSseEnabled"] is True
    assert "maxMessageSize" not in queue.inputs  # SQS's default 256 KiB, EventBridge's own event limit
    assert json.loads(queue.inputs["redrivePolicy"]) == {
        "deadLetterTargetArn": dead_letters.outputs["arn"],
        "maxReceiveCount": spec.DELIVERY.max_receive_count,
    }
    # A dead letter keeps its first enqueue time: the DLQ must outlive the source queue's retention.
    assert queue.inputs["messageRetentionSeconds"] < dead_letters.inputs["messageRetentionSeconds"]
    (allow,) = dev.of_type("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
    assert allow.inputs["queueUrl"] == dead_letters.outputs["url"]
    assert json.loads(allow.inputs["redriveAllowPolicy"]) == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [queue.outputs["arn"]],
    }


def test_delivery_queue_accepts_only_our_rule(dev: Deployment) -> None:
    queue = dev.named("cloud-ws-delivery-queue")
    rule = dev.named("cloud-ws-rule")
    queue_policy = dev.named("cloud-ws-delivery-queue-policy")
    assert queue_policy.inputs["queueUrl"] == queue.outputs["url"]
    document = json.loads(queue_policy.inputs["policy"])
    assert document["Statement"] == [
        {
            "Sid": "EventBridgeDeliveries",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue.outputs["arn"],
            "Condition": {"ArnEquals": {"aws:SourceArn": rule.outputs["arn"]}},
        }
    ]
    target = dev.named("cloud-ws-target")
    assert queue_policy.urn in target.dependencies  # EventBridge may send before the target exists


def test_mapping_hands_the_broadcaster_batches_and_takes_back_only_failed_records(dev: Deployment) -> None:
    (mapping,) = dev.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    assert mapping.name == "cloud-ws-delivery-mapping"
    assert mapping.inputs["eventSourceArn"] == dev.named("cloud-ws-delivery-queue").outputs["arn"]
    assert mapping.inputs["functionName"] == _function(dev, spec.BROADCASTER).outputs["arn"]
    assert mapping.inputs["batchSize"] == spec.DELIVERY.batch_size == 10
    assert mapping.inputs["maximumBatchingWindowInSeconds"] == spec.DELIVERY.max_batching_window_seconds
    # Above 10 messages AWS requires a batching window of at least 1 s.
    assert spec.DELIVERY.batch_size <= 10 or spec.DELIVERY.max_batching_window_seconds >= 1
    assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    # A cap by default: uncapped, the mapping could take an account's whole Lambda concurrency.
    assert mapping.inputs["scalingConfig"] == {"maximumConcurrency": 50}
    assert "provisionedPollerConfig" not in mapping.inputs  # standard mode unless pollers are asked for
    # Lambda checks at creation that the function's role may read the queue.
    assert dev.named("cloud-ws-broadcaster-policy").urn in mapping.dependencies


def test_visibility_timeout_is_at_least_six_times_the_broadcaster_timeout(
    dev: Deployment, prod: Deployment, bare: Deployment
) -> None:
    from tests.test_component.conftest import deploy

    longer = deploy({"broadcasterTimeoutSeconds": 300, "deliveryMaxConcurrency": 50})
    for deployment, timeout in ((dev, 60), (prod, 60), (bare, 60), (longer, 300)):
        function = _function(deployment, spec.BROADCASTER)
        assert function.inputs["timeout"] == timeout
        visibility = deployment.named("cloud-ws-delivery-queue").inputs["visibilityTimeoutSeconds"]
        assert visibility >= 6 * timeout
        assert visibility >= spec.DELIVERY.visibility_timeout_seconds
    assert spec.DELIVERY.visibility_timeout_seconds >= 6 * spec.DELIVERY.function_timeout_seconds
    (mapping,) = longer.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    assert mapping.inputs["scalingConfig"] == {"maximumConcurrency": 50}


def test_pollers_kept_ready_put_the_mapping_in_provisioned_mode_capped_by_pollers() -> None:
    """AWS refuses MaximumConcurrency beside pollers: the cap moves to MaximumPollers."""
    from tests.test_component.conftest import deploy

    fixed = deploy({"deliveryMinPollers": 5})
    growing = deploy({"deliveryMinPollers": 5, "deliveryMaxPollers": 40})
    for deployment, most in ((fixed, 5), (growing, 40)):
        assert deployment.error is None
        (mapping,) = deployment.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
        assert mapping.inputs["provisionedPollerConfig"] == {"minimumPollers": 5, "maximumPollers": most}
        assert "scalingConfig" not in mapping.inputs


def test_resources_of_earlier_stacks_keep_their_names_types_and_parent(dev: Deployment) -> None:
    """The delivery queue was added, nothing moved: existing stacks update in place, no alias needed."""
    kept = {
        "cloud-ws-broadcaster": "aws:lambda/function:Function",
        "cloud-ws-broadcaster-role": "aws:iam/role:Role",
        "cloud-ws-broadcaster-policy": "aws:iam/rolePolicy:RolePolicy",
        "cloud-ws-broadcaster-async": "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig",
        "cloud-ws-rule": "aws:cloudwatch/eventRule:EventRule",
        "cloud-ws-target": "aws:cloudwatch/eventTarget:EventTarget",
        "cloud-ws-dlq": "aws:sqs/queue:Queue",
        "cloud-ws-dlq-policy": "aws:sqs/queuePolicy:QueuePolicy",
    }
    for name, typ in kept.items():
        resource = dev.named(name)
        assert resource.type == typ, name
        assert resource.parent == dev.component.urn, name
        assert resource.urn.endswith(f"{COMPONENT_TYPE}${typ}::{name}"), resource.urn


def test_dead_letter_queue_accepts_only_our_rule(dev: Deployment) -> None:
    queue = dev.named("cloud-ws-dlq")
    rule = dev.named("cloud-ws-rule")
    queue_policy = dev.named("cloud-ws-dlq-policy")
    assert queue_policy.inputs["queueUrl"] == queue.outputs["url"]
    document = json.loads(queue_policy.inputs["policy"])
    assert document["Statement"] == [
        {
            "Sid": "EventBridgeDeadLetters",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue.outputs["arn"],
            "Condition": {"ArnEquals": {"aws:SourceArn": rule.outputs["arn"]}},
        }
    ]


def test_fanout_task_failures_after_lambda_retries_go_to_the_dead_letter_queue(dev: Deployment) -> None:
    (config,) = dev.of_type("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig")
    queue = dev.named("cloud-ws-dlq")
    assert config.inputs["functionName"] == _function(dev, spec.BROADCASTER).outputs["name"]
    assert config.inputs["maximumRetryAttempts"] == 2
    assert config.inputs["destinationConfig"] == {"onFailure": {"destination": queue.outputs["arn"]}}


def test_default_bus_when_asked_not_to_create_one() -> None:
    from tests.test_component.conftest import deploy

    deployment = deploy({"createEventBus": False})
    rule = deployment.named("cloud-ws-rule")
    assert rule.inputs["eventBusName"] == "default"
    assert deployment.of_type("aws:cloudwatch/eventBus:EventBus") == []
    assert deployment.exports["event_bus_name"] == "default"


# -- Cognito and outputs -----------------------------------------------------------------------------


def test_program_creates_a_user_pool_and_public_client_when_none_is_configured(dev: Deployment) -> None:
    (pool,) = dev.of_type("aws:cognito/userPool:UserPool")
    (client,) = dev.of_type("aws:cognito/userPoolClient:UserPoolClient")
    assert pool.inputs["adminCreateUserConfig"] == {"allowAdminCreateUserOnly": True}
    assert client.inputs["userPoolId"] == pool.id
    assert client.inputs["generateSecret"] is False
    assert "ALLOW_USER_PASSWORD_AUTH" in client.inputs["explicitAuthFlows"]
    assert dev.exports["user_pool_id"] == pool.id
    assert dev.exports["user_pool_client_id"] == client.id


def test_existing_pool_is_trusted_and_nothing_cognito_is_created() -> None:
    from tests.test_component.conftest import deploy

    deployment = deploy(
        {"userPoolId": "eu-west-1_Existing1", "userPoolClientId": "abc123", "extraClientIds": ["dash456"]}
    )
    assert [r for r in deployment.resources.values() if r.type.startswith("aws:cognito/")] == []
    assert deployment.exports["user_pool_id"] == "eu-west-1_Existing1"
    assert deployment.exports["user_pool_client_id"] == "abc123"
    variables = _function(deployment, spec.ROUTES[0]).inputs["environment"]["variables"]
    assert variables["COGNITO_USER_POOL_ID"] == "eu-west-1_Existing1"
    assert variables["COGNITO_CLIENT_IDS"] == "abc123,dash456"


def test_outputs_are_exactly_the_design_contract(dev: Deployment, prod: Deployment, bare: Deployment) -> None:
    for deployment, stage in ((dev, "dev"), (prod, "live"), (bare, "staging")):
        exports = deployment.exports
        assert set(exports) == OUTPUT_KEYS | GRAPHQL_KEYS
        assert all(isinstance(v, str) and v for v in exports.values()), exports
        (api,) = deployment.of_type("aws:apigatewayv2/api:Api")
        host = f"{api.id}.execute-api.{REGION}.amazonaws.com"
        assert exports["websocket_url"] == f"wss://{host}/{stage}"
        assert exports["management_endpoint"] == f"https://{host}/{stage}"
        assert exports["region"] == REGION
        assert exports["event_source"] == "cloud.orchestrator"
        assert exports["connections_table_name"] == deployment.named("cloud-ws-connections").outputs["name"]
        (graphql,) = deployment.of_type("aws:appsync/graphQLApi:GraphQLApi")
        assert exports["graphql_url"] == f"https://{graphql.id}.appsync-api.{REGION}.amazonaws.com/graphql"
        assert exports["graphql_realtime_url"] == (
            f"wss://{graphql.id}.appsync-realtime-api.{REGION}.amazonaws.com/graphql"
        )
    assert prod.exports["event_bus_name"] == "orchestrator-events"


def test_stage_defaults_to_the_stack_name(bare: Deployment) -> None:
    (stage,) = bare.of_type("aws:apigatewayv2/stage:Stage")
    assert stage.inputs["name"] == "staging"
    assert bare.exports["websocket_url"].endswith("/staging")


# -- bad configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "key", "words"),
    [
        ({"throttlingBurstLimit": -1}, "cloud-ws:throttlingBurstLimit", "at least 0"),
        ({"throttlingRateLimit": -0.5}, "cloud-ws:throttlingRateLimit", "at least 0"),
        ({"lambdaRuntime": "python3.9"}, "cloud-ws:lambdaRuntime", "python3.12, python3.13"),
        (
            {"eventBusName": "shared", "createEventBus": True},
            "cloud-ws:createEventBus",
            "cloud-ws:eventBusName",
        ),
        ({"connectionTtlHours": 0}, "cloud-ws:connectionTtlHours", "at least 1"),
        ({"historyTtlHours": 1.5}, "cloud-ws:historyTtlHours", "not a valid 'int'"),
        ({"stageName": "bad stage!"}, "cloud-ws:stageName", "letters, digits"),
        ({"eventSource": "aws.events"}, "cloud-ws:eventSource", "reserved"),
        ({"logRetentionDays": 42}, "cloud-ws:logRetentionDays", "one of"),
        ({"logLevel": "LOUD"}, "cloud-ws:logLevel", "one of"),
        ({"subscribeGroups": ["ops,dev"]}, "cloud-ws:subscribeGroups", "commas"),
        ({"userPoolId": "eu-west-1_Existing1"}, "cloud-ws:userPoolClientId", "must be set too"),
        ({"userPoolClientId": "abc"}, "cloud-ws:userPoolId", "must be set too"),
        ({"throttlingBurstLimit": "lots"}, "cloud-ws:throttlingBurstLimit", "not a valid 'int'"),
        ({"broadcasterTimeoutSeconds": 901}, "cloud-ws:broadcasterTimeoutSeconds", "between 1 and 900"),
        ({"deliveryMaxConcurrency": 1}, "cloud-ws:deliveryMaxConcurrency", "between 2 and 1000"),
        ({"deliveryMinPollers": 1}, "cloud-ws:deliveryMinPollers", "between 2 and 200"),
        ({"deliveryMinPollers": 201}, "cloud-ws:deliveryMinPollers", "between 2 and 200"),
        (
            {"deliveryMinPollers": 10, "deliveryMaxPollers": 5},
            "cloud-ws:deliveryMaxPollers",
            "between 10 and 2000",
        ),
        ({"deliveryMaxPollers": 20}, "cloud-ws:deliveryMaxPollers", "needs"),
        (
            {"deliveryMinPollers": 5, "deliveryMaxConcurrency": 50},
            "cloud-ws:deliveryMaxConcurrency",
            "provisioned mode takes no maximum concurrency",
        ),
        ({"enableAppSync": "maybe"}, "cloud-ws:enableAppSync", "not a valid 'bool'"),
    ],
)
def test_bad_config_fails_naming_the_key_and_creates_nothing(
    config: dict[str, Any], key: str, words: str
) -> None:
    from tests.test_component.conftest import deploy

    deployment = deploy(config, stack="bad", allow_error=True)
    assert deployment.error is not None
    message = str(deployment.error)
    assert key in message, message
    assert words in message, message
    # Checked before the first resource: not even the user pool was registered.
    assert [r.type for r in deployment.resources.values()] == [STACK_TYPE]
    assert deployment.exports == {}


def test_unknown_config_key_is_reported_not_silently_dropped(caplog: pytest.LogCaptureFixture) -> None:
    from tests.test_component.conftest import deploy

    deployment = deploy({"throttlingBurstLimt": -1, "aws:region": REGION})
    assert deployment.error is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("cloud-ws:throttlingBurstLimt is not a cloud-ws setting" in w for w in warnings), warnings
    assert not any("aws:region" in w for w in warnings)


def test_the_events_table_indexes_deployments_by_their_latest_event(dev: Deployment) -> None:
    """The deployment list's sparse index carries only the summary (and ttl), not the whole state."""
    (events,) = [t for t in dev.of_type("aws:dynamodb/table:Table") if t.name.endswith("-events")]
    (index,) = events.inputs["globalSecondaryIndexes"]
    assert index["name"] == spec.DEPLOYMENTS_BY_UPDATE_INDEX
    assert index["projectionType"] == "INCLUDE"
    assert sorted(index["nonKeyAttributes"]) == ["summary", "ttl"]
    assert {k["attributeName"]: k["keyType"] for k in index["keySchemas"]} == {
        "listKey": "HASH",
        "updatedMs": "RANGE",
    }


# -- AppSync GraphQL ---------------------------------------------------------------------------------


APPSYNC_PREFIX = "aws:appsync/"


def test_appsync_is_enabled_by_default_and_the_broadcaster_publishes_to_it(
    dev: Deployment, bare: Deployment
) -> None:
    for deployment in (dev, bare):
        (api,) = deployment.of_type("aws:appsync/graphQLApi:GraphQLApi")
        assert api.parent == deployment.component.urn
        assert api.inputs["authenticationType"] == "AMAZON_COGNITO_USER_POOLS"
        pool = deployment.of_type("aws:cognito/userPool:UserPool")[0]
        assert api.inputs["userPoolConfig"]["userPoolId"] == pool.id
        resolvers = {
            (r.inputs["type"], r.inputs["field"]) for r in deployment.of_type("aws:appsync/resolver:Resolver")
        }
        assert resolvers == {
            ("Mutation", "publishDeploymentEvent"),
            ("Mutation", "publishDeploymentUpdate"),
            ("Subscription", "onDeploymentEvent"),
            ("Subscription", "onDeploymentUpdated"),
            ("Query", "deploymentEvents"),
            ("Query", "deployment"),
        }
        (history,) = [
            d for d in deployment.of_type("aws:appsync/dataSource:DataSource") if d.inputs["type"] != "NONE"
        ]
        events = deployment.named(f"cloud-ws-{spec.EVENTS.role}")
        assert history.inputs["dynamodbConfig"]["tableName"] == events.outputs["name"]
        variables = _function(deployment, spec.BROADCASTER).inputs["environment"]["variables"]
        assert variables["APPSYNC_GRAPHQL_URL"] == deployment.exports["graphql_url"]
        config = load_config({**variables, "AWS_REGION": REGION})
        assert config.appsync_graphql_url == deployment.exports["graphql_url"]
        assert api.outputs["uris"]["GRAPHQL"] == deployment.exports["graphql_url"]


def test_only_the_broadcaster_may_publish_and_only_the_two_mutations(dev: Deployment) -> None:
    (api,) = dev.of_type("aws:appsync/graphQLApi:GraphQLApi")
    publish = dev.named("cloud-ws-graphql-publish-policy")
    assert publish.inputs["role"] == dev.named("cloud-ws-broadcaster-role").id
    assert json.loads(publish.inputs["policy"])["Statement"] == [
        {
            "Sid": "PublishDeploymentEvents",
            "Effect": "Allow",
            "Action": ["appsync:GraphQL"],
            "Resource": [
                f"{api.outputs['arn']}/types/Mutation/fields/publishDeploymentEvent",
                f"{api.outputs['arn']}/types/Mutation/fields/publishDeploymentUpdate",
            ],
        }
    ]
    # No other policy of the stack grants appsync:GraphQL.
    for resource in dev.of_type("aws:iam/rolePolicy:RolePolicy"):
        if resource.name != publish.name:
            assert "appsync:" not in resource.inputs["policy"], resource.name


def _assert_no_appsync(deployment: Deployment) -> None:
    assert [r.name for r in deployment.resources.values() if r.type.startswith(APPSYNC_PREFIX)] == []
    assert [r.name for r in deployment.resources.values() if "graphql" in r.name] == []
    for route in ALL_FUNCTIONS:
        assert "APPSYNC_GRAPHQL_URL" not in _function(deployment, route).inputs["environment"]["variables"]
    assert set(deployment.exports) == OUTPUT_KEYS
    assert (
        load_config(
            {
                **_function(deployment, spec.BROADCASTER).inputs["environment"]["variables"],
                "AWS_REGION": REGION,
            }
        ).appsync_graphql_url
        is None
    )


def test_appsync_can_be_disabled_in_config() -> None:
    from tests.test_component.conftest import deploy

    _assert_no_appsync(deploy({"enableAppSync": False}))


def test_appsync_can_be_disabled_by_the_component_argument(fresh_pulumi_settings: None) -> None:
    import asyncio

    from pulumi.runtime import settings

    from pulumi_component import WebSocketMonitoring
    from tests.test_component.conftest import AwsMocks

    asyncio.set_event_loop(asyncio.new_event_loop())
    settings.set_root_resource(None)  # type: ignore[arg-type]
    mocks = AwsMocks()
    pulumi.runtime.set_mocks(mocks, project="cloud-ws", stack="dev", preview=False)
    component: list[WebSocketMonitoring] = []

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> pulumi.Output[str]:
        monitoring = WebSocketMonitoring(
            "m",
            {
                "user_pool_id": "eu-west-1_Pool",
                "user_pool_client_id": "client",
                "stage_name": "dev",
                "enable_appsync": False,
            },
        )
        component.append(monitoring)
        return monitoring.websocket_url

    run()
    (monitoring,) = component
    assert monitoring.graphql_url is None
    assert monitoring.graphql_realtime_url is None
    assert [typ for typ, _ in mocks.inputs if typ.startswith(APPSYNC_PREFIX)] == []
    broadcaster = mocks.inputs[("aws:lambda/function:Function", f"m-{spec.BROADCASTER.function}")]
    assert "APPSYNC_GRAPHQL_URL" not in broadcaster["environment"]["variables"]
