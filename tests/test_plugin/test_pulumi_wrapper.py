"""`cloud-ws pulumi -- up ...`: a stand-in `pulumi` (first on PATH) writes engine event logs
built from the engine's event schema at a realistic pace; the wrapper tails them and reports
through the plugin to a real `cloud-ws local`, watched through a plain WebSocket subscription.
Also the event-log reader on its own, and the argument and CI-environment helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import EngineEvent
from websockets.sync.client import connect

from cloud_ws import cli
from cloud_ws.commands import pulumi_wrapper
from contract.protocol import TERMINAL_STATUSES
from plugin import AutomationAdapter
from plugin.eventlog import EventLogTailer, LoggedEngineEvent, parse_engine_event, stack_of_urn
from tests.support.local_stack import CLI, ROOT, LocalStackProcess, start_local_stack, stop_local_stack
from tests.support.waiting import eventually_sync
from tests.test_plugin import pulumi_standin as standin
from tests.test_plugin.test_automation import DATA
from tests.test_plugin.test_hooks import Recorder

#: Seconds between two engine events of the stand-in: an update's pace, not a test's.
PACE = 0.01


# -- the event log and its reader ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["pulumi_up_network.jsonl", "pulumi_up_database_rds.jsonl"])
def test_logged_events_map_exactly_as_the_automation_apis_own(name: str) -> None:
    """The same recorded log, parsed by plugin.eventlog and by pulumi.automation, makes the same events."""
    lines = [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]
    ours, theirs = Recorder(environment="dev"), Recorder(environment="dev")
    # One clock for both, moved only between engine events: a resource's duration is measured on
    # the adapter's clock, and two readings of a real one would differ on a busy machine.
    now = [0.0]

    def clock() -> float:
        return now[0]

    ours_adapter = AutomationAdapter(ours, "D1", "network", layer=1, progress_interval=0, clock=clock)
    theirs_adapter = AutomationAdapter(theirs, "D1", "network", layer=1, progress_interval=0, clock=clock)
    for raw in lines:
        ours_adapter(parse_engine_event(raw))
        theirs_adapter(EngineEvent.from_json(raw))
        now[0] += 0.25
    assert ours.events == theirs.events
    assert len(ours.events) > 5


def test_every_kind_of_event_of_the_schema_is_read() -> None:
    """A failing update's log from the schema: steps, diagnostics, failure, summary, cancel."""
    events = [parse_engine_event(raw) for raw in standin.update_events("prod", 3, fail_at=2, warning_at=1)]
    assert events[0].prelude_event is not None
    assert events[1].resource_pre_event is not None
    assert stack_of_urn(events[1].urn) == "prod"
    failed = next(event.res_op_failed_event for event in events if event.res_op_failed_event)
    assert failed.metadata.urn.endswith("::resource-2")
    summary = events[-2].summary_event
    assert summary is not None
    assert summary.resource_changes == {"create": 1}
    assert events[-1].cancel_event is not None
    assert stack_of_urn("not-a-urn") is None


def test_the_tailer_waits_for_whole_lines_skips_junk_and_ends_at_the_cancel_event(tmp_path: Path) -> None:
    """A line written in two parts is one event; a line that is not JSON is skipped."""
    path = tmp_path / "events.jsonl"
    seen: list[LoggedEngineEvent] = []
    tailer = EventLogTailer(path, seen.append, poll=0.001)
    tailer.start()  # before the file exists, as when the engine has not created it yet
    raw = [json.dumps(event) for event in standin.update_events("dev", 2)]
    with path.open("w") as log:
        log.write(raw[0] + "\nnot json\n" + raw[1][:10])
        log.flush()
        eventually_sync(lambda: len(seen) == 1, "the first event")
        log.write(raw[1][10:] + "\n" + "\n".join(raw[2:]) + "\n" + raw[0] + "\n")
    eventually_sync(lambda: tailer.ended, "the tailer to end at the cancel event")
    assert len(seen) == len(raw)  # the line after the cancel event is not read
    assert tailer.skipped == 1
    assert seen[-1].cancel_event is not None
    assert tailer.stop(1)


