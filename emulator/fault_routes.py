"""The control API's connection routes, for tests and demos, under ``/_cloud-ws/``.

- ``GET connections``: what is open;
- ``POST connections/{id}/stale``: API Gateway forgets a connection (posts answer 410,
  its frames go nowhere, no ``$disconnect``);
- ``POST connections/{id}/close`` ``{"code": 1011}``: a server-side close;
- ``POST faults/drop-idle`` ``{"idle_seconds": 0}``: run the idle timeout now.

They act on the gateway's connections (:class:`emulator.gateway.Gateway` owns them); the
faults that are not about one connection (429s, shuffled delivery) and their routes are
in :mod:`emulator.faults`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from emulator.connections import close_frame_refusal, iso_time

if TYPE_CHECKING:
    from emulator.gateway import Gateway


class ConnectionFaultRoutes:
    """List the gateway's connections, make one stale, close one, drop the idle ones."""

    def __init__(self, gateway: Gateway) -> None:
        # The gateway itself, not its parts: its connections are read at each request, as
        # when these routes were the gateway's own methods.
        self.gateway = gateway

    async def list_connections(self, request: Request) -> Response:
        """``GET /_cloud-ws/connections``: what is open, for tests and debugging."""
        return JSONResponse(
            [
                {
                    "connectionId": c.connection_id,
                    "connectedAt": iso_time(c.connected_at),
                    "lastActiveAt": iso_time(c.last_active_at),
                    "sourceIp": c.source_ip,
                    "stale": c.stale,
                }
                for c in self.gateway.connections.values()
            ]
        )

    async def make_stale(self, request: Request) -> Response:
        """``POST /_cloud-ws/connections/{id}/stale``: API Gateway forgets it without ``$disconnect``."""
        conn = self.gateway.connections.get(request.path_params["connection_id"])
        if conn is None:
            return JSONResponse({"error": "no such connection"}, status_code=404)
        conn.stale = True
        return JSONResponse({"connectionId": conn.connection_id, "stale": True})

    async def close_connection(self, request: Request) -> Response:
        """``POST /_cloud-ws/connections/{id}/close`` ``{"code": 1011}``: a server-side close."""
        conn = self.gateway.connections.get(request.path_params["connection_id"])
        if conn is None:
            return JSONResponse({"error": "no such connection"}, status_code=404)
        body = await _json_body(request)
        code, reason = body.get("code", 1011), str(body.get("reason", ""))
        refusal = close_frame_refusal(code, reason)
        if refusal is not None:
            return JSONResponse({"error": refusal}, status_code=400)
        await self.gateway.close(conn, code, reason)
        return JSONResponse({"connectionId": conn.connection_id, "closed": code})

    async def drop_idle(self, request: Request) -> Response:
        """``POST /_cloud-ws/faults/drop-idle`` ``{"idle_seconds": 0}``: run the idle timeout now."""
        body = await _json_body(request)
        idle = body.get("idle_seconds", 0)
        if not isinstance(idle, int | float) or isinstance(idle, bool) or idle < 0:
            return JSONResponse({"error": "idle_seconds must be a non-negative number"}, status_code=400)
        return JSONResponse({"closed": await self.gateway.sweep(idle_seconds=float(idle))})

    def routes(self, control: str = "/_cloud-ws") -> list[BaseRoute]:
        """The routes, under ``control``."""
        return [
            Route(f"{control}/connections", self.list_connections, methods=["GET"]),
            Route(f"{control}/connections/{{connection_id}}/stale", self.make_stale, methods=["POST"]),
            Route(f"{control}/connections/{{connection_id}}/close", self.close_connection, methods=["POST"]),
            Route(f"{control}/faults/drop-idle", self.drop_idle, methods=["POST"]),
        ]


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object; {} when it is empty or not one (so defaults apply)."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
