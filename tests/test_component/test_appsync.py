"""The AppSync builder under Pulumi's mocks, and its APPSYNC_JS resolvers run in Node against a stand-in
``@aws-appsync/utils`` (AppSync itself cannot run here)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import settings

from contract import authorization, keys, state
from contract.graphql import SCHEMA_PATH
from pulumi_component import appsync

REGION = "eu-west-1"
ACCOUNT = "123456789012"
API_ID = "gqlapi123"
API_ARN = f"arn:aws:appsync:{REGION}:{ACCOUNT}:apis/{API_ID}"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/history"


@dataclass
class Recorded:
    """What the builder registered, by resource name."""

    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)


class AppSyncMocks(pulumi.runtime.Mocks):
    """Answers like AWS for the resource types the builder creates."""

    def __init__(self, recorded: Recorded) -> None:
        self.recorded = recorded

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise NotImplementedError(f"the builder must not invoke {args.token}")

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.recorded.inputs[args.name] = dict(args.inputs)
        self.recorded.types[args.name] = args.typ
        outputs = dict(args.inputs)
        if args.typ == "aws:appsync/graphQLApi:GraphQLApi":
            outputs |= {
                "arn": API_ARN,
                "uris": {
                    "GRAPHQL": f"https://{API_ID}.appsync-api.{REGION}.amazonaws.com/graphql",
                    "REALTIME": f"wss://{API_ID}.appsync-realtime-api.{REGION}.amazonaws.com/graphql",
                },
            }
            return API_ID, outputs
        if args.typ == "aws:iam/role:Role":
            outputs |= {"arn": f"arn:aws:iam::{ACCOUNT}:role/{args.name}", "name": args.name}
            return args.name, outputs
        if args.typ == "aws:cloudwatch/logGroup:LogGroup":
            outputs |= {"arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{args.inputs['name']}"}
        return f"{args.name}-id", outputs


class Parent(pulumi.ComponentResource):
    """Stands in for WebSocketMonitoring."""

    def __init__(self) -> None:
        super().__init__("cloud-ws:index:Test", "parent")


@dataclass
class Built:
    """The builder's resources and resolved outputs."""

    recorded: Recorded
    outputs: dict[str, Any]

    def named(self, name: str) -> dict[str, Any]:
        return self.recorded.inputs[name]

    def of_type(self, typ: str) -> dict[str, dict[str, Any]]:
        return {n: self.recorded.inputs[n] for n, t in self.recorded.types.items() if t == typ}


def build(groups: list[str]) -> Built:
    """Run the builder once under mocks (its own event loop: async suites may have closed theirs)."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    recorded = Recorded()
    settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(AppSyncMocks(recorded), project="cloud-ws", stack="test", preview=False)
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> pulumi.Output[None]:
        parent = Parent()
        built = appsync.AppSyncGraphQL(
            "cloud-ws",
            parent=parent,
            user_pool_id="eu-west-1_Pool",
            events_table_name="history",
            events_table_arn=TABLE_ARN,
            subscribe_groups=groups,
            log_retention_days=14,
        )
        built.allow_publish("broadcaster-role")
        return pulumi.Output.all(
            graphql_url=built.graphql_url, graphql_realtime_url=built.graphql_realtime_url
        ).apply(outputs.update)

    run()
    settings.set_root_resource(None)  # type: ignore[arg-type]
    return Built(recorded, outputs)


@pytest.fixture(scope="module")
def open_api() -> Built:
    """Every user of the pool may watch."""
    return build([])


@pytest.fixture(scope="module")
def restricted() -> Built:
    """Only the ``ops`` group may watch."""
    return build(["ops"])


def test_api_uses_cognito_by_default_and_iam_for_the_publisher(open_api: Built) -> None:
    """Default auth is the user pool; AWS_IAM is the additional mode; the schema is the one file."""
    api = open_api.named("cloud-ws-graphql")
    assert api["authenticationType"] == "AMAZON_COGNITO_USER_POOLS"
    assert api["userPoolConfig"] == {
        "userPoolId": "eu-west-1_Pool",
        "awsRegion": REGION,
        "defaultAction": "ALLOW",
    }
    assert api["additionalAuthenticationProviders"] == [{"authenticationType": "AWS_IAM"}]
    assert api["schema"] == SCHEMA_PATH.read_text(encoding="utf-8")


def test_outputs_are_the_appsync_endpoints(open_api: Built) -> None:
    """``graphql_url`` and ``graphql_realtime_url`` as docs/design.md's outputs table names them."""
    assert open_api.outputs == {
        "graphql_url": f"https://{API_ID}.appsync-api.{REGION}.amazonaws.com/graphql",
        "graphql_realtime_url": f"wss://{API_ID}.appsync-realtime-api.{REGION}.amazonaws.com/graphql",
    }


