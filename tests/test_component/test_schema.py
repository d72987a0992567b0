"""Multi-language use: the schema Pulumi infers from our annotations, and the plugin that hosts it.

The schema is what `pulumi package add` generates TypeScript / Go / YAML SDKs
from. It is checked in as docs/component-schema.json; this test fails when the
component's args or outputs change without it. Regenerate with
``CLOUD_WS_UPDATE_SCHEMA=1 pytest tests/test_component/test_schema.py``.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]  # Pulumi's own dependency
import pulumi
import pytest
import yaml  # type: ignore[import-untyped]  # Pulumi's own dependency; no stubs installed
from google.protobuf import empty_pb2  # type: ignore[import-untyped]
from pulumi.provider.experimental.component import ComponentProvider
from pulumi.runtime import settings
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

import pulumi_component
from pulumi_component import PACKAGE, TYPE_TOKEN, VERSION, WebSocketMonitoring, WebSocketMonitoringArgsError
from pulumi_component.archive import BUNDLED
from pulumi_component.settings import ARG_NAMES, DEFAULTS
from pulumi_component.websocket_monitoring import WebSocketMonitoringArgs
from tests.test_component.conftest import ROOT, AwsMocks

SCHEMA_PATH = ROOT / "docs" / "component-schema.json"
PLUGIN_DIR = ROOT / "pulumi_component"


def _schema() -> dict[str, Any]:
    provider = ComponentProvider([WebSocketMonitoring], PACKAGE, version=VERSION)
    assert provider.schema is not None
    schema: dict[str, Any] = json.loads(provider.schema)
    return schema


def test_checked_in_schema_is_what_pulumi_infers() -> None:
    rendered = json.dumps(_schema(), indent=2, sort_keys=True) + "\n"
    if os.environ.get("CLOUD_WS_UPDATE_SCHEMA") == "1":
        SCHEMA_PATH.write_text(rendered)
    assert SCHEMA_PATH.read_text() == rendered, (
        "docs/component-schema.json is stale; regenerate it with "
        "CLOUD_WS_UPDATE_SCHEMA=1 pytest tests/test_component/test_schema.py"
    )


def test_schema_offers_the_outputs_contract_and_documents_every_input() -> None:
    resource = _schema()["resources"][TYPE_TOKEN]
    assert TYPE_TOKEN == "cloud-ws:index:WebSocketMonitoring"
    assert resource["isComponent"] is True
    assert set(resource["properties"]) == {
        "websocketUrl",
        "managementEndpoint",
        "eventBusName",
        "eventSource",
        "region",
        "userPoolId",
        "userPoolClientId",
        "connectionsTableName",
        "graphqlUrl",
        "graphqlRealtimeUrl",
        "notificationBusName",
        "notificationTopicArn",
    }
    assert all(p["type"] == "string" for p in resource["properties"].values())
    # Absent when AppSync is disabled or nothing is notified: optional outputs, every other one always there.
    assert set(resource["properties"]) - set(resource["required"]) == {
        "graphqlUrl",
        "graphqlRealtimeUrl",
        "notificationBusName",
        "notificationTopicArn",
    }
    assert sorted(resource["requiredInputs"]) == ["userPoolClientId", "userPoolId"]
    for name, prop in {**resource["inputProperties"], **resource["properties"]}.items():
        assert prop.get("description"), name
    types = {name: prop.get("type", prop.get("$ref")) for name, prop in resource["inputProperties"].items()}
    assert types["notifications"] == "#/types/cloud-ws:index:NotificationsArgs"
    assert types["throttlingBurstLimit"] == "integer"
    assert types["throttlingRateLimit"] == "number"
    assert types["subscribeGroups"] == "array"
    assert types["createEventBus"] == "boolean"
    assert types["deliveryMaxConcurrency"] == "integer"
    assert types["enableAppsync"] == "boolean"
    assert "deliveryMaxConcurrency" not in resource["requiredInputs"]


def test_plugin_folder_hosts_the_component(monkeypatch: pytest.MonkeyPatch) -> None:
    hosted: list[dict[str, Any]] = []
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(
        "pulumi.provider.experimental.component_provider_host",
        lambda components, name, namespace=None, version=None: hosted.append(
            {"components": components, "name": name, "version": version}
        ),
    )
    runpy.run_path(str(PLUGIN_DIR / "__main__.py"), run_name="__main__")
    assert hosted == [{"components": [WebSocketMonitoring], "name": "cloud-ws", "version": VERSION}]
    assert sys.path[0] == str(ROOT)  # handlers/ is importable beside the component
    manifest = yaml.safe_load((PLUGIN_DIR / "PulumiPlugin.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"


def test_plugin_serves_the_checked_in_schema_over_grpc(tmp_path: Path) -> None:
    """Run the plugin as Pulumi does (``python <folder> <engine>``, from elsewhere) and ask for its schema."""
    plugin = subprocess.Popen(
        [sys.executable, str(PLUGIN_DIR), "127.0.0.1:1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert plugin.stdout is not None
        port = plugin.stdout.readline().strip()  # a provider announces its port first
        assert port.isdigit(), plugin.stderr.read() if plugin.stderr else port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            info = stub.GetPluginInfo(empty_pb2.Empty(), timeout=30)
            reply = stub.GetSchema(provider_pb2.GetSchemaRequest(version=0), timeout=30)
    finally:
        plugin.terminate()
        plugin.wait(timeout=30)
    assert info.version == VERSION
    served = json.dumps(json.loads(reply.schema), indent=2, sort_keys=True) + "\n"
    assert served == SCHEMA_PATH.read_text()


def test_plugin_requirements_pin_what_the_archive_bundles() -> None:
    pins = {}
    for line in (PLUGIN_DIR / "requirements.txt").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    assert {name: pins.get(name) for name in BUNDLED} == dict(BUNDLED)
    # The provider runs with the Pulumi SDKs the tests ran with.
    assert pins["pulumi"] == metadata.version("pulumi")
    assert pins["pulumi-aws"] == metadata.version("pulumi-aws")


def test_constructor_signature_is_what_the_host_calls() -> None:
    """The host calls ``Class(name, args, opts)`` with a dict of Python-named args."""
    annotations = WebSocketMonitoring.__init__.__annotations__
    assert list(annotations)[:2] == ["name", "args"]
    assert pulumi_component.__all__


def test_output_values_are_checked_once_known(fresh_pulumi_settings: None) -> None:
    """A value that is an Output (from another resource or stack) is checked when it resolves."""
    settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(AwsMocks(), project="cloud-ws", stack="dev", preview=False)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> pulumi.Output[str]:
        monitoring = WebSocketMonitoring(
            "m",
            {
                "user_pool_id": "eu-west-1_Pool",
                "user_pool_client_id": "client",
                "throttling_burst_limit": pulumi.Output.from_input(-3),
                "stage_name": "dev",
            },
        )
        return monitoring.websocket_url

    # Pulumi wraps it with the resource and input it was found in; the field is still named.
    with pytest.raises(ValueError, match=r"\[throttling_burst_limit\] must be at least 0, got -3"):
        run()


def test_component_refuses_bad_args_directly() -> None:
    base: dict[str, Any] = {
        "user_pool_id": "eu-west-1_Pool",
        "user_pool_client_id": "client",
        "stage_name": "x",
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({"user_pool_client_id": "c"}, "[user_pool_id] is required"),
        ({**base, "user_pool_client_id": " "}, "[user_pool_client_id] must be a non-empty string"),
        ({**base, "throttling_burst_limit": True}, "[throttling_burst_limit] must be a whole number"),
        ({**base, "throttling_rate_limit": "fast"}, "[throttling_rate_limit] must be a number"),
        ({**base, "timeout_seconds": 30}, "[timeout_seconds] must be between 1 and 29"),
        (
            {**base, "delivery_max_concurrency": 1001},
            "[delivery_max_concurrency] must be between 2 and 1000",
        ),
        ({**base, "event_bus_name": "b", "create_event_bus": True}, "[create_event_bus] cannot be true"),
        ({**base, "delivery_min_pollers": 2.5}, "[delivery_min_pollers] must be a whole number"),
        (
            {**base, "delivery_min_pollers": 4, "delivery_max_pollers": 3},
            "[delivery_max_pollers] must be between 4 and 2000",
        ),
        ({**base, "delivery_max_pollers": 8}, "[delivery_max_pollers] needs delivery_min_pollers"),
        (
            {**base, "delivery_min_pollers": 4, "delivery_max_concurrency": 50},
            "[delivery_max_concurrency] cannot be set with delivery_min_pollers",
        ),
        ({**base, "create_event_bus": "yes"}, "[create_event_bus] must be true or false"),
        ({**base, "runtime": "nodejs22.x"}, "[runtime] must be one of python3.12, python3.13"),
        ({**base, "subscribe_groups": "ops"}, "[subscribe_groups] must be a list"),
        ({**base, "extra_client_ids": [""]}, "[extra_client_ids] must be a list of non-empty strings"),
        ({**base, "tags": {}}, "[tags] is not an argument"),
        (
            {**base, "configure_api_gateway_account": 1},
            "[configure_api_gateway_account] must be true or false",
        ),
        ({**base, "enable_appsync": "false"}, "[enable_appsync] must be true or false"),
    ]
    for args, message in cases:
        with pytest.raises(WebSocketMonitoringArgsError) as failure:
            WebSocketMonitoring("m", args)  # type: ignore[arg-type]  # deliberately wrong
        assert message in str(failure.value), (args, str(failure.value))


def test_args_are_the_settings_and_their_docstrings_state_the_defaults() -> None:
    """One list of arguments (Settings' fields), one place for defaults (DEFAULTS)."""
    assert tuple(WebSocketMonitoringArgs.__annotations__) == ARG_NAMES
    assert set(DEFAULTS) <= set(ARG_NAMES)
    inputs = _schema()["resources"][TYPE_TOKEN]["inputProperties"]
    camel = {re.sub(r"_(\w)", lambda m: m.group(1).upper(), name): name for name in ARG_NAMES}
    for prop, description in ((p, d["description"]) for p, d in inputs.items()):
        field = camel[prop]
        if field not in DEFAULTS:
            continue
        value = DEFAULTS[field]
        if isinstance(value, bool):
            stated = str(value).lower()
        elif isinstance(value, str):
            stated = f"`{value}`"
        else:
            stated = f"{value:g}"
        assert f"Default: {stated}." in description, (field, description)
