"""``cloud-ws emit`` and ``cloud-ws demo``, run in-process against moto's bus."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from cloud_ws import cli
from cloud_ws.commands import demo
from tests.test_plugin.conftest import Bus, details


@pytest.fixture
def outputs_file(bus: Bus, tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(bus.outputs), encoding="utf-8")
    return path


def test_emit_sends_one_event_and_prints_its_id(
    bus: Bus, outputs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The event reaches the rule target; stdout is its event_id."""
    code = cli.main(
        [
            "emit",
            "deployment.status",
            "D1BRV40",
            "--data",
            '{"status": "deploying"}',
            "--outputs",
            str(outputs_file),
        ]
    )

    assert code == 0
    (event,) = bus.received(1)
    assert event["detail-type"] == "deployment.status"
    assert event["detail"]["data"] == {"status": "deploying"}
    assert capsys.readouterr().out.strip() == event["detail"]["event_id"]


def test_emit_finds_the_outputs_file_through_the_environment(
    bus: Bus, outputs_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLOUD_WS_OUTPUTS names the default outputs file; --data defaults to {}."""
    monkeypatch.setenv("CLOUD_WS_OUTPUTS", str(outputs_file))
    assert cli.main(["emit", "custom.thing", "D1"]) == 0
    assert bus.received(1)[0]["detail"]["data"] == {}


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["emit", "log.created", "D1", "--data", "{not json"], "--data is not valid JSON"),
        (["emit", "log.created", "D1", "--data", "[1, 2]"], "--data must be a JSON object"),
        (["emit", "NotAType", "D1"], "TYPE must be a domain.verb"),
        (["emit", "log.created", "bad id!"], "DEPLOYMENT_ID must match"),
        (["emit", "log.created", "D1", "--outputs", "/nonexistent/outputs.json"], "no outputs file at"),
        (["demo", "--outputs", "/nonexistent/outputs.json"], "no outputs file at"),
        (["demo", "bad id!"], "DEPLOYMENT_ID must match"),
        (["demo", "--speed", "0"], "--speed must be a positive"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(
    bus: Bus, outputs_file: Path, capsys: pytest.CaptureFixture[str], argv: list[str], complaint: str
) -> None:
    """No traceback, nothing sent."""
    if "--outputs" not in argv:
        argv = [*argv, "--outputs", str(outputs_file)]

    assert cli.main(argv) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert complaint in err
    assert bus.everything() == []


def test_emit_to_a_missing_bus_fails_with_exit_code_1(
    bus: Bus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """EventBridge answers, but the bus does not exist: one line naming the error, without
    waiting out the timeout (the test would take 30 s otherwise)."""
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({**bus.outputs, "event_bus_name": "no-such-bus"}), encoding="utf-8")

    argv = ["emit", "log.created", "D1", "--data", '{"message": "hello"}', "--outputs", str(path)]
    assert cli.main([*argv, "--timeout", "30"]) == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "ResourceNotFoundException" in err


def test_demo_plays_a_layered_deployment_with_one_failure(
    bus: Bus, outputs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Layers of stacks, logs, progress, exactly one stack failure, a failed deployment."""
    code = cli.main(["demo", "DEMO1", "--outputs", str(outputs_file), "--speed", "100000"])

    assert code == 0, capsys.readouterr().err
    received = bus.everything()
    types = Counter(event["detail-type"] for event in received)
    assert types["stack.failed"] == 1
    assert types["stack.deployed"] >= 6
    assert types["log.created"] > 20
    assert types["stack.progress"] > 5
    statuses = [
        d["data"]
        for e, d in zip(received, details(received), strict=True)
        if e["detail-type"] == "deployment.status"
    ]
    assert statuses[0] == {"status": "deploying", "current_layer": 0, "total_layers": 4}
    assert {s.get("current_layer") for s in statuses} >= {1, 2, 3}
    assert statuses[-1]["status"] == "failed"
    assert {d["deployment_id"] for d in details(received)} == {"DEMO1"}
    out = capsys.readouterr().out
    assert "cloud-ws monitor DEMO1" in out
    assert f"{len(received)} events delivered" in out


def test_demo_script_is_ordered_paced_and_reproducible() -> None:
    """Steps are in time order, span tens of seconds at speed 1, and a given id replays the same."""
    first = demo.script("D1", random.Random("D1"))
    again = demo.script("D1", random.Random("D1"))

    assert [(s.at, s.hook, s.args) for s in first] == [(s.at, s.hook, s.args) for s in again]
    assert [s.at for s in first] == sorted(s.at for s in first)
    real_seconds = first[-1].at / demo.SIMULATED_PER_SECOND
    assert 20 < real_seconds < 90
    stacks_per_layer = {len(stacks) for _, stacks in demo.LAYERS}
    assert min(stacks_per_layer) >= 2
    assert [s.hook for s in first].count("stack_failed") == 1
