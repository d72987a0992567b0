"""A deployment's current state, folded from its events: what ``deployment.snapshot`` carries.

The broadcaster folds every event into the state once it has its ``seq``, so
a subscriber gets the whole picture at once instead of replaying thousands of
log lines. The rules are the project's, written down once as data in
``conformance/state.json`` and run by every implementation (this reducer,
the Python client's ``DeploymentState``, the TypeScript client's and the
dashboard's model):

- **Order.** Events are folded in ``seq`` order, and the later event wins.
  ``seq`` order is the producer's emission order (the server guarantees it),
  while a producer's ``timestamp`` is only a claim (the server clamps it), so
  the timestamp orders nothing: two lines in the same millisecond stay in
  ``seq`` order and an event stamped 2099 freezes nothing. An event whose
  ``seq`` is at or below the last one folded is a duplicate and is ignored.
- **Status ranks.** Within an attempt a status only moves forward:
  ``pending`` < ``deploying`` < the terminal ones (``succeeded``, ``failed``,
  ``cancelled``) for the deployment, ``pending`` < ``deploying`` <
  ``deployed`` / ``failed`` / ``cancelled`` for a stack; between two of the
  same rank the later one wins. A ``stack.progress`` after a ``stack.failed``
  leaves it failed.
- **Attempts.** The first event starts attempt 1. A non-terminal
  ``deployment.status`` after a terminal one starts attempt ``n + 1``: its
  stacks, ``current_layer``, ``log_counts`` and ``recent_logs`` start afresh
  (``total_layers`` is kept unless the status names it).
- **Dates.** ``updated_at`` is the timestamp of the latest event that has
  one, ``started_at`` that of the attempt's first event (or the first of the
  attempt that has one), as given: the server has already clamped them.
- **Layers.** A status without ``current_layer`` / ``total_layers`` keeps the
  last known values.
- **The attempt's outcome.** A ``deployment.status`` carrying
  ``error_message`` / ``duration_seconds`` (the producer's final status says
  why the attempt failed and how long it took) sets the attempt's; a status
  without them keeps the last known values, and a re-run starts without.
- **Logs.** ``log_counts`` counts the attempt's ``log.created`` per level;
  ``recent_logs`` keeps its latest :data:`RECENT_LOGS`, in ``seq`` order,
  oldest first.
- **Other types** (any ``domain.verb``) only move ``updated_at`` and
  ``environment``.
- **Bounds.** Whatever producers send, a snapshot fits in one API Gateway
  message (128 KB): every text is cut to a size in bytes of its JSON
  encoding (:func:`cut`), an attempt keeps at most :data:`MAX_STACKS` stacks
  (events about further ones are counted in ``dropped_stack_events``) and
  ``log_counts`` at most :data:`MAX_LOG_LEVELS` levels besides
  :data:`OTHER_LEVEL`, which counts the rest. Numbers outside JSON's safe
  integer range (or not finite) are ignored, so every implementation reads
  them alike. The arithmetic is in ``docs/protocol.md`` ("Limits of the
  snapshot") and a test builds the worst case.

Pure functions, no I/O. The state is typed (:class:`DeploymentState`, what a
snapshot sends, and :class:`StoredState`, which adds the ``seq`` it was folded
through), yet stays a plain JSON-shaped dictionary at run time, so what is
sent and stored is the dictionary itself, byte for byte. The only ordering key
is that ``seq``: it lives in the stored form (a checkpoint resumes from it)
and never in a snapshot's ``data`` (the message carries it). The per-field
``[time, seq]`` keys an older fold stored in-band as ``_keys`` are gone; a
stored state that still has them loads without them (:func:`loads`).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypedDict, cast

#: Statuses of ``deployment.status`` after which the attempt is over.
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
_DEPLOYMENT_RANK = {"pending": 0, "deploying": 1, "succeeded": 2, "failed": 2, "cancelled": 2}
_STACK_RANK = {"pending": 0, "deploying": 1, "deployed": 2, "failed": 2, "cancelled": 2}
#: The stack status each stack event type sets.
STACK_STATUS = {
    "stack.started": "deploying",
    "stack.progress": "deploying",
    "stack.deployed": "deployed",
    "stack.failed": "failed",
    "stack.cancelled": "cancelled",
}

# The limits, the same numbers as conformance/state.json's "limits" (a test holds them equal).
#: Log lines ``recent_logs`` keeps: the attempt's latest.
RECENT_LOGS = 50
#: Largest log message in ``recent_logs``, in bytes of its JSON encoding (so at most as many characters).
LOG_MESSAGE_CHARS = 500
#: Largest ``error_message`` (a stack's, the attempt's), in bytes of its JSON encoding.
ERROR_MESSAGE_BYTES = 1_000
#: Largest stack name (a ``stacks`` key, a log line's ``stack_name``), in bytes of its JSON encoding.
STACK_NAME_BYTES = 128
#: Largest ``environment``, in bytes of its JSON encoding.
ENVIRONMENT_BYTES = 64
#: Largest log level (a ``log_counts`` key, a log line's ``level``), in bytes of its JSON encoding.
LEVEL_BYTES = 32
#: Largest ``started_at`` / ``updated_at`` / log line ``timestamp`` (a clamped ISO 8601 time is about 30).
TIMESTAMP_BYTES = 64
#: Stacks an attempt keeps; events about further stack names are counted in ``dropped_stack_events``.
MAX_STACKS = 50
#: Distinct levels ``log_counts`` keeps besides :data:`OTHER_LEVEL`.
MAX_LOG_LEVELS = 8
#: The ``log_counts`` key that counts the lines of every level beyond :data:`MAX_LOG_LEVELS`.
OTHER_LEVEL = "other"
#: API Gateway's limit on one WebSocket message: a snapshot must stay under it.
SNAPSHOT_BYTES = 128 * 1024
#: Largest integer every implementation reads exactly (JavaScript's ``Number.MAX_SAFE_INTEGER``).
MAX_SAFE_INTEGER = 2**53 - 1


class StackState(TypedDict):
    """One stack of the attempt (a snapshot sends its fields in this order)."""

    status: str
    """``pending`` < ``deploying`` < ``deployed`` / ``failed`` / ``cancelled``."""
    layer: int | None
    environment: str | None
    resource_count: int | None
    duration_seconds: int | float | None
    error_message: str | None


class LogLine(TypedDict):
    """One line of ``recent_logs``."""

    level: str
    message: str
    stack_name: str | None
    seq: int
    timestamp: str | None


class DeploymentState(TypedDict):
    """What a snapshot sends as ``data`` (its fields in this order: :data:`PUBLIC_FIELDS`)."""

    status: str
    """``pending`` < ``deploying`` < ``succeeded`` / ``failed`` / ``cancelled``."""
    attempt: int
    current_layer: int | None
    total_layers: int | None
    started_at: str | None
    updated_at: str | None
    environment: str | None
    error_message: str | None
    duration_seconds: int | float | None
    stacks: dict[str, StackState]
    dropped_stack_events: int
    log_counts: dict[str, int]
    recent_logs: list[LogLine]


class StoredState(DeploymentState):
    """The folded state as kept and checkpointed: the public fields and the ``seq`` folded through.

    ``seq`` is the fold's one ordering key (a later event wins, one at or
    below it is a duplicate), so it travels with the state it orders; it is
    not part of what a snapshot sends (:func:`public` leaves it out).
    """

    seq: int


class Summary(TypedDict):
    """One row of ``deployments`` (and the counter item's head, with ``started_at`` beside it)."""

    deployment_id: str
    status: str
    attempt: int
    current_layer: int | None
    total_layers: int | None
    updated_at: str | None
    environment: str | None


#: The fields a snapshot carries, in order (the stored form has ``seq`` besides): read off
#: :class:`DeploymentState`, so the list and the type cannot disagree.
PUBLIC_FIELDS: tuple[str, ...] = tuple(DeploymentState.__annotations__)


def initial() -> StoredState:
    """The state of a deployment nobody has reported on (``seq`` 0)."""
    return {
        "status": "pending",
        "attempt": 0,
        "current_layer": None,
        "total_layers": None,
        "started_at": None,
        "updated_at": None,
        "environment": None,
        "error_message": None,
        "duration_seconds": None,
        "stacks": {},
        "dropped_stack_events": 0,
        "log_counts": {},
        "recent_logs": [],
        "seq": 0,
    }


def public(state: DeploymentState) -> DeploymentState:
    """What a snapshot sends as ``data``: the state without ``seq`` (the message carries it).

    A copy, its keys in :data:`PUBLIC_FIELDS` order and each stack's in
    :class:`StackState`'s (the wire keeps the order it is given).
    """
    copied = copy.deepcopy(state)
    return {
        "status": copied["status"],
        "attempt": copied["attempt"],
        "current_layer": copied["current_layer"],
        "total_layers": copied["total_layers"],
        "started_at": copied["started_at"],
        "updated_at": copied["updated_at"],
        "environment": copied["environment"],
        "error_message": copied["error_message"],
        "duration_seconds": copied["duration_seconds"],
        "stacks": {
            name: {
                "status": stack["status"],
                "layer": stack["layer"],
                "environment": stack["environment"],
                "resource_count": stack["resource_count"],
                "duration_seconds": stack["duration_seconds"],
                "error_message": stack["error_message"],
            }
            for name, stack in copied["stacks"].items()
        },
        "dropped_stack_events": copied["dropped_stack_events"],
        "log_counts": copied["log_counts"],
        "recent_logs": copied["recent_logs"],
    }


def head(state: StoredState) -> StoredState:
    """The deployment-level part of the state: ``stacks``, ``log_counts`` and ``recent_logs`` emptied.

    Small whatever the deployment's size (status, attempt, layers, dates,
    environment, ``seq``), for the counter item. No deployment-level field
    depends on stacks or logs, so folding further events into ``head(s)``
    gives the same deployment-level fields as folding them into ``s``.
    """
    result = copy.deepcopy(state)
    result.update({"stacks": {}, "dropped_stack_events": 0, "log_counts": {}, "recent_logs": []})
    return result


def from_head(fields: Mapping[str, Any]) -> StoredState:
    """The initial state with the fields of a stored head (the counter item's), as they were stored.

    The counter keeps only the deployment-level fields (:func:`head`'s point),
    and folding further events into them gives the deployment-level fields
    folding the whole state would. Names the state does not have (the row's
    ``deployment_id``, say) are left out; values are taken as stored, since
    the server wrote them from a fold.
    """
    base = initial()
    return cast(StoredState, {**base, **{name: value for name, value in fields.items() if name in base}})


def dumps(state: StoredState) -> str:
    """The stored form (compact JSON, keys sorted): what a checkpoint holds, ``seq`` included."""
    return json.dumps(state, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def loads(stored: str | None) -> StoredState:
    """A stored state, or :func:`initial` when there is none (or it cannot be read).

    A state stored before fields were ordered by ``seq`` alone carries ``_keys``
    (each field's ``[time, seq]``) and no ``seq``: the keys are dropped, and
    every field is brought within the limits, so an old state cannot make an
    oversized snapshot either.
    """
    if not stored:
        return initial()
    try:
        raw = json.loads(stored)
    except ValueError:
        return initial()
    if not isinstance(raw, dict) or _count(raw.get("attempt")) is None:
        return initial()
    return _bounded(raw)


def epoch_ms(timestamp: object) -> int | None:
    """An ISO 8601 timestamp as epoch milliseconds (UTC when it names no zone); None if unreadable."""
    if not isinstance(timestamp, str) or not timestamp:
        return None
    text = timestamp[:-1] + "+00:00" if timestamp.endswith(("Z", "z")) else timestamp
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        text += "+00:00"
        parsed = datetime.fromisoformat(text)
    try:
        return int(parsed.timestamp() * 1000)
    except (OverflowError, ValueError, OSError):  # a date at the calendar's edge, in a far zone
        return None


# -- values ------------------------------------------------------------------------------------


def _char_bytes(code: int) -> int:
    """Bytes one code point takes in compact JSON written as UTF-8 (non-ASCII unescaped)."""
    if code in (0x22, 0x5C, 0x08, 0x09, 0x0A, 0x0C, 0x0D):
        return 2  # \" \\ \b \t \n \f \r
    if code < 0x20:
        return 6  # \u00XX
    if code < 0x80:
        return 1
    if code < 0x800:
        return 2
    return 3 if code < 0x10000 else 4


def cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of JSON (UTF-8, quotes not counted), at a character boundary.

    A lone surrogate (which JSON can carry as an escape, but UTF-8 cannot
    encode) becomes U+FFFD, so whatever is stored can always be sent.
    """
    if len(text) * 6 <= limit and not any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        return text  # short enough whatever the characters
    kept: list[str] = []
    size = 0
    for char in text:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            char, code = "\ufffd", 0xFFFD
        size += _char_bytes(code)
        if size > limit:
            break
        kept.append(char)
    return "".join(kept)


def _text(value: object, limit: int) -> str | None:
    """A non-empty string cut to ``limit`` bytes, else None."""
    return cut(value, limit) or None if isinstance(value, str) and value else None


def _count(value: object) -> int | None:
    """An integer from 0 to :data:`MAX_SAFE_INTEGER`, else None.

    ``2.0`` counts as 2: JavaScript cannot tell them apart, and every
    implementation must read a number alike.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if 0 <= value <= MAX_SAFE_INTEGER else None


def _seconds(value: object) -> int | float | None:
    """A finite number of seconds, at least 0 (at most :data:`MAX_SAFE_INTEGER` when whole), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) or value.is_integer():
        return value if _count(value) is not None else None
    return value if math.isfinite(value) and value >= 0 else None


# -- folding -----------------------------------------------------------------------------------


def fold(state: StoredState, messages: Iterable[Mapping[str, Any]]) -> StoredState:
    """The state after these events (wire messages with ``type``, ``seq``, ``data``, ``timestamp``).

    Events are taken in the order given; one whose ``seq`` is at or below the
    last folded is a duplicate and changes nothing. ``state`` itself is not
    modified. The messages stay untyped mappings: they are whatever a
    producer sent, and every field is checked as it is read.
    """
    result = copy.deepcopy(state)
    for message in messages:
        _fold_one(result, message)
    return result


def _fold_one(result: StoredState, message: Mapping[str, Any]) -> None:
    """Fold one event into ``result`` in place (nothing if its ``seq`` is not past the state's)."""
    seq = _count(message.get("seq"))
    if seq is None or seq <= result["seq"]:
        return
    result["seq"] = seq
    kind = message.get("type")
    raw = message.get("data")
    data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    timestamp = _text(message.get("timestamp"), TIMESTAMP_BYTES)
    if timestamp is not None:
        result["updated_at"] = timestamp

    raw_status = data.get("status") if kind == "deployment.status" else None
    status = raw_status if isinstance(raw_status, str) and raw_status in _DEPLOYMENT_RANK else None
    if result["attempt"] == 0 or (
        status is not None and status not in TERMINAL and result["status"] in TERMINAL
    ):
        _new_attempt(result, timestamp)
    if result["started_at"] is None:
        result["started_at"] = timestamp
    environment = _text(data.get("environment"), ENVIRONMENT_BYTES)
    if environment is not None:
        result["environment"] = environment

    if kind == "deployment.status":
        if status is not None and _DEPLOYMENT_RANK[status] >= _DEPLOYMENT_RANK[result["status"]]:
            result["status"] = status
        # A status without a field keeps the last known value.
        current_layer = _count(data.get("current_layer"))
        if current_layer is not None:
            result["current_layer"] = current_layer
        total_layers = _count(data.get("total_layers"))
        if total_layers is not None:
            result["total_layers"] = total_layers
        error_message = _text(data.get("error_message"), ERROR_MESSAGE_BYTES)
        if error_message is not None:
            result["error_message"] = error_message
        duration = _seconds(data.get("duration_seconds"))
        if duration is not None:
            result["duration_seconds"] = duration
    elif isinstance(kind, str) and kind in STACK_STATUS:
        _fold_stack(result, kind, data)
    elif kind == "log.created":
        _fold_log(result, data, seq, timestamp)


def _new_attempt(state: StoredState, timestamp: str | None) -> None:
    """Start the next attempt in place: its stacks, layer, outcome and logs afresh."""
    state.update(
        {
            "attempt": state["attempt"] + 1,
            "status": "pending",
            "current_layer": None,
            "started_at": timestamp,
            "error_message": None,
            "duration_seconds": None,
            "stacks": {},
            "dropped_stack_events": 0,
            "log_counts": {},
            "recent_logs": [],
        }
    )


def _fold_stack(state: StoredState, kind: str, data: Mapping[str, Any]) -> None:
    """Fold a ``stack.*`` event in place: the stack's status moves forward, given fields are kept."""
    name = _text(data.get("stack_name"), STACK_NAME_BYTES)
    if name is None:
        return
    stacks = state["stacks"]
    stack = stacks.get(name)
    if stack is None:
        if len(stacks) >= MAX_STACKS:
            state["dropped_stack_events"] += 1
            return
        stack = stacks[name] = {
            "status": "pending",
            "layer": None,
            "environment": None,
            "resource_count": None,
            "duration_seconds": None,
            "error_message": None,
        }
    status = STACK_STATUS[kind]
    if _STACK_RANK[status] >= _STACK_RANK[stack["status"]]:
        stack["status"] = status
    # An event without a field keeps the stack's last known value.
    layer = _count(data.get("layer"))
    if layer is not None:
        stack["layer"] = layer
    environment = _text(data.get("environment"), ENVIRONMENT_BYTES)
    if environment is not None:
        stack["environment"] = environment
    resource_count = _count(data.get("resource_count"))
    if resource_count is not None:
        stack["resource_count"] = resource_count
    duration = _seconds(data.get("duration_seconds"))
    if duration is not None:
        stack["duration_seconds"] = duration
    error_message = _text(data.get("error_message"), ERROR_MESSAGE_BYTES)
    if error_message is not None:
        stack["error_message"] = error_message


def _fold_log(state: StoredState, data: Mapping[str, Any], seq: int, timestamp: str | None) -> None:
    """Fold a ``log.created`` in place: counted by level, kept among the latest lines."""
    level = _text(data.get("level"), LEVEL_BYTES) or "info"
    counts = state["log_counts"]
    counted = level
    if (
        level not in counts
        and level != OTHER_LEVEL
        and sum(key != OTHER_LEVEL for key in counts) >= MAX_LOG_LEVELS
    ):
        counted = OTHER_LEVEL
    counts[counted] = counts.get(counted, 0) + 1
    message = data.get("message")
    logs = state["recent_logs"]
    logs.append(
        {
            "level": level,
            "message": cut(message, LOG_MESSAGE_CHARS) if isinstance(message, str) else "",
            "stack_name": _text(data.get("stack_name"), STACK_NAME_BYTES),
            "seq": seq,
            "timestamp": timestamp,
        }
    )
    del logs[:-RECENT_LOGS]


# -- reading a stored state --------------------------------------------------------------------


def _bounded(raw: Mapping[str, Any]) -> StoredState:
    """A stored state (of any version) with the current fields, each within the limits.

    ``raw`` is whatever JSON was stored, so it stays an untyped mapping and
    every field is checked; names the state does not have (an old ``_keys``,
    in the state or in a stack) are not carried over.
    """
    result = initial()
    status = raw.get("status")
    result["status"] = status if isinstance(status, str) and status in _DEPLOYMENT_RANK else "pending"
    result["attempt"] = _count(raw.get("attempt")) or 0
    result["current_layer"] = _count(raw.get("current_layer"))
    result["total_layers"] = _count(raw.get("total_layers"))
    result["started_at"] = _text(raw.get("started_at"), TIMESTAMP_BYTES)
    result["updated_at"] = _text(raw.get("updated_at"), TIMESTAMP_BYTES)
    result["environment"] = _text(raw.get("environment"), ENVIRONMENT_BYTES)
    result["error_message"] = _text(raw.get("error_message"), ERROR_MESSAGE_BYTES)
    result["duration_seconds"] = _seconds(raw.get("duration_seconds"))
    result["seq"] = _count(raw.get("seq")) or 0
    dropped = _count(raw.get("dropped_stack_events")) or 0
    stacks = raw.get("stacks")
    for name, stack in stacks.items() if isinstance(stacks, Mapping) else ():
        key = _text(name, STACK_NAME_BYTES)
        if key is None or not isinstance(stack, Mapping) or key in result["stacks"]:
            continue
        if len(result["stacks"]) >= MAX_STACKS:
            dropped += 1
            continue
        stack_status = stack.get("status")
        result["stacks"][key] = {
            "status": stack_status
            if isinstance(stack_status, str) and stack_status in _STACK_RANK
            else "pending",
            "layer": _count(stack.get("layer")),
            "environment": _text(stack.get("environment"), ENVIRONMENT_BYTES),
            "resource_count": _count(stack.get("resource_count")),
            "duration_seconds": _seconds(stack.get("duration_seconds")),
            "error_message": _text(stack.get("error_message"), ERROR_MESSAGE_BYTES),
        }
    result["dropped_stack_events"] = dropped
    counts = raw.get("log_counts")
    for level, count in counts.items() if isinstance(counts, Mapping) else ():
        name, number = _text(level, LEVEL_BYTES), _count(count)
        if name is None or not number:
            continue
        counted = result["log_counts"]
        if (
            name not in counted
            and name != OTHER_LEVEL
            and sum(k != OTHER_LEVEL for k in counted) >= MAX_LOG_LEVELS
        ):
            name = OTHER_LEVEL
        counted[name] = counted.get(name, 0) + number
    logs = raw.get("recent_logs")
    lines = [
        line
        for line in (logs if isinstance(logs, list) else [])
        if isinstance(line, Mapping) and _count(line.get("seq"))
    ]
    # An old state kept its lines by the producer's time: now they are in seq order.
    for line in sorted(lines, key=lambda line: int(line["seq"]))[-RECENT_LOGS:]:
        message = line.get("message")
        result["recent_logs"].append(
            {
                "level": _text(line.get("level"), LEVEL_BYTES) or "info",
                "message": cut(message, LOG_MESSAGE_CHARS) if isinstance(message, str) else "",
                "stack_name": _text(line.get("stack_name"), STACK_NAME_BYTES),
                # A whole number (``_count`` passed it), kept as it was stored.
                "seq": line["seq"],
                "timestamp": _text(line.get("timestamp"), TIMESTAMP_BYTES),
            }
        )
    return result


def summary(deployment_id: str, state: DeploymentState) -> Summary:
    """One row of ``deployments``: the deployment at a glance."""
    return {
        "deployment_id": deployment_id,
        "status": state["status"],
        "attempt": state["attempt"],
        "current_layer": state["current_layer"],
        "total_layers": state["total_layers"],
        "updated_at": state["updated_at"],
        "environment": state["environment"],
    }
