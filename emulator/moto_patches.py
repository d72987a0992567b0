"""Two fixes to moto's DynamoDB that the local stack needs, applied only in its backend process.

1. **Atomic requests.** moto's server answers requests on several threads, and
   its DynamoDB backend is not written for that: a transaction that fails
   restores whole tables from a snapshot taken when it began, erasing writes
   other requests made in between (a broadcast to one deployment could undo a
   concurrent broadcast's history and counter). DynamoDB executes each request
   atomically; here every DynamoDB request holds one lock.
2. **Transactions that cost what they touch.** That snapshot is a deep copy
   of every table the transaction names, so each broadcast's transaction got
   slower as the event history grew (34 ms per transaction after 600 events,
   against 8 ms on an empty table). The snapshot is replaced by one of the
   items the transaction touches, restored the same way if it fails.

Everything else is moto's own code. ``tests/test_integration`` drives the
patched backend; ``tests/test_emulator/test_moto_patches.py`` checks both
properties directly.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

_LOCK = threading.RLock()
_APPLIED: set[str] = set()


def apply() -> None:
    """Install both fixes (idempotent)."""
    if "dynamodb" in _APPLIED:
        return
    from moto.dynamodb import models  # noqa: PLC0415 - moto is imported only where it runs
    from moto.dynamodb.responses import DynamoHandler  # noqa: PLC0415

    _serialize(DynamoHandler)
    _item_level_snapshots(models)
    _APPLIED.add("dynamodb")


def _serialize(handler_class: Any) -> None:
    call_action: Callable[[Any], Any] = handler_class.call_action

    def serialized_call_action(self: Any) -> Any:
        with _LOCK:
            return call_action(self)

    handler_class.call_action = serialized_call_action


class _NoTableCopies:
    """Stands in for the ``copy`` module inside moto's DynamoDB models during a transaction."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type
        self.active = False

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if self.active and isinstance(value, self._table_type):
            return value  # restoring "the snapshot" is then a no-op; we undo items ourselves
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _item_level_snapshots(models: Any) -> None:
    backend_class = models.DynamoDBBackend
    original: Callable[[Any, list[dict[str, Any]]], None] = backend_class.transact_write_items
    shim = _NoTableCopies(models.Table)
    models.copy = shim

    @contextmanager
    def tables_not_copied() -> Iterator[None]:
        shim.active = True
        try:
            yield
        finally:
            shim.active = False

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with _LOCK:
            undo = _snapshot_items(self, transact_items)
            try:
                with tables_not_copied():
                    original(self, transact_items)
            except Exception:
                _restore_items(self, undo)
                raise

    backend_class.transact_write_items = transact_write_items


def _snapshot_items(backend: Any, transact_items: list[dict[str, Any]]) -> list[SimpleNamespace]:
    """The current version of every item the transaction names (None where absent)."""
    saved: list[SimpleNamespace] = []
    for entry in transact_items:
        if not isinstance(entry, dict) or len(entry) != 1:
            continue  # malformed: moto refuses it before writing anything
        op_type, op = next(iter(entry.items()))
        table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
        if table is None:
            continue
        try:
            if op_type == "Put":
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            current = backend.get_item(op["TableName"], key)
        except Exception:  # noqa: BLE001, S112 - an invalid key is refused by moto itself, before any write
            continue
        saved.append(SimpleNamespace(table=op["TableName"], key=key, item=copy.deepcopy(current)))
    return saved


def _restore_items(backend: Any, saved: list[SimpleNamespace]) -> None:
    for entry in reversed(saved):
        if entry.item is None:
            backend.delete_item(entry.table, entry.key)
        else:
            backend.put_item(entry.table, entry.item.to_json()["Attributes"])
