"""The control API's server-side close (``POST /_cloud-ws/connections/{id}/close``).

It accepts only what websockets can send, so a success always means the socket closed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocketState

from emulator.gateway import Gateway, GatewaySettings, LocalConnection


class _Socket:
    """The part of a Starlette WebSocket that ``Gateway.close`` uses."""

    application_state = WebSocketState.CONNECTED

    def __init__(self) -> None:
        self.closes: list[tuple[int, str]] = []

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))


def _gateway() -> tuple[Gateway, LocalConnection, _Socket]:
    gateway = Gateway(GatewaySettings(), lambdas=None)  # type: ignore[arg-type]  # never invoked here
    socket = _Socket()
    conn = LocalConnection("C1", socket, "127.0.0.1", "test")  # type: ignore[arg-type]
    gateway.connections[conn.connection_id] = conn
    return gateway, conn, socket


def _close(gateway: Gateway, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/_cloud-ws/connections/C1/close",
        "path_params": {"connection_id": "C1"},
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    payload = json.dumps(body).encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": payload, "more_body": False}

    response: Response = asyncio.run(gateway.close_connection(Request(scope, receive)))
    return response.status_code, json.loads(bytes(response.body))


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1008, 1011, 1012, 1013, 1014, 3000, 4000, 4999])
def test_a_sendable_code_closes_the_connection(code: int) -> None:
    gateway, conn, socket = _gateway()

    status, body = _close(gateway, {"code": code, "reason": "bye"})

    assert (status, body) == (200, {"connectionId": "C1", "closed": code})
    assert socket.closes == [(code, "bye")]
    assert conn.closed
    assert conn.close_code == code


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, -1])
def test_a_code_websockets_will_not_send_is_refused_and_changes_nothing(code: int) -> None:
    """1004 is reserved; 1005, 1006, 1015 only report closes: a success would leave the socket open."""
    gateway, conn, socket = _gateway()

    status, body = _close(gateway, {"code": code})

    assert status == 400
    assert f"close code {code} cannot be sent" in body["error"]
    assert socket.closes == []
    assert not conn.closed
    assert conn.close_code is None
    assert gateway.connections == {"C1": conn}


@pytest.mark.parametrize("body", [{"code": "1000"}, {"code": True}, {"code": 1000.0}])
def test_a_code_that_is_not_an_integer_is_refused(body: dict[str, Any]) -> None:
    gateway, conn, socket = _gateway()

    status, answer = _close(gateway, body)

    assert status == 400
    assert "integer" in answer["error"]
    assert socket.closes == []
    assert not conn.closed


def test_a_reason_longer_than_a_close_frame_holds_is_refused() -> None:
    gateway, conn, socket = _gateway()

    status, answer = _close(gateway, {"code": 1000, "reason": "é" * 62})  # 124 bytes

    assert status == 400
    assert "123 bytes" in answer["error"]
    assert socket.closes == []
    assert not conn.closed
    assert _close(gateway, {"code": 1000, "reason": "x" * 123})[0] == 200


def test_the_default_is_an_internal_error() -> None:
    gateway, _, socket = _gateway()

    assert _close(gateway, {}) == (200, {"connectionId": "C1", "closed": 1011})
    assert socket.closes == [(1011, "")]
