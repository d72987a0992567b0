"""The @connections Management API of the emulated gateway, over HTTP.

At the stage path, so boto3's ``apigatewaymanagementapi`` client works unchanged:
POST sends, GET describes, DELETE closes; unknown or closed connections (and stale
ones) answer 410 Gone. The throttle fault (:mod:`emulator.faults`) makes posts
answer 429. It acts on the gateway's connections: the WebSocket side
(:class:`emulator.gateway.Gateway`) owns them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.websockets import WebSocketDisconnect

from emulator.connections import iso_time

if TYPE_CHECKING:
    from emulator.gateway import Gateway


def _error(status: int, error_type: str, message: str) -> Response:
    """An error as API Gateway's REST-JSON protocol sends it, so botocore maps it to an exception."""
    return JSONResponse({"message": message}, status_code=status, headers={"x-amzn-ErrorType": error_type})


class ConnectionsApi:
    """``/{stage}/@connections/{id}``: post to, describe and close the gateway's connections."""

    def __init__(self, gateway: Gateway) -> None:
        # The gateway itself, not its parts: its connections, faults and limits are read at
        # each request, as when these routes were the gateway's own methods.
        self.gateway = gateway

    async def post_to_connection(self, request: Request) -> Response:
        """``POST /{stage}/@connections/{id}``: send the body as one message."""
        gateway = self.gateway
        if gateway.faults.take_throttle():
            return _error(429, "LimitExceededException", "Too Many Requests")
        conn = gateway.connections.get(request.path_params["connection_id"])
        if conn is None or not conn.reachable:
            return _error(410, "GoneException", "")
        data = await request.body()
        if len(data) > gateway.settings.message_bytes:
            return _error(413, "PayloadTooLargeException", "Message too long")
        try:
            try:
                await conn.websocket.send_text(data.decode("utf-8"))
            except UnicodeDecodeError:
                await conn.websocket.send_bytes(data)
        except (RuntimeError, OSError, WebSocketDisconnect):  # closed after our check
            return _error(410, "GoneException", "")
        conn.touch()
        return Response(status_code=200)

    async def get_connection(self, request: Request) -> Response:
        """``GET /{stage}/@connections/{id}``: when it connected, when it was last active, who it is."""
        conn = self.gateway.connections.get(request.path_params["connection_id"])
        if conn is None or not conn.reachable:
            return _error(410, "GoneException", "")
        return JSONResponse(
            {
                # The wire names of API Gateway's REST-JSON model (botocore maps them).
                "connectedAt": iso_time(conn.connected_at),
                "lastActiveAt": iso_time(conn.last_active_at),
                "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
            }
        )

    async def delete_connection(self, request: Request) -> Response:
        """``DELETE /{stage}/@connections/{id}``: close it (``$disconnect`` follows)."""
        conn = self.gateway.connections.get(request.path_params["connection_id"])
        if conn is None or not conn.reachable:
            return _error(410, "GoneException", "")
        await self.gateway.close(conn, 1000, "")
        return Response(status_code=204)

    def routes(self, stage: str) -> list[BaseRoute]:
        """The routes, at ``stage``'s path."""
        connection = f"/{stage}/@connections/{{connection_id}}"
        return [
            Route(connection, self.post_to_connection, methods=["POST"]),
            Route(connection, self.get_connection, methods=["GET"]),
            Route(connection, self.delete_connection, methods=["DELETE"]),
        ]
