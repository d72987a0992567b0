"""The AppSync publisher on its own: the mutations it builds, its retries, and that it never raises."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest
from botocore.credentials import Credentials

from server import appsync
from server.appsync import AppSyncPublisher, publisher_for, requests_for
from server.config import load_config
from tests.support.scripted_http import Reply, ScriptedHttp
from tests.test_graphql.conftest import sequenced


class ScriptedAppSync(ScriptedHttp):
    """A GraphQL endpoint answering each POST with the next scripted (status, body), then an
    empty ``data``; records what it got."""

    def __init__(self, script: list[Reply]) -> None:
        super().__init__(script, otherwise=(200, {"data": {}}))
        self.url += "/graphql"


def publisher(url: str, sleeps: list[float], max_attempts: int = 3) -> AppSyncPublisher:
    """A publisher with a recording fake sleep."""
    return AppSyncPublisher(
        url,
        "us-east-1",
        credentials=Credentials("local", "local"),
        max_attempts=max_attempts,
        sleep=sleeps.append,
    )


@pytest.fixture
def closed_port_url() -> str:
    """A URL nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/graphql"


def test_each_event_is_one_mutation_and_each_status_adds_an_update() -> None:
    """A log and a status: two publishDeploymentEvent in seq order, then the status's update."""
    batch = [
        sequenced("D1", 4),
        sequenced(
            "D1", 5, "deployment.status", {"status": "deploying", "current_layer": 2, "total_layers": 3}
        ),
    ]
    built = requests_for(batch)
    assert [(r.field, r.seq) for r in built] == [
        ("publishDeploymentEvent", 4),
        ("publishDeploymentEvent", 5),
        ("publishDeploymentUpdate", 5),
    ]
    event = json.loads(built[1].body)
    assert event["variables"] == {
        "deployment_id": "D1",
        "seq": 5,
        "type": "deployment.status",
        "event_id": batch[1].event.event_id,
        "timestamp": batch[1].event.timestamp,
        "data": '{"status":"deploying","current_layer":2,"total_layers":3}',
        "project": "default",  # what AppSync's subscription filter admits subscribers by
    }
    update = json.loads(built[2].body)["variables"]
    assert update == {
        "deployment_id": "D1",
        "status": "deploying",
        "current_layer": 2,
        "total_layers": 3,
        "updated_at": batch[1].event.timestamp,
        "project": "default",
    }


def test_a_status_without_status_publishes_no_update() -> None:
    """``deployment.status`` whose data lacks ``status`` is an event, not an update."""
    assert [
        r.field for r in requests_for([sequenced("D1", 1, "deployment.status", {"current_layer": 1})])
    ] == ["publishDeploymentEvent"]


def test_requests_are_sigv4_signed_for_appsync() -> None:
    """Every request carries an IAM signature scoped to the ``appsync`` service."""
    with ScriptedAppSync([(200, {"data": {"publishDeploymentEvent": {"seq": 1}}})]) as server:
        sleeps: list[float] = []
        publisher(server.url, sleeps).publish([sequenced("D1", 1)])
    authorization = server.headers[0]["authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=local/")
    assert "/us-east-1/appsync/aws4_request" in authorization
    assert "x-amz-date" in server.headers[0]


def test_throttling_and_5xx_are_retried_with_backoff() -> None:
    """429, then 500, then success: one event published after two bounded waits."""
    script = [(429, {}), (500, {}), (200, {"data": {"publishDeploymentEvent": {"seq": 1}}})]
    with ScriptedAppSync(script) as server:
        sleeps: list[float] = []
        sender = publisher(server.url, sleeps)
        sender.publish([sequenced("D1", 1)])
    assert sender.published == 1
    assert sender.dropped == 0
    assert len(server.received) == 3
    assert len(sleeps) == 2
    assert all(0 <= delay <= sender.max_backoff_seconds for delay in sleeps)


def test_a_refused_event_is_dropped_and_the_batch_goes_on() -> None:
    """A GraphQL validation error concerns that event only: it is dropped, the next one is sent."""
    script = [(200, {"data": None, "errors": [{"errorType": "ValidationError", "message": "bad"}]})]
    with ScriptedAppSync(script) as server:
        sleeps: list[float] = []
        sender = publisher(server.url, sleeps)
        sender.publish([sequenced("D1", 1), sequenced("D1", 2)])
    assert sender.dropped == 1
    assert sender.published == 1
    assert [r["variables"]["seq"] for r in server.received] == [1, 2]
    assert sleeps == []


