"""The API Gateway WebSocket API: one Lambda integration and route per spec route, a stage.

The stage is redeployed whenever a route or an integration changes, throttles
every route, and logs at ERROR with access logs that never hold a credential.
"""

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from contract import spec
from pulumi_component import policy
from pulumi_component._shared import child, render_json
from pulumi_component.settings import Settings

#: Access log record: who, which route, what happened. Built only from
#: ``$context`` variables that carry no credentials: never the query string
#: (the ``token`` parameter), headers (``Authorization``,
#: ``Sec-WebSocket-Protocol``) or bodies.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "requestTime": "$context.requestTimeEpoch",
        "connectionId": "$context.connectionId",
        "eventType": "$context.eventType",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "integrationStatus": "$context.integration.status",
        "integrationLatency": "$context.integration.latency",
        "errorMessage": "$context.error.message",
        "sourceIp": "$context.identity.sourceIp",
    },
    separators=(",", ":"),
)


def _fingerprint(parts: Sequence[Any]) -> str:
    return hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()


def _https(endpoint_and_stage: Sequence[str]) -> str:
    endpoint, stage = endpoint_and_stage
    return f"{endpoint.replace('wss://', 'https://', 1)}/{stage}"


def _wss(endpoint_and_stage: Sequence[str]) -> str:
    endpoint, stage = endpoint_and_stage
    return f"{endpoint}/{stage}"


def websocket_api(name: str, parent: pulumi.Resource) -> aws.apigatewayv2.Api:
    """The WebSocket API, routing on the frame's ``action`` field."""
    return aws.apigatewayv2.Api(
        f"{name}-api",
        protocol_type="WEBSOCKET",
        route_selection_expression=spec.ROUTE_SELECTION_EXPRESSION,
        description="cloud-ws deployment monitoring",
        opts=child(parent),
    )


class Routes:
    """The routes of one API, added one at a time, then deployed to a stage by :meth:`stage`."""

    def __init__(
        self, name: str, parent: pulumi.Resource, api: aws.apigatewayv2.Api, stage_name: str
    ) -> None:
        self._name = name
        self._parent = parent
        self._api = api
        self._stage_name = stage_name
        self._routes: list[aws.apigatewayv2.Route] = []
        self._wiring: list[pulumi.Output[list[Any]]] = []

    def add(self, route: spec.RouteSpec, function: aws.lambda_.Function) -> None:
        """``route``'s integration with ``function``, its route, and API Gateway's leave to invoke it."""
        name, api = self._name, self._api
        integration = aws.apigatewayv2.Integration(
            f"{name}-{route.function}-integration",
            api_id=api.id,
            integration_type="AWS_PROXY",
            integration_method="POST",
            integration_uri=function.invoke_arn,
            opts=child(self._parent),
        )
        api_route = aws.apigatewayv2.Route(
            f"{name}-{route.function}-route",
            api_id=api.id,
            route_key=route.route_key,
            authorization_type="NONE",  # $connect verifies the Cognito JWT itself
            target=pulumi.Output.concat("integrations/", integration.id),
            opts=child(self._parent),
        )
        self._routes.append(api_route)
        self._wiring.append(
            pulumi.Output.all(
                route.route_key, api_route.id, api_route.target, integration.id, integration.integration_uri
            )
        )
        aws.lambda_.Permission(
            f"{name}-{route.function}-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            principal="apigateway.amazonaws.com",
            # This API and stage only: no other API may invoke the function.
            source_arn=pulumi.Output.concat(api.execution_arn, "/", self._stage_name, "/", route.route_key),
            opts=child(self._parent),
        )

    def stage(self, settings: Settings) -> aws.apigatewayv2.Stage:
        """A deployment of the routes added so far, and the stage serving it."""
        name, parent = self._name, self._parent
        # A stage serves a snapshot of the routes: deploy again whenever a route or
        # an integration changes, so the stage never serves a stale wiring.
        deployment = aws.apigatewayv2.Deployment(
            f"{name}-deployment",
            api_id=self._api.id,
            description="cloud-ws routes",
            triggers={"routes": pulumi.Output.all(*self._wiring).apply(_fingerprint)},
            opts=child(parent, depends_on=self._routes),
        )
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs", retention_in_days=settings.log_retention_days, opts=child(parent)
        )
        stage_depends: list[pulumi.Resource] = []
        if settings.configure_api_gateway_account:
            stage_depends.append(api_gateway_account(name, parent))
        return aws.apigatewayv2.Stage(
            f"{name}-stage",
            api_id=self._api.id,
            name=self._stage_name,
            deployment_id=deployment.id,
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_burst_limit=settings.throttling_burst_limit,
                throttling_rate_limit=settings.throttling_rate_limit,
                logging_level="ERROR",
                data_trace_enabled=False,  # would log whole frames, tokens included
                detailed_metrics_enabled=False,
            ),
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn, format=ACCESS_LOG_FORMAT
            ),
            opts=child(parent, depends_on=stage_depends),
        )


def api_gateway_account(name: str, parent: pulumi.Resource) -> aws.apigateway.Account:
    """The region's API Gateway CloudWatch Logs role (an account-wide setting)."""
    role = aws.iam.Role(
        f"{name}-apigw-logs-role",
        assume_role_policy=render_json(policy.assume_role_policy("apigateway.amazonaws.com")),
        description="API Gateway pushes execution and access logs to CloudWatch Logs",
        opts=child(parent),
    )
    attachment = aws.iam.RolePolicyAttachment(
        f"{name}-apigw-logs-policy",
        role=role.name,
        policy_arn=policy.API_GATEWAY_LOGS_POLICY_ARN,
        opts=child(parent),
    )
    return aws.apigateway.Account(
        f"{name}-apigw-account",
        cloudwatch_role_arn=role.arn,
        opts=child(parent, depends_on=[attachment]),
    )


def websocket_url(api: aws.apigatewayv2.Api, stage: aws.apigatewayv2.Stage) -> pulumi.Output[str]:
    """``wss://{api}.execute-api.{region}.amazonaws.com/{stage}``: where clients connect."""
    return pulumi.Output.all(api.api_endpoint, stage.name).apply(_wss)


def management_endpoint(api: aws.apigatewayv2.Api, stage: aws.apigatewayv2.Stage) -> pulumi.Output[str]:
    """``https://{api}.execute-api.{region}.amazonaws.com/{stage}``: the @connections endpoint."""
    return pulumi.Output.all(api.api_endpoint, stage.name).apply(_https)
