"""`cloud-ws monitor --stack NAME` shows the stack's resources: the `resources` entries of its
`stack.progress` events, folded by type and name; the live view lists the running ones and the
last finished ones, one line each, within the terminal; the plain view prints a line per step."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from cloud_ws.commands import monitor
from cloud_ws_client import CloudWebSocketClient, DeploymentState, Message, parse_message
from tests.support.local_stack import LocalStackProcess, finish, monitor_stack
from tests.test_client.conftest import deployment

LONG_NAME = "sg-ingress-from-the-transit-gateway-attachment-0123456789abcdef-" + "x" * 60


class Feed:
    """Messages of one deployment, numbered, folded into a state and shown to a view."""

    def __init__(self, view: monitor.View) -> None:
        self.view = view
        self.state = DeploymentState("D1")
        self.seq = 0

    def put(self, type_: str, second: int = 0, **data: Any) -> None:
        self.seq += 1
        stamp = f"2026-12-02T10:00:{second:02d}Z"
        message: Message = parse_message(
            json.dumps(
                {"type": type_, "deployment_id": "D1", "seq": self.seq, "data": data, "timestamp": stamp}
            )
        )
        self.state.apply(message)  # type: ignore[arg-type]
        self.view.show(message, self.state)


def step(
    name: str, status: str, duration: float | None = None, type_: str = "aws:s3/bucketV2:BucketV2"
) -> Any:
    entry: dict[str, Any] = {"name": name, "type": type_, "operation": "create", "status": status}
    if duration is not None:
        entry["duration_seconds"] = duration
    return entry


def three_hundred(feed: Feed) -> None:
    """A stack through 300 resources: 290 done, 10 still running (one with a very long name)."""
    feed.put("deployment.status", status="deploying", current_layer=1, total_layers=1)
    feed.put("stack.started", stack_name="app", layer=1)
    feed.put("stack.started", stack_name="other", layer=1)
    for start in range(0, 300, 100):
        feed.put(
            "stack.progress",
            second=start // 10,
            stack_name="app",
            resources=[step(f"bucket-{i:03}", "running") for i in range(start, start + 100)],
        )
        done = range(start, min(start + 100, 290))
        feed.put(
            "stack.progress",
            second=start // 10 + 1,
            stack_name="app",
            resources_done=len(done),
            resources=[step(f"bucket-{i:03}", "done", 0.25 * (i % 7)) for i in done],
        )
    feed.put("stack.progress", second=30, stack_name="app", resources=[step(LONG_NAME, "running")])
    feed.put("stack.progress", second=31, stack_name="other", resources=[step("not-ours", "running")])
    feed.put("log.created", second=32, message="a line of app", stack_name="app")


@pytest.mark.parametrize(("width", "height"), [(80, 24), (120, 40), (60, 16)])
def test_the_live_view_lists_running_and_last_finished_resources_within_the_terminal(
    width: int, height: int
) -> None:
    # The live view draws the board the filter folds (a client that never connects will do).
    live = monitor.LiveView(CloudWebSocketClient("ws://127.0.0.1:1/x", "token"), Console(file=io.StringIO()))
    assert monitor.StackFilter(live, "app").resources is live.resources
    view = monitor.StackFilter(monitor.PlainView(io.StringIO()), "app")
    feed = Feed(view)
    three_hundred(feed)
    assert view.resources.counts() == {"running": 11, "done": 290, "failed": 0}

    console = Console(width=width, height=height, record=True, file=io.StringIO())
    now = datetime(2026, 12, 2, 10, 0, 40, tzinfo=UTC)
    state = view._state(feed.state)
    console.print(monitor.render(state, "connected", now=now, console=console, resources=view.resources))
    screen = console.export_text().splitlines()
    assert len(screen) < height, "\n".join(screen)
    assert all(len(line) <= width for line in screen)
    assert any(line.startswith("resources  301 · 11 running · 290 done") for line in screen)
    rows = [line for line in screen if " bucket-" in line or " sg-ingress" in line]
    assert rows, "\n".join(screen)
    assert any("bucket-289" in line and "done" in line for line in rows), "the last finished one"
    assert any("running" in line for line in rows)
    assert not any("bucket-000" in line for line in rows), "not the first finished ones"
    assert not any("not-ours" in line for line in screen), "another stack's resources"
    long_rows = [line for line in rows if "sg-ingress" in line]
    if long_rows:  # cut on its one line, its clock counting from its first report (:30)
        assert "…" in long_rows[0]
        assert long_rows[0].rstrip().endswith("10s")
    shown_running = sum(1 for line in rows if " running " in line)
    more = [line for line in screen if "more running" in line]
    assert shown_running + (int(more[0].split()[1]) if more else 0) == 11, "\n".join(screen)
    assert "a line of app" in screen[-1], "the newest log line still shows"


def test_a_resource_step_folds_by_type_and_name_and_a_new_attempt_forgets_them() -> None:
    board = monitor.ResourceBoard()
    board.apply({"resources": [step("main", "running", type_="aws:ec2/vpc:Vpc")]}, "2026-12-02T10:00:00Z")
    board.apply(
        {
            "resources": [
                step("main", "done", 2.5, type_="aws:ec2/vpc:Vpc"),
                step("main", "failed", 1, type_="aws:ec2/internetGateway:InternetGateway"),
                {"name": "bad", "status": "queued"},
                "junk",
            ]
        },
        "2026-12-02T10:00:03Z",
    )
    assert [(r.type, r.status, r.duration_seconds) for r in board.resources.values()] == [
        ("aws:ec2/vpc:Vpc", "done", 2.5),
        ("aws:ec2/internetGateway:InternetGateway", "failed", 1.0),
    ]

    out = io.StringIO()
    view = monitor.StackFilter(monitor.PlainView(out), "app")
    feed = Feed(view)
    feed.put("deployment.status", status="deploying")
    feed.put("stack.progress", stack_name="app", resources=[step("logs", "running")])
    assert len(view.resources.resources) == 1
    feed.put("deployment.status", status="failed")
    feed.put("deployment.status", status="deploying")  # attempt 2
    assert view.resources.resources == {}


def test_the_plain_view_prints_a_line_per_resource_step_of_its_stack() -> None:
    out = io.StringIO()
    feed = Feed(monitor.StackFilter(monitor.PlainView(out), "app"))
    feed.put("stack.started", stack_name="app")
    feed.put("stack.progress", stack_name="app", resources_done=0, resources=[step("logs", "running")])
    feed.put("stack.progress", stack_name="other", resources=[step("not-ours", "running")])
    feed.put("stack.progress", stack_name="app", resources_done=1, resources=[step("logs", "done", 12.5)])
    lines = out.getvalue().splitlines()
    assert [line for line in lines if line.startswith("  ")] == [
        "  create aws:s3/bucketV2:BucketV2 logs running",
        "  create aws:s3/bucketV2:BucketV2 logs done 12s",
    ]
    # Without --stack, no resource lines: one line per event, as before.
    plain = io.StringIO()
    Feed(monitor.PlainView(plain)).put(
        "stack.progress", stack_name="app", resources=[step("logs", "running")]
    )
    assert not any(line.startswith("  ") for line in plain.getvalue().splitlines())


@pytest.mark.slow
def test_stack_option_shows_the_stacks_resources(stack: LocalStackProcess) -> None:
    """`cloud-ws monitor --stack app` against the local stack: its resources' steps, not another stack's."""
    dep = deployment()
    watcher = monitor_stack(stack.outputs_path, dep, "app")
    events: list[tuple[str, dict[str, Any]]] = [
        ("deployment.status", {"status": "deploying", "current_layer": 1, "total_layers": 1}),
        ("stack.started", {"stack_name": "app", "layer": 1}),
        (
            "stack.progress",
            {"stack_name": "app", "resources_done": 0, "resources": [step("main", "running")]},
        ),
        ("stack.progress", {"stack_name": "db", "resources": [step("orders", "running")]}),
        (
            "stack.progress",
            {"stack_name": "app", "resources_done": 1, "resources": [step("main", "done", 3.25)]},
        ),
        ("stack.deployed", {"stack_name": "app", "layer": 1, "resource_count": 1}),
        ("deployment.status", {"status": "succeeded"}),
    ]
    for type_, data in events:
        stack.put_event(dep, type_, data)
    code, out, err = finish(watcher)
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("  ")] == [
        "  create aws:s3/bucketV2:BucketV2 main running",
        "  create aws:s3/bucketV2:BucketV2 main done 3.2s",
    ]
