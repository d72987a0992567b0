"""The event envelope (docs/design.md), built once per hook call.

An event is serialized the moment the hook is called: the caller may mutate its
dicts afterwards, and a retry must resend the very same bytes (same
``event_id``) so the broadcaster recognises a second delivery. Everything here
is pure and cheap; nothing touches the network.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from contract import protocol, spec
from contract.authorization import PROJECT_PATTERN, is_valid_project

#: One API Gateway WebSocket frame.
FRAME_BYTES = spec.API_GATEWAY_LIMITS.frame_bytes

#: What the broadcaster wraps around ``data`` (type, deployment_id, seq,
#: event_id, timestamp) is about 200 bytes; 2 KiB leaves room for the longest
#: deployment id and event id and for a future field, so a capped event is
#: always *well* inside one frame.
ENVELOPE_RESERVE_BYTES = 2048

#: The largest encoded ``data`` of a capped event (``log.created``, ``stack.failed``).
FRAME_DATA_BUDGET = FRAME_BYTES - ENVELOPE_RESERVE_BYTES

#: A ``Detail`` larger than this gets its ``data`` replaced by a marker, as the
#: broadcaster would do anyway (it cannot send more than one 128 KiB message);
#: doing it here keeps every PutEvents entry far below EventBridge's 256 KiB.
MAX_DETAIL_BYTES = spec.API_GATEWAY_LIMITS.message_bytes - 4096

#: Appended to a text cut to fit a frame; ``{total}`` is the original size in bytes.
TRUNCATION_MARKER = " … [truncated by cloud-ws: {total} bytes in all]"

#: Event type → the free-text field that is cut so the event fits one frame.
CAPPED_TEXT_FIELDS: Mapping[str, str] = {"log.created": "message", "stack.failed": "error_message"}


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


# Compact and not ASCII-escaped: the same bytes the broadcaster sends (protocol.encode).
# One encoder for all calls: json.dumps with options builds a new one every time.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_default)


class EnvelopeError(ValueError):
    """The hook's arguments cannot make a valid event; the message says why."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One serialized event, ready to become a PutEvents entry."""

    type: str
    """``DetailType``: the message type (``deployment.status``, ``log.created``...)."""
    deployment_id: str
    event_id: str
    """Unique per event, identical on every retry: the broadcaster's duplicate key."""
    detail: str
    """``Detail`` as JSON text, serialized once."""
    detail_bytes: int
    """Its length in UTF-8."""

    def entry(self, event_bus_name: str, source: str) -> dict[str, str]:
        """The PutEvents request entry for this event."""
        return {
            "EventBusName": event_bus_name,
            "Source": source,
            "DetailType": self.type,
            "Detail": self.detail,
        }

    def size(self, event_bus_name: str, source: str) -> int:
        """Bytes this entry counts toward PutEvents' 256 KiB request limit.

        AWS counts Source, DetailType and Detail (plus Time and Resources, which
        we do not send); the bus name and a fixed slack are added so the estimate
        never falls short of what the service computes.
        """
        return (
            self.detail_bytes
            + len(self.type)
            + len(source.encode("utf-8"))
            + len(event_bus_name.encode("utf-8"))
            + 64
        )


def build_envelope(
    event_type: Any,
    deployment_id: Any,
    data: Any = None,
    *,
    timestamp: str | None = None,
    producer: tuple[str, int] | None = None,
    project: str | None = None,
) -> Envelope:
    """Validate a hook's arguments and serialize them into an :class:`Envelope`.

    ``producer`` is ``(producer_id, producer_seq)``: the producer's id and the
    event's number among its events for this deployment (1, 2, 3 …). The
    broadcaster stores a producer's numbered events in that order, however
    the bus and the queue shuffle them (docs/protocol.md, "Emission order").
    ``project`` is the project the deployment belongs to (absent: ``default``);
    its first stored event fixes it, and an event claiming another is refused.

    The broadcaster drops events whose type or deployment id are invalid, so
    they are refused here, where the orchestrator's log can say which call was
    wrong. Values JSON cannot represent (datetimes, paths, enums) become strings.

    Raises:
        EnvelopeError: invalid type, deployment id or data.
    """
    if not protocol.is_valid_event_type(event_type):
        raise EnvelopeError(f"event type must be a domain.verb like 'stack.deployed', got {event_type!r:.80}")
    if event_type == spec.PACKED_DETAIL_TYPE:
        raise EnvelopeError(f"{event_type} names a packed entry; an event cannot take it")
    if not protocol.is_valid_deployment_id(deployment_id):
        raise EnvelopeError(
            f"deployment_id must match {protocol.DEPLOYMENT_ID_PATTERN}, got {deployment_id!r:.80}"
        )
    if project is not None and not is_valid_project(project):
        raise EnvelopeError(f"project must match {PROJECT_PATTERN}, got {project!r:.80}")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise EnvelopeError(f"data must be a mapping, got {type(data).__name__}")
    data_json, data_bytes = _fit(str(event_type), *_to_json(data))
    if data_bytes > MAX_DETAIL_BYTES - 512:
        data_json = _dumps({"truncated": True, "original_bytes": data_bytes})
        data_bytes = len(data_json)
    event_id = str(uuid.uuid4())
    # Built by hand rather than by a second json.dumps: ``data`` is serialized once.
    # The deployment id matched a pattern that needs no escaping; the timestamp is
    # ASCII, so everything but ``data`` is one byte per character.
    stamp = f'"{protocol.now_iso()}"' if timestamp is None else json.dumps(str(timestamp))
    # The producer id is ours (hex digits) and the number an int: neither needs escaping.
    numbering = f',"producer_id":"{producer[0]}","producer_seq":{int(producer[1])}' if producer else ""
    # A project name matched a pattern that needs no escaping.
    numbering += f',"project":"{project}"' if project is not None else ""
    detail = (
        f'{{"deployment_id":"{deployment_id}","event_id":"{event_id}",'
        f'"data":{data_json},"timestamp":{stamp}{numbering}}}'
    )
    size = len(detail) - len(data_json) + data_bytes
    return Envelope(str(event_type), str(deployment_id), event_id, detail, size)