def test_stop_reads_what_is_left_including_a_last_line_without_newline(tmp_path: Path) -> None:
    """The engine exited: the rest of the file is read before the tailer ends."""
    path = tmp_path / "events.jsonl"
    events = standin.update_events("dev", 1)[:-1]  # no cancel event: the engine died
    path.write_text("\n".join(json.dumps(event) for event in events))
    seen: list[LoggedEngineEvent] = []

    def keep_then_raise(event: LoggedEngineEvent) -> None:  # a raising callback too
        seen.append(event)
        raise RuntimeError("a handler that fails")

    tailer = EventLogTailer(path, keep_then_raise)
    tailer.start()
    assert tailer.stop(5)
    assert len(seen) == len(events)


# -- arguments and the CI environment ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "command", "stack"),
    [
        (["up", "--yes", "-s", "dev"], "up", "dev"),
        (["--cwd", "infra", "-v", "3", "up", "--stack=org/network/prod"], "up", "org/network/prod"),
        (["-C", "infra", "destroy", "-sstaging"], "destroy", "staging"),
        (["--non-interactive", "stack", "ls"], "stack", None),
        (["--color", "never"], None, None),
    ],
)
def test_the_command_and_stack_are_found_among_pulumis_flags(
    argv: list[str], command: str | None, stack: str | None
) -> None:
    index = pulumi_wrapper.command_index(argv)
    assert (argv[index] if index is not None else None) == command
    assert pulumi_wrapper.flag_value(argv, ("-s", "--stack")) == stack


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"GITHUB_RUN_ID": "9134", "GITHUB_RUN_ATTEMPT": "2"}, "gh-9134-2"),
        ({"GITHUB_RUN_ID": "9134"}, "gh-9134-1"),
        ({"CI_PIPELINE_ID": "77"}, "gl-77"),
        ({"BUILD_TAG": "jenkins-infra/deploy main-12"}, "jenkins-jenkins-infra-deploy-main-12"),
        ({"BUILD_ID": "b" * 80}, "build-" + "b" * 58),
        ({"HOME": "/root"}, None),
    ],
)
def test_the_default_deployment_id_comes_from_the_ci_run(
    environ: dict[str, str], expected: str | None
) -> None:
    assert pulumi_wrapper.ci_deployment_id(environ) == expected


# -- the wrapper against a real local stack -----------------------------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackProcess]:
    """One local stack for this module."""
    stack = start_local_stack(tmp_path_factory.mktemp("pulumi-wrapper-local"))
    yield stack
    stop_local_stack(stack)


@pytest.fixture
def fake_pulumi(tmp_path: Path) -> Path:
    """The stand-in pulumi's directory (put first on PATH by :func:`wrapper`)."""
    standin.install(tmp_path / "bin")
    return tmp_path


def environment(fake: Path, scenario: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "PATH": standin.path_with(fake / "bin"), **scenario}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(name, None)
    for _, names in pulumi_wrapper.CI_RUN_IDS:
        env.pop(names[0], None)
    return env