def test_logs_carry_no_tokens(open_api: Built) -> None:
    """Errors only, verbose content (headers, hence tokens) excluded, with a retention on the API's group."""
    log_config = open_api.named("cloud-ws-graphql")["logConfig"]
    assert log_config["fieldLogLevel"] == "ERROR"
    assert log_config["excludeVerboseContent"] is True
    group = open_api.named("cloud-ws-graphql-logs")
    assert group["name"] == f"/aws/appsync/apis/{API_ID}"
    assert group["retentionInDays"] == 14


def test_every_field_has_its_resolver_on_the_right_data_source(open_api: Built) -> None:
    """Mutations on NONE; queries and subscriptions (which read the deployment's project) on the
    history table; all APPSYNC_JS units."""
    resolvers = open_api.of_type("aws:appsync/resolver:Resolver")
    by_field = {(r["type"], r["field"]): r for r in resolvers.values()}
    assert set(by_field) == {
        ("Mutation", "publishDeploymentEvent"),
        ("Mutation", "publishDeploymentUpdate"),
        ("Subscription", "onDeploymentEvent"),
        ("Subscription", "onDeploymentUpdated"),
        ("Query", "deploymentEvents"),
        ("Query", "deployment"),
    }
    for (type_name, _), resolver in by_field.items():
        assert resolver["kind"] == "UNIT"
        assert resolver["runtime"] == {"name": "APPSYNC_JS", "runtimeVersion": "1.0.0"}
        assert resolver["dataSource"] == ("none" if type_name == "Mutation" else "history")
    sources = {s["name"]: s for s in open_api.of_type("aws:appsync/dataSource:DataSource").values()}
    assert sources["none"]["type"] == "NONE"
    assert sources["history"]["type"] == "AMAZON_DYNAMODB"
    assert sources["history"]["dynamodbConfig"] == {"tableName": "history"}


