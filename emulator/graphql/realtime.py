"""AppSync's real-time WebSocket protocol, served locally at ``/graphql/realtime``.

The protocol (subprotocol ``graphql-ws``), as the stock AppSync clients speak it:

- Connection auth comes with the upgrade request, in one of three forms:
  the ``header`` query parameter (standard base64 of a JSON object of headers,
  with ``payload=e30=``; gql), a ``header-<base64url>`` subprotocol (Amplify v6),
  or the upgrade request's own headers. It is checked at ``connection_init``;
  a refusal is a ``connection_error`` and the socket closes.
- ``connection_init`` → ``connection_ack`` (``payload.connectionTimeoutMs``), then
  ``ka`` at once and every :attr:`GraphQLSettings.keep_alive_seconds`.
- ``start`` (``id``, ``payload.data`` = the JSON string of ``{query, variables}``,
  ``payload.extensions.authorization`` = the headers authorizing this operation)
  → ``start_ack``, then ``data`` per event; or ``error`` with nothing registered.
- ``stop`` → ``complete``. Operation ids are echoed exactly as received.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from graphql import DocumentNode, ExecutionResult, OperationType, subscribe
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from contract.log import get_logger
from emulator.graphql.api import Context, GraphQLApi, format_result
from emulator.graphql.auth import AuthError, Caller, SignedRequest

log = get_logger("emulator.graphql.realtime")

SUBPROTOCOL = "graphql-ws"
HEADER_SUBPROTOCOL_PREFIX = "header-"


def _b64_json(value: str, *, urlsafe: bool) -> dict[str, str]:
    """Decode a base64 JSON object of headers; ``ValueError`` if it is not one."""
    padded = value + "=" * (-len(value) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded, validate=True)
        decoded = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"the connection header is not base64 JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise ValueError("the connection header must be a JSON object")
    return {str(name).lower(): str(item) for name, item in decoded.items()}


def _query_params(raw: str) -> dict[str, str]:
    """The raw query string's parameters, percent-decoded only.

    Standard base64 holds ``+``; form decoding (``parse_qs``) would turn it into a
    space and break the header, so ``+`` stays ``+`` here.
    """
    params: dict[str, str] = {}
    for part in raw.split("&"):
        if part:
            name, _, value = part.partition("=")
            params.setdefault(unquote(name), unquote(value))
    return params


def connection_headers(
    query_string: str, subprotocols: list[str], headers: Mapping[str, str]
) -> dict[str, str] | None:
    """The headers that authenticate the connection, from whichever form the client used.

    Raises:
        ValueError: a ``header`` parameter or ``header-`` subprotocol that does not decode.
    """
    params = _query_params(query_string)
    if "header" in params:
        return _b64_json(params["header"], urlsafe=False)
    for entry in subprotocols:
        if entry.startswith(HEADER_SUBPROTOCOL_PREFIX):
            return _b64_json(entry[len(HEADER_SUBPROTOCOL_PREFIX) :], urlsafe=True)
    lowered = {name.lower(): value for name, value in headers.items()}
    return lowered if "authorization" in lowered else None


@dataclass(eq=False)
class Operation:
    """One started subscription on a connection."""

    id: str
    context: Context
    stream: AsyncIterator[ExecutionResult]
    task: asyncio.Task[None] | None = None


@dataclass(eq=False)
class RealtimeConnection:
    """One client socket: its caller once initialized, and its operations by id."""

    websocket: WebSocket
    auth_headers: dict[str, str] | None
    auth_problem: str | None = None
    caller: Caller | None = None
    operations: dict[str, Operation] = field(default_factory=dict)
    keep_alive: asyncio.Task[None] | None = None
    _send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send one message; frames from concurrent operations never interleave."""
        async with self._send_lock:
            await self.websocket.send_text(json.dumps(message, separators=(",", ":")))


def _errors(error_type: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"errors": [{"errorType": error_type, "message": message, **extra}]}


