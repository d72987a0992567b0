"""`cloud-ws monitor`: JSON lines, plain lines, the live view and exit codes, against the local
stack (with `cloud-ws demo` for a realistic failing deployment)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cloud_ws import cli
from cloud_ws.commands import monitor
from cloud_ws_client import CloudWebSocketClient, DeploymentState, parse_message
from tests.support import events
from tests.support.local_stack import DEMO_SPEED, ROOT, LocalStackProcess, cloud_ws, finish, monitor_stack
from tests.support.waiting import eventually, eventually_sync
from tests.test_client.conftest import Tokens, deployment, options
from tests.test_client.fakes import Gateway

pytestmark = pytest.mark.slow


def put_success(stack: LocalStackProcess, dep: str) -> None:
    """A one-layer deployment that succeeds (tests/fixtures/events.json)."""
    for type_, data in events.deployment("one layer that succeeds"):
        stack.put_event(dep, type_, data)


def test_json_until_complete_follows_the_demo_and_exits_1(stack: LocalStackProcess) -> None:
    """Every message once, as one JSON line each, in seq order; the demo fails, so exit code 1."""
    dep = deployment()
    outputs = str(stack.outputs_path)
    watcher = cloud_ws("monitor", dep, "--outputs", outputs, "--json", "--until-complete")
    assert watcher.stdout is not None
    # Subscribed (the ack and the snapshot are out) before the demo's first event.
    head = [parse_message(watcher.stdout.readline()) for _ in range(2)]
    assert [m.type for m in head] == ["subscribed", "deployment.snapshot"]
    assert head[1].raw["data"]["attempt"] == 0
    demo = cloud_ws("demo", dep, "--outputs", outputs, "--speed", DEMO_SPEED)
    demo_code, _, demo_err = finish(demo)
    assert demo_code == 0, demo_err
    code, out, err = finish(watcher)

    assert code == 1, err
    assert err == ""
    messages = [parse_message(line) for line in out.splitlines()]
    seqs = [m.raw["seq"] for m in messages]
    assert seqs == list(range(1, len(seqs) + 1))
    last = messages[-1].raw
    assert (last["type"], last["data"]["status"]) == ("deployment.status", "failed")
    assert any(m.type == "stack.failed" and m.raw["data"]["stack_name"] == "database-rds" for m in messages)


def test_plain_lines_until_complete_exit_0(stack: LocalStackProcess) -> None:
    """stdout is not a terminal: the snapshot, one line per event, then the outcome; success is 0."""
    dep = deployment()
    watcher = cloud_ws("monitor", dep, "--outputs", str(stack.outputs_path), "--until-complete")
    assert watcher.stdout is not None
    assert watcher.stdout.readline() == f"watching deployment {dep}\n"
    assert watcher.stdout.readline() == "#0 nothing reported yet\n"  # the snapshot: subscribed
    put_success(stack, dep)
    code, out, err = finish(watcher)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "attempt 1 started"
    assert lines[-1] == f"deployment {dep} succeeded (attempt 1)"
    # Transport order is best effort: the events are put one by one, but their seqs
    # need not follow that order, so each line is looked for with any seq.
    described = sorted(re.sub(r"^\S+ #\d+ ", "", line) for line in lines[1:-1])
    assert described == sorted(
        [
            "deployment deploying, layer 1/1",
            "stack network started",
            "warning [network] slow API",
            "stack network progress: 3 resources done",
            "stack network deployed in 1m 15s (4 resources)",
            "custom.metric {'value': 1}",
            "deployment succeeded",
        ]
    )
    assert all(re.match(r"^\d\d:\d\d:\d\d #[1-7] ", line) for line in lines[1:-1])


def test_until_complete_ends_on_a_throttled_terminal_status_with_the_defaults(
    stack: LocalStackProcess,
) -> None:
    """The terminal status's post answers 429 past the poster's retries: the monitor, with the
    client's default options, still learns it (at the next pong's ``latest``) and exits 0."""
    dep = deployment()
    outputs = str(stack.outputs_path)
    watcher = cloud_ws("monitor", dep, "--outputs", outputs, "--json", "--until-complete")
    try:
        assert watcher.stdout is not None
        first = json.loads(watcher.stdout.readline())  # blocks until the monitor is subscribed
        assert first["type"] == "subscribed"
        assert json.loads(watcher.stdout.readline())["type"] == "deployment.snapshot"
        stack.put_event(
            dep, "deployment.status", {"status": "deploying", "current_layer": 1, "total_layers": 1}
        )
        assert json.loads(watcher.stdout.readline())["seq"] == 1
        # The stack makes one attempt per post and one fan-out round (STACK_ENV): the post is lost.
        stack.control("faults/throttle", {"count": 1})
        stack.put_event(dep, "deployment.status", {"status": "succeeded"})
        code, out, err = finish(watcher)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert code == 0, err
    last = json.loads(out.splitlines()[-1])
    assert (last["type"], last["seq"], last["data"]["status"]) == ("deployment.status", 2, "succeeded")


def test_example_script_follows_a_deployment(stack: LocalStackProcess) -> None:
    """client/python/examples/monitor.py works against the local stack as documented."""
    dep = deployment()
    put_success(stack, dep)
    example = ROOT / "client" / "python" / "examples" / "monitor.py"
    process = subprocess.Popen(
        [sys.executable, str(example), dep, "--outputs", str(stack.outputs_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    code, out, err = finish(process)
    assert code == 0, err
    assert out.splitlines()[0] == "#1 deployment deploying (layer 1/1)"
    assert "#5 stack network deployed 4 resources" in out
    assert out.splitlines()[-1] == "#7 deployment succeeded"


@pytest.mark.parametrize(
    ("how", "complaint"),
    [
        ("refused token", "refused the token (HTTP 401)"),
        ("unreachable", "cannot connect to ws://127.0.0.1:1"),
    ],
)
def test_refused_token_or_unreachable_endpoint_exit_2(
    stack: LocalStackProcess, how: str, complaint: str
) -> None:
    """One line on stderr and exit code 2, without retrying."""
    url = stack.outputs["websocket_url"] if how == "refused token" else "ws://127.0.0.1:1/local"
    code, out, err = finish(
        cloud_ws("monitor", "D1", "--url", url, "--token", "not.a.token", "--until-complete")
    )
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("cloud-ws monitor: ")
    assert complaint in err


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["monitor", "D1", "--url", "ws://127.0.0.1:1/x"], "--url needs --token"),
        (["monitor", "D1", "--outputs", "/nonexistent/outputs.json"], "no outputs file"),
        (
            ["monitor", "not valid!", "--url", "ws://127.0.0.1:1/x", "--token", "t"],
            "deployment_id must match",
        ),
    ],
)
def test_argument_errors_exit_2(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad arguments are one line on stderr and exit code 2."""
    monkeypatch.delenv("CLOUD_WS_TOKEN", raising=False)
    assert cli.main(argv) == 2
    assert complaint in capsys.readouterr().err