def wrapper(fake: Path, outputs: Path, *args: str, **scenario: Any) -> subprocess.Popen[str]:
    """`cloud-ws pulumi --outputs OUTPUTS ARGS`, the stand-in following ``scenario``."""
    return subprocess.Popen(
        [*CLI, "pulumi", "--outputs", str(outputs), *args],
        cwd=ROOT,
        env=environment(fake, standin.scenario(fake, pace=PACE, **scenario)),
        stdin=subprocess.DEVNULL,  # as in CI: pulumi gets its own process group
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def watch(local: LocalStackProcess, deployment_id: str, timeout: float = 60.0) -> list[str]:
    """The deployment's events from seq 1 up to its first terminal status, in seq order, through
    a plain subscription (replayed, then live; a seq seen twice is dropped, as clients do)."""
    frames: dict[int, str] = {}
    terminal: int | None = None
    deadline = time.monotonic() + timeout
    with connect(f"{local.outputs['websocket_url']}?token={local.token()}") as ws:
        ws.send(json.dumps({"action": "subscribe", "deployment_id": deployment_id, "since": 0}))
        while terminal is None or any(seq not in frames for seq in range(1, terminal + 1)):
            received = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            assert isinstance(received, str)
            for frame in received.split("\n"):
                message = json.loads(frame)
                if message["type"] in ("subscribed", "deployment.snapshot") or "seq" not in message:
                    continue
                frames.setdefault(message["seq"], frame)
                status = message["data"].get("status")
                if message["type"] == "deployment.status" and status in TERMINAL_STATUSES:
                    terminal = message["seq"] if terminal is None else min(terminal, message["seq"])
    return [frames[seq] for seq in range(1, terminal + 1)]


def kinds(frames: list[str]) -> list[tuple[str, Any]]:
    """(type, and the status, level or stack name) of each message."""
    result = []
    for frame in frames:
        message = json.loads(frame)
        data = message["data"]
        detail = data.get("level") if message["type"] == "log.created" else data.get("status")
        result.append((message["type"], detail or data.get("stack_name")))
    return result


pulumi_stdout = ["Updating (dev)\n", "\n", "     Type   Name   Status\n", " +   aws    vpc    created\n"]


@pytest.mark.slow
def test_a_successful_up_reaches_subscribers_and_stdout_is_untouched(
    local: LocalStackProcess, fake_pulumi: Path
) -> None:
    """Started, progress, logs, deployed, succeeded; pulumi's stdout and exit code 0 as they were."""
    events = standin.update_events("dev", 6, warning_at=3)
    process = wrapper(
        fake_pulumi,
        local.outputs_path,
        "--deployment-id",
        "PW-ok",
        "--environment",
        "dev",
        "--",
        "up",
        "--yes",
        "--stack",
        "org/network/dev",
        events=events,
        stdout=pulumi_stdout,
        stderr="warning: a note from pulumi\n",
        argv_file=str(fake_pulumi / "argv.json"),
    )
    code, out, err = finish(process)
    assert code == 0, err
    assert out == "".join(pulumi_stdout)
    assert err == "warning: a note from pulumi\n"  # our own line only for an id we chose
    argv = json.loads((fake_pulumi / "argv.json").read_text())
    assert argv[:2] == ["up", "--event-log"]
    assert argv[3:] == ["--yes", "--stack", "org/network/dev"]

    frames = watch(local, "PW-ok")
    seen = kinds(frames)
    assert seen[0] == ("deployment.status", "deploying")
    assert seen[1] == ("stack.started", "dev")
    assert ("log.created", "warning") in seen
    assert ("stack.progress", "dev") in seen
    assert seen[-2:] == [("stack.deployed", "dev"), ("deployment.status", "succeeded")]
    deployed = json.loads(frames[-2])["data"]
    assert (deployed["resource_count"], deployed["environment"]) == (7, "dev")
    assert "[secret]" not in "".join(frames)


@pytest.mark.slow
def test_a_failed_up_exits_1_and_reports_the_resources_error(
    local: LocalStackProcess, fake_pulumi: Path
) -> None:
    """The stack is named from the engine's URNs (no --stack); the failure's cause is in both events."""
    process = wrapper(
        fake_pulumi,
        local.outputs_path,
        "--deployment-id",
        "PW-fail",
        "--",
        "up",
        "--yes",
        events=standin.update_events("database-rds", 5, fail_at=4),
        stdout=pulumi_stdout,
        exit_code=1,
    )
    code, out, err = finish(process)
    assert code == 1, err
    assert out == "".join(pulumi_stdout)
    frames = watch(local, "PW-fail")
    failed = [json.loads(f)["data"] for f in frames if json.loads(f)["type"] == "stack.failed"]
    assert failed[0]["stack_name"] == "database-rds"
    assert failed[0]["error_message"].startswith("creating RDS DB Instance (orders): InvalidSubnet")
    last = json.loads(frames[-1])["data"]
    assert last["status"] == "failed"
    assert last["error_message"] == (
        "stack database-rds failed: "
        "creating RDS DB Instance (orders): InvalidSubnet: Subnet not found: subnet-0b7d41"
    )


@pytest.mark.slow
def test_pulumi_dying_mid_update_exits_255_and_the_stack_still_ends(
    local: LocalStackProcess, fake_pulumi: Path
) -> None:
    """No summary ever came: the stack fails with pulumi's exit code, the deployment fails."""
    events = standin.update_events("dev", 4)[:6]
    process = wrapper(
        fake_pulumi, local.outputs_path, "--deployment-id", "PW-died", "--", "up", "-s", "dev",
        events=events, exit_code=255, stderr="panic: fatal error\n",
    )  # fmt: skip
    code, out, err = finish(process)
    assert (code, out, err) == (255, "", "panic: fatal error\n")
    seen = kinds(watch(local, "PW-died"))
    assert seen[-2:] == [("stack.failed", "dev"), ("deployment.status", "failed")]


@pytest.mark.slow
def test_layers_report_one_deployment_that_ends_with_the_last_layer(
    local: LocalStackProcess, fake_pulumi: Path
) -> None:
    """Two runs, layer 1 then layer 2 of 2, one deployment: it succeeds once, after the last."""
    for layer, stack in ((1, "network"), (2, "app")):
        process = wrapper(
            fake_pulumi, local.outputs_path, "--deployment-id", "PW-layers",
            "--layer", str(layer), "--total-layers", "2", "--", "up", "--yes", "-s", stack,
            events=standin.update_events(stack, 2),
        )  # fmt: skip
        code, _, err = finish(process)
        assert code == 0, err
    statuses = [item for item in kinds(watch(local, "PW-layers")) if item[0] != "log.created"]
    assert [s for s in statuses if s[0] == "deployment.status"] == [
        ("deployment.status", "deploying"),
        ("deployment.status", "deploying"),
        ("deployment.status", "succeeded"),
    ]
    assert [s for s in statuses if s[0] == "stack.deployed"] == [
        ("stack.deployed", "network"),
        ("stack.deployed", "app"),
    ]


@pytest.mark.slow
def test_sigterm_reaches_pulumi_once_and_the_deployment_is_cancelled(
    local: LocalStackProcess, fake_pulumi: Path
) -> None:
    """A cancelled CI job: pulumi gets the signal once, cancels, and its exit code is passed on."""
    ready = fake_pulumi / "ready"
    signals = fake_pulumi / "signals.json"
    process = wrapper(
        fake_pulumi, local.outputs_path, "--deployment-id", "PW-cancel", "--", "up", "--yes", "-s", "dev",
        events=standin.interrupted_events("dev", 2), wait_for_signal=True,
        ready_file=str(ready), signals_file=str(signals),
    )  # fmt: skip
    eventually_sync(ready.exists, "the update to be under way")
    process.send_signal(signal.SIGTERM)
    code, _, err = finish(process)
    assert code == 255
    assert err.endswith("error: update canceled\n")
    assert json.loads(signals.read_text()) == [signal.SIGTERM]
    seen = kinds(watch(local, "PW-cancel"))
    assert ("stack.started", "dev") in seen
    assert seen[-1] == ("deployment.status", "cancelled")


@pytest.mark.slow
def test_an_unreachable_endpoint_never_breaks_the_update(fake_pulumi: Path, local: LocalStackProcess) -> None:
    """Nothing listens where the events go: pulumi's output and exit code are unchanged, one line says so."""
    outputs = {**local.outputs, "aws_endpoint_url": "http://127.0.0.1:1"}
    path = fake_pulumi / "unreachable.json"
    path.write_text(json.dumps(outputs))
    process = wrapper(
        fake_pulumi, path, "--deployment-id", "PW-down", "--close-timeout", "0.5", "--", "up", "-s", "dev",
        events=standin.update_events("dev", 5, fail_at=2), stdout=pulumi_stdout, exit_code=1,
    )  # fmt: skip
    code, out, err = finish(process)
    assert (code, out) == (1, "".join(pulumi_stdout))
    assert err.startswith("cloud-ws pulumi: ")
    assert "monitoring events not delivered" in err
    assert len(err.splitlines()) == 1


def test_other_pulumi_commands_run_as_they_are(fake_pulumi: Path, tmp_path: Path) -> None:
    """`pulumi stack ls` has no update to report: no --event-log, no outputs needed, its exit code."""
    argv_file = tmp_path / "argv.json"
    process = wrapper(
        fake_pulumi, tmp_path / "none.json", "--", "stack", "ls",
        stdout=["NAME  LAST UPDATE\n"], exit_code=3, argv_file=str(argv_file),
    )  # fmt: skip
    code, out, err = finish(process)
    assert (code, out, err) == (3, "NAME  LAST UPDATE\n", "")
    assert json.loads(argv_file.read_text()) == ["stack", "ls"]


def test_no_outputs_file_still_runs_the_update(fake_pulumi: Path, tmp_path: Path) -> None:
    """Monitoring is not set up: one line says so, and pulumi runs and exits as it would."""
    process = wrapper(
        fake_pulumi, tmp_path / "none.json", "--deployment-id", "PW-x", "--", "up", "--yes",
        events=standin.update_events("dev", 2), stdout=pulumi_stdout,
    )  # fmt: skip
    code, out, err = finish(process)
    assert (code, out) == (0, "".join(pulumi_stdout))
    assert err.startswith("cloud-ws pulumi: not reporting this update: no outputs file")


def test_a_generated_id_is_printed_and_a_missing_pulumi_is_127(
    fake_pulumi: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cli.main(["pulumi", "--", "up"]) == 127
    assert "no pulumi on PATH" in capsys.readouterr().err
    assert cli.main(["pulumi"]) == 2
    assert cli.main(["pulumi", "--deployment-id", "bad id!", "--", "up"]) == 2
    assert cli.main(["pulumi", "--total-layers", "3", "--", "up"]) == 2
    assert cli.main(["pulumi", "--layer", "4", "--total-layers", "3", "--", "up"]) == 2
    process = wrapper(fake_pulumi, tmp_path / "none.json", "--", "up", events=standin.update_events("dev", 1))
    _, _, err = finish(process)
    assert err.splitlines()[0].startswith("cloud-ws pulumi: reporting as deployment pulumi-")
    assert "cloud-ws monitor pulumi-" in err


def test_report_buffers_events_until_a_urn_names_the_stack() -> None:
    """Without --stack, the prelude waits for the first URN; the stack is named after it."""

    class Plugin(Recorder):
        def automation(self, deployment_id: str, stack_name: str, **kwargs: Any) -> AutomationAdapter:
            return AutomationAdapter(self, deployment_id, stack_name, progress_interval=0, **kwargs)

    plugin = Plugin()
    report = pulumi_wrapper.Report(plugin, "D1")  # type: ignore[arg-type]
    report.started()
    events = [parse_engine_event(raw) for raw in standin.update_events("qa", 1)]
    report.on_event(events[0])
    assert report.adapter is None
    for event in events[1:]:
        report.on_event(event)
    report.ended(pulumi_wrapper.Outcome(0))
    types = [(t, d.get("stack_name")) for t, _, d in plugin.events]
    assert types[0] == ("deployment.status", None)
    assert types[1] == ("stack.started", "qa")
    assert types[-2:] == [("stack.deployed", "qa"), ("deployment.status", None)]
    assert plugin.events[-1][2]["status"] == "succeeded"