def packed_entry(envelopes: Sequence[Envelope], event_bus_name: str, source: str) -> dict[str, str]:
    """One PutEvents entry carrying ``envelopes``, consecutive events of one deployment.

    The ``Detail`` is ``{"deployment_id": ..., "events": [...]}``, each member an
    event's own ``Detail`` with its ``type`` added (docs/protocol.md, "Packed
    entries"); the members' bytes are reused as they were serialized.
    """
    first = envelopes[0]
    if any(envelope.deployment_id != first.deployment_id for envelope in envelopes):
        raise ValueError("a packed entry carries the events of one deployment")
    # Every detail is a JSON object written by build_envelope; the type matched a pattern
    # that needs no escaping, so it is spliced in front of the object's first field.
    members = ",".join(f'{{"type":"{envelope.type}",{envelope.detail[1:]}' for envelope in envelopes)
    return {
        "EventBusName": event_bus_name,
        "Source": source,
        "DetailType": spec.PACKED_DETAIL_TYPE,
        "Detail": f'{{"deployment_id":"{first.deployment_id}","events":[{members}]}}',
    }


def packed_member_bytes(envelope: Envelope) -> int:
    """Bytes ``envelope`` adds to a packed entry's ``Detail`` (its detail, its type, a comma)."""
    return envelope.detail_bytes + len(envelope.type) + 10


#: A packed entry's ``Detail`` around its members: the deployment id and the list.
PACKED_OVERHEAD_BYTES = 128


def fit_text(text: str, budget: int) -> str:
    """``text`` cut so its JSON string encoding (quotes included) takes at most ``budget`` bytes.

    The cut falls on a character boundary and ends with :data:`TRUNCATION_MARKER`;
    a text that already fits is returned as it is.
    """
    if _json_string_bytes(text) <= budget:
        return text
    marker = TRUNCATION_MARKER.format(total=len(text.encode("utf-8", "replace")))
    room = budget - _json_string_bytes(marker)  # includes both quotes already
    kept = 0
    used = 0
    for char in text:
        cost = _char_cost(char)
        if used + cost > room:
            break
        used += cost
        kept += 1
    return text[:kept] + marker


def _fit(event_type: str, data_json: str, data_bytes: int) -> tuple[str, int]:
    """Cut the free text of a log line or failure so the whole ``data`` fits one frame."""
    field = CAPPED_TEXT_FIELDS.get(event_type)
    if field is None or data_bytes <= FRAME_DATA_BUDGET:
        return data_json, data_bytes
    data: dict[str, Any] = json.loads(data_json)
    value = data.get(field)
    text = value if isinstance(value, str) else "" if value is None else _dumps(value)
    data[field] = ""
    data["truncated"] = True
    fixed = len(_dumps(data).encode("utf-8"))
    if fixed > FRAME_DATA_BUDGET // 2:
        # The other fields alone are huge (garbage from the caller): keep only the text.
        data = {field: "", "truncated": True}
        fixed = len(_dumps(data).encode("utf-8"))
    # ``fixed`` already counts the two quotes of the empty string.
    data[field] = fit_text(text, FRAME_DATA_BUDGET - fixed + 2)
    fitted = _dumps(data)
    return fitted, len(fitted.encode("utf-8"))


def _to_json(data: Mapping[Any, Any]) -> tuple[str, int]:
    """``data`` as compact JSON text and its length in UTF-8 bytes."""
    try:
        text = _dumps(data)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EnvelopeError(f"data is not JSON-serializable: {exc}") from None
    if text.isascii():
        return text, len(text)
    try:
        return text, len(text.encode("utf-8"))
    except UnicodeEncodeError:
        # Lone surrogates (e.g. bytes decoded with surrogateescape) cannot be sent
        # as UTF-8; replace them rather than lose the event.
        text = text.encode("utf-8", "replace").decode("utf-8")
        return text, len(text.encode("utf-8"))


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def _json_string_bytes(text: str) -> int:
    return 2 + sum(_char_cost(char) for char in text)


_SHORT_ESCAPES = frozenset('"\\\n\r\t\b\f')


def _char_cost(char: str) -> int:
    """Bytes ``char`` takes inside a JSON string written with ``ensure_ascii=False``."""
    if char in _SHORT_ESCAPES:
        return 2
    point = ord(char)
    if point < 0x20:
        return 6  # \u00XX
    if point < 0x80:
        return 1
    if point < 0x800:
        return 2
    if 0xD800 <= point <= 0xDFFF:
        return 1  # a lone surrogate is sent as "?"
    return 3 if point < 0x10000 else 4
