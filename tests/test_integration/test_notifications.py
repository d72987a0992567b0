"""Notifications on the real local stack: a failed demo deployment → one SNS message and one webhook POST
naming the failing stack and its error, none repeated after a redelivery; ``cloud-ws notify test``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.local_stack import (
    DEMO_SPEED,
    LocalStackProcess,
    cloud_ws,
    finish,
    start_local_stack,
    stop_local_stack,
)

DEPLOYMENT = "NOTIFY-DEMO"
SECRET = "s3cret-token"
ERROR = "creating RDS DB Instance (orders): InvalidSubnet: Subnet not found: subnet-0b7d41"


class Webhooks:
    """A local HTTP server recording every POST: path, headers, JSON body."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on(self, path: str) -> list[tuple[dict[str, str], Any]]:
        return [(headers, body) for p, headers, body in self.posts if p == path]


@pytest.fixture(scope="module")
def webhooks() -> Iterator[Webhooks]:
    hooks = Webhooks()
    yield hooks
    hooks.server.shutdown()


@pytest.fixture(scope="module")
def notifying_stack(
    tmp_path_factory: pytest.TempPathFactory, webhooks: Webhooks
) -> Iterator[LocalStackProcess]:
    """A local stack whose failed outcomes go to the topic; every outcome to one webhook, and another
    webhook that only wants project ``other``."""
    notifications = {
        "outcomes": ["failed"],
        "webhooks": [
            {"url": f"{webhooks.url}/all", "header_value": SECRET},
            {"url": f"{webhooks.url}/other", "projects": ["other"]},
        ],
    }
    stack = start_local_stack(
        tmp_path_factory.mktemp("notifying-stack"), "--notifications", json.dumps(notifications)
    )
    yield stack
    assert stop_local_stack(stack) == 0


def _topic_reader(stack: LocalStackProcess) -> Callable[[], list[str]]:
    """An SQS queue subscribed to the topic, as any subscriber: the SNS messages it receives."""
    sqs, sns = stack.aws("sqs"), stack.aws("sns")
    queue_url = sqs.create_queue(QueueName="topic-subscriber")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=stack.outputs["notification_topic_arn"], Protocol="sqs", Endpoint=queue_arn)

    def received() -> list[str]:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages = reply.get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return [str(json.loads(m["Body"])["Message"]) for m in messages]

    return received


def _wait(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _terminal_event(stack: LocalStackProcess) -> dict[str, Any]:
    """The deployment's stored ``failed`` status, read back from the history."""
    rows = stack.aws("dynamodb").query(
        TableName="cloud-ws-local-events",
        KeyConditionExpression="deploymentId = :d AND seq > :zero",
        ExpressionAttributeValues={":d": {"S": DEPLOYMENT}, ":zero": {"N": "0"}},
        ConsistentRead=True,
    )["Items"]
    # A history row holds a run of events (``messages``), keyed by the last one's seq.
    messages = [json.loads(m["S"]) for row in rows for m in row.get("messages", {}).get("L", [])]
    (failed,) = [
        m for m in messages if m["type"] == "deployment.status" and m["data"].get("status") == "failed"
    ]
    return failed


def test_a_failed_demo_notifies_once_and_a_redelivery_notifies_nothing(
    notifying_stack: LocalStackProcess, webhooks: Webhooks
) -> None:
    stack = notifying_stack
    topic = _topic_reader(stack)
    sns_messages: list[str] = []

    # Given a demo deployment whose database-rds stack fails
    code, out, err = finish(
        cloud_ws("demo", DEPLOYMENT, "--outputs", str(stack.outputs_path), "--speed", DEMO_SPEED)
    )
    assert code == 0, err

    # Then one SNS message and one webhook POST name the failing stack and its error
    _wait(lambda: bool(webhooks.on("/all")))
    _wait(lambda: bool(sns_messages.extend(topic()) or sns_messages))
    (message,) = sns_messages
    assert message.startswith(f"cloud-ws: deployment {DEPLOYMENT} failed (project default, environment dev")
    assert f"Stack database-rds failed: {ERROR}." in message
    assert f"?deployment={DEPLOYMENT}" in message
    ((headers, body),) = webhooks.on("/all")
    assert f"stack `database-rds` failed: {ERROR}" in body["text"]
    assert f"*{DEPLOYMENT} failed* (attempt 1)" in body["text"]
    assert headers["X-Cloud-Ws-Notification"] == SECRET
    assert webhooks.on("/other") == []  # its filter wants project "other"

    # When the terminal event is delivered again (same event_id, as EventBridge or a redrive would)
    failed = _terminal_event(stack)
    detail = {k: failed[k] for k in ("deployment_id", "event_id", "data", "timestamp")}
    reply = stack.aws("events").put_events(
        Entries=[
            {
                "Source": stack.outputs["event_source"],
                "DetailType": "deployment.status",
                "Detail": json.dumps(detail),
                "EventBusName": stack.outputs["event_bus_name"],
            }
        ]
    )
    assert reply["FailedEntryCount"] == 0

    # Then nothing more is notified
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        sns_messages += topic()
    assert len(sns_messages) == 1
    assert len(webhooks.on("/all")) == 1

    # And `cloud-ws notify test` sends a sample to the same targets
    code, out, err = finish(cloud_ws("notify", "test", "--outputs", str(stack.outputs_path)))
    assert code == 0, err
    assert "sent a sample failed outcome of project default" in out
    _wait(lambda: len(webhooks.on("/all")) == 2)
    _wait(lambda: bool(sns_messages.extend(topic()) or len(sns_messages) == 2))
    assert sns_messages[1].startswith("[sample] cloud-ws: deployment cloud-ws-notify-test failed")
    assert "[sample]" in webhooks.on("/all")[1][1]["text"]
    assert webhooks.on("/other") == []


def test_notify_test_without_notifications_says_so(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"region": "us-east-1"}))
    code, _, err = finish(cloud_ws("notify", "test", "--outputs", str(outputs)))
    assert code == 2
    assert "lacks notification_bus_name" in err
    assert "no notifications configured" in err
