"""DynamoDB for the cloud model: moto's data semantics behind a capacity, conflict and latency layer.

What is real: every request is executed by moto in-process (``moto.mock_aws``
and a real boto3 client), so conditions, update expressions, projections and
indexes behave as moto implements them, and the tables are created from
``contract.spec.TABLES``.

What is modelled, per request, in virtual time:

- **Latency**: each call takes a fixed time (the constants below); the data
  effect happens at its start, and the items it writes stay *in flight* until
  its end.
- **Conflicts**: a transaction that touches an item another transaction or a
  plain write has in flight is cancelled (``TransactionCanceledException``,
  reason ``TransactionConflict`` for those items, ``None`` for the others); a
  plain write to an item a transaction has in flight fails with
  ``TransactionConflictException``.
- **Capacity**: every distinct partition-key value (of the table or of an
  index) is a partition of its own, a conservative reading of DynamoDB's
  "1,000 WCU and 3,000 RCU per partition". Each has a token bucket refilled at
  those rates holding at most ``BURST_SECONDS`` of them; a request is admitted
  while a bucket is not in debt, so the long-run rate never exceeds the limit.
  Writes cost 1 WCU per KB (rounded up, of the larger of the old and new item),
  2 in a transaction; a write that changes an index entry costs the entry's
  size on the index key's partition too (2 writes when an index key moves).
  Reads cost 1 RCU per 4 KB strongly consistent, 0.5 eventually. Over the
  limit: ``ProvisionedThroughputExceededException`` (``ThrottlingError`` in a
  transaction, unprocessed items in a batch).
- **Item size**: a write over 400 KB fails with ``ValidationException``
  (``ValidationError`` in a transaction).
- **The SDK's retries**: our containers build their client with botocore's
  default (legacy) retry mode, which retries DynamoDB throttling up to 10
  attempts, 50 ms doubling; the model does the same, so the store sees what
  it would on AWS.
"""

from __future__ import annotations

import copy
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from bench.cloudmodel.clock import VirtualClock

# Latencies of one request, as the caller waits for it (the brief's figures; AWS publishes none):
#: GetItem, PutItem, UpdateItem, DeleteItem: DynamoDB's "single-digit millisecond" reads and writes.
ITEM_MS = 5.0
#: TransactWriteItems / TransactGetItems: two-phase, roughly three single writes.
TRANSACT_MS = 15.0
#: A Query page.
QUERY_MS = 6.0
#: BatchGetItem / BatchWriteItem: items served in parallel, a little slower than one (an estimate).
BATCH_MS = 8.0

#: Per partition-key value ("Partitions and data distribution", DynamoDB Developer Guide).
PARTITION_WCU = 1000.0
PARTITION_RCU = 3000.0
#: A partition's bucket holds this many seconds of its rate (our allowance for DynamoDB's burst;
#: the per-partition hard limit applies to burst capacity too, so it is kept small).
BURST_SECONDS = 0.1
#: DynamoDB's item size limit.
MAX_ITEM_BYTES = 400 * 1024
#: An index entry carries this much on top of its attributes ("Capacity unit consumption for GSIs").
INDEX_ENTRY_OVERHEAD = 100

#: botocore's legacy retry mode for DynamoDB (botocore/data/_retry.json): 10 attempts, 50 ms doubling.
SDK_MAX_ATTEMPTS = 10
SDK_BASE_SECONDS = 0.05
SDK_RETRIED = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "TransactionInProgressException"}
)

_KEY_EQ = re.compile(r"(#?[A-Za-z0-9_]+)\s*=\s*(:[A-Za-z0-9_]+)")


@dataclass(frozen=True)
class IndexInfo:
    """One global secondary index: its key attributes and what it projects."""

    name: str
    hash_key: str
    range_key: str | None
    projection: str
    non_key: tuple[str, ...]


@dataclass(frozen=True)
class TableInfo:
    """What the capacity layer needs of a table."""

    name: str
    hash_key: str
    range_key: str | None
    indexes: tuple[IndexInfo, ...]


Partition = tuple[str, str, str]
"""(table, index name or "", partition-key value)."""


@dataclass
class _Bucket:
    tokens: float
    updated: float
    per_second: dict[int, float] = field(default_factory=lambda: defaultdict(float))


