"""An emulator of API Gateway's WebSocket semantics, in front of the real handlers.

What it reproduces, because our code (and our users' code) depends on it:

- ``$connect`` runs before the handshake completes: a non-2xx answer refuses
  it with that HTTP status; response headers (the chosen subprotocol) are
  sent back; a 2xx registers the connection.
- Route selection on ``$request.body.action`` with ``$default`` fallback;
  every frame becomes an API-Gateway-shaped event for its route's handler.
- Frames over 32 KB and messages over 128 KB close the connection with 1009
  (enforced by the WebSocket protocol layer, see ``emulator.stack``).
- Idle connections (no data frame either way for 10 minutes) and any
  connection older than 2 hours are closed with 1001 and ``$disconnect``.
- The @connections Management API over HTTP, at the stage path, so boto3's
  ``apigatewaymanagementapi`` client works unchanged: POST sends, GET
  describes, DELETE closes; unknown or closed connections answer 410 Gone
  (``emulator.connections_api``).
- ``$disconnect`` after every close, except for connections made stale.

- One connection's frames are handled concurrently, as API Gateway may: up to
  ``frames_in_flight`` route invocations at once per connection (further
  frames wait unread), so a reply may overtake the reply to an earlier frame.
  ``$disconnect`` runs once the connection's route invocations are done.

Known difference: a subprotocol the ``$connect`` handler returns is sent as-is.

Fault injection (for tests and demos) lives under ``/_cloud-ws/``: make a
connection stale (posts answer 410, client frames go nowhere, no
``$disconnect``), close one with a chosen code, drop idle connections now
(``emulator.fault_routes``); the faults that are not about one connection
(429s, shuffled delivery) are in ``emulator.faults``.

This module is the WebSocket side, which owns the connections, and the app that
puts the three together; ``LocalConnection``, ``close_frame_refusal`` and
``GOING_AWAY`` (from ``emulator.connections``) stay importable from here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketState

from contract import spec
from contract.log import get_logger
from emulator.connections import GOING_AWAY, LocalConnection, close_frame_refusal
from emulator.connections_api import ConnectionsApi
from emulator.fault_routes import ConnectionFaultRoutes
from emulator.faults import FaultRoutes, Faults
from emulator.lambdas import LambdaRuntime

__all__ = [
    "GOING_AWAY",
    "Gateway",
    "GatewaySettings",
    "LocalConnection",
    "RefusedHandshakeFilter",
    "close_frame_refusal",
    "new_connection_id",
    "new_request_id",
]

log = get_logger("emulator.gateway")


@dataclass(frozen=True)
class GatewaySettings:
    """The emulated API: its stage and the limits it enforces."""

    stage: str = "local"
    api_id: str = "local"
    domain_name: str = "127.0.0.1"
    idle_timeout_seconds: float = spec.API_GATEWAY_LIMITS.idle_timeout_seconds
    max_connection_seconds: float = spec.API_GATEWAY_LIMITS.max_connection_seconds
    message_bytes: int = spec.API_GATEWAY_LIMITS.message_bytes
    frames_in_flight: int = 8
    """Route invocations one connection may have running at once; further frames wait unread."""


def new_request_id() -> str:
    """A per-request id shaped like API Gateway's WebSocket ``requestId`` (``Fp3n2GqVIAMFZzw=``)."""
    return base64.b64encode(os.urandom(10)).decode()