def test_iam_is_least_privilege(open_api: Built) -> None:
    """Publisher: appsync:GraphQL on the two mutation fields; data source: Query on the history table only."""
    publish = json.loads(open_api.named("cloud-ws-graphql-publish-policy")["policy"])
    assert open_api.named("cloud-ws-graphql-publish-policy")["role"] == "broadcaster-role"
    assert publish["Statement"] == [
        {
            "Sid": "PublishDeploymentEvents",
            "Effect": "Allow",
            "Action": ["appsync:GraphQL"],
            "Resource": [
                f"{API_ARN}/types/Mutation/fields/publishDeploymentEvent",
                f"{API_ARN}/types/Mutation/fields/publishDeploymentUpdate",
            ],
        }
    ]
    history = json.loads(open_api.named("cloud-ws-graphql-history-policy")["policy"])
    assert history["Statement"] == [
        {
            "Sid": "ReadHistory",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:Query"],
            "Resource": [TABLE_ARN],
        }
    ]
    logs = json.loads(open_api.named("cloud-ws-graphql-logs-policy")["policy"])
    (statement,) = logs["Statement"]
    assert statement["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert all(
        r.startswith(f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/appsync/apis/{API_ID}")
        for r in statement["Resource"]
    )
    for name, role in open_api.of_type("aws:iam/role:Role").items():
        trust = json.loads(role["assumeRolePolicy"])
        assert trust["Statement"][0]["Principal"] == {"Service": "appsync.amazonaws.com"}, name


# -- the resolvers, executed -------------------------------------------------------------------------

#: A stand-in for AppSync's runtime library: util.error / util.unauthorized stop the handler by throwing.
UTILS = """
export class Stop extends Error {
  constructor(kind, message, type) { super(message); this.kind = kind; this.type = type; }
}
export const util = {
  matches: (pattern, value) => typeof value === 'string' && new RegExp(pattern).test(value),
  error: (message, type) => { throw new Stop('error', message, type); },
  unauthorized: () => { throw new Stop('unauthorized', 'Unauthorized', 'Unauthorized'); },
  dynamodb: { toMapValues: (values) => Object.fromEntries(Object.entries(values).map(([k, v]) =>
    [k, typeof v === 'number' ? { N: String(v) } : { S: String(v) }])) },
  transform: { toSubscriptionFilter: (filter) => ({ converted: filter }) },
};
export const extensions = {
  setSubscriptionFilter: (filter) => { globalThis.subscriptionFilter = filter; },
};
"""

RUNNER = """
import { Stop } from '@aws-appsync/utils';
const { phase, ctx } = JSON.parse(process.argv[2]);
const resolver = await import('./resolver.mjs');
try {
  const value = resolver[phase](ctx);
  console.log(JSON.stringify({ value, filter: globalThis.subscriptionFilter }));
} catch (e) {
  if (!(e instanceof Stop)) throw e;
  console.log(JSON.stringify({ stopped: e.kind, message: e.message, type: e.type }));
}
"""


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where ``import '@aws-appsync/utils'`` resolves to the stand-in."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    root = tmp_path_factory.mktemp("appsync-js")
    package = root / "node_modules" / "@aws-appsync" / "utils"
    package.mkdir(parents=True)
    (package / "package.json").write_text(
        json.dumps({"name": "@aws-appsync/utils", "type": "module", "main": "index.js"})
    )
    (package / "index.js").write_text(UTILS)
    (root / "run.mjs").write_text(RUNNER)
    return root


def run_js(directory: Path, code: str, phase: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """Run one handler (``request`` or ``response``) of a resolver's code with ``ctx``."""
    (directory / "resolver.mjs").write_text(code)
    out = subprocess.run(
        ["node", "run.mjs", json.dumps({"phase": phase, "ctx": ctx})],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def stored(seq: int, type_: str, data: dict[str, Any]) -> dict[str, Any]:
    """A history item of one event, as an older version wrote it and DynamoDB hands it to the
    resolver (its ``message`` is the wire JSON)."""
    message = {
        "type": type_,
        "deployment_id": "D1",
        "seq": seq,
        "event_id": f"e{seq}",
        "data": data,
        "timestamp": f"t{seq}",
    }
    return {"seq": seq, "message": json.dumps(message)}


def test_every_resolver_is_valid_javascript(node_dir: Path, restricted: Built) -> None:
    """``node --check`` parses each resolver's code as a module."""
    for name, resolver in restricted.of_type("aws:appsync/resolver:Resolver").items():
        path = node_dir / f"{name}.mjs"
        path.write_text(resolver["code"])
        subprocess.run(["node", "--check", str(path)], check=True, timeout=30)


def test_deployment_events_queries_the_page_after_since(node_dir: Path, restricted: Built) -> None:
    """since 10, limit 5 → one consistent ascending Query of seq 11..15; items map to DeploymentEvent."""
    del restricted
    code = appsync.deployment_events_code(["ops"], {"ops": ["*"]})  # a policy that grants ops everything
    ctx = {"args": {"deployment_id": "D1", "since": 10, "limit": 5}, "identity": {"groups": ["ops"]}}
    request = run_js(node_dir, code, "request", ctx)["value"]
    assert request["operation"] == "Query"
    assert request["query"]["expressionValues"] == {
        ":d": {"S": "D1"},
        ":first": {"N": "11"},
        ":last": {"N": str(15 + keys.HISTORY_ROW_EVENTS - 1)},  # the row holding 15 may end later
    }
    assert request["scanIndexForward"] is True
    assert request["consistentRead"] is True
    assert request["limit"] == 5
    items = [stored(11, "log.created", {"message": "hi"})]
    events = run_js(node_dir, code, "response", {**ctx, "result": {"items": items}})["value"]
    assert events == [
        {
            "deployment_id": "D1",
            "seq": 11,
            "type": "log.created",
            "event_id": "e11",
            "timestamp": "t11",
            "data": '{"message":"hi"}',
        }
    ]


def test_deployment_events_takes_the_page_out_of_packed_rows(node_dir: Path, restricted: Built) -> None:
    """Rows holding runs of events (9..12, 13..18): since 10, limit 5 → exactly seq 11..15, in order."""
    del restricted
    code = appsync.deployment_events_code(["ops"], {"ops": ["*"]})
    ctx = {"args": {"deployment_id": "D1", "since": 10, "limit": 5}, "identity": {"groups": ["ops"]}}
    rows = [
        {
            "seq": last,
            "firstSeq": first,
            "messages": [
                stored(n, "log.created", {"message": f"line {n}"})["message"] for n in range(first, last + 1)
            ],
        }
        for first, last in ((9, 12), (13, 18))
    ]
    events = run_js(node_dir, code, "response", {**ctx, "result": {"items": rows}})["value"]
    assert [(e["seq"], json.loads(e["data"])["message"]) for e in events] == [
        (n, f"line {n}") for n in range(11, 16)
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"deployment_id": "D1", "since": -1}, "since must not be negative"),
        ({"deployment_id": "D1", "limit": 0}, "limit must be between 1 and 1000"),
        ({"deployment_id": "bad id!"}, "deployment_id must match"),
    ],
)
def test_deployment_events_refuses_bad_arguments(
    node_dir: Path, restricted: Built, args: dict[str, Any], message: str
) -> None:
    """Malformed arguments stop before any read."""
    code = restricted.named("cloud-ws-graphql-query-deploymentEvents")["code"]
    result = run_js(node_dir, code, "request", {"args": args, "identity": {"groups": ["ops"]}})
    assert result["stopped"] == "error"
    assert result["type"] == "ValidationError"
    assert message in result["message"]


