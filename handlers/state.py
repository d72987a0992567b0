"""A deployment's current state, folded from its events: what ``deployment.snapshot`` carries.

The broadcaster folds every event into the state in the same transaction that
gives it its ``seq``, so a subscriber gets the whole picture at once instead
of replaying thousands of log lines. The rules are the project's, written
down once as data in ``conformance/state.json`` and run by every
implementation (this reducer, the Python client's ``DeploymentState``, the
TypeScript client's and the dashboard's model):

- **Order.** Events are folded in ``seq`` order, but ``seq`` order is not
  always the order things happened in (transport order is best effort), so
  each field remembers the *key* of the event that set it: the producer's
  ``timestamp`` (epoch milliseconds; a missing or unreadable one sorts first),
  then ``seq``. A field only takes a value from an event with a newer key.
- **Status ranks.** A status only moves forward: ``pending`` < ``deploying``
  < the terminal ones (``succeeded``, ``failed``, ``cancelled``) for the
  deployment, ``pending`` < ``deploying`` < ``deployed`` / ``failed`` /
  ``cancelled`` for a stack; between two of the same rank the newer key wins.
  A ``stack.progress`` stamped after a ``stack.failed`` leaves it failed.
- **Attempts.** The first event starts attempt 1. A non-terminal
  ``deployment.status`` newer than a terminal one starts attempt ``n + 1``:
  its stacks, ``current_layer``, ``log_counts`` and ``recent_logs`` start
  afresh (``total_layers`` is kept unless the status names it). An event
  older than the running attempt's start belongs to an earlier attempt and
  changes nothing but ``updated_at``.
- **Layers.** A status without ``current_layer`` / ``total_layers`` keeps the
  last known values.
- **Logs.** ``log_counts`` counts the attempt's ``log.created`` per level;
  ``recent_logs`` keeps its latest :data:`RECENT_LOGS` by key, oldest first,
  each message cut to :data:`LOG_MESSAGE_CHARS` characters (the state lives in
  one DynamoDB item).
- **Other types** (any ``domain.verb``) only move ``updated_at`` and
  ``environment``.

Pure functions over JSON-shaped dictionaries; no I/O.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

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
#: Stack fields copied from a stack event's data when present (newest key wins).
_STACK_FIELDS = ("layer", "environment", "resource_count", "duration_seconds", "error_message")

RECENT_LOGS = 50
LOG_MESSAGE_CHARS = 500

Key = list[Any]
"""``[epoch_ms | None, seq]``, stored as JSON; ``None`` sorts before any time."""

_NEVER: Key = [None, -1]


def initial() -> dict[str, Any]:
    """The state of a deployment nobody has reported on (``seq`` 0)."""
    return {
        "status": "pending",
        "attempt": 0,
        "current_layer": None,
        "total_layers": None,
        "started_at": None,
        "updated_at": None,
        "environment": None,
        "stacks": {},
        "log_counts": {},
        "recent_logs": [],
        "_keys": {},
    }


def public(state: Mapping[str, Any]) -> dict[str, Any]:
    """What a snapshot sends: the state without the keys that order its fields."""
    result = {name: value for name, value in state.items() if name != "_keys"}
    result["stacks"] = {
        name: {field: value for field, value in stack.items() if field != "_keys"}
        for name, stack in state.get("stacks", {}).items()
    }
    return result


def dumps(state: Mapping[str, Any]) -> str:
    """The stored form (compact JSON)."""
    return json.dumps(state, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def loads(stored: str | None) -> dict[str, Any]:
    """A stored state, or :func:`initial` when there is none (or it cannot be read)."""
    if not stored:
        return initial()
    try:
        state = json.loads(stored)
    except ValueError:
        return initial()
    return state if isinstance(state, dict) and "_keys" in state else initial()


def epoch_ms(timestamp: Any) -> int | None:
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
    return int(parsed.timestamp() * 1000)


def _newer(key: Key, than: Key | None) -> bool:
    """Whether ``key`` orders after ``than`` (a missing time sorts first)."""
    than = than or _NEVER
    a = -1 if key[0] is None else key[0]
    b = -1 if than[0] is None else than[0]
    return (a, key[1]) > (b, than[1])


def _set(target: dict[str, Any], name: str, value: Any, key: Key) -> None:
    """Set ``target[name]`` if ``value`` is known and ``key`` is newer than the one that set it."""
    keys = target.setdefault("_keys", {})
    if value is not None and _newer(key, keys.get(name)):
        target[name] = value
        keys[name] = key


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _new_attempt(state: dict[str, Any], key: Key, timestamp: str | None) -> None:
    state["attempt"] += 1
    state["status"] = "pending"
    state["current_layer"] = None
    state["stacks"] = {}
    state["log_counts"] = {}
    state["recent_logs"] = []
    state["started_at"] = timestamp
    keys = state["_keys"]
    for name in ("status", "current_layer", "started_at"):
        keys.pop(name, None)
    keys["attempt"] = key
    if timestamp is not None:
        keys["started_at"] = key


def fold(state: Mapping[str, Any], messages: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The state after these events (wire messages with ``type``, ``seq``, ``data``, ``timestamp``).

    Give them in ``seq`` order, each ``seq`` once; ``state`` itself is not modified.
    """
    result = copy.deepcopy(dict(state))
    for message in messages:
        _fold_one(result, message)
    return result