def test_unreachable_api_never_raises_and_costs_one_retry_budget_per_batch(closed_port_url: str) -> None:
    """Connection refused: the first event uses its attempts, the rest of the batch is dropped untried."""
    sleeps: list[float] = []
    sender = publisher(closed_port_url, sleeps, max_attempts=3)
    sender.publish([sequenced("D1", seq) for seq in range(1, 6)])  # must not raise
    assert sender.published == 0
    assert sender.dropped == 5
    assert len(sleeps) == 2


def test_missing_credentials_never_raise(monkeypatch: pytest.MonkeyPatch, closed_port_url: str) -> None:
    """No credentials anywhere: logged and dropped, nothing raised."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    sender = AppSyncPublisher(closed_port_url, "us-east-1", max_attempts=1)
    sender.publish([sequenced("D1", 1)])
    assert sender.dropped == 1


def test_publisher_for_follows_the_config() -> None:
    """None without APPSYNC_GRAPHQL_URL; one publisher per endpoint and container otherwise."""
    base = {
        "CONNECTIONS_TABLE": "c",
        "SUBSCRIPTIONS_TABLE": "s",
        "EVENTS_TABLE": "e",
        "EVENT_IDS_TABLE": "i",
        "COGNITO_USER_POOL_ID": "us-east-1_x",
        "COGNITO_CLIENT_IDS": "client",
    }
    assert publisher_for(load_config(base)) is None
    configured = load_config(
        {**base, "APPSYNC_GRAPHQL_URL": "https://x.appsync-api.us-east-1.amazonaws.com/graphql"}
    )
    first = publisher_for(configured)
    assert first is not None
    assert first is publisher_for(configured)
    assert first.url == configured.appsync_graphql_url
    appsync._publisher.cache_clear()


def test_module_import_stays_lean() -> None:
    """The publisher module imports no boto3 (the broadcaster's cold start pays only for what it uses)."""
    import subprocess
    import sys

    code = "import sys, server.appsync; print('boto3' in sys.modules, 'botocore' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]


class SlowAppSync(ScriptedAppSync):
    """Answers every mutation after ``delay`` seconds and records how many were in flight at once."""

    def __init__(self, delay: float) -> None:
        super().__init__([])
        self.in_flight = 0
        self.most = 0
        self._count = threading.Lock()
        handler = self.server.RequestHandlerClass
        original = handler.do_POST  # type: ignore[attr-defined]
        outer = self

        def do_post(request: Any) -> None:
            with outer._count:
                outer.in_flight += 1
                outer.most = max(outer.most, outer.in_flight)
            time.sleep(delay)
            try:
                original(request)
            finally:
                with outer._count:
                    outer.in_flight -= 1

        handler.do_POST = do_post  # type: ignore[attr-defined]


def test_a_batch_goes_several_mutations_at_a_time_and_its_updates_in_order_after() -> None:
    """20 events with 2 status changes, 4 at a time: at most 4 in flight, more than 1, every event
    published once; the first mutation alone; the updates last, in seq order."""
    statuses = {8: "deploying", 15: "succeeded"}
    batch = [
        sequenced("D1", seq, "deployment.status", {"status": statuses[seq]})
        if seq in statuses
        else sequenced("D1", seq)
        for seq in range(1, 21)
    ]
    server = SlowAppSync(0.05)
    with server:
        sender = AppSyncPublisher(
            server.url, "us-east-1", credentials=Credentials("local", "local"), concurrency=4
        )
        sender.publish(batch)

    assert sender.published == 22
    assert sender.dropped == 0
    assert 1 < server.most <= 4
    fields = [body["query"].split("(")[0].split()[-1] for body in server.received]
    assert fields[0] == "PublishDeploymentEvent"
    assert server.received[0]["variables"]["seq"] == 1
    events = [b["variables"]["seq"] for b in server.received if "type" in b["variables"]]
    assert sorted(events) == list(range(1, 21))
    updates = [b["variables"]["status"] for b in server.received if "status" in b["variables"]]
    assert updates == ["deploying", "succeeded"]
    assert fields[-2:] == ["PublishDeploymentUpdate", "PublishDeploymentUpdate"]
