"""The wire protocol: client frames in, server messages out (see docs/protocol.md).

Pure functions, no I/O: every route handler parses its frame here, and every
refusal is a ``ProtocolError`` with a stable ``code`` and a sentence a person
can act on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DEPLOYMENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_DEPLOYMENT_ID_RE = re.compile(DEPLOYMENT_ID_PATTERN)

#: Event types are ``domain.verb`` (``deployment.status``, ``stack.failed``, ``log.created``...).
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31}){1,3}$"
_EVENT_TYPE_RE = re.compile(EVENT_TYPE_PATTERN)

#: Statuses of ``deployment.status`` after which nothing more happens.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
DEPLOYMENT_STATUSES = frozenset({"pending", "deploying"}) | TERMINAL_STATUSES


class ErrorCode:
    """Stable ``error.code`` values; clients branch on these, so never rename one."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    MESSAGE_TOO_LARGE = "message_too_large"
    MESSAGE_TOO_DEEP = "message_too_deep"
    UNKNOWN_ACTION = "unknown_action"
    INVALID_DEPLOYMENT_ID = "invalid_deployment_id"
    INVALID_SINCE = "invalid_since"
    INVALID_LIMIT = "invalid_limit"
    INVALID_ID = "invalid_id"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    FORBIDDEN = "forbidden"
    TOKEN_EXPIRED = "token_expired"
    UNKNOWN_CONNECTION = "unknown_connection"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"


#: Longest request ``id`` a client may send; replies echo it, so it stays small.
MAX_REQUEST_ID_CHARS = 64


class ProtocolError(Exception):
    """A frame was refused; becomes an ``error`` message to the sender.

    ``request_id`` and ``deployment_id`` are filled in by the route plumbing
    (``server.messages``) from the refused frame, when it carried well-formed
    ones, so every action raises with just its code, sentence and action.
    """

    def __init__(
        self,
        code: str,
        message: str,
        action: str | None = None,
        *,
        request_id: str | None = None,
        deployment_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.action = action
        self.request_id = request_id
        self.deployment_id = deployment_id

    def to_message(self) -> dict[str, Any]:
        """The ``error`` message sent to the client."""
        msg: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.action is not None:
            msg["action"] = self.action
        if self.deployment_id is not None:
            msg["deployment_id"] = self.deployment_id
        if self.request_id is not None:
            msg["id"] = self.request_id
        return msg


@dataclass(frozen=True)
class Frame:
    """A parsed client frame: a JSON object with a string ``action``."""

    action: str
    body: dict[str, Any]
    request_id: str | None = None
    """The frame's ``id``, echoed by every reply (absent when the client sent none)."""
    deployment_id: str | None = None
    """The frame's ``deployment_id`` when it is well-formed, which every error about it names."""


def parse_frame(raw: str | None, *, max_bytes: int, max_depth: int) -> Frame:
    """Parse one client frame, enforcing size, JSON, object shape, nesting depth and ``id``.

    The ``id`` is checked before the ``action``, so a frame that has a good
    ``id`` and a bad ``action`` gets an error the client can match.

    Raises:
        ProtocolError: ``message_too_large``, ``invalid_json``, ``message_too_deep``,
            ``invalid_id`` or ``invalid_message``.
    """
    raw = raw or ""
    size = len(raw.encode("utf-8"))
    if size > max_bytes:
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE, f"frames are limited to {max_bytes} bytes; this one has {size}"
        )
    # Depth is checked on the text before parsing, so a hostile "[[[[..." never
    # reaches the recursive parser.
    if _max_nesting(raw) > max_depth:
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_DEEP, f"frames may nest objects and arrays at most {max_depth} levels deep"
        )
    try:
        body = json.loads(raw)
    except ValueError:
        raise ProtocolError(
            ErrorCode.INVALID_JSON,
            'frames must be JSON text, e.g. {"action": "subscribe", "deployment_id": "D1"}',
        ) from None
    if not isinstance(body, dict):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"a frame must be a JSON object, not a {_json_type(body)}"
        )
    action = body.get("action")
    if not isinstance(action, str) or not action:
        action = None
    # Errors name the action, cut short: the frame may be 4 KB of "action".
    named_action = action[:64] if action is not None else None
    deployment_id = body.get("deployment_id")
    if not is_valid_deployment_id(deployment_id):
        deployment_id = None
    try:
        request_id = validate_request_id(body.get("id"), named_action)
    except ProtocolError as exc:
        exc.deployment_id = deployment_id
        raise
    if action is None:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            'a frame must name its "action": one of subscribe, unsubscribe, ping, list_deployments',
            request_id=request_id,
            deployment_id=deployment_id,
        )
    return Frame(action=action, body=body, request_id=request_id, deployment_id=deployment_id)


def validate_request_id(value: Any, action: str | None = None) -> str | None:
    """``id`` is absent/null or a string of 1 to :data:`MAX_REQUEST_ID_CHARS` characters.

    The refusal does not echo the bad ``id``: a client matching replies by
    ``id`` could not match it anyway, and a 4 KB "id" is not worth sending back.

    Raises:
        ProtocolError: ``invalid_id``.
    """
    if value is None:
        return None
    if isinstance(value, str) and 1 <= len(value) <= MAX_REQUEST_ID_CHARS:
        return value
    raise ProtocolError(
        ErrorCode.INVALID_ID,
        f"id must be a string of 1 to {MAX_REQUEST_ID_CHARS} characters; replies echo it",
        action,
    )