class RealtimeEndpoint:
    """The ``/graphql/realtime`` WebSocket route of a :class:`GraphQLApi`."""

    def __init__(self, api: GraphQLApi) -> None:
        self.api = api

    async def serve(self, websocket: WebSocket) -> None:
        """Accept a ``graphql-ws`` socket and serve it until it closes."""
        offered = [str(p) for p in websocket.scope.get("subprotocols") or []]
        if SUBPROTOCOL not in offered:
            await websocket.send_denial_response(
                Response("the graphql-ws subprotocol is required", status_code=400)
            )
            return
        problem: str | None = None
        try:
            headers = connection_headers(
                websocket.scope.get("query_string", b"").decode("latin-1"), offered, websocket.headers
            )
        except ValueError as exc:
            headers, problem = None, str(exc)
        await websocket.accept(subprotocol=SUBPROTOCOL)
        conn = RealtimeConnection(websocket, headers, problem)
        try:
            await self._serve(conn)
        except WebSocketDisconnect:
            pass
        finally:
            await self._close_all(conn)

    async def _serve(self, conn: RealtimeConnection) -> None:
        while True:
            frame = await conn.websocket.receive()
            if frame["type"] == "websocket.disconnect":
                return
            try:
                message = json.loads(frame.get("text") or "")
            except ValueError:
                message = None
            if not isinstance(message, dict):
                await conn.send(
                    {"type": "error", "payload": _errors("MessageFormatException", "not a JSON object")}
                )
                continue
            kind = message.get("type")
            if kind == "connection_init":
                if not await self._init(conn):
                    return
            elif kind == "start":
                await self._start(conn, message)
            elif kind == "stop":
                await self._stop(conn, message.get("id"))
            else:
                await conn.send(
                    {
                        "type": "error",
                        "payload": _errors("UnsupportedOperation", f"unknown message type {kind!r}"),
                    }
                )

    async def _init(self, conn: RealtimeConnection) -> bool:
        """``connection_init``: authenticate the connection; False once refused (the socket is closed)."""
        if conn.caller is None:
            try:
                conn.caller = await self._authenticate(
                    conn.auth_headers, "/graphql/connect", b"{}", conn.auth_problem
                )
            except AuthError as exc:
                log.info(
                    "graphql connection refused", extra={"error_type": exc.error_type, "reason": exc.message}
                )
                await conn.send(
                    {
                        "type": "connection_error",
                        "payload": _errors(exc.error_type, exc.message, errorCode=exc.status),
                    }
                )
                await conn.websocket.close(1000)
                return False
        await conn.send(
            {
                "type": "connection_ack",
                "payload": {"connectionTimeoutMs": self.api.settings.connection_timeout_ms},
            }
        )
        if conn.keep_alive is None:
            conn.keep_alive = asyncio.create_task(self._keep_alive(conn))
        return True

    async def _authenticate(
        self, headers: Mapping[str, str] | None, path: str, body: bytes, problem: str | None = None
    ) -> Caller:
        if not headers or not headers.get("authorization"):
            raise AuthError("UnauthorizedException", problem or "Valid authorization header not provided.")
        return await self.api.authenticator.authenticate(SignedRequest("POST", path, "", headers, body))

    async def _keep_alive(self, conn: RealtimeConnection) -> None:
        with contextlib.suppress(Exception):  # the socket closed: nothing more to keep alive
            while True:
                await conn.send({"type": "ka"})
                await asyncio.sleep(self.api.settings.keep_alive_seconds)

    async def _start(self, conn: RealtimeConnection, message: Mapping[str, Any]) -> None:
        op_id = message.get("id")
        if not isinstance(op_id, str) or not op_id:
            await conn.send(
                {"type": "error", "payload": _errors("MessageFormatException", "start needs an id")}
            )
            return

        async def refuse(error_type: str, text: str) -> None:
            await conn.send({"type": "error", "id": op_id, "payload": _errors(error_type, text)})

        if conn.caller is None:
            await refuse("UnauthorizedException", "send connection_init before start")
            return
        if op_id in conn.operations:
            await refuse("DuplicatedOperationError", f"an operation with id {op_id!r} is already started")
            return
        if len(conn.operations) >= self.api.settings.max_subscriptions_per_connection:
            await refuse("MaxSubscriptionsReachedError", "too many subscriptions on this connection")
            return
        raw_payload = message.get("payload")
        payload: dict[str, Any] = raw_payload if isinstance(raw_payload, dict) else {}
        data_text: Any = payload.get("data")
        try:
            request = json.loads(data_text) if isinstance(data_text, str) else None
        except ValueError:
            request = None
        if not isinstance(data_text, str) or not isinstance(request, dict):
            await refuse(
                "MessageFormatException", "payload.data must be the JSON string of {query, variables}"
            )
            return
        raw_extensions = payload.get("extensions")
        extensions: dict[str, Any] = raw_extensions if isinstance(raw_extensions, dict) else {}
        authorization = extensions.get("authorization")
        headers = (
            {str(k).lower(): str(v) for k, v in authorization.items()}
            if isinstance(authorization, dict)
            else None
        )
        try:
            # The operation's own signature covers the data string (IAM signs it as the body).
            caller = await self._authenticate(headers, "/graphql", data_text.encode())
        except AuthError as exc:
            await refuse(exc.error_type, exc.message)
            return

        variables = request.get("variables")
        if variables is not None and not isinstance(variables, dict):
            await refuse("MessageFormatException", "variables must be a JSON object")
            return
        prepared = self.api.prepare(
            request.get("query"), request.get("operationName"), frozenset({OperationType.SUBSCRIPTION})
        )
        if not isinstance(prepared, DocumentNode):
            await conn.send({"type": "error", "id": op_id, "payload": {"errors": prepared}})
            return
        context = Context(caller)
        result: Any = subscribe(
            self.api.schema.schema,
            prepared,
            context_value=context,
            variable_values=variables,
            operation_name=request.get("operationName"),
        )
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, ExecutionResult):  # refused: nothing stays registered
            for listener in context.listeners:
                self.api.pubsub.remove(listener)
            await conn.send(
                {"type": "error", "id": op_id, "payload": {"errors": format_result(result)["errors"]}}
            )
            return
        operation = Operation(op_id, context, result)
        conn.operations[op_id] = operation
        await conn.send({"type": "start_ack", "id": op_id})
        operation.task = asyncio.create_task(self._deliver(conn, operation))

    async def _deliver(self, conn: RealtimeConnection, operation: Operation) -> None:
        try:
            async for result in operation.stream:
                await conn.send({"type": "data", "id": operation.id, "payload": format_result(result)})
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the socket closed under us; the connection's clean-up follows
            log.debug("graphql delivery stopped", extra={"operation_id": operation.id})

    async def _release(self, operation: Operation) -> None:
        for listener in operation.context.listeners:
            self.api.pubsub.remove(listener)
        if operation.task is not None:
            operation.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await operation.task
        aclose = getattr(operation.stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()

    async def _stop(self, conn: RealtimeConnection, op_id: Any) -> None:
        if not isinstance(op_id, str):
            await conn.send(
                {"type": "error", "payload": _errors("MessageFormatException", "stop needs an id")}
            )
            return
        operation = conn.operations.pop(op_id, None)
        if operation is not None:
            await self._release(operation)
        await conn.send({"type": "complete", "id": op_id})

    async def _close_all(self, conn: RealtimeConnection) -> None:
        if conn.keep_alive is not None:
            conn.keep_alive.cancel()
        for operation in list(conn.operations.values()):
            await self._release(operation)
        conn.operations.clear()
        if conn.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await conn.websocket.close(1000)