def test_cloud_outputs_need_a_token(
    stack: LocalStackProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cloud stack has no dev user: the token comes from --token or CLOUD_WS_TOKEN."""
    cloud = {k: v for k, v in stack.outputs.items() if k not in ("aws_endpoint_url", "dev_username")}
    path = tmp_path / "cloud.json"
    path.write_text(json.dumps(cloud))
    monkeypatch.delenv("CLOUD_WS_TOKEN", raising=False)
    assert cli.main(["monitor", "D1", "--outputs", str(path)]) == 2
    assert "CLOUD_WS_TOKEN" in capsys.readouterr().err
    # With the token in the environment, the same outputs work.
    dep = deployment()
    put_success(stack, dep)
    monkeypatch.setenv("CLOUD_WS_TOKEN", stack.token())
    assert cli.main(["monitor", dep, "--outputs", str(path), "--until-complete", "--json"]) == 0
    assert '"status":"succeeded"' in capsys.readouterr().out


class FakeTerminal(io.StringIO):
    """A stdout that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_live_view_in_a_terminal(stack: LocalStackProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the monitor draws the live view: status, progress, the stacks table, logs."""
    dep = deployment()
    put_success(stack, dep)
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stdout", terminal)
    monkeypatch.setattr(monitor, "TICK_SECONDS", 0.01)
    assert cli.main(["monitor", dep, "--outputs", str(stack.outputs_path), "--until-complete"]) == 0
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.getvalue())  # colours and cursor moves off
    for expected in (
        f"Deployment {dep}",
        "succeeded",
        "layer 1/1",
        "network",
        "deployed",
        "4",
        "1m 15s",
        "slow API",
    ):
        assert expected in screen


async def test_live_view_redraws_while_waiting(stack: LocalStackProcess, tokens: Tokens) -> None:
    """The view ticks between events (elapsed times move on) and shows a failure in red text."""
    dep = deployment()
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    client = CloudWebSocketClient(stack.outputs["websocket_url"], tokens, options=options())
    view = monitor.LiveView(client, console)
    task = asyncio.create_task(monitor.watch(client, dep, view, until_complete=True))
    # Subscribed first: the failure's error message is in the status event, not in the snapshot.
    await eventually(lambda: client.position(dep) is not None, "the subscription")
    await asyncio.to_thread(stack.put_event, dep, "stack.started", {"stack_name": "db", "layer": 2})
    await asyncio.to_thread(
        stack.put_event, dep, "deployment.status", {"status": "failed", "error_message": "db failed"}
    )
    assert await asyncio.wait_for(task, timeout=30) == 1
    screen = console.file.getvalue()  # type: ignore[attr-defined]
    assert "db failed" in screen
    view.stop(DeploymentState(dep))  # stopping twice does nothing


async def test_refused_subscription_exits_2(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    """A subscribe the server refuses for good (forbidden) is one line and exit code 2."""

    async def refuse(ws: Any, deployment_id: str, since: int | None, frame: dict[str, Any]) -> None:
        error = {"type": "error", "code": "forbidden", "message": "ask for access", "action": "subscribe"}
        await gateway.reply(ws, {**error, "deployment_id": deployment_id}, frame)

    gateway._subscribe = refuse  # type: ignore[method-assign]
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    code = await monitor.watch(client, "D1", monitor.PlainView(io.StringIO()), until_complete=True)
    assert code == 2
    assert "forbidden: ask for access" in capsys.readouterr().err


async def test_refused_reconnect_exits_2(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    """The connection drops and the reconnect is refused (401): one line and exit code 2."""
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    watching = asyncio.create_task(
        monitor.watch(client, "D1", monitor.JsonView(io.StringIO()), until_complete=True)
    )
    await eventually(lambda: client.connected, "the connection")
    gateway.refuse = [401]
    await gateway.connection(1).close(1011)
    assert await asyncio.wait_for(watching, timeout=30) == 2
    assert "refused the token (HTTP 401)" in capsys.readouterr().err


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C ends the monitor with the conventional 130."""

    def interrupted(coroutine: Any) -> int:
        coroutine.close()
        raise KeyboardInterrupt

    monkeypatch.setattr(monitor.asyncio, "run", interrupted)
    assert cli.main(["monitor", "D1", "--url", "ws://127.0.0.1:1/x", "--token", "t", "--json"]) == 130


def test_render_of_a_deployment_in_progress() -> None:
    """Stacks by layer with resources and durations; a stack without a layer; errors below."""
    state = DeploymentState("D1")
    for raw in [
        {
            "type": "deployment.status",
            "seq": 1,
            "data": {"status": "deploying", "current_layer": 2, "total_layers": 3},
        },
        {
            "type": "stack.started",
            "seq": 2,
            "data": {"stack_name": "api", "layer": 2},
            "timestamp": "2026-11-26T10:00:00Z",
        },
        {"type": "stack.progress", "seq": 3, "data": {"stack_name": "api", "resources_done": 2}},
        {"type": "stack.started", "seq": 4, "data": {"stack_name": "orphan"}},
        {"type": "log.created", "seq": 5, "data": {"message": "hello", "level": "critical"}},
    ]:
        message = parse_message(json.dumps({"deployment_id": "D1", **raw}))
        state.apply(message)  # type: ignore[arg-type]
    console = Console(file=io.StringIO(), force_terminal=False, width=100)
    now = datetime(2026, 11, 26, 10, 2, 5, tzinfo=UTC)
    console.print(
        monitor.render(state, "waiting", errors=["too_many_subscriptions: unsubscribe first"], now=now)
    )
    screen = console.file.getvalue()  # type: ignore[attr-defined]
    assert "deploying" in screen
    assert "offline, retrying soon" in screen
    assert "layer 2/3" in screen
    assert "2m 05s" in screen
    assert "orphan" in screen
    assert "hello" in screen
    assert "too_many_subscriptions" in screen
    assert monitor.describe(parse_message('{"type": "pong"}')) is None
    assert monitor.describe(parse_message('{"type": "error", "code": "x", "message": "m"}')) == "error x: m"


def snapshot_data(status: str, attempt: int, **more: Any) -> dict[str, Any]:
    """A snapshot's data: the deployment at a glance, no stacks or logs unless given."""
    return {
        "status": status,
        "attempt": attempt,
        "current_layer": 1,
        "total_layers": 2,
        "started_at": "2026-12-02T10:00:00Z",
        "updated_at": "2026-12-02T10:00:05Z",
        "environment": "dev",
        "stacks": {},
        "log_counts": {},
        "recent_logs": [],
        **more,
    }


def answer_with_snapshot(gateway: Gateway, seq: int, data: dict[str, Any]) -> None:
    """Make the gateway answer every subscribe as the server does: the ack, then the snapshot."""

    async def subscribe(ws: Any, deployment_id: str, since: int | None, frame: dict[str, Any]) -> None:
        gateway.subscribers[ws].add(deployment_id)
        ack = {"type": "subscribed", "deployment_id": deployment_id, "seq": seq, "replay": 0}
        snap = {"type": "deployment.snapshot", "deployment_id": deployment_id, "seq": seq, "data": data}
        await gateway.reply(ws, ack, frame)
        await gateway.reply(ws, snap, frame)

    gateway._subscribe = subscribe  # type: ignore[method-assign]


async def send_status(gateway: Gateway, seq: int, stamp: str, **data: Any) -> None:
    """One deployment.status of D1, stamped ``stamp``, to every connection."""
    event = {"type": "deployment.status", "deployment_id": "D1", "seq": seq, "data": data, "timestamp": stamp}
    for ws in list(gateway.subscribers):
        await ws.send(json.dumps(event))


def test_a_snapshot_line_says_how_long_the_attempt_took_and_why_it_ended() -> None:
    """The final status's duration and reason reach the late-join line, also with no failed stack."""
    cancelled = snapshot_data(
        "cancelled", 1, error_message="cancelled by user (Ctrl-C)\ntrace", duration_seconds=125
    )
    failed = snapshot_data(
        "failed",
        1,
        error_message="Subnet not found",
        duration_seconds=7.4,
        stacks={"db": {"status": "failed", "error_message": "Subnet not found"}},
    )

    lines = [
        monitor.describe(
            parse_message(
                json.dumps({"type": "deployment.snapshot", "deployment_id": "D1", "seq": 9, "data": data})
            )
        )
        for data in (cancelled, failed)
    ]

    assert lines == [
        "#9 snapshot: attempt 1 cancelled, layer 1/2, in 2m 05s — cancelled by user (Ctrl-C)",
        "#9 snapshot: attempt 1 failed, layer 1/2, in 7s — db: Subnet not found",  # said once
    ]


@pytest.mark.parametrize(("status", "code"), [("succeeded", 0), ("failed", 1), ("cancelled", 1)])
async def test_until_complete_on_an_ended_deployment_exits_at_once(
    gateway: Gateway, status: str, code: int
) -> None:
    """The snapshot says the latest attempt ended: its outcome is the exit code, nothing is awaited."""
    answer_with_snapshot(gateway, 9, snapshot_data(status, 2))
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    out = io.StringIO()
    assert await monitor.watch(client, "D1", monitor.PlainView(out), until_complete=True) == code
    assert out.getvalue().splitlines()[-2:] == [
        f"#9 snapshot: attempt 2 {status}, layer 1/2",
        f"deployment D1 {status} (attempt 2)",
    ]
    # Live only: the snapshot stands for the history, nothing is replayed.
    assert gateway.frames_of(1, "subscribe") == [{"action": "subscribe", "deployment_id": "D1"}]


async def test_until_complete_follows_the_running_attempt(gateway: Gateway) -> None:
    """Subscribed while attempt 2 deploys: its end ends the monitor, whatever the producer's clock says."""
    answer_with_snapshot(gateway, 4, snapshot_data("deploying", 2))
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    out = io.StringIO()
    watching = asyncio.create_task(monitor.watch(client, "D1", monitor.PlainView(out), until_complete=True))
    await eventually(lambda: "snapshot" in out.getvalue(), "the snapshot line")
    # Stamped before attempt 2 started (10:00:00), but after it in seq order: attempt 2's.
    await send_status(gateway, 5, "2026-12-02T09:59:59Z", status="deploying", current_layer=1)
    await send_status(gateway, 6, "2026-12-02T10:00:09Z", status="deploying", current_layer=2)
    await eventually(lambda: "#6 deployment deploying" in out.getvalue(), "the status line")
    assert not watching.done()
    await send_status(gateway, 7, "2026-12-02T10:00:10Z", status="succeeded")
    assert await asyncio.wait_for(watching, timeout=30) == 0
    assert out.getvalue().splitlines()[-1] == "deployment D1 succeeded (attempt 2)"


async def test_a_history_that_went_back_starts_the_picture_again(gateway: Gateway) -> None:
    """The server restarts under the monitor and forgets the deployment (a local stack): the resubscribe
    (since 3) is answered at seq 0; the monitor says so, starts again from the new snapshot and ends with
    the new history's outcome, whose events it would otherwise drop as duplicates of the old one's."""
    histories = iter(
        [(3, snapshot_data("deploying", 1)), (0, snapshot_data("pending", 0, current_layer=None))]
    )

    async def subscribe(ws: Any, deployment_id: str, since: int | None, frame: dict[str, Any]) -> None:
        seq, data = next(histories)
        gateway.subscribers[ws].add(deployment_id)
        ack = {"type": "subscribed", "deployment_id": deployment_id, "seq": seq, "replay": 0}
        await gateway.reply(ws, ack, frame)
        await gateway.reply(
            ws,
            {"type": "deployment.snapshot", "deployment_id": deployment_id, "seq": seq, "data": data},
            frame,
        )

    gateway._subscribe = subscribe  # type: ignore[method-assign]
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    out = io.StringIO()
    watching = asyncio.create_task(monitor.watch(client, "D1", monitor.PlainView(out), until_complete=True))
    await eventually(lambda: "#3 snapshot: attempt 1 deploying" in out.getvalue(), "the first snapshot")
    # When the stack restarts (the connection drops, the new one finds no history)...
    await gateway.connection(1).close(1012)
    await eventually(lambda: "went back" in out.getvalue(), "the history reset line")
    assert gateway.frames_of(2, "subscribe") == [{"action": "subscribe", "deployment_id": "D1", "since": 3}]
    await send_status(gateway, 1, "2026-12-02T11:00:01Z", status="deploying", current_layer=1, total_layers=1)
    await send_status(gateway, 2, "2026-12-02T11:00:02Z", status="succeeded")
    # ...the new history's deployment is followed to its end.
    assert await asyncio.wait_for(watching, timeout=30) == 0
    assert out.getvalue().splitlines()[2:] == [
        "the history of D1 went back (the server is at #0, this monitor had #3): the stack was restarted, "
        "and forgot its deployments, or the id was reused; starting again from the server's snapshot",
        "#0 nothing reported yet",
        "attempt 1 started",
        "11:00:01 #1 deployment deploying, layer 1/1",
        "11:00:02 #2 deployment succeeded",
        "deployment D1 succeeded (attempt 1)",
    ]


async def test_until_complete_waits_for_the_first_attempt(gateway: Gateway) -> None:
    """Nothing reported yet (attempt 0): the monitor ends with the first attempt's outcome."""
    answer_with_snapshot(gateway, 0, snapshot_data("pending", 0, current_layer=None, total_layers=None))
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    out = io.StringIO()
    watching = asyncio.create_task(monitor.watch(client, "D1", monitor.JsonView(out), until_complete=True))
    await eventually(lambda: "deployment.snapshot" in out.getvalue(), "the snapshot")
    await send_status(gateway, 1, "2026-12-02T10:00:01Z", status="deploying", current_layer=1, total_layers=1)
    await send_status(gateway, 2, "2026-12-02T10:00:02Z", status="failed")
    assert await asyncio.wait_for(watching, timeout=30) == 1
    assert [json.loads(line)["type"] for line in out.getvalue().splitlines()] == [
        "subscribed",
        "deployment.snapshot",
        "deployment.status",
        "deployment.status",
    ]


def busy_state(attempt: int = 2) -> DeploymentState:
    """A deployment with twelve stacks over four layers and sixty long log lines."""
    state = DeploymentState("D1")
    seq = 0

    def put(type_: str, **data: Any) -> None:
        nonlocal seq
        seq += 1
        stamp = f"2026-12-02T10:{seq // 60:02d}:{seq % 60:02d}Z"
        message = parse_message(
            json.dumps({"type": type_, "deployment_id": "D1", "seq": seq, "data": data, "timestamp": stamp})
        )
        state.apply(message)  # type: ignore[arg-type]

    for run in range(1, attempt + 1):
        put("deployment.status", status="deploying", current_layer=3, total_layers=4)
        for index in range(12):
            put("stack.started", stack_name=f"stack-{index}", layer=index // 3 + 1)
            put("stack.deployed", stack_name=f"stack-{index}", layer=index // 3 + 1, duration_seconds=30)
        for index in range(60):
            put("log.created", message=f"attempt {run} line {index} " + "x" * 100, stack_name="stack-1")
        if run < attempt:
            put("deployment.status", status="failed")
    return state


@pytest.mark.parametrize(("width", "height"), [(80, 24), (120, 40), (60, 12)])
def test_live_view_fits_the_terminal_and_shows_the_newest_log_line(width: int, height: int) -> None:
    """Whatever the stacks and logs, the view is shorter than the screen and ends on the newest line."""
    state = busy_state()
    console = Console(width=width, height=height, record=True, file=io.StringIO())
    console.print(monitor.render(state, "connected", errors=["forbidden: ask for access"], console=console))
    screen = console.export_text().splitlines()
    assert len(screen) < height
    assert all(len(line) <= width for line in screen)
    assert screen[-1].split()[3:5] == ["attempt", "2"]
    assert "line 59" in screen[-1]
    assert "attempt 2" in screen[0]
    # Without a console (a plain print), nothing is cut: every stack and every kept line.
    full = Console(width=width, record=True, file=io.StringIO())
    full.print(monitor.render(state, "connected"))
    assert len(full.export_text().splitlines()) > len(screen)


async def test_live_view_draws_within_the_screen(gateway: Gateway) -> None:
    """The live view's own drawing, on an 80x24 terminal, holds the newest log line."""
    console = Console(width=80, height=24, record=True, file=io.StringIO(), force_terminal=True)
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    view = monitor.LiveView(client, console)
    state = busy_state()
    view.start(state)
    view.stop(state)
    # The final drawing is what stays on the screen: the last 23 lines recorded.
    screen = console.export_text().splitlines()
    assert any("attempt 2 line 59" in line for line in screen[-23:])
    assert not any("attempt 2 line 40" in line for line in screen[-23:])


async def test_an_event_that_overtakes_the_ack_folds_after_the_snapshot(gateway: Gateway) -> None:
    """Event 6 comes before the ack and snapshot at 5: the monitor starts from the snapshot, then folds 6."""

    def status(seq: int, stamp: str, **data: Any) -> str:
        event = {"type": "deployment.status", "deployment_id": "D1", "seq": seq, "data": data}
        return json.dumps({**event, "timestamp": stamp})

    async def subscribe(ws: Any, deployment_id: str, since: int | None, frame: dict[str, Any]) -> None:
        gateway.subscribers[ws].add(deployment_id)
        await ws.send(status(6, "2026-12-02T10:00:06Z", status="deploying", current_layer=2))
        ack = {"type": "subscribed", "deployment_id": "D1", "seq": 5, "replay": 0, "id": frame["id"]}
        data = snapshot_data("deploying", 3)
        snap = {
            "type": "deployment.snapshot",
            "deployment_id": "D1",
            "seq": 5,
            "data": data,
            "id": frame["id"],
        }
        last = status(7, "2026-12-02T10:00:07Z", status="succeeded")
        await ws.send("\n".join([json.dumps(ack), json.dumps(snap), last]))

    gateway._subscribe = subscribe  # type: ignore[method-assign]
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    out = io.StringIO()
    assert await monitor.watch(client, "D1", monitor.JsonView(out), until_complete=True) == 0
    shown = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(m["type"], m.get("seq")) for m in shown] == [
        ("subscribed", 5),
        ("deployment.snapshot", 5),
        ("deployment.status", 6),
        ("deployment.status", 7),
    ]


def test_stack_option_follows_one_stack(stack: LocalStackProcess) -> None:
    """`--stack network`: that stack's events and log lines, and the deployment's own status."""
    dep = deployment()
    watcher = monitor_stack(stack.outputs_path, dep, "network")
    events: list[tuple[str, dict[str, Any]]] = [
        ("deployment.status", {"status": "deploying", "current_layer": 1, "total_layers": 1}),
        ("stack.started", {"stack_name": "network", "layer": 1}),
        ("stack.started", {"stack_name": "dns", "layer": 1}),
        ("log.created", {"message": "creating the vpc", "stack_name": "network"}),
        ("log.created", {"message": "creating the zone", "stack_name": "dns"}),
        ("log.created", {"message": "a line of no stack"}),
        ("stack.deployed", {"stack_name": "dns", "layer": 1, "resource_count": 2}),
        ("stack.failed", {"stack_name": "network", "layer": 1, "error_message": "quota exceeded"}),
        ("deployment.status", {"status": "failed"}),
    ]
    for type_, data in events:
        stack.put_event(dep, type_, data)
    code, out, err = finish(watcher)
    assert code == 1, err
    described = sorted(re.sub(r"^\S+ #\d+ ", "", line) for line in out.splitlines()[1:-1])
    assert described == sorted(
        [
            "deployment deploying, layer 1/1",
            "stack network started",
            "info [network] creating the vpc",
            "stack network failed: quota exceeded",
            "deployment failed",
        ]
    )


def test_a_filtered_live_view_shows_only_the_stack() -> None:
    state = busy_state(attempt=1)
    view_state = monitor.StackFilter(monitor.JsonView(io.StringIO()), "stack-2")._state(state)
    console = Console(width=100, height=40, record=True, file=io.StringIO())
    console.print(monitor.render(view_state, "connected", console=console))
    screen = console.export_text()
    assert "stack-2" in screen
    assert "stack-3" not in screen
    assert "no log lines yet" in screen  # the busy state's lines are all stack-1's


async def test_an_id_nobody_reports_on_gets_a_hint_and_the_monitor_keeps_waiting(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    answer_with_snapshot(gateway, 0, snapshot_data("pending", 0, current_layer=None, total_layers=None))
    client = CloudWebSocketClient(gateway.url, "token", options=options())
    out = io.StringIO()
    watching = asyncio.create_task(
        monitor.watch(client, "D1", monitor.PlainView(out), until_complete=True, hint_after=0.01)
    )
    await eventually(lambda: "no events yet" in capsys.readouterr().err, "the hint")
    assert not watching.done()
    await send_status(gateway, 1, "2026-12-02T10:00:01Z", status="succeeded")
    assert await asyncio.wait_for(watching, timeout=30) == 0
    assert "no events yet" not in out.getvalue()  # stdout stays the deployment's story


def test_hint_text_names_the_id_and_cloud_ws_list(capsys: pytest.CaptureFixture[str]) -> None:
    view = monitor.PlainView(io.StringIO())
    asyncio.run(monitor._hint_later(view, DeploymentState("D1BRV4O"), 0))
    assert capsys.readouterr().err == (
        "cloud-ws monitor: no events yet for D1BRV4O; check the id with `cloud-ws list` (still waiting)\n"
    )


def _stored_status(stack: LocalStackProcess, deployment_id: str) -> str | None:
    """The deployment's status as its counter row stores it (None before its first event)."""
    item = (
        stack.aws("dynamodb")
        .get_item(
            TableName=_events_table(stack),
            Key={"deploymentId": {"S": deployment_id}, "seq": {"N": "0"}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    summary = item.get("summary", {}).get("S") if item else None
    return json.loads(summary).get("status") if summary else None


def _events_table(stack: LocalStackProcess) -> str:
    """The local stack's events table (``<prefix>-events``)."""
    names = stack.aws("dynamodb").list_tables()["TableNames"]
    return next(name for name in names if name.endswith("events"))


def test_a_late_join_shows_why_the_deployment_failed(stack: LocalStackProcess) -> None:
    """`monitor --until-complete | cat` after the demo failed: the snapshot line says how long it took and
    why (the final status's reason), and names the stack and its error; the live view at 80 columns shows
    the whole error, wrapped."""
    dep = deployment()
    code, _, err = finish(cloud_ws("demo", dep, "--outputs", str(stack.outputs_path), "--speed", DEMO_SPEED))
    assert code == 0, err
    # A late join: the demo's last events may still be on their way (the bus, the queue, the drain)
    # when it exits; the monitor joins once the stored state says the deployment failed.
    eventually_sync(lambda: _stored_status(stack, dep) == "failed", "the demo's failure to be stored")
    code, out, err = finish(
        cloud_ws("monitor", dep, "--outputs", str(stack.outputs_path), "--until-complete")
    )
    assert code == 1, err
    line = out.splitlines()[1]
    assert re.fullmatch(
        r"#\d+ snapshot: attempt 1 failed, layer 3/4, in \d+s — "
        r"stack database-rds failed in layer 3; layer 4 not deployed; database-rds: "
        r"creating RDS DB Instance \(orders\): InvalidSubnet: Subnet not found: subnet-0b7d41",
        line,
    ), line

    code, out, err = finish(
        cloud_ws("monitor", dep, "--outputs", str(stack.outputs_path), "--json", "--until-complete")
    )
    state = DeploymentState.from_snapshot(parse_message(out.splitlines()[1]))  # type: ignore[arg-type]
    console = Console(width=80, height=40, record=True, file=io.StringIO())
    console.print(monitor.render(state, "connected", console=console))
    screen = " ".join(console.export_text().split())
    assert (
        "database-rds: creating RDS DB Instance (orders): InvalidSubnet: Subnet not found: subnet-0b7d41"
        in screen
    )


def test_no_color_draws_the_progress_bar_in_plain_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    state = busy_state(attempt=1)  # layer 3 of 4: two layers done
    console = Console(width=100, record=True, file=io.StringIO(), no_color=True)
    console.print(monitor.render(state, "connected", console=console))
    assert "[" + "#" * 20 + "-" * 20 + "] layer 3/4" in console.export_text()
    monkeypatch.setenv("NO_COLOR", "1")
    plain = Console(width=100, record=True, file=io.StringIO())
    plain.print(monitor.render(state, "connected"))
    assert "[" + "#" * 20 + "-" * 20 + "]" in plain.export_text()


def test_an_ended_deployment_stops_the_clocks_and_says_how_to_quit() -> None:
    """Cancelled 15 s after a stack started: the stack is shown cancelled at 15s for ever, not
    `deploying` with a clock that keeps going; without --until-complete the view says how to quit."""
    state = DeploymentState("D1")
    for seq, (type_, stamp, data) in enumerate(
        [
            (
                "deployment.status",
                "2026-12-02T10:00:00Z",
                {"status": "deploying", "current_layer": 1, "total_layers": 2},
            ),
            ("stack.started", "2026-12-02T10:00:00Z", {"stack_name": "vpc", "layer": 1}),
            (
                "deployment.status",
                "2026-12-02T10:00:15Z",
                {"status": "cancelled", "error_message": "demo interrupted"},
            ),
        ],
        start=1,
    ):
        event = {"type": type_, "deployment_id": "D1", "seq": seq, "data": data, "timestamp": stamp}
        state.apply(parse_message(json.dumps(event)))  # type: ignore[arg-type]
    console = Console(width=100, record=True, file=io.StringIO())
    later = datetime(2026, 12, 2, 10, 5, 0, tzinfo=UTC)
    console.print(monitor.render(state, "connected", now=later, quit_hint=True))
    screen = console.export_text()
    assert "deploying" not in screen
    row = next(line for line in screen.splitlines() if "vpc" in line)
    assert "cancelled" in row
    assert "15s" in row
    assert "cancelled after 15s" in screen
    assert "Ctrl-C to quit" in screen