def test_outsiders_are_refused_by_every_watching_resolver(
    node_dir: Path, restricted: Built, open_api: Built
) -> None:
    """With SUBSCRIBE_GROUPS, a user outside them is unauthorized on queries and subscriptions."""
    watching = [
        "cloud-ws-graphql-query-deploymentEvents",
        "cloud-ws-graphql-query-deployment",
        "cloud-ws-graphql-subscription-onDeploymentEvent",
        "cloud-ws-graphql-subscription-onDeploymentUpdated",
    ]
    for name in watching:
        code = restricted.named(name)["code"]
        outsider = {"args": {"deployment_id": "D1"}, "identity": {"groups": ["dev"]}}
        assert run_js(node_dir, code, "request", outsider)["stopped"] == "unauthorized", name
        member = {"args": {"deployment_id": "D1"}, "identity": {"groups": ["dev", "ops"]}}
        assert "value" in run_js(node_dir, code, "request", member), name
        # Without SUBSCRIBE_GROUPS every user of the pool may watch.
        anyone = {"args": {"deployment_id": "D1"}, "identity": {}}
        assert "value" in run_js(node_dir, open_api.named(name)["code"], "request", anyone), name


def test_deployment_answers_the_snapshot_the_websocket_api_sends(node_dir: Path, open_api: Built) -> None:
    """One GetItem of the checkpoint row: its folded state as a snapshot, with the seq it reaches."""
    del open_api
    code = appsync.deployment_code([], {"ops": ["*"]})  # a policy that grants ops everything
    ctx: dict[str, Any] = {"args": {"deployment_id": "D1"}, "identity": {"groups": ["ops"]}}
    request = run_js(node_dir, code, "request", ctx)["value"]
    assert request["operation"] == "GetItem"
    assert request["key"] == {"deploymentId": {"S": "D1#state"}, "seq": {"N": "0"}}
    assert request["consistentRead"] is True
    messages = [
        json.loads(
            stored(1, "deployment.status", {"status": "deploying", "current_layer": 1, "total_layers": 2})[
                "message"
            ]
        ),
        json.loads(stored(2, "stack.started", {"stack_name": "net", "layer": 1})["message"]),
        json.loads(
            stored(3, "log.created", {"message": "hi", "stack_name": "net", "level": "info"})["message"]
        ),
        json.loads(stored(4, "deployment.status", {"status": "succeeded"})["message"]),
    ]
    folded = state.fold(state.initial(), messages)
    item = {"upTo": 4, "state": state.dumps(folded)}
    answer = json.loads(run_js(node_dir, code, "response", {**ctx, "result": item})["value"])
    assert answer == {**state.public(folded), "deployment_id": "D1", "seq": 4}
    assert answer["status"] == "succeeded"
    assert "_keys" not in answer["stacks"]["net"]
    # Nobody reported on it yet: the initial state at seq 0, as the snapshot of a new deployment.
    unknown = json.loads(run_js(node_dir, code, "response", {**ctx, "result": None})["value"])
    assert unknown == {**state.public(state.initial()), "deployment_id": "D1", "seq": 0}


def test_publish_resolvers_return_their_arguments(node_dir: Path, open_api: Built) -> None:
    """NONE data source: the payload is the arguments, the result is the payload."""
    code = open_api.named("cloud-ws-graphql-mutation-publishDeploymentEvent")["code"]
    args = {"deployment_id": "D1", "seq": 3, "type": "log.created", "data": "{}"}
    assert run_js(node_dir, code, "request", {"args": args})["value"] == {"payload": args}
    assert run_js(node_dir, code, "response", {"args": args, "result": args})["value"] == args


# -- projects and access -----------------------------------------------------------------------------

POLICY = {"team-a": ["alpha"], "sre": ["*"], "web": ["web-*"], "odd": ["a*z"]}


def _as(groups: list[str], **extra: Any) -> dict[str, Any]:
    return {"args": {"deployment_id": "D1"}, "identity": {"groups": groups}, **extra}


