"""The Python client's copies of the server's contract equal the server's: a drift fails here.

The client package is installable alone, so it cannot import the server. Its
protocol constants (re-exported by ``cloud_ws_client.protocol``, ``.messages``,
``.state``, ``.auth``) are generated from ``conformance/protocol.json`` by
tools/gen_protocol.py, as the TypeScript client's are; this test holds that JSON
to the server's side (``contract.protocol``, ``handlers.connect``,
``contract.state``, ``plugin.hooks``), so the one source cannot drift from the
server. What is not in the JSON (the folding ranks, the outputs keys the client
reads from ``cloud_ws_client.outputs``) is still a copy, held to the server here.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

import cloud_ws_client
from cloud_ws_client import auth, messages, state
from cloud_ws_client import outputs as client_outputs
from cloud_ws_client import protocol as client_protocol
from contract import outputs as server_outputs
from contract import protocol
from contract import state as server_state
from handlers import connect
from plugin.hooks import LOG_LEVELS

CONFORMANCE = Path(__file__).resolve().parents[2] / "conformance" / "protocol.json"
SERVER_ERROR_CODES = frozenset(value for name, value in vars(protocol.ErrorCode).items() if name.isupper())


def server_contract() -> dict[str, Any]:
    """What conformance/protocol.json must say, from the server's modules."""
    return {
        "subprotocol": connect.SUBPROTOCOL,
        "token_subprotocol_prefix": connect.TOKEN_SUBPROTOCOL_PREFIX,
        "deployment_id_pattern": protocol.DEPLOYMENT_ID_PATTERN,
        "max_request_id_chars": protocol.MAX_REQUEST_ID_CHARS,
        "default_list_limit": protocol.DEFAULT_LIST_LIMIT,
        "max_list_limit": protocol.MAX_LIST_LIMIT,
        "message_separator": protocol.MESSAGE_SEPARATOR.decode(),
        "deployment_statuses": sorted(protocol.DEPLOYMENT_STATUSES),
        "terminal_statuses": sorted(protocol.TERMINAL_STATUSES),
        "log_levels": list(LOG_LEVELS),
        "error_codes": sorted(SERVER_ERROR_CODES),
        "reconnect_error_codes": sorted(client_protocol.RECONNECT_ERROR_CODES),
        "refused_subscription_codes": sorted(client_protocol.REFUSED_SUBSCRIPTION_CODES),
        "recent_logs": server_state.RECENT_LOGS,
        "log_message_chars": server_state.LOG_MESSAGE_CHARS,
        "stack_status": server_state.STACK_STATUS,
    }


def test_the_shared_json_is_the_servers() -> None:
    """conformance/protocol.json (what the TypeScript client is tested against) says what the server does."""
    shared = json.loads(CONFORMANCE.read_text(encoding="utf-8"))
    shared.pop("note")
    for key in (
        "deployment_statuses",
        "terminal_statuses",
        "reconnect_error_codes",
        "refused_subscription_codes",
    ):
        shared[key] = sorted(shared[key])
    assert shared == server_contract()


def test_every_error_code_the_server_can_send_is_known_to_the_client() -> None:
    assert client_protocol.ERROR_CODES == SERVER_ERROR_CODES
    assert client_protocol.RECONNECT_ERROR_CODES <= SERVER_ERROR_CODES
    assert client_protocol.REFUSED_SUBSCRIPTION_CODES <= SERVER_ERROR_CODES
    for code in sorted(SERVER_ERROR_CODES):
        sent = protocol.ProtocolError(code, "refused", "subscribe", request_id="7", deployment_id="D1")
        parsed = cloud_ws_client.parse_message(protocol.encode(sent.to_message()))
        assert isinstance(parsed, cloud_ws_client.ErrorMessage)
        assert (parsed.code, parsed.action, parsed.deployment_id, parsed.request_id) == (
            code,
            "subscribe",
            "D1",
            "7",
        )


