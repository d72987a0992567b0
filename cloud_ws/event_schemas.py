"""The ``data`` schemas of the known event types, as docs/asyncapi.yaml gives them, and a checker.

``cloud-ws emit`` refuses data that the document says a known type cannot
carry (``{"status": "bogus"}``) before anything is sent: the broadcaster
relays any object, and a mistake would only show up later as a view that
makes no sense. The schemas are copied here with their references resolved
(the installed command has neither the document nor a YAML parser);
tests/test_plugin/test_emit_schemas.py checks they are still the document's.

The checker knows the JSON Schema keywords these schemas use (``type``,
``enum``, ``const``, ``minimum``, ``maximum``, ``minLength``, ``maxLength``,
``required``, ``properties``, ``items``, ``maxItems``), nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
_SECONDS: dict[str, Any] = {"type": "number", "minimum": 0}
_TEXT: dict[str, Any] = {"type": "string", "minLength": 1}
_STACK_NAME: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 256}

#: ``DeploymentStatusData``.
DEPLOYMENT_STATUS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["pending", "deploying", "succeeded", "failed", "cancelled"]},
        "current_layer": _COUNT,
        "total_layers": _COUNT,
        "environment": _TEXT,
        "error_message": {"type": "string"},
        "duration_seconds": _SECONDS,
    },
}

#: ``ResourceStep``: one entry of a ``stack.progress``'s ``resources``.
RESOURCE_STEP: dict[str, Any] = {
    "type": "object",
    "required": ["name", "type", "operation", "status"],
    "properties": {
        "name": {"type": "string", "maxLength": 128},
        "type": {"type": "string", "maxLength": 128},
        "operation": {"type": "string", "minLength": 1},
        "status": {"type": "string", "enum": ["running", "done", "failed"]},
        "duration_seconds": _SECONDS,
    },
}

#: ``StackData`` (every ``stack.*`` type).
STACK: dict[str, Any] = {
    "type": "object",
    "required": ["stack_name"],
    "properties": {
        "stack_name": _STACK_NAME,
        "environment": _TEXT,
        "layer": _COUNT,
        "resource_count": _COUNT,
        "duration_seconds": _SECONDS,
        "error_message": {"type": "string"},
        "resources_done": _COUNT,
        "resources_in_progress": _COUNT,
        "resources": {"type": "array", "maxItems": 100, "items": RESOURCE_STEP},
        "truncated": {"const": True},
    },
}

#: ``LogData``.
LOG: dict[str, Any] = {
    "type": "object",
    "required": ["message"],
    "properties": {
        "level": {"type": "string", "minLength": 1},
        "message": {"type": "string"},
        "stack_name": _STACK_NAME,
        "environment": _TEXT,
        "truncated": {"const": True},
    },
}

#: An example of each known type's data, for the messages.
EXAMPLES = {
    "deployment.status": '{"status": "deploying", "current_layer": 2, "total_layers": 4}',
    "stack": '{"stack_name": "network", "layer": 1}',
    "log.created": '{"message": "creating subnets", "level": "info", "stack_name": "network"}',
}


def schema_for(event_type: str) -> tuple[dict[str, Any], str] | None:
    """The data schema of a known type and an example of its data; None for any other type."""
    if event_type == "deployment.status":
        return DEPLOYMENT_STATUS, EXAMPLES["deployment.status"]
    if event_type == "log.created":
        return LOG, EXAMPLES["log.created"]
    if event_type.startswith("stack."):
        return STACK, EXAMPLES["stack"]
    return None


def check_data(event_type: str, data: Mapping[str, Any]) -> str | None:
    """Why ``data`` cannot be the data of a ``event_type`` event, or None when it can.

    Known types need data: an empty object says nothing a view could show.
    """
    known = schema_for(event_type)
    if known is None:
        return None
    schema, example = known
    if not data:
        return f"{event_type} needs data, e.g. --data '{example}'"
    problem = _check(schema, data, "data")
    return None if problem is None else f"{problem} (a {event_type} is e.g. --data '{example}')"


_TYPES = {
    "object": lambda value: isinstance(value, Mapping),
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ),
    "boolean": lambda value: isinstance(value, bool),
    "array": lambda value: isinstance(value, list),
    "null": lambda value: value is None,
}


def _check(schema: Mapping[str, Any], value: Any, where: str) -> str | None:
    if "const" in schema and value != schema["const"]:
        return f"{where} must be {schema['const']!r}"
    kinds = schema.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_TYPES[name](value) for name in names):
            return f"{where} must be {' or '.join(('an ' if n[0] in 'aeiou' else 'a ') + n for n in names)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {', '.join(map(str, schema['enum']))}, not {value!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where} must be at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where} must be at most {schema['maximum']}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where} must not be empty"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{where} must be at most {schema['maxLength']} characters"
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{where} must have at most {schema['maxItems']} items"
        if "items" in schema:
            for index, item in enumerate(value):
                problem = _check(schema["items"], item, f"{where}[{index}]")
                if problem is not None:
                    return problem
    if isinstance(value, Mapping):
        for name in schema.get("required", ()):
            if name not in value:
                return f"{where}.{name} is required"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problem = _check(sub, value[name], f"{where}.{name}")
                if problem is not None:
                    return problem
    return None