class Meter:
    """Capacity buckets per partition, what each consumed per second, and counts of what went wrong."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._write: dict[Partition, _Bucket] = {}
        self._read: dict[Partition, _Bucket] = {}
        self.counts: dict[str, int] = defaultdict(int)
        #: How often each partition refused a request (what bound a run).
        self.refusals: dict[Partition, int] = defaultdict(int)

    def _bucket(self, table: dict[Partition, _Bucket], partition: Partition, rate: float) -> _Bucket:
        now = self._clock.time()
        bucket = table.get(partition)
        if bucket is None:
            bucket = table[partition] = _Bucket(rate * BURST_SECONDS, now)
        else:
            bucket.tokens = min(rate * BURST_SECONDS, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        return bucket

    def admits(self, writes: Mapping[Partition, float], reads: Mapping[Partition, float]) -> set[Partition]:
        """The partitions that would refuse these units now (empty: admitted)."""
        refused = {p for p in writes if self._bucket(self._write, p, PARTITION_WCU).tokens < 0}
        refused |= {p for p in reads if self._bucket(self._read, p, PARTITION_RCU).tokens < 0}
        for partition in refused:
            self.refusals[partition] += 1
        return refused

    def charge(self, writes: Mapping[Partition, float], reads: Mapping[Partition, float]) -> None:
        """Take the units (a bucket may go into debt: one large request is not refused for ever)."""
        second = int(self._clock.elapsed())
        for table, units, rate in ((self._write, writes, PARTITION_WCU), (self._read, reads, PARTITION_RCU)):
            for partition, amount in units.items():
                bucket = self._bucket(table, partition, rate)
                bucket.tokens -= amount
                bucket.per_second[second] += amount

    def peak(self, reads: bool = False) -> tuple[Partition | None, float]:
        """The partition that consumed the most in any one second of virtual time, and how much."""
        best: tuple[Partition | None, float] = (None, 0.0)
        for partition, bucket in (self._read if reads else self._write).items():
            if bucket.per_second:
                top = max(bucket.per_second.values())
                if top > best[1]:
                    best = (partition, top)
        return best

    def peaks_by_kind(self, classify: Callable[[Partition], str]) -> dict[str, tuple[Partition, float]]:
        """The highest one-second write consumption per kind of partition (``classify`` names kinds)."""
        result: dict[str, tuple[Partition, float]] = {}
        for partition, bucket in self._write.items():
            if not bucket.per_second:
                continue
            top = max(bucket.per_second.values())
            kind = classify(partition)
            if kind not in result or top > result[kind][1]:
                result[kind] = (partition, top)
        return result

    def mean_rate(self, partition: Partition, first: int, last: int) -> float:
        """A partition's mean write units per second over whole seconds ``first`` .. ``last - 1``."""
        bucket = self._write.get(partition)
        if bucket is None or last <= first:
            return 0.0
        return sum(bucket.per_second.get(s, 0.0) for s in range(first, last)) / (last - first)


def _error(
    code: str, message: str, operation: str, reasons: list[dict[str, str]] | None = None
) -> ClientError:
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    if reasons is not None:
        response["CancellationReasons"] = reasons
    return ClientError(response, operation)  # type: ignore[arg-type]


