"""Structured JSON logs: one line per record, with connection, route and deployment ids.

Never pass a token or a whole message body as a field: what is logged here ends
up in CloudWatch, readable by anyone with log access.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

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
        root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
        root.propagate = False
    return root.getChild(name)
