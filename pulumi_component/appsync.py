"""The AppSync GraphQL API that serves cloud-ws events as GraphQL subscriptions.

Built by :class:`AppSyncGraphQL` under a parent component (``WebSocketMonitoring``):

- ``aws.appsync.GraphQLApi`` with the Cognito user pool as default auth and
  ``AWS_IAM`` as an additional mode (the publisher), its schema read from the one
  schema file (``contract/schema.graphql``) that ``cloud-ws local`` serves too;
- a NONE data source and APPSYNC_JS unit resolvers for the two publish
  mutations (the result is the arguments, and AppSync fans it out);
- a DynamoDB data source on the history table, with a role allowed only
  ``dynamodb:Query`` and ``dynamodb:GetItem`` on that table, and resolvers for
  ``deploymentEvents`` (the first ``limit`` events after ``since``: the replay AppSync itself lacks) and
  ``deployment`` (the deployment's snapshot: the state folded into its counter row,
  the data of the WebSocket API's ``deployment.snapshot``);
- per-deployment authorization in every query and subscription resolver, the
  same rule as the WebSocket API (``SUBSCRIBE_GROUPS``: the caller's Cognito
  groups must meet them when set);
- field logs at ERROR with verbose content excluded, so no header (no token)
  and no request body reaches CloudWatch, into a log group with a retention;
- :meth:`AppSyncGraphQL.allow_publish`: the publisher's IAM, ``appsync:GraphQL``
  on the two publish mutation fields only.
"""

import json
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from types import MappingProxyType
from typing import Any

import pulumi
import pulumi_aws as aws

from contract import keys, protocol, state
from contract.graphql import DEFAULT_EVENTS_LIMIT, MAX_EVENTS_LIMIT, SCHEMA_PATH
from pulumi_component import policy

#: The mutations the backend publishes with (IAM only, see the schema's @aws_iam).
PUBLISH_FIELDS = ("publishDeploymentEvent", "publishDeploymentUpdate")

_RUNTIME = {"name": "APPSYNC_JS", "runtime_version": "1.0.0"}

#: The component's default access policy: no group is granted any project.
NO_ACCESS: Mapping[str, Sequence[str]] = MappingProxyType({})

# -- resolver code (APPSYNC_JS: no try/catch, no while; util.error and util.unauthorized stop it) -------
# The code is in resolvers/*.js (package data), linted by `make lint` with AWS's APPSYNC_JS rules
# (tools/appsync-lint). A resolver is one file, so authorize.js's code goes in front of each watching
# resolver's; the lines marked `// lint-only` (authorize.js's export of what the others use, their
# import of it) let each file be linted on its own and are left out here. The `__NAME__` placeholders
# (globals to the linter) are filled in below, each with why its value is safe where it goes.

_RESOLVERS = resources.files("pulumi_component") / "resolvers"


def _resolver_code(name: str) -> str:
    """``resolvers/<name>.js`` without its ``// lint-only`` lines."""
    text = (_RESOLVERS / f"{name}.js").read_text(encoding="utf-8")
    return "".join(line for line in text.splitlines(keepends=True) if "// lint-only" not in line)


_AUTHORIZE = _resolver_code("authorize")
PUBLISH_CODE = _resolver_code("publish")
_SUBSCRIBE = _resolver_code("subscribe")
_DEPLOYMENT_EVENTS = _resolver_code("deployment_events")
_DEPLOYMENT = _resolver_code("deployment")


def _with_authorize(body: str, groups: Sequence[str], access: Mapping[str, Sequence[str]]) -> str:
    header = _AUTHORIZE.replace("__SUBSCRIBE_GROUPS__", json.dumps(sorted(set(groups))))
    # JSON is a JS literal; the settings checked every name and pattern (no quote or backslash).
    header = header.replace("__ACCESS_POLICY__", json.dumps(dict(access), sort_keys=True))
    # The pattern is a JS string literal: every backslash-free character of ours is safe in one.
    header = header.replace("__ID_PATTERN__", protocol.DEPLOYMENT_ID_PATTERN)
    return header + body


#: AppSync takes at most this many filter groups in one subscription filter.
MAX_SUBSCRIPTION_FILTERS = 10


def subscribe_code(groups: Sequence[str], access: Mapping[str, Sequence[str]] = NO_ACCESS) -> str:
    """The subscription resolvers' code: who may subscribe, and the project filter their grants set."""
    # An int is a JS number literal.
    return _with_authorize(
        _SUBSCRIBE.replace("__MAX_FILTERS__", str(MAX_SUBSCRIPTION_FILTERS)), groups, access
    )


def deployment_events_code(groups: Sequence[str], access: Mapping[str, Sequence[str]] = NO_ACCESS) -> str:
    """``Query.deploymentEvents``: one ascending Query on the history table."""
    # Ints: JS number literals, and digits in the error message's string.
    body = (
        _DEPLOYMENT_EVENTS.replace("__DEFAULT_LIMIT__", str(DEFAULT_EVENTS_LIMIT))
        .replace("__MAX_LIMIT__", str(MAX_EVENTS_LIMIT))
        .replace("__ROW_EVENTS__", str(keys.HISTORY_ROW_EVENTS))
    )
    return _with_authorize(body, groups, access)


