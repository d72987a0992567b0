"""``$connect``: authenticate the Cognito JWT and register the connection.

The token may come, in this order of precedence, from an ``Authorization:
Bearer`` header, the ``token`` query parameter, or the ``Sec-WebSocket-Protocol``
header (browsers cannot set headers): offer ``["cloud-ws", "bearer.<jwt>"]`` and
the handshake answers with ``cloud-ws``, as browsers require one of the offered
subprotocols to be echoed. A refused handshake is a 401 and stores nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract.log import get_logger
from server.apigw import LambdaResponse, WebSocketEvent, response
from server.runtime import get_runtime, lambda_entry
from server.store import ConnectionRecord

log = get_logger("connect")

#: Subprotocol a client offers beside its token; echoed back when offered.
SUBPROTOCOL = "cloud-ws"
#: Prefix of the subprotocol entry that carries the token.
TOKEN_SUBPROTOCOL_PREFIX = "bearer."


@dataclass(frozen=True)
class TokenSource:
    """Where the token came from and which subprotocol (if any) the handshake must echo."""

    token: str | None
    source: str
    subprotocol: str | None


def _looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and all(value.split("."))


def find_token(event: WebSocketEvent) -> TokenSource:
    """Pick the token out of the handshake (see module docstring for precedence)."""
    offered = [p.strip() for p in event.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    protocol_token: str | None = None
    token_entry: str | None = None
    for entry in offered:
        candidate = (
            entry[len(TOKEN_SUBPROTOCOL_PREFIX) :] if entry.startswith(TOKEN_SUBPROTOCOL_PREFIX) else entry
        )
        if _looks_like_jwt(candidate):
            protocol_token, token_entry = candidate, entry
            break
    # Echo our protocol name when offered; else the token entry itself, the only
    # other value the browser will accept back.
    echo = SUBPROTOCOL if SUBPROTOCOL in offered else token_entry

    authorization = event.headers.get("authorization", "")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else None
        return TokenSource(token or None, "header", echo)
    if "token" in event.query:
        return TokenSource(event.query["token"] or None, "query", echo)
    if protocol_token is not None:
        return TokenSource(protocol_token, "subprotocol", echo)
    return TokenSource(None, "none", echo)


@lambda_entry("$connect")
def handler(event: Mapping[str, Any], context: Any = None) -> LambdaResponse:
    """Authenticate the handshake and store the connection; 401 on any token problem."""
    from server.cognito import JwksUnavailableError, TokenError  # noqa: PLC0415 - cold start

    ws = WebSocketEvent.from_lambda(event)
    runtime = get_runtime()
    found = find_token(ws)
    fields = {"connection_id": ws.connection_id, "route": "$connect", "token_source": found.source}
    if found.token is None:
        log.info("handshake refused", extra={**fields, "reason": "no token"})
        return response(401)
    try:
        identity = runtime.verifier.verify(found.token)
    except TokenError as exc:
        log.info("handshake refused", extra={**fields, "reason": str(exc)})
        return response(401)
    except JwksUnavailableError as exc:
        log.error("handshake failed: user pool keys unavailable", extra={**fields, "error": str(exc)})
        return response(500)

    now = int(time.time())
    runtime.store.put_connection(
        ConnectionRecord(
            connection_id=ws.connection_id,
            user_id=identity.user_id,
            username=identity.username,
            email=identity.email,
            groups=identity.groups,
            token_expires_at=identity.expires_at,
            connected_at=now,
            last_ping=now,
            ttl=now + runtime.config.connection_ttl_seconds,
        )
    )
    log.info("connected", extra={**fields, "user_id": identity.user_id})
    headers = {"Sec-WebSocket-Protocol": found.subprotocol} if found.subprotocol else None
    return response(200, headers)
