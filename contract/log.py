"""Structured JSON logs: one line per record, with connection, route and deployment ids.

Every line written during an invocation also names it, as Powertools'
``inject_lambda_context`` does: ``function_name``, ``function_request_id``
(Lambda's ``aws_request_id``) and ``cold_start``, plus, for API Gateway
routes, ``apigw_request_id`` and ``connection_id``. Entry points wrap
themselves in :func:`invocation` (one contextvar set per invocation, reset at
its end, so ids never leak into the next one served by the same thread), and
one :class:`InvocationFilter`, attached to every logger :func:`get_logger`
hands out, copies the fields onto each record. A field the call passes itself
(``extra=``) wins over the invocation's.

Never pass a token or a whole message body as a field: what is logged here ends
up in CloudWatch, readable by anyone with log access.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from contract import environment

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; ``extra=`` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_invocation: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "cloud_ws_invocation", default=None
)
_cold_start = True


def invocation_fields(event: Any, context: Any) -> dict[str, Any]:
    """What identifies one invocation: from Lambda's context and, for API Gateway, the event's."""
    global _cold_start  # noqa: PLW0603 - once per process, as Lambda's containers are
    fields: dict[str, Any] = {"cold_start": _cold_start}
    _cold_start = False
    for field, attribute in (("function_name", "function_name"), ("function_request_id", "aws_request_id")):
        value = getattr(context, attribute, None)
        if isinstance(value, str) and value:
            fields[field] = value
    request_context = event.get("requestContext") if isinstance(event, Mapping) else None
    if isinstance(request_context, Mapping):
        for field, key in (("apigw_request_id", "requestId"), ("connection_id", "connectionId")):
            value = request_context.get(key)
            if isinstance(value, str) and value:
                fields[field] = value
    return fields


@contextlib.contextmanager
def invocation(event: Any, context: Any) -> Iterator[None]:
    """Within this block every record logged in this context carries the invocation's ids."""
    token = _invocation.set(invocation_fields(event, context))
    try:
        yield
    finally:
        _invocation.reset(token)


F = TypeVar("F", bound=Callable[..., Any])


def inject_lambda_context(handler: F) -> F:
    """Decorate a Lambda entry point ``handler(event, context)`` so its log lines name the invocation."""

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any = None) -> Any:
        with invocation(event, context):
            return handler(event, context)

    return wrapper  # type: ignore[return-value]


class InvocationFilter(logging.Filter):
    """Adds the current invocation's fields to a record (never over a field the record has)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _invocation.get()
        if fields:
            attributes = record.__dict__
            for key, value in fields.items():
                attributes.setdefault(key, value)
        return True


_FILTER = InvocationFilter()


def get_logger(name: str) -> logging.Logger:
    """A logger under ``cloud_ws`` that writes JSON lines once per process.

    Lambda's runtime installs its own root handler; ours is attached to the
    ``cloud_ws`` logger with propagation off so each record is written once.
    """
    root = logging.getLogger("cloud_ws")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.setLevel(os.environ.get(environment.LOG_LEVEL, "INFO").upper())
        root.propagate = False
    root.addFilter(_FILTER)  # a logger's filters see only its own records: each logger gets it
    logger = root.getChild(name)
    logger.addFilter(_FILTER)
    return logger
