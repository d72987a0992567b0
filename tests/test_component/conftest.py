"""Run the real Pulumi program (``__main__.py``) in-process under Pulumi's mocks.

``deploy(config)`` sets the mocks first, then the stack configuration, then
runs the program, and returns every registered resource (type, name, parent,
inputs, outputs) and the stack's exports, all resolved. The mocks answer like
AWS would (camelCase output names, ARNs in AWS's formats), so ARNs built by the
component can be compared with the ones a real deployment would produce.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import runpy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml  # type: ignore[import-untyped]  # Pulumi's own dependency; no stubs installed
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "__main__.py"
PROJECT = "cloud-ws"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
STACK_TYPE = "pulumi:pulumi:Stack"
COMPONENT_TYPE = "cloud-ws:index:WebSocketMonitoring"


def _suffix(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:7]


class AwsMocks(pulumi.runtime.Mocks):
    """Answers like AWS: generated physical names, ARNs and endpoints in AWS's formats."""

    def __init__(self) -> None:
        self.inputs: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.calls.append(args.token)
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": REGION, "name": REGION, "id": REGION, "description": "Europe (Ireland)"}, []
        raise NotImplementedError(f"unexpected invoke {args.token}")

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.inputs[(args.typ, args.name)] = dict(args.inputs)
        physical = args.inputs.get("name") or f"{args.name}-{_suffix(args.name)}"
        outputs: dict[str, Any] = {**args.inputs}
        arn = f"arn:aws:{{service}}:{REGION}:{ACCOUNT}:{{resource}}"
        typ = args.typ
        rid = f"{args.name}-id"
        if typ == "aws:dynamodb/table:Table":
            outputs |= {"name": physical, "arn": arn.format(service="dynamodb", resource=f"table/{physical}")}
            rid = physical
        elif typ == "aws:apigatewayv2/api:Api":
            rid = f"ws{_suffix(args.name)}"
            outputs |= {
                "apiEndpoint": f"wss://{rid}.execute-api.{REGION}.amazonaws.com",
                "executionArn": arn.format(service="execute-api", resource=rid),
                "arn": f"arn:aws:apigateway:{REGION}::/apis/{rid}",
            }
        elif typ == "aws:apigatewayv2/stage:Stage":
            outputs |= {"invokeUrl": f"wss://api.execute-api.{REGION}.amazonaws.com/{physical}"}
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            outputs |= {"name": physical, "arn": arn.format(service="logs", resource=f"log-group:{physical}")}
        elif typ == "aws:iam/role:Role":
            outputs |= {"name": physical, "arn": f"arn:aws:iam::{ACCOUNT}:role/{physical}"}
            rid = physical
        elif typ == "aws:lambda/function:Function":
            function_arn = arn.format(service="lambda", resource=f"function:{physical}")
            outputs |= {
                "name": physical,
                "arn": function_arn,
                "invokeArn": f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/"
                f"{function_arn}/invocations",
            }
        elif typ == "aws:sqs/queue:Queue":
            outputs |= {
                "name": physical,
                "arn": arn.format(service="sqs", resource=physical),
                "url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{physical}",
            }
            rid = outputs["url"]
        elif typ == "aws:cloudwatch/eventBus:EventBus":
            outputs |= {
                "name": physical,
                "arn": arn.format(service="events", resource=f"event-bus/{physical}"),
            }
        elif typ == "aws:cloudwatch/eventRule:EventRule":
            bus = args.inputs.get("eventBusName", "default")
            prefix = "" if bus == "default" else f"{bus}/"
            outputs |= {
                "name": physical,
                "arn": arn.format(service="events", resource=f"rule/{prefix}{physical}"),
            }
        elif typ == "aws:sns/topic:Topic":
            outputs |= {"name": physical, "arn": arn.format(service="sns", resource=physical)}
            rid = outputs["arn"]
        elif typ == "aws:cloudwatch/eventConnection:EventConnection":
            outputs |= {
                "name": physical,
                "arn": arn.format(service="events", resource=f"connection/{physical}/{_suffix(physical)}"),
            }
        elif typ == "aws:cloudwatch/eventApiDestination:EventApiDestination":
            outputs |= {
                "name": physical,
                "arn": arn.format(
                    service="events", resource=f"api-destination/{physical}/{_suffix(physical)}"
                ),
            }
        elif typ == "aws:appsync/graphQLApi:GraphQLApi":
            rid = f"gql{_suffix(args.name)}"
            outputs |= {
                "arn": arn.format(service="appsync", resource=f"apis/{rid}"),
                "uris": {
                    "GRAPHQL": f"https://{rid}.appsync-api.{REGION}.amazonaws.com/graphql",
                    "REALTIME": f"wss://{rid}.appsync-realtime-api.{REGION}.amazonaws.com/graphql",
                },
            }
        elif typ == "aws:cognito/userPool:UserPool":
            rid = f"{REGION}_Pool{_suffix(args.name)}"
            outputs |= {"arn": arn.format(service="cognito-idp", resource=f"userpool/{rid}")}
        elif typ == "aws:cognito/userPoolClient:UserPoolClient":
            rid = f"client{_suffix(args.name)}"
        return rid, outputs


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, also remembering each resource's type, name, parent and dependencies."""

    def __init__(self, mocks: AwsMocks) -> None:
        super().__init__(mocks)
        self.registrations: dict[str, tuple[str, str, str, tuple[str, ...]]] = {}

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        dependencies = tuple(request.dependencies)
        self.registrations[response.urn] = (request.type, request.name, request.parent, dependencies)
        return response