def _kb(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


class ModelDynamoDB:
    """A boto3-shaped DynamoDB client: moto's answers, modelled time, capacity and conflicts."""

    def __init__(
        self, client: Any, backend: Any, clock: VirtualClock, meter: Meter, tables: Iterable[TableInfo]
    ) -> None:
        self._db = client
        self._backend = backend
        self._clock = clock
        self.meter = meter
        self._tables = {t.name: t for t in tables}
        # item -> (end of the request that has it in flight, whether that request is a transaction)
        self._in_flight: dict[tuple[str, str, str], tuple[float, bool]] = {}
        self._calls = 0

    # -- the client's operations -------------------------------------------------------------------

    def get_item(self, **kw: Any) -> Any:
        """GetItem."""
        return self._with_retries("GetItem", kw, self._get_item)

    def put_item(self, **kw: Any) -> Any:
        """PutItem."""
        return self._with_retries("PutItem", kw, self._single_write)

    def update_item(self, **kw: Any) -> Any:
        """UpdateItem."""
        return self._with_retries("UpdateItem", kw, self._single_write)

    def delete_item(self, **kw: Any) -> Any:
        """DeleteItem."""
        return self._with_retries("DeleteItem", kw, self._single_write)

    def query(self, **kw: Any) -> Any:
        """Query (a base table or an index)."""
        return self._with_retries("Query", kw, self._query)

    def batch_get_item(self, **kw: Any) -> Any:
        """BatchGetItem: throttled keys come back as ``UnprocessedKeys``."""
        return self._with_retries("BatchGetItem", kw, self._batch_get)

    def batch_write_item(self, **kw: Any) -> Any:
        """BatchWriteItem: throttled requests come back as ``UnprocessedItems``."""
        return self._with_retries("BatchWriteItem", kw, self._batch_write)

    def transact_write_items(self, **kw: Any) -> Any:
        """TransactWriteItems."""
        return self._with_retries("TransactWriteItems", kw, self._transact_write)

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(f"the cloud model's DynamoDB has no {name} yet")

    # -- plumbing ----------------------------------------------------------------------------------

    def _with_retries(
        self, operation: str, kw: dict[str, Any], call: Callable[[str, dict[str, Any]], Any]
    ) -> Any:
        self.meter.counts[f"calls {operation}"] += 1
        for attempt in range(1, SDK_MAX_ATTEMPTS + 1):
            try:
                return call(operation, kw)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in SDK_RETRIED or attempt == SDK_MAX_ATTEMPTS:
                    raise
                self.meter.counts["sdk retries"] += 1
                self._clock.sleep(SDK_BASE_SECONDS * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _finish(self, started: float, ms: float) -> None:
        self._clock.sleep_until(started + ms / 1000)

    def _table(self, name: str) -> TableInfo:
        return self._tables[name]

    def _key_of(self, table: TableInfo, attrs: Mapping[str, Any]) -> dict[str, Any]:
        key = {table.hash_key: attrs[table.hash_key]}
        if table.range_key is not None:
            key[table.range_key] = attrs[table.range_key]
        return key

    @staticmethod
    def _scalar(value: Mapping[str, Any] | None) -> str:
        if not value:
            return ""
        return str(next(iter(value.values())))

    def _item_id(self, table: TableInfo, key: Mapping[str, Any]) -> tuple[str, str, str]:
        return (
            table.name,
            self._scalar(key.get(table.hash_key)),
            self._scalar(key.get(table.range_key)) if table.range_key else "",
        )

    def _stored(self, table: TableInfo, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The item as moto holds it now (attribute-value JSON), without a request."""
        item = self._backend.get_item(table.name, dict(key))
        if item is None:
            return None
        attrs: dict[str, Any] = item.to_json()["Attributes"]
        return attrs

    @staticmethod
    def item_size(attrs: Mapping[str, Any] | None) -> int:
        """DynamoDB's item size: attribute names plus values (numbers ~ their digits)."""
        if not attrs:
            return 0
        return sum(len(name.encode()) + _value_size(value) for name, value in attrs.items())

    def _write_units(
        self, table: TableInfo, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, factor: int
    ) -> dict[Partition, float]:
        """Write units of one item's change, on the table's partition and each index's it touches."""
        key_source = new if new is not None else old
        assert key_source is not None
        units: dict[Partition, float] = defaultdict(float)
        size = max(self.item_size(old), self.item_size(new))
        units[(table.name, "", self._scalar(key_source.get(table.hash_key)))] += factor * _kb(size, 1024)
        for index in table.indexes:
            before = self._index_entry(table, index, old)
            after = self._index_entry(table, index, new)
            if before is None and after is None:
                continue
            if before is not None and after is not None and before[0] == after[0] and before[1] == after[1]:
                units[(table.name, index.name, after[0])] += _kb(after[2], 1024)  # updated in place
                continue
            for entry in (before, after):  # an index key moved: a delete and a put
                if entry is not None:
                    units[(table.name, index.name, entry[0])] += _kb(entry[2], 1024)
        return units

    def _index_entry(
        self, table: TableInfo, index: IndexInfo, attrs: Mapping[str, Any] | None
    ) -> tuple[str, str, int] | None:
        """(index partition key, index sort key, entry size) of an item, or None when not indexed."""
        if attrs is None or index.hash_key not in attrs or (index.range_key and index.range_key not in attrs):
            return None
        names = {index.hash_key, table.hash_key}
        for name in (index.range_key, table.range_key):
            if name:
                names.add(name)
        if index.projection == "ALL":
            names = set(attrs)
        elif index.projection == "INCLUDE":
            names |= set(index.non_key)
        size = self.item_size({n: attrs[n] for n in names if n in attrs}) + INDEX_ENTRY_OVERHEAD
        sort = self._scalar(attrs.get(index.range_key)) if index.range_key else ""
        return self._scalar(attrs[index.hash_key]), sort, size

    def _locked(self, item: tuple[str, str, str], now: float, only_transactions: bool) -> bool:
        held = self._in_flight.get(item)
        return held is not None and held[0] > now and (held[1] or not only_transactions)

    def _hold(self, items: Iterable[tuple[str, str, str]], until: float, transaction: bool) -> None:
        for item in items:
            self._in_flight[item] = (until, transaction)
        self._calls += 1
        if self._calls % 5000 == 0:  # forget what is long done
            now = self._clock.time()
            self._in_flight = {k: v for k, v in self._in_flight.items() if v[0] > now}

    # -- single-item operations --------------------------------------------------------------------

    def _get_item(self, operation: str, kw: dict[str, Any]) -> Any:
        started = self._clock.time()
        table = self._table(kw["TableName"])
        stored = self._stored(table, kw["Key"])
        reads = {(table.name, "", self._scalar(kw["Key"].get(table.hash_key))): self._read_units(stored, kw)}
        if self.meter.admits({}, reads):
            self.meter.counts["throttled GetItem"] += 1
            self._finish(started, ITEM_MS)
            raise _error("ProvisionedThroughputExceededException", "partition read limit", operation)
        self.meter.charge({}, reads)
        reply = self._db.get_item(**kw)
        self._finish(started, ITEM_MS)
        return reply

    @staticmethod
    def _read_units(attrs: Mapping[str, Any] | None, kw: Mapping[str, Any]) -> float:
        units = float(_kb(ModelDynamoDB.item_size(attrs), 4096))
        return units if kw.get("ConsistentRead") else units / 2

    def _single_write(self, operation: str, kw: dict[str, Any]) -> Any:
        started = self._clock.time()
        table = self._table(kw["TableName"])
        key = self._key_of(table, kw["Item"]) if operation == "PutItem" else dict(kw["Key"])
        item_id = self._item_id(table, key)
        if self._locked(item_id, started, only_transactions=True):
            self.meter.counts["conflicts (plain write)"] += 1
            self._finish(started, ITEM_MS)
            raise _error(
                "TransactionConflictException", "a transaction is in progress on this item", operation
            )
        if operation == "PutItem" and self.item_size(kw["Item"]) > MAX_ITEM_BYTES:
            self.meter.counts["too large"] += 1
            self._finish(started, ITEM_MS)
            raise _error("ValidationException", "Item size has exceeded the maximum allowed size", operation)
        old = self._stored(table, key)
        try:
            reply = self._db.__getattribute__(_SNAKE[operation])(**kw)
        except ClientError as exc:
            # A failed condition was still evaluated against the item: it is charged (DynamoDB does).
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException" and old:
                self.meter.charge(self._write_units(table, old, old, 1), {})
            self._hold([item_id], started + ITEM_MS / 1000, transaction=False)
            self._finish(started, ITEM_MS)
            raise
        new = self._stored(table, key)
        writes = self._write_units(table, old, new, 1)
        if self.meter.admits(writes, {}):
            self._restore(table, key, old)
            self.meter.counts[f"throttled {operation}"] += 1
            self._finish(started, ITEM_MS)
            raise _error("ProvisionedThroughputExceededException", "partition write limit", operation)
        self.meter.charge(writes, {})
        self._hold([item_id], started + ITEM_MS / 1000, transaction=False)
        self._finish(started, ITEM_MS)
        return reply

    def _restore(self, table: TableInfo, key: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        if old is None:
            self._backend.delete_item(table.name, dict(key))
        else:
            self._backend.put_item(table.name, copy.deepcopy(dict(old)))

    # -- queries and batches -----------------------------------------------------------------------

    def _query(self, operation: str, kw: dict[str, Any]) -> Any:
        started = self._clock.time()
        table = self._table(kw["TableName"])
        index_name = kw.get("IndexName", "")
        hash_name = table.hash_key
        for index in table.indexes:
            if index.name == index_name:
                hash_name = index.hash_key
        partition = (table.name, index_name, self._hash_value(kw, hash_name))
        if self.meter.admits({}, {partition: 0.5}):
            self.meter.counts["throttled Query"] += 1
            self._finish(started, QUERY_MS)
            raise _error("ProvisionedThroughputExceededException", "partition read limit", operation)
        reply = self._db.query(**kw)
        size = sum(self.item_size(item) for item in reply.get("Items", []))
        units = float(_kb(size, 4096))
        self.meter.charge({}, {partition: units if kw.get("ConsistentRead") else units / 2})
        self._finish(started, QUERY_MS)
        return reply

    def _hash_value(self, kw: Mapping[str, Any], hash_name: str) -> str:
        names = kw.get("ExpressionAttributeNames", {})
        values = kw.get("ExpressionAttributeValues", {})
        for name, placeholder in _KEY_EQ.findall(kw.get("KeyConditionExpression", "")):
            if names.get(name, name) == hash_name:
                return self._scalar(values.get(placeholder))
        return ""

    def _batch_get(self, operation: str, kw: dict[str, Any]) -> Any:
        started = self._clock.time()
        admitted: dict[str, Any] = {}
        unprocessed: dict[str, Any] = {}
        for table_name, request in kw["RequestItems"].items():
            table = self._table(table_name)
            for key in request["Keys"]:
                partition = (table.name, "", self._scalar(key.get(table.hash_key)))
                units = self._read_units(self._stored(table, key), request)
                target = admitted
                if self.meter.admits({}, {partition: units}):
                    self.meter.counts["throttled BatchGetItem keys"] += 1
                    target = unprocessed
                else:
                    self.meter.charge({}, {partition: units})
                target.setdefault(table_name, {**request, "Keys": []})["Keys"].append(key)
        if not admitted:
            self._finish(started, BATCH_MS)
            raise _error("ProvisionedThroughputExceededException", "every key throttled", operation)
        reply = dict(self._db.batch_get_item(RequestItems=admitted))
        reply["UnprocessedKeys"] = unprocessed
        self._finish(started, BATCH_MS)
        return reply

    def _batch_write(self, operation: str, kw: dict[str, Any]) -> Any:
        started = self._clock.time()
        admitted: dict[str, list[Any]] = {}
        unprocessed: dict[str, list[Any]] = {}
        held: list[tuple[str, str, str]] = []
        for table_name, requests in kw["RequestItems"].items():
            table = self._table(table_name)
            for request in requests:
                if "PutRequest" in request:
                    new: dict[str, Any] | None = request["PutRequest"]["Item"]
                    assert new is not None
                    key = self._key_of(table, new)
                    if self.item_size(new) > MAX_ITEM_BYTES:
                        self._finish(started, BATCH_MS)
                        raise _error("ValidationException", "Item size has exceeded the maximum", operation)
                else:
                    key = dict(request["DeleteRequest"]["Key"])
                    new = None
                item_id = self._item_id(table, key)
                old = self._stored(table, key)
                writes = self._write_units(table, old, new, 1)
                if self._locked(item_id, started, only_transactions=True) or self.meter.admits(writes, {}):
                    self.meter.counts["throttled BatchWriteItem items"] += 1
                    unprocessed.setdefault(table_name, []).append(request)
                    continue
                self.meter.charge(writes, {})
                held.append(item_id)
                admitted.setdefault(table_name, []).append(request)
        if not admitted:
            self._finish(started, BATCH_MS)
            raise _error("ProvisionedThroughputExceededException", "every item throttled", operation)
        reply = dict(self._db.batch_write_item(RequestItems=admitted))
        reply["UnprocessedItems"] = unprocessed
        self._hold(held, started + BATCH_MS / 1000, transaction=False)
        self._finish(started, BATCH_MS)
        return reply

    # -- transactions ------------------------------------------------------------------------------

    def _transact_write(self, operation: str, kw: dict[str, Any]) -> Any:
        started = self._clock.time()
        entries: list[tuple[str, TableInfo, dict[str, Any], dict[str, Any]]] = []
        for entry in kw["TransactItems"]:
            kind, body = next(iter(entry.items()))
            table = self._table(body["TableName"])
            key = self._key_of(table, body["Item"]) if kind == "Put" else dict(body["Key"])
            entries.append((kind, table, key, body))
        ids = [self._item_id(table, key) for _, table, key, _ in entries]

        conflicts = [self._locked(item, started, only_transactions=False) for item in ids]
        if any(conflicts):
            self.meter.counts["conflicts (transaction)"] += 1
            self._finish(started, TRANSACT_MS)
            raise self._cancelled(
                operation, conflicts, "TransactionConflict", "Transaction is ongoing for the item"
            )
        too_large = [
            kind == "Put" and self.item_size(body["Item"]) > MAX_ITEM_BYTES for kind, _, _, body in entries
        ]
        if any(too_large):
            self.meter.counts["too large"] += 1
            self._finish(started, TRANSACT_MS)
            raise self._cancelled(
                operation, too_large, "ValidationError", "Item size has exceeded the maximum"
            )

        olds = [self._stored(table, key) for _, table, key, _ in entries]
        self._hold(ids, started + TRANSACT_MS / 1000, transaction=True)
        try:
            reply = self._db.transact_write_items(**kw)
        except ClientError:
            # The prepare phase read and checked every item: charged like the writes it refused.
            charged: dict[Partition, float] = defaultdict(float)
            for (_, table, key, _), old in zip(entries, olds, strict=True):
                probe = old if old is not None else key
                for partition, units in self._write_units(table, probe, probe, 2).items():
                    charged[partition] += units
            self.meter.charge(charged, {})
            self.meter.counts["cancelled (conditions)"] += 1
            self._finish(started, TRANSACT_MS)
            raise
        writes: dict[Partition, float] = defaultdict(float)
        per_item: list[set[Partition]] = []
        for (kind, table, key, _), old in zip(entries, olds, strict=True):
            new = None if kind == "Delete" else self._stored(table, key)
            item_units: dict[Partition, float]
            if kind == "ConditionCheck":
                item_units = {
                    (table.name, "", self._scalar(key.get(table.hash_key))): 2.0
                    * _kb(self.item_size(old), 1024)
                }
            else:
                item_units = self._write_units(table, old, new, 2)
            per_item.append(set(item_units))
            for partition, amount in item_units.items():
                writes[partition] += amount
        refused = self.meter.admits(writes, {})
        if refused:
            for (_, table, key, _), old in zip(entries, olds, strict=True):
                self._restore(table, key, old)
            self.meter.counts["throttled TransactWriteItems"] += 1
            self._finish(started, TRANSACT_MS)
            raise self._cancelled(
                operation,
                [bool(p & refused) for p in per_item],
                "ThrottlingError",
                "Throughput exceeds the limit",
            )
        self.meter.charge(writes, {})
        self._finish(started, TRANSACT_MS)
        return reply

    def _cancelled(self, operation: str, which: list[bool], code: str, message: str) -> ClientError:
        reasons = [{"Code": code, "Message": message} if hit else {"Code": "None"} for hit in which]
        codes = ", ".join(r["Code"] for r in reasons)
        return _error(
            "TransactionCanceledException",
            f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
            operation,
            reasons,
        )


_SNAKE = {"PutItem": "put_item", "UpdateItem": "update_item", "DeleteItem": "delete_item"}


def _value_size(value: Mapping[str, Any]) -> int:
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        return len(str(inner).lstrip("-").replace(".", "")) // 2 + 2
    if kind == "B":
        return len(inner) if isinstance(inner, bytes | bytearray) else len(str(inner)) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in inner.items())
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: v}) for v in inner)
    return 1


def tables_from_spec(specs: Iterable[Any], names: Mapping[str, str]) -> list[TableInfo]:
    """The capacity layer's view of ``contract.spec`` tables (``names``: role -> physical name)."""
    infos: list[TableInfo] = []
    for table in specs:
        infos.append(
            TableInfo(
                names[table.role],
                table.hash_key.name,
                table.range_key.name if table.range_key else None,
                tuple(
                    IndexInfo(
                        index.name,
                        index.hash_key.name,
                        index.range_key.name if index.range_key else None,
                        index.projection,
                        tuple(index.non_key_attributes),
                    )
                    for index in table.indexes
                ),
            )
        )
    return infos