def test_every_message_the_server_builds_parses_to_its_class() -> None:
    """Each reply builder of contract.protocol, through the client's parser: none falls back to Message."""
    built = {
        cloud_ws_client.Subscribed: protocol.subscribed("D1", 3, 2, "1"),
        cloud_ws_client.DeploymentSnapshot: protocol.snapshot("D1", 3, {"status": "deploying"}, "1"),
        cloud_ws_client.Deployments: protocol.deployments([{"deployment_id": "D1"}], "1"),
        cloud_ws_client.Unsubscribed: protocol.unsubscribed("D1", "1"),
        cloud_ws_client.Pong: protocol.pong({"D1": 3}, "1"),
        cloud_ws_client.ErrorMessage: protocol.ProtocolError(protocol.ErrorCode.FORBIDDEN, "no").to_message(),
    }
    frame = b"\n".join(protocol.pack_frames([protocol.encode(m) for m in built.values()], 1 << 20))
    parts = cloud_ws_client.split_frame(frame)
    assert len(parts) == len(built)
    for (cls, message), part in zip(built.items(), parts, strict=True):
        parsed = cloud_ws_client.parse_message(part)
        assert type(parsed) is cls, message["type"]
        assert parsed.type == message["type"]


def test_the_protocol_constants_are_the_servers() -> None:
    assert client_protocol.DEPLOYMENT_ID_PATTERN == protocol.DEPLOYMENT_ID_PATTERN
    assert client_protocol.MAX_LIST_LIMIT == protocol.MAX_LIST_LIMIT
    limit = inspect.signature(cloud_ws_client.CloudWebSocketClient.list_deployments).parameters["limit"]
    assert limit.default == protocol.DEFAULT_LIST_LIMIT
    assert messages.TERMINAL_STATUSES == protocol.TERMINAL_STATUSES
    assert auth.SUBPROTOCOL == connect.SUBPROTOCOL
    assert auth.TOKEN_SUBPROTOCOL_PREFIX == connect.TOKEN_SUBPROTOCOL_PREFIX


@pytest.mark.parametrize("value", ["D1", "a" * 64, "a" * 65, "", "D 1", "D1\n", "dé", "_-"])
def test_the_client_accepts_the_deployment_ids_the_server_accepts(value: str) -> None:
    try:
        client_protocol.check_deployment_id(value)
    except ValueError:
        accepted = False
    else:
        accepted = True
    assert accepted == protocol.is_valid_deployment_id(value)


def test_the_folding_constants_are_the_servers() -> None:
    """The client's DeploymentState folds by the server's ranks, stack statuses and log bounds."""
    assert state.RECENT_LOGS == server_state.RECENT_LOGS
    assert state.LOG_MESSAGE_CHARS == server_state.LOG_MESSAGE_CHARS
    assert state.STACK_STATUS == server_state.STACK_STATUS
    assert state._DEPLOYMENT_RANK == server_state._DEPLOYMENT_RANK
    assert state._STACK_RANK == server_state._STACK_RANK
    assert set(server_state.STACK_STATUS) <= set(messages.EVENT_CLASSES)


def test_the_outputs_keys_the_client_reads_are_the_contracts() -> None:
    """Every key constant of cloud_ws_client.outputs is the contract.outputs constant of the same name."""
    keys = [
        name
        for name, value in vars(client_outputs).items()
        if name.isupper() and isinstance(value, str) and name != "LOCAL_DEV_PASSWORD"
    ]
    assert keys, "the client names the keys it reads"
    for name in keys:
        assert getattr(client_outputs, name) == getattr(server_outputs, name), name
    assert set(client_outputs.CONNECT_NEEDS + client_outputs.SIGN_IN_NEEDS) <= server_outputs.REQUIRED_KEYS


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"websocket_url": "ws://x", "region": "r", "user_pool_client_id": "c"}),
        json.dumps({"websocket_url": "ws://x"}),
        json.dumps({"websocket_url": "", "region": "r"}),
        json.dumps({"region": 3}),
        "[1]",
        "{not json",
    ],
)
def test_both_readers_agree(tmp_path: Path, text: str) -> None:
    """The client's reader and the server's accept and refuse the same files, with the same message."""
    path = tmp_path / "outputs.json"
    path.write_text(text, encoding="utf-8")
    needs = (*client_outputs.CONNECT_NEEDS, *client_outputs.SIGN_IN_NEEDS)

    def verdict(read: Any) -> str:
        try:
            return json.dumps(read(path, needs=needs), sort_keys=True)
        except ValueError as exc:
            return f"refused: {str(exc).split(':')[0]}"

    assert verdict(client_outputs.read_outputs) == verdict(server_outputs.load_outputs)