def deployment_code(groups: Sequence[str], access: Mapping[str, Sequence[str]] = NO_ACCESS) -> str:
    """``Query.deployment``: one GetItem of the counter row, whose state is the deployment's snapshot."""
    # JSON is a JS literal (an object expression where __INITIAL__ stands).
    initial = json.dumps(state.public(state.initial()), sort_keys=True)
    return _with_authorize(_DEPLOYMENT.replace("__INITIAL__", initial), groups, access)


class _Code:
    """``Output.all(groups, access).apply(...)`` of a resolver code builder."""

    def __init__(self, build: Callable[[Sequence[str], Mapping[str, Sequence[str]]], str]) -> None:
        self._build = build

    def __call__(self, groups_and_access: Sequence[Any]) -> str:
        groups, access = groups_and_access
        return self._build(groups, access)


def client_id_regex(client_ids: Sequence[str]) -> str:
    """``user_pool_config.app_id_client_regex``: exactly these app clients (anchored, escaped)."""
    return "^(" + "|".join(re.escape(client) for client in client_ids) + ")$"


def _document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": policy.VERSION, "Statement": statements}


def field_arns(api_arn: str, fields: Sequence[str] = PUBLISH_FIELDS) -> list[str]:
    """``arn:aws:appsync:R:A:apis/<id>/types/Mutation/fields/<field>``: the narrowest IAM resource."""
    return [f"{api_arn}/types/Mutation/fields/{field}" for field in fields]


def publish_policy(api_arn: str) -> str:
    """The publisher's policy: run the two publish mutations of this API, nothing else."""
    return json.dumps(
        _document(
            [
                {
                    "Sid": "PublishDeploymentEvents",
                    "Effect": "Allow",
                    "Action": ["appsync:GraphQL"],
                    "Resource": field_arns(api_arn),
                }
            ]
        ),
        sort_keys=True,
    )


def history_read_policy(table_arn: str) -> str:
    """The DynamoDB data source's role: Query the history and GetItem its counter rows, nothing else."""
    return json.dumps(
        _document(
            [
                {
                    "Sid": "ReadHistory",
                    "Effect": "Allow",
                    "Action": ["dynamodb:GetItem", "dynamodb:Query"],
                    "Resource": [table_arn],
                }
            ]
        ),
        sort_keys=True,
    )


def logs_policy(log_group_arn: str) -> str:
    """AppSync's logging role: write to this API's own log group."""
    return json.dumps(
        _document(
            [
                {
                    "Sid": "WriteApiLogs",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"],
                }
            ]
        ),
        sort_keys=True,
    )


def pool_region(user_pool_id: str) -> str:
    """The region a Cognito pool id names (``eu-west-1_AbC`` → ``eu-west-1``), as the handlers read it."""
    return user_pool_id.split("_", 1)[0]


def _log_group_name(api_id: str) -> str:
    return f"/aws/appsync/apis/{api_id}"


def _schema() -> str:
    return SCHEMA_PATH.read_text(encoding="utf-8")


