"""The outputs contract (contract.outputs): its reader, and how the plugin and the CLI surface it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cloud_ws import cli
from contract import outputs as contract
from contract.outputs import OutputsError, load_outputs
from plugin import OrchestratorPlugin

#: What `pulumi stack output --json` prints for a cloud stack: every required key, no local one.
PULUMI_JSON = """{
  "connections_table_name": "cloud-ws-connections-3f1e2d1",
  "event_bus_name": "cloud-ws-prod-bus-8c0a4b2",
  "event_source": "cloud.orchestrator",
  "management_endpoint": "https://abc123.execute-api.eu-west-1.amazonaws.com/prod",
  "region": "eu-west-1",
  "user_pool_client_id": "4hj2k3l4m5n6o7p8q9r0s1t2u3",
  "user_pool_id": "eu-west-1_AbCdEfGhI",
  "websocket_url": "wss://abc123.execute-api.eu-west-1.amazonaws.com/prod"
}
"""


def _write(tmp_path: Path, outputs: dict[str, Any] | str) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(outputs if isinstance(outputs, str) else json.dumps(outputs), encoding="utf-8")
    return path


def _without(key: str) -> dict[str, Any]:
    outputs: dict[str, Any] = json.loads(PULUMI_JSON)
    del outputs[key]
    return outputs


def test_the_key_table_is_the_design_one() -> None:
    """Eight keys every stack exports; the local and AppSync ones are optional; each says what it means."""
    assert set(json.loads(PULUMI_JSON)) == contract.REQUIRED_KEYS
    local_or_appsync = {"aws_endpoint_url", "dashboard_url", "graphql_url", "graphql_realtime_url"}
    assert local_or_appsync <= contract.OPTIONAL_KEYS
    assert not contract.REQUIRED_KEYS & contract.OPTIONAL_KEYS
    assert all(meaning for meaning in {**contract.REQUIRED, **contract.OPTIONAL}.values())
    assert set(contract.PLUGIN_NEEDS) <= contract.REQUIRED_KEYS


def test_reads_pulumi_stack_output_json(tmp_path: Path) -> None:
    """The file `pulumi stack output --json > outputs.json` writes is read as it is."""
    path = _write(tmp_path, PULUMI_JSON)
    assert load_outputs(path, needs=contract.REQUIRED_KEYS) == json.loads(PULUMI_JSON)
    assert load_outputs(str(path), needs=contract.REQUIRED_KEYS) == json.loads(PULUMI_JSON)


def test_reads_the_automation_apis_stack_outputs() -> None:
    """``stack.outputs()`` maps keys to ``OutputValue``s; the reader unwraps them."""
    from pulumi.automation import OutputValue

    wrapped = {key: OutputValue(value, secret=False) for key, value in json.loads(PULUMI_JSON).items()}
    assert load_outputs(wrapped, needs=contract.REQUIRED_KEYS) == json.loads(PULUMI_JSON)


def test_the_default_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(contract.ENV_VAR, raising=False)
    assert contract.default_path() == Path(".cloud-ws/outputs.json")
    with pytest.raises(OutputsError, match=r"no outputs file at \.cloud-ws/outputs\.json"):
        load_outputs(needs=())
    monkeypatch.setenv(contract.ENV_VAR, str(_write(tmp_path, PULUMI_JSON)))
    assert load_outputs(needs=contract.PLUGIN_NEEDS)["region"] == "eu-west-1"


@pytest.mark.parametrize("key", sorted(contract.REQUIRED_KEYS))
def test_a_file_missing_a_required_key_is_refused_naming_it_and_the_file(tmp_path: Path, key: str) -> None:
    path = _write(tmp_path, _without(key))
    with pytest.raises(OutputsError) as refused:
        load_outputs(path, needs=contract.REQUIRED_KEYS)
    assert str(refused.value) == f"outputs file {path} lacks {key}"


def test_each_consumer_checks_only_what_it_needs(tmp_path: Path) -> None:
    """A key nobody asked for may be missing; an empty or non-string value counts as missing."""
    path = _write(tmp_path, _without("websocket_url"))
    assert load_outputs(path, needs=contract.PLUGIN_NEEDS)["event_bus_name"]
    with pytest.raises(OutputsError, match=r"lacks event_bus_name, region$"):
        load_outputs({**_without("region"), "event_bus_name": ""}, needs=contract.PLUGIN_NEEDS)
    with pytest.raises(OutputsError, match="lacks region"):
        load_outputs({**json.loads(PULUMI_JSON), "region": 7}, needs=[contract.REGION])


@pytest.mark.parametrize(
    ("text", "complaint"),
    [("[1, 2]", "must hold a JSON object"), ("{not json", "cannot read outputs file")],
)
def test_a_file_that_is_not_a_json_object_is_refused(tmp_path: Path, text: str, complaint: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(OutputsError, match=complaint) as refused:
        load_outputs(path, needs=())
    assert str(path) in str(refused.value)


def test_the_plugin_reads_its_keys_from_pulumi_json(tmp_path: Path) -> None:
    plugin = OrchestratorPlugin.from_outputs(_write(tmp_path, PULUMI_JSON), client=object(), autostart=False)
    assert (plugin.event_bus_name, plugin.source, plugin.region) == (
        "cloud-ws-prod-bus-8c0a4b2",
        "cloud.orchestrator",
        "eu-west-1",
    )
    assert plugin.endpoint_url is None
    plugin.close()


@pytest.mark.parametrize("key", contract.PLUGIN_NEEDS)
def test_the_plugin_refuses_outputs_missing_its_key(tmp_path: Path, key: str) -> None:
    path = _write(tmp_path, _without(key))
    with pytest.raises(OutputsError, match=f"{re.escape(str(path))} lacks {key}$"):
        OrchestratorPlugin.from_outputs(str(path), client=object(), autostart=False)


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["emit", "log.created", "D1"], "event_bus_name"),
        (["demo", "D1"], "region"),
        (["token"], "user_pool_client_id"),
        (["monitor", "D1", "--token", "T"], "websocket_url"),
        (["list", "--token", "T"], "websocket_url"),
    ],
)
def test_the_cli_names_the_missing_key_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], key: str
) -> None:
    path = _write(tmp_path, _without(key))
    assert cli.main([*argv, "--outputs", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{path} lacks {key}" in err
