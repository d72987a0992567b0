"""The EventBridge client the plugin builds: endpoint from the outputs, credentials for the
local stack, and no hidden botocore retries — checked on the wire with a loopback HTTP
server that answers PutEvents."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from plugin import DeliveryOptions, OrchestratorPlugin
from tests.test_plugin.conftest import FAST


@dataclass
class FakeEventBridge:
    """Records each request; answers with the next queued HTTP status (200 when none)."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


@pytest.fixture
def fake_bus() -> Iterator[FakeEventBridge]:
    state = FakeEventBridge()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append({"headers": dict(self.headers), "body": body})
            status = state.statuses.pop(0) if state.statuses else 200
            if status == 200:
                reply = {"FailedEntryCount": 0, "Entries": [{"EventId": "e"} for _ in body["Entries"]]}
            else:
                reply = {"__type": "InternalException", "message": "try again"}
            payload = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _outputs(endpoint: str) -> dict[str, str]:
    return {
        "websocket_url": "ws://127.0.0.1:1/local",
        "management_endpoint": "http://127.0.0.1:1/local",
        "event_bus_name": "cloud-ws-local-bus",
        "event_source": "cloud.orchestrator",
        "region": "us-east-1",
        "user_pool_id": "us-east-1_local",
        "user_pool_client_id": "client",
        "connections_table_name": "connections",
        "aws_endpoint_url": endpoint,
    }


def test_local_outputs_need_no_aws_credentials(
    fake_bus: FakeEventBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aws_endpoint_url is the endpoint; with no credentials around, placeholder ones sign."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")

    with OrchestratorPlugin.from_outputs(_outputs(fake_bus.url), options=FAST) as plugin:
        event_id = plugin.log("D1", "hello")

    assert plugin.stats.sent == 1
    (request,) = fake_bus.requests
    assert request["headers"]["X-Amz-Target"] == "AWSEvents.PutEvents"
    assert "Credential=cloud-ws-local/" in request["headers"]["Authorization"]
    (entry,) = request["body"]["Entries"]
    assert entry["EventBusName"] == "cloud-ws-local-bus"
    assert json.loads(entry["Detail"])["event_id"] == event_id


def test_credentials_in_the_environment_win(
    fake_bus: FakeEventBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Placeholders are a fallback, never an override."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with OrchestratorPlugin.from_outputs(_outputs(fake_bus.url), options=FAST) as plugin:
        plugin.log("D1", "hello")
    assert "Credential=AKIDFROMENV/" in fake_bus.requests[0]["headers"]["Authorization"]


def test_botocore_does_not_retry_behind_the_senders_back(
    fake_bus: FakeEventBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two 500s then a 200: three HTTP requests, three PutEvents calls the sender knows of."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    fake_bus.statuses = [500, 500]
    with OrchestratorPlugin.from_outputs(_outputs(fake_bus.url), options=FAST) as plugin:
        plugin.log("D1", "hello")

    assert len(fake_bus.requests) == 3
    assert plugin.stats.put_calls == 3
    assert plugin.stats.sent == 1
    assert plugin.stats.last_error_code == "InternalException"


def test_construction_checks_its_arguments() -> None:
    """The one place the plugin may raise: a bus or source that cannot work."""
    with pytest.raises(ValueError, match="event_bus_name"):
        OrchestratorPlugin("")
    with pytest.raises(ValueError, match="source"):
        OrchestratorPlugin("bus", source="")
    with pytest.raises(ValueError, match="max_batch_entries"):
        DeliveryOptions(max_batch_entries=11)
    plugin = OrchestratorPlugin("bus", client=object(), autostart=False)
    assert repr(plugin) == "OrchestratorPlugin(event_bus_name='bus', source='cloud.orchestrator')"
    assert plugin.close(0)
