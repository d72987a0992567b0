"""Plumbing shared by the routes that carry client frames (subscribe, unsubscribe, ping, $default).

Each route parses its frame with ``handlers.protocol``, runs its action, and
posts the replies to the sender through the @connections Management API, in
order, exactly as on AWS. A refused frame gets one ``error`` reply; the
connection stays open and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from handlers import protocol
from handlers.apigw import LambdaResponse, WebSocketEvent, response
from handlers.log import get_logger
from handlers.management import PostOutcome
from handlers.protocol import Frame, ProtocolError
from handlers.runtime import Runtime, get_runtime, lambda_entry

log = get_logger("messages")


@dataclass(frozen=True)
class Request:
    """A parsed frame from one connection."""

    connection_id: str
    frame: Frame
    runtime: Runtime


#: An action yields the encoded replies to send back, in order.
Action = Callable[[Request], Iterable[bytes]]


def message_handler(route: str, action: Action) -> Callable[[Mapping[str, Any], Any], LambdaResponse]:
    """A Lambda handler for a message route that runs ``action`` on each valid frame."""

    @lambda_entry(route)
    def handler(event: Mapping[str, Any], context: Any = None) -> LambdaResponse:
        ws = WebSocketEvent.from_lambda(event)
        runtime = get_runtime()
        config = runtime.config
        api = runtime.management(config.management_endpoint or ws.management_endpoint)
        fields: dict[str, Any] = {"connection_id": ws.connection_id, "route": route}
        sent = 0
        try:
            frame = protocol.parse_frame(
                ws.body, max_bytes=config.max_message_bytes, max_depth=config.max_json_depth
            )
            deployment_id = frame.body.get("deployment_id")
            if protocol.is_valid_deployment_id(deployment_id):
                fields["deployment_id"] = deployment_id
            for reply in action(Request(ws.connection_id, frame, runtime)):
                outcome, _ = api.post(ws.connection_id, reply)
                if outcome is PostOutcome.GONE:
                    log.info("sender left before its reply", extra=fields)
                    break
                sent += 1
        except ProtocolError as exc:
            log.info("frame refused", extra={**fields, "code": exc.code})
            api.post(ws.connection_id, protocol.encode(exc.to_message()))
            return response(200)
        log.info("frame served", extra={**fields, "replies": sent})
        return response(200)

    return handler