def new_connection_id() -> str:
    """An id shaped like API Gateway's (16 URL-safe base64 characters)."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode()


class Gateway:
    """The emulated WebSocket API and its @connections endpoint, as one ASGI app.

    It owns the connections and the WebSocket side; the @connections routes
    (:class:`~emulator.connections_api.ConnectionsApi`) and the control API's
    connection routes (:class:`~emulator.fault_routes.ConnectionFaultRoutes`) act on them.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        lambdas: LambdaRuntime,
        extra_routes: list[BaseRoute] | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.settings = settings
        self.lambdas = lambdas
        self.connections: dict[str, LocalConnection] = {}
        self.faults = faults if faults is not None else Faults()
        self.connections_api = ConnectionsApi(self)
        self.fault_routes = ConnectionFaultRoutes(self)
        self._extra_routes = extra_routes or []
        self._sweeper: asyncio.Task[None] | None = None

    # -- events --------------------------------------------------------------------------------

    def _request_context(
        self, connection_id: str, route_key: str, event_type: str, **extra: Any
    ) -> dict[str, Any]:
        now = time.time()
        conn = self.connections.get(connection_id)
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "messageDirection": "IN",
            "stage": self.settings.stage,
            "domainName": self.settings.domain_name,
            "apiId": self.settings.api_id,
            "connectionId": connection_id,
            "connectedAt": int((conn.connected_at if conn else now) * 1000),
            "requestId": new_request_id(),
            "extendedRequestId": new_request_id(),
            "requestTimeEpoch": int(now * 1000),
            "requestTime": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            **extra,
        }

    # -- the WebSocket side --------------------------------------------------------------------

    async def websocket_endpoint(self, websocket: WebSocket) -> None:
        """Handshake through ``$connect``, then route every frame, then ``$disconnect``."""
        connection_id = new_connection_id()
        headers = dict(websocket.headers.items())
        source_ip = websocket.client.host if websocket.client else "127.0.0.1"
        identity = {"sourceIp": source_ip, "userAgent": headers.get("user-agent", "")}
        query = dict(websocket.query_params)
        event = {
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": {k: websocket.query_params.getlist(k) for k in query} or None,
            "requestContext": self._request_context(connection_id, "$connect", "CONNECT", identity=identity),
            "isBase64Encoded": False,
        }
        status, response_headers = await self._run_connect(event)
        if not 200 <= status < 300:
            await websocket.send_denial_response(Response(status_code=status, content=_status_text(status)))
            return
        subprotocol = next(
            (v for k, v in response_headers.items() if k.lower() == "sec-websocket-protocol"), None
        )
        conn = LocalConnection(connection_id, websocket, source_ip, identity["userAgent"])
        try:
            await websocket.accept(subprotocol=subprotocol)
        except BaseException:
            # The client left while $connect ran: there is no connection to keep, but
            # $connect stored its row, which would otherwise stay for the row's 24 h.
            conn.closed, conn.close_code = True, 1006
            log.info("client left during its handshake", extra={"connection_id": connection_id})
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_disconnect(conn, identity)
            raise
        self.connections[connection_id] = conn
        try:
            await self._receive_loop(conn)
        finally:
            conn.closed = True
            self.connections.pop(connection_id, None)
            if not conn.stale:
                # Cancelled only when the stack stops with $disconnects still queued: the
                # backend's state goes with it, so they are dropped, quietly.
                with contextlib.suppress(asyncio.CancelledError):
                    await self._run_disconnect(conn, identity)

    async def _run_connect(self, event: Mapping[str, Any]) -> tuple[int, Mapping[str, str]]:
        try:
            result = await self.lambdas.invoke("connect", event)
        except Exception:
            log.exception("$connect handler raised")
            return 500, {}
        if not isinstance(result, Mapping):
            return 200, {}
        status = result.get("statusCode", 200)
        headers = result.get("headers") or {}
        return (status if isinstance(status, int) else 500), headers

    async def _receive_loop(self, conn: LocalConnection) -> None:
        """Route every frame until the client leaves; returns once no route invocation is running.

        As API Gateway may, up to ``frames_in_flight`` frames of one connection
        are handled at once; the next frame is read only when one finishes, so
        a client that floods a connection is held back by its own socket.
        ``$disconnect`` (run by the caller) must not overtake a route invocation
        of the same connection: on a close the loop waits for them; when it is
        cancelled (the stack stops) it cancels them and waits for that.
        """
        slots = asyncio.Semaphore(max(1, self.settings.frames_in_flight))
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                await slots.acquire()
                try:
                    message = await conn.websocket.receive()
                except BaseException:
                    slots.release()
                    raise
                if message["type"] == "websocket.disconnect":
                    slots.release()
                    if conn.close_code is None:
                        conn.close_code = int(message.get("code") or 1005)
                        conn.close_reason = str(message.get("reason") or "")
                    break
                if conn.stale:
                    slots.release()
                    continue  # API Gateway has forgotten this connection; its frames go nowhere
                conn.touch()
                task = asyncio.create_task(self._route_frame(conn, message))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                task.add_done_callback(lambda _: slots.release())
        except BaseException:
            for task in in_flight:
                task.cancel()
            raise
        finally:
            if in_flight:
                # A handler already running in a worker thread cannot be stopped; a
                # cancelled one only stops being awaited, as Lambda's caller would.
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _route_frame(self, conn: LocalConnection, message: Mapping[str, Any]) -> None:
        """One frame as an API-Gateway-shaped event to its route's handler."""
        text, data = message.get("text"), message.get("bytes")
        if text is not None:
            body, encoded, route_key = text, False, spec.select_route(text)
        else:
            body, encoded, route_key = base64.b64encode(data or b"").decode(), True, "$default"
        event = {
            "requestContext": self._request_context(
                conn.connection_id,
                route_key,
                "MESSAGE",
                messageId=uuid.uuid4().hex[:16],
                identity={"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
            ),
            "body": body,
            "isBase64Encoded": encoded,
        }
        try:
            await self.lambdas.invoke(spec.route_for(route_key).function, event)
        except Exception:
            log.exception(
                "route handler raised", extra={"route": route_key, "connection_id": conn.connection_id}
            )

    async def _run_disconnect(self, conn: LocalConnection, identity: Mapping[str, str]) -> None:
        event = {
            "headers": {},
            "requestContext": self._request_context(
                conn.connection_id,
                "$disconnect",
                "DISCONNECT",
                identity=dict(identity),
                disconnectStatusCode=conn.close_code or 1005,
                disconnectReason=conn.close_reason,
            ),
            "isBase64Encoded": False,
        }
        try:
            await self.lambdas.invoke("disconnect", event)
        except Exception:
            log.exception("$disconnect handler raised", extra={"connection_id": conn.connection_id})

    async def close(self, conn: LocalConnection, code: int, reason: str) -> None:
        """Close from the server side, as API Gateway does (``$disconnect`` follows)."""
        if conn.closed:
            return
        conn.close_code, conn.close_reason = code, reason
        conn.closed = True
        with contextlib.suppress(Exception):  # the client may already be gone
            if conn.websocket.application_state == WebSocketState.CONNECTED:
                await conn.websocket.close(code, reason)

    async def sweep(self, now: float | None = None, idle_seconds: float | None = None) -> list[str]:
        """Close connections past the idle timeout or the maximum duration; returns their ids."""
        now = time.time() if now is None else now
        idle_limit = self.settings.idle_timeout_seconds if idle_seconds is None else idle_seconds
        closed = []
        for conn in list(self.connections.values()):
            if now - conn.connected_at >= self.settings.max_connection_seconds:
                await self.close(conn, GOING_AWAY, "Connection duration exceeded")
            elif now - conn.last_active_at >= idle_limit:
                await self.close(conn, GOING_AWAY, "Going away")
            else:
                continue
            closed.append(conn.connection_id)
        return closed

    async def _sweep_forever(self) -> None:
        interval = max(
            0.05, min(1.0, self.settings.idle_timeout_seconds / 4, self.settings.max_connection_seconds / 4)
        )
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed")

    # -- the control API (its routes are in emulator.fault_routes) -----------------------------

    async def close_connection(self, request: Request) -> Response:
        """``POST /_cloud-ws/connections/{id}/close``: see :meth:`ConnectionFaultRoutes.close_connection`."""
        # Kept on the gateway for the callers (and tests) that drive the route through it.
        return await self.fault_routes.close_connection(request)

    # -- the app ---------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """Every route of the emulated API, the control API and any extra (dashboard) routes."""
        control = "/_cloud-ws"
        return [
            WebSocketRoute(f"/{self.settings.stage}", self.websocket_endpoint),
            *self.connections_api.routes(self.settings.stage),
            *self.fault_routes.routes(control),
            *FaultRoutes(self.faults).routes(f"{control}/faults"),
            *self._extra_routes,
        ]

    def app(self) -> Starlette:
        """The ASGI application; starts the idle/duration sweeper with the server."""

        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> Any:
            self._sweeper = asyncio.create_task(self._sweep_forever())
            try:
                yield
            finally:
                self._sweeper.cancel()
                for conn in list(self.connections.values()):
                    await self.close(conn, GOING_AWAY, "Server shutting down")

        return Starlette(routes=self.routes(), lifespan=lifespan)


class RefusedHandshakeFilter(logging.Filter):
    """Drops uvicorn's "returned without completing handshake" error after a refused handshake.

    uvicorn's WebSocket protocol sends the HTTP response an app gives to deny
    a handshake (the 401 of ``$connect``) but does not count it as the end of
    the handshake, so it then logs an error, with no traceback, for every
    refused token. The gateway only ever returns without accepting after
    sending that response (``$connect`` itself logs the refusal, once, at
    INFO), so the line says nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for that one message; every other record passes."""
        return record.getMessage() != "ASGI callable returned without completing handshake."


def _status_text(status: int) -> str:
    return {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests"}.get(
        status, "Internal server error"
    )