class AppSyncGraphQL:
    """The AppSync API and everything it needs, as children of ``parent``."""

    def __init__(
        self,
        name: str,
        *,
        parent: pulumi.Resource,
        user_pool_id: pulumi.Input[str],
        events_table_name: pulumi.Input[str],
        events_table_arn: pulumi.Input[str],
        subscribe_groups: pulumi.Input[Sequence[str]] = (),
        log_retention_days: pulumi.Input[int] = 30,
        user_pool_region: pulumi.Input[str] | None = None,
        client_ids: pulumi.Input[Sequence[str]] | None = None,
        access: pulumi.Input[Mapping[str, Sequence[str]]] = NO_ACCESS,
    ) -> None:
        """Create the API, its data sources and resolvers.

        Args:
            name: Prefix of every resource name (``{name}-graphql…``).
            parent: The component the resources belong to.
            user_pool_id: The Cognito pool whose tokens the API accepts (its default mode).
            events_table_name: The history table (``contract.spec.EVENTS``).
            events_table_arn: Its ARN, for the data source role.
            subscribe_groups: ``SUBSCRIBE_GROUPS``: Cognito groups allowed to watch; empty: every user.
            log_retention_days: Retention of the API's log group.
            user_pool_region: The pool's region; default: the one its id starts with (``eu-west-1_…``).
            client_ids: The app clients whose tokens the API accepts (``app_id_client_regex``);
                None: every client of the pool.
            access: The access policy (Cognito group → project patterns), written into every
                query and subscription resolver as ``ACCESS_POLICY``; default: none granted.
        """
        self._name = name
        self._parent = parent
        child = pulumi.ResourceOptions(parent=parent)
        prefix = f"{name}-graphql"

        self.logs_role = aws.iam.Role(
            f"{prefix}-logs-role",
            assume_role_policy=json.dumps(policy.assume_role_policy("appsync.amazonaws.com")),
            description="AppSync writes the cloud-ws GraphQL API's error logs",
            opts=child,
        )
        self.api = aws.appsync.GraphQLApi(
            prefix,
            authentication_type="AMAZON_COGNITO_USER_POOLS",
            user_pool_config=aws.appsync.GraphQLApiUserPoolConfigArgs(
                user_pool_id=user_pool_id,
                aws_region=user_pool_region or pulumi.Output.from_input(user_pool_id).apply(pool_region),
                default_action="ALLOW",
                # Only our app clients' tokens: another client of a shared pool is refused.
                app_id_client_regex=None
                if client_ids is None
                else pulumi.Output.from_input(client_ids).apply(client_id_regex),
            ),
            additional_authentication_providers=[
                aws.appsync.GraphQLApiAdditionalAuthenticationProviderArgs(authentication_type="AWS_IAM")
            ],
            schema=_schema(),
            # Errors only, and never the verbose sections (request headers, so tokens; context; bodies).
            log_config=aws.appsync.GraphQLApiLogConfigArgs(
                cloudwatch_logs_role_arn=self.logs_role.arn,
                field_log_level="ERROR",
                exclude_verbose_content=True,
            ),
            opts=child,
        )
        self.log_group = aws.cloudwatch.LogGroup(
            f"{prefix}-logs",
            name=self.api.id.apply(_log_group_name),
            retention_in_days=log_retention_days,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{prefix}-logs-policy",
            role=self.logs_role.id,
            policy=self.log_group.arn.apply(logs_policy),
            opts=child,
        )

        none = aws.appsync.DataSource(
            f"{prefix}-none", api_id=self.api.id, name="none", type="NONE", opts=child
        )
        history_role = aws.iam.Role(
            f"{prefix}-history-role",
            assume_role_policy=json.dumps(policy.assume_role_policy("appsync.amazonaws.com")),
            description="AppSync reads the cloud-ws event history for deploymentEvents and deployment",
            opts=child,
        )
        history_policy = aws.iam.RolePolicy(
            f"{prefix}-history-policy",
            role=history_role.id,
            policy=pulumi.Output.from_input(events_table_arn).apply(history_read_policy),
            opts=child,
        )
        history = aws.appsync.DataSource(
            f"{prefix}-history",
            api_id=self.api.id,
            name="history",
            type="AMAZON_DYNAMODB",
            service_role_arn=history_role.arn,
            # The table lives in the API's region (the stack's): no region to name.
            dynamodb_config=aws.appsync.DataSourceDynamodbConfigArgs(table_name=events_table_name),
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[history_policy]),
        )

        rules = pulumi.Output.all(subscribe_groups, access)
        self.resolvers: dict[str, aws.appsync.Resolver] = {}
        for field in PUBLISH_FIELDS:
            self._resolver("Mutation", field, none, PUBLISH_CODE)
        # On the history data source: a subscription reads the deployment's counter row (its project).
        self._resolver("Subscription", "onDeploymentEvent", history, rules.apply(_Code(subscribe_code)))
        self._resolver("Subscription", "onDeploymentUpdated", history, rules.apply(_Code(subscribe_code)))
        self._resolver("Query", "deploymentEvents", history, rules.apply(_Code(deployment_events_code)))
        self._resolver("Query", "deployment", history, rules.apply(_Code(deployment_code)))

        self.graphql_url: pulumi.Output[str] = self.api.uris.apply(_uri("GRAPHQL"))
        """``https://{id}.appsync-api.{region}.amazonaws.com/graphql``."""
        self.graphql_realtime_url: pulumi.Output[str] = self.api.uris.apply(_uri("REALTIME"))
        """``wss://{id}.appsync-realtime-api.{region}.amazonaws.com/graphql``."""

    def _resolver(
        self, type_name: str, field: str, data_source: aws.appsync.DataSource, code: pulumi.Input[str]
    ) -> None:
        self.resolvers[f"{type_name}.{field}"] = aws.appsync.Resolver(
            f"{self._name}-graphql-{type_name.lower()}-{field}",
            api_id=self.api.id,
            type=type_name,
            field=field,
            kind="UNIT",
            data_source=data_source.name,
            runtime=aws.appsync.ResolverRuntimeArgs(**_RUNTIME),
            code=code,
            opts=pulumi.ResourceOptions(parent=self._parent),
        )

    def allow_publish(self, role: pulumi.Input[str]) -> aws.iam.RolePolicy:
        """Let ``role`` (the broadcaster's) run the two publish mutations of this API, and nothing else."""
        return aws.iam.RolePolicy(
            f"{self._name}-graphql-publish-policy",
            role=role,
            policy=self.api.arn.apply(publish_policy),
            opts=pulumi.ResourceOptions(parent=self._parent),
        )


def _uri(key: str) -> Any:
    def pick(uris: dict[str, str] | None) -> str:
        return (uris or {}).get(key, "")

    return pick
