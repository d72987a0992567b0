"""Capturing the records of ``cloud_ws`` loggers, which do not propagate to pytest's ``caplog``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class RecordingHandler(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def recorded(logger_name: str = "cloud_ws") -> Iterator[list[logging.LogRecord]]:
    """The records ``logger_name`` (and its children) write while the block runs."""
    handler = RecordingHandler()
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
