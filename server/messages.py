"""Plumbing shared by the routes that carry client frames (subscribe, unsubscribe, ping, $default).

Each route parses its frame with ``contract.protocol``, runs its action, and
posts the replies to the sender through the @connections Management API, in
order, exactly as on AWS. A refused frame gets one ``error`` reply; the
connection stays open and nothing is stored. Every frame read as a JSON object
with an ``action`` is first counted against its connection's rate limit
(``take_allowance``): past it, the frame is refused with ``rate_limited``.

Every reply to a frame that carried an ``id`` echoes it, errors included, and
an error names the frame's ``deployment_id`` when it was well-formed: API
Gateway may run one connection's frames concurrently, so clients match
replies by ``id``, never by order. One post may carry several messages
(``\n``-separated, see ``protocol.pack_frames``); an action yields whole posts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from contract import protocol
from contract.log import get_logger
from contract.protocol import ErrorCode, Frame, ProtocolError
from server.apigw import LambdaResponse, WebSocketEvent, response
from server.management import PostOutcome
from server.runtime import Runtime, get_runtime, lambda_entry
from server.store import ConnectionRecord

log = get_logger("messages")


@dataclass(frozen=True)
class Request:
    """A parsed frame from one connection."""

    connection_id: str
    frame: Frame
    runtime: Runtime

    @property
    def request_id(self) -> str | None:
        """The frame's ``id``, which every reply must echo."""
        return self.frame.request_id


def live_connection(request: Request, action: str) -> ConnectionRecord:
    """The sender's registered connection, refused when it is gone or its token has expired.

    Raises:
        ProtocolError: ``unknown_connection`` or ``token_expired``.
    """
    connection = request.runtime.store.get_connection(request.connection_id)
    if connection is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_CONNECTION, "this connection is not registered any more; reconnect", action
        )
    check_token(request, connection.token_expires_at, action)
    return connection


def check_token(request: Request, token_expires_at: int, action: str) -> None:
    """Refuse the request when the connection's token has expired (``exp`` plus the verifier's leeway).

    Raises:
        ProtocolError: ``token_expired``.
    """
    if token_expires_at + request.runtime.config.auth.leeway_seconds < time.time():
        raise ProtocolError(
            ErrorCode.TOKEN_EXPIRED,
            "the token this connection was opened with has expired; reconnect with a fresh token",
            action,
        )


#: An action yields the posts to send back, in order: each one encoded message, or several
#: joined by ``protocol.pack_frames``.
Action = Callable[[Request], Iterable[bytes]]


def take_allowance(request: Request) -> None:
    """Count the frame against its connection's rate limit (``spec.FRAME_RATE_LIMIT``).

    Runs before every action, so a frame past the limit is answered and nothing
    else happens: no subscription, no replay, no read. A connection that is not
    registered passes, and its action answers ``unknown_connection``.

    Raises:
        ProtocolError: ``rate_limited``, with when to retry.
    """
    limit = request.runtime.config.frame_rate_limit
    if limit is None:
        return
    wait = request.runtime.store.take_frame_allowance(request.connection_id, limit.burst, limit.per_second)
    if wait > 0:
        raise ProtocolError(
            ErrorCode.RATE_LIMITED,
            f"this connection sent frames faster than allowed ({limit.burst} at once, then "
            f"{limit.per_second:g} a second); retry in {math.ceil(wait * 10) / 10:g} s",
            request.frame.action[:64],
        )


def message_handler(route: str, action: Action) -> Callable[[Mapping[str, Any], Any], LambdaResponse]:
    """A Lambda handler for a message route that runs ``action`` on each valid frame."""

    @lambda_entry(route)
    def handler(event: Mapping[str, Any], context: Any = None) -> LambdaResponse:
        ws = WebSocketEvent.from_lambda(event)
        runtime = get_runtime()
        config = runtime.config
        # The execute-api endpoint, never the event's domainName: behind a custom domain that
        # host's base path need not be the stage. MANAGEMENT_ENDPOINT overrides it where the
        # API is not on AWS (cloud-ws local sets it; the component leaves it off route functions).
        api = runtime.management(config.management_endpoint or ws.execute_api_endpoint(config.region))
        fields: dict[str, Any] = {"connection_id": ws.connection_id, "route": route}
        sent = 0
        frame: Frame | None = None
        try:
            frame = protocol.parse_frame(
                ws.body, max_bytes=config.max_message_bytes, max_depth=config.max_json_depth
            )
            if frame.deployment_id is not None:
                fields["deployment_id"] = frame.deployment_id
            request = Request(ws.connection_id, frame, runtime)
            take_allowance(request)
            for reply in action(request):
                outcome, _ = api.post(ws.connection_id, reply)
                if outcome is PostOutcome.GONE:
                    log.info("sender left before its reply", extra=fields)
                    break
                sent += 1
        except ProtocolError as exc:
            if frame is not None:
                # Actions raise with code, sentence and action only; what identifies the
                # request for the client is the frame's, added here once for every route.
                exc.request_id = frame.request_id
                exc.deployment_id = frame.deployment_id
            log.info("frame refused", extra={**fields, "code": exc.code})
            api.post(ws.connection_id, protocol.encode(exc.to_message()))
            return response(200)
        log.info("frame served", extra={**fields, "replies": sent})
        return response(200)

    return handler