def _fold_one(result: dict[str, Any], message: Mapping[str, Any]) -> None:
    seq = message.get("seq")
    if not _is_int(seq):
        return
    kind = message.get("type")
    data = message.get("data") if isinstance(message.get("data"), Mapping) else {}
    assert isinstance(data, Mapping)
    timestamp = _text(message.get("timestamp"))
    key: Key = [epoch_ms(timestamp), seq]
    keys = result.setdefault("_keys", {})

    if timestamp is not None and _newer(key, keys.get("updated_at")):
        result["updated_at"], keys["updated_at"] = timestamp, key

    status = data.get("status") if kind == "deployment.status" else None
    if result["attempt"] == 0 or (
        status in _DEPLOYMENT_RANK
        and status not in TERMINAL
        and result["status"] in TERMINAL
        and _newer(key, keys.get("status"))
    ):
        _new_attempt(result, key, timestamp)
    elif result["attempt"] > 1 and _newer(keys["attempt"], key):
        return  # an earlier attempt's event, arriving late

    if timestamp is not None and (result["started_at"] is None or _newer(keys["started_at"], key)):
        result["started_at"], keys["started_at"] = timestamp, key
    _set(result, "environment", _text(data.get("environment")), key)

    if kind == "deployment.status":
        if status in _DEPLOYMENT_RANK:
            rank, current = _DEPLOYMENT_RANK[status], _DEPLOYMENT_RANK[result["status"]]
            if rank > current or (rank == current and _newer(key, keys.get("status"))):
                result["status"], keys["status"] = status, key
        layer, total = data.get("current_layer"), data.get("total_layers")
        _set(result, "current_layer", layer if _is_int(layer) else None, key)
        _set(result, "total_layers", total if _is_int(total) else None, key)
    elif isinstance(kind, str) and kind in STACK_STATUS:
        _fold_stack(result, kind, data, key)
    elif kind == "log.created":
        _fold_log(result, data, key, timestamp)


def _fold_stack(state: dict[str, Any], kind: str, data: Mapping[str, Any], key: Key) -> None:
    name = _text(data.get("stack_name"))
    if name is None:
        return
    stack = state["stacks"].setdefault(
        name,
        {
            "status": "pending",
            "layer": None,
            "environment": None,
            "resource_count": None,
            "duration_seconds": None,
            "error_message": None,
            "_keys": {},
        },
    )
    status = STACK_STATUS[kind]
    rank, current = _STACK_RANK[status], _STACK_RANK[stack["status"]]
    if rank > current or (rank == current and _newer(key, stack["_keys"].get("status"))):
        stack["status"], stack["_keys"]["status"] = status, key
    values = {
        "layer": data.get("layer") if _is_int(data.get("layer")) else None,
        "environment": _text(data.get("environment")),
        "resource_count": data.get("resource_count") if _is_int(data.get("resource_count")) else None,
        "duration_seconds": _number(data.get("duration_seconds")),
        "error_message": _text(data.get("error_message")),
    }
    for field in _STACK_FIELDS:
        _set(stack, field, values[field], key)


def _fold_log(state: dict[str, Any], data: Mapping[str, Any], key: Key, timestamp: str | None) -> None:
    level = _text(data.get("level")) or "info"
    counts = state["log_counts"]
    counts[level] = counts.get(level, 0) + 1
    message = data.get("message")
    line = {
        "level": level,
        "message": (message if isinstance(message, str) else "")[:LOG_MESSAGE_CHARS],
        "stack_name": _text(data.get("stack_name")),
        "seq": key[1],
        "timestamp": timestamp,
    }
    logs: list[dict[str, Any]] = state["recent_logs"]
    position = len(logs)
    while position > 0 and _newer(_log_key(logs[position - 1]), key):
        position -= 1
    logs.insert(position, line)
    del logs[:-RECENT_LOGS]


def _log_key(line: Mapping[str, Any]) -> Key:
    return [epoch_ms(line.get("timestamp")), line.get("seq", 0)]


def summary(deployment_id: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """One row of ``deployments``: the deployment at a glance."""
    return {
        "deployment_id": deployment_id,
        "status": state.get("status", "pending"),
        "attempt": state.get("attempt", 0),
        "current_layer": state.get("current_layer"),
        "total_layers": state.get("total_layers"),
        "updated_at": state.get("updated_at"),
        "environment": state.get("environment"),
    }