def _max_nesting(text: str) -> int:
    """Deepest ``{``/``[`` nesting in JSON text, ignoring brackets inside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null"


def validate_deployment_id(value: Any, action: str | None = None) -> str:
    """Return ``value`` if it is a valid deployment id, else raise ``invalid_deployment_id``."""
    if isinstance(value, str) and _DEPLOYMENT_ID_RE.fullmatch(value):
        return value
    raise ProtocolError(
        ErrorCode.INVALID_DEPLOYMENT_ID, f"deployment_id must match {DEPLOYMENT_ID_PATTERN}", action
    )


def is_valid_deployment_id(value: Any) -> bool:
    """True for a string that matches :data:`DEPLOYMENT_ID_PATTERN`."""
    return isinstance(value, str) and bool(_DEPLOYMENT_ID_RE.fullmatch(value))


def is_valid_event_type(value: Any) -> bool:
    """True for a ``domain.verb`` event type."""
    return isinstance(value, str) and bool(_EVENT_TYPE_RE.fullmatch(value))


def validate_since(value: Any, action: str | None = None) -> int | None:
    """``since`` is absent/null or a non-negative integer (booleans and floats are refused)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value
    raise ProtocolError(
        ErrorCode.INVALID_SINCE,
        "since must be a non-negative integer: the last seq you received for this deployment",
        action,
    )


#: ``list_deployments`` answers at most this many deployments.
MAX_LIST_LIMIT = 200
DEFAULT_LIST_LIMIT = 50


def validate_limit(value: Any, action: str | None = None) -> int:
    """``limit`` is absent/null (50) or an integer from 1 to :data:`MAX_LIST_LIMIT`."""
    if value is None:
        return DEFAULT_LIST_LIMIT
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_LIST_LIMIT:
        return value
    raise ProtocolError(
        ErrorCode.INVALID_LIMIT, f"limit must be an integer from 1 to {MAX_LIST_LIMIT}", action
    )


def now_iso() -> str:
    """Current UTC time as an ISO 8601 string with a ``Z`` suffix."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(message: dict[str, Any]) -> bytes:
    """Serialize a server message the way it goes on the wire (compact UTF-8 JSON)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


#: Separates the messages of one server frame (DESIGN: several messages per frame).
MESSAGE_SEPARATOR = b"\n"


def pack_frames(messages: Iterable[bytes], max_bytes: int) -> list[bytes]:
    """Join encoded messages into as few frames as ``max_bytes`` allows, in order.

    Messages are joined with ``\n`` (compact JSON never contains a raw newline).
    A message that alone exceeds ``max_bytes`` gets a frame of its own; the
    poster then reports it as refused, exactly as a single oversize post would be.
    """
    frames: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for message in messages:
        added = len(message) + (1 if current else 0)
        if current and size + added > max_bytes:
            frames.append(MESSAGE_SEPARATOR.join(current))
            current, size = [], 0
            added = len(message)
        current.append(message)
        size += added
    if current:
        frames.append(MESSAGE_SEPARATOR.join(current))
    return frames


def with_request_id(message: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """``message`` as the reply to a request: with the request's ``id``, when it had one.

    Every reply a route sends goes through here (DESIGN: replies echo ``id``).
    """
    if request_id is not None:
        message["id"] = request_id
    return message


def subscribed(deployment_id: str, seq: int, replay: int, request_id: str | None = None) -> dict[str, Any]:
    """Acknowledges a subscription: ``seq`` is the latest stored event, ``replay`` how many follow."""
    message = {"type": "subscribed", "deployment_id": deployment_id, "seq": seq, "replay": replay}
    return with_request_id(message, request_id)


def snapshot(
    deployment_id: str, seq: int, data: Mapping[str, Any], request_id: str | None = None
) -> dict[str, Any]:
    """The deployment's state folded from every event through ``seq`` (sent right after ``subscribed``)."""
    message = {"type": "deployment.snapshot", "deployment_id": deployment_id, "seq": seq, "data": dict(data)}
    return with_request_id(message, request_id)


def deployments(rows: list[dict[str, Any]], request_id: str | None = None) -> dict[str, Any]:
    """Answer to ``list_deployments``: deployment summaries, newest first."""
    return with_request_id({"type": "deployments", "deployments": rows}, request_id)


def unsubscribed(deployment_id: str, request_id: str | None = None) -> dict[str, Any]:
    """Acknowledges an unsubscription."""
    return with_request_id({"type": "unsubscribed", "deployment_id": deployment_id}, request_id)


def pong(latest: Mapping[str, int] | None = None, request_id: str | None = None) -> dict[str, Any]:
    """Answer to ``ping``; ``latest`` is the last ``seq`` of every deployment the connection watches.

    ``latest`` is how a client learns that the *last* event of a deployment
    was lost: no later event arrives to reveal that gap.
    """
    message: dict[str, Any] = {"type": "pong", "timestamp": now_iso()}
    if latest is not None:
        message["latest"] = dict(latest)
    return with_request_id(message, request_id)