@dataclass(frozen=True)
class Registered:
    """One resource as the program registered it."""

    urn: str
    type: str
    name: str
    parent: str
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    id: str
    dependencies: tuple[str, ...] = ()
    """URNs the resource depends on (its inputs' resources and ``depends_on``)."""


@dataclass
class Deployment:
    """What one run of the program registered and exported."""

    resources: dict[str, Registered]
    exports: dict[str, Any]
    invokes: list[str] = field(default_factory=list)
    error: Exception | None = None
    """What the program raised (only with ``deploy(..., allow_error=True)``)."""

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources.values() if r.type == typ]

    def named(self, name: str) -> Registered:
        (found,) = [r for r in self.resources.values() if r.name == name]
        return found

    def ancestors(self, resource: Registered) -> list[Registered]:
        chain: list[Registered] = []
        parent = resource.parent
        while parent:
            chain.append(self.resources[parent])
            parent = self.resources[parent].parent
        return chain

    @property
    def component(self) -> Registered:
        (found,) = self.of_type(COMPONENT_TYPE)
        return found


def stack_config(stack: str) -> dict[str, str]:
    """``Pulumi.<stack>.yaml``'s config, as the CLI hands it to the program (strings, JSON for objects)."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return {key: _config_value(value) for key, value in document["config"].items()}


def _config_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def deploy(config: Mapping[str, Any], stack: str = "dev", allow_error: bool = False) -> Deployment:
    """Run ``__main__.py`` under mocks with ``config`` (keys with or without ``cloud-ws:``).

    With ``allow_error`` a failing program returns what it registered before
    failing, with the exception in ``error``; otherwise the exception propagates.
    """
    # Pulumi's mocks run on the thread's current event loop; async suites that
    # ran earlier in the session (pytest-asyncio) leave the thread without one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    mocks = AwsMocks()
    monitor = RecordingMonitor(mocks)
    settings.set_root_resource(None)  # type: ignore[arg-type]  # a fresh stack per run
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(
        {(k if ":" in k else f"{PROJECT}:{k}"): _config_value(v) for k, v in config.items()}
    )
    exports: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> pulumi.Output[None]:
        runpy.run_path(str(PROGRAM), run_name="__main__")
        root = settings.get_root_resource()
        outputs: dict[str, Any] = getattr(root, "outputs", {})
        return pulumi.Output.all(**outputs).apply(exports.update)

    error: Exception | None = None
    try:
        run()
    except Exception as exc:
        if not allow_error:
            raise
        error = exc
    resources = {}
    for urn, (typ, name, parent, dependencies) in monitor.registrations.items():
        registration = monitor.resources.get(urn)
        resources[urn] = Registered(
            urn=urn,
            type=typ,
            name=name,
            parent=parent,
            inputs=mocks.inputs.get((typ, name), {}),
            outputs=registration.state if registration else {},
            id=registration.id if registration else "",
            dependencies=dependencies,
        )
    return Deployment(resources, exports, mocks.calls, error)


@pytest.fixture(scope="session")
def dev() -> Deployment:
    """The ``dev`` stack as ``Pulumi.dev.yaml`` configures it."""
    return deploy(stack_config("dev"), stack="dev")


@pytest.fixture(scope="session")
def prod() -> Deployment:
    """The ``prod`` stack as ``Pulumi.prod.yaml`` configures it."""
    return deploy(stack_config("prod"), stack="prod")


@pytest.fixture(scope="session")
def bare() -> Deployment:
    """A stack with no configuration at all: every default."""
    return deploy({}, stack="staging")


@pytest.fixture
def fresh_pulumi_settings() -> Iterator[None]:
    """Leave no root resource behind for tests that run things outside ``deploy``."""
    yield
    settings.set_root_resource(None)  # type: ignore[arg-type]