def test_a_subscription_to_a_known_deployment_needs_its_project_granted(node_dir: Path) -> None:
    """The subscribe resolver reads the counter row; an ungranted project is unauthorized, a granted
    one subscribes with a filter on the published ``project``."""
    code = appsync.subscribe_code([], POLICY)
    request = run_js(node_dir, code, "request", _as(["team-a"]))["value"]
    assert request["operation"] == "GetItem"
    assert request["key"] == {"deploymentId": {"S": "D1"}, "seq": {"N": "0"}}
    beta = {"projectName": "beta", "lastSeq": 3}
    assert run_js(node_dir, code, "response", _as(["team-a"], result=beta))["stopped"] == "unauthorized"
    alpha = run_js(node_dir, code, "response", _as(["team-a"], result={"projectName": "alpha", "lastSeq": 3}))
    assert alpha["filter"] == {"converted": {"or": [{"project": {"eq": "alpha"}}]}}
    # `*` grants everything: no filter at all.
    sre = run_js(node_dir, code, "response", _as(["sre"], result=beta))
    assert "value" in sre
    assert sre.get("filter") is None


def test_a_subscription_to_an_unknown_deployment_is_filtered_by_the_grants(node_dir: Path) -> None:
    """Nobody reported on it yet: accepted, with a filter only granted projects pass; a user with
    no expressible grant is refused (nothing could ever reach the subscription)."""
    code = appsync.subscribe_code([], POLICY)
    both = run_js(node_dir, code, "response", _as(["team-a", "web", "odd"], result=None))
    assert both["filter"] == {
        "converted": {"or": [{"project": {"eq": "alpha"}}, {"project": {"beginsWith": "web-"}}]}
    }
    assert run_js(node_dir, code, "response", _as(["odd"], result=None))["stopped"] == "unauthorized"
    assert run_js(node_dir, code, "response", _as([], result=None))["stopped"] == "unauthorized"


def test_queries_refuse_a_deployment_of_an_ungranted_project(node_dir: Path) -> None:
    """``deploymentEvents`` and ``deployment`` check the project stored on the rows they read;
    rows stored before projects existed belong to ``default``."""
    events = appsync.deployment_events_code([], POLICY)
    items = [{**stored(1, "deployment.status", {"status": "deploying"}), "projectName": "beta"}]
    refused = run_js(node_dir, events, "response", _as(["team-a"], result={"items": items}))
    assert refused["stopped"] == "unauthorized"
    items[0]["projectName"] = "web-shop"
    served = run_js(node_dir, events, "response", _as(["web"], result={"items": items}))
    assert [event["seq"] for event in served["value"]] == [1]
    legacy = [stored(1, "deployment.status", {"status": "deploying"})]
    assert run_js(node_dir, events, "response", _as(["team-a"], result={"items": legacy}))["stopped"] == (
        "unauthorized"
    )
    snapshot = appsync.deployment_code([], POLICY)
    checkpoint = {"upTo": 1, "state": state.dumps(state.initial()), "projectName": "alpha"}
    assert "value" in run_js(node_dir, snapshot, "response", _as(["team-a"], result=checkpoint))
    assert (
        run_js(node_dir, snapshot, "response", _as(["web"], result=checkpoint))["stopped"] == "unauthorized"
    )


@pytest.mark.parametrize(
    ("pattern", "project"),
    [
        ("a.b", "a.b"),
        ("a.b", "a-b"),  # `.` is a literal dot, as in the WebSocket API, not any character
        ("a.b", "axb"),
        ("web-*", "web-shop"),
        ("web-*", "web"),
        ("a*z", "abcz"),
        ("*.prod", "shop.prod"),
        ("*.prod", "shop-prod"),
    ],
)
def test_a_pattern_grants_what_it_grants_on_the_websocket_api(
    node_dir: Path, pattern: str, project: str
) -> None:
    """The resolvers' ``granted`` is ``contract.authorization.granted``: ``*`` any run, the rest literal."""
    code = appsync.deployment_events_code([], {"team": [pattern]})
    items = [{**stored(1, "deployment.status", {"status": "deploying"}), "projectName": project}]
    result = run_js(node_dir, code, "response", _as(["team"], result={"items": items}))
    assert ("value" in result) is authorization.granted([pattern], project)


def test_the_resolver_files_become_whole_resolvers(restricted: Built) -> None:
    """Every placeholder is filled in, every lint-only line (the files' imports of one another) left out."""
    codes = [r["code"] for r in restricted.of_type("aws:appsync/resolver:Resolver").values()]
    assert len(codes) == 6
    for code in codes:
        assert not re.search(r"__[A-Z_]+__", code), code
        assert "lint-only" not in code
        assert "./authorize.js" not in code
        assert code.count("from '@aws-appsync/utils'") <= 1
