"""Fixes to moto that the local stack needs, applied only in its backend process.

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
3. **EventBridge that keeps up with a deployment's burst.** For every event
   and target, moto's EventBridge compiles eight JSONPath expressions (the
   default input template's), and jsonpath-ng builds a whole parser for each:
   17 ms of CPU per event, so the bus itself capped the local stack at about
   60 events/s. The expressions never change: their compiled form is cached.
4. **An SQS queue that stays fast while it is long.** moto's SQS reads the
   clock through a chain of naive-datetime conversions (2.5 µs a call) several
   times per queued message on every send and receive, and checks each
   received message's retention period by recomputing every queue attribute
   (each a scan of the queue): a burst that backs the queue up made every call
   slower, quadratically. The clock is read with ``time.time()`` (the same
   instant, in the same unit), the retention period is read directly, the
   attribute names' snake_case forms are remembered, and a receipt handle's
   185 random letters come from one ``os.urandom`` call instead of 185
   ``random.choice`` calls. Sending to a standard queue no longer builds every
   queue attribute (three scans of the queue, for each message EventBridge
   delivers) to learn that content-based deduplication is off, and deleting a
   message scans the queue once instead of twice (PutEvents of 10 entries:
   9.5 ms of CPU with a backed-up queue, 3.3 ms after; DeleteMessageBatch 3.1
   ms, 1.3 ms after).
5. **Expressions parsed once.** moto's DynamoDB parses a condition
   expression (its own lexer and parser, about 170 µs) for every item of every
   request, three times per transactional item (the request's validation, the
   transaction, then the Put or Update itself), and an update expression twice
   per Update (the broadcaster's transaction: 22 condition and 2 update
   expression parses for 10 events). A parsed condition depends only on the
   expression and its names and values, a parsed update expression only on its
   text; both are only read afterwards (moto's validator works on a deep copy
   of the update expression, resolved against the item each time), so they are
   cached on exactly those. What a condition's parse also reports (the names
   and values it found, which the request's validation checks against those
   given) is handed out as fresh lists each time. A refused expression raises
   where it raised before and is not cached.
6. **Requests that cost what they do.** Before any work, moto's server lists
   its own package directory (57 ``stat`` calls) to route each request, and
   lists every method of the service's response class: 0.7 ms of the 2 ms a
   bare request cost. Both answers are fixed for the life of the process and
   are remembered.

7. **Responses serialized without re-deriving names.** moto serializes every
   response by walking the operation's output shape, and for each member of
   each structure asks six alias providers which keys the value might be found
   under (trying all ten members of every DynamoDB ``AttributeValue``): about
   half of a Query's CPU. For a plain ``dict`` those keys depend only on the
   member's name, its shape and the structure it is in, so they are
   remembered per (name, shape, parent structure), and a member the dict holds
   under none of them is skipped as moto skips it (it would find None); values
   present are still looked up, transformed and serialized by moto for every
   response (a Query answering 5 items: 1.6-2.2 ms of CPU, 0.7-1.2 ms after).
8. **Delayed messages on time.** A long poll on an empty queue sleeps in
   one-second steps and wakes early only when a message is sent, so a message
   sent with ``DelaySeconds`` (or one whose visibility timeout ran out) was
   received up to a second after it was due (0.5-0.7 s late on average for
   a 1 s delay). The wait now also ends when the next such message is due.
9. **A Query that reads its partition, not the table.** For a Query on a
   table's own key, moto lists every item of the table, sorts them all by
   their keys (comparisons of its attribute-value objects, about 1 µs each)
   and then keeps those of the one partition key asked for: each inbox read,
   subscribers' read and replay of the broadcaster cost more the longer the
   stack ran, across every deployment. The Query now lists the items of its
   partition key only (moto keeps them in one dict per key); moto's own code
   sorts, pages and filters them as before. A Query on an index (the
   deployment list reads one per shard) still visits every item, but sorts
   only those with the index key asked for, not the whole table.

**Guarded.** Every fix rebinds moto's internals, so a moto release can
silently change what they patch. Before the first fix is applied,
:func:`check_moto` compares the installed moto with :data:`MOTO_VERSION` (the
one the ``local`` extra pins) and every function a fix replaces with the
parameters it had there; any difference stops the local stack with a message
that says which, and how to install the moto it was written for.

**Measured.** ``bench/bench_moto_patches.py`` runs the local stack's requests against moto
with every fix and with every fix but one speed group (3-7, 9), each in a fresh server: each
group is kept because it saves at least 5 % of the server's CPU on the workload it targets
(its figures are in the comment above it, and in docs/benchmarks.md).

**Upstream.** The two fixes of wrong answers (1 and 2) are written up as
issues for moto in docs/upstream-moto.md; each patch goes once moto ships
its fix.

Everything else is moto's own code. ``tests/test_integration`` drives the
patched backend; ``tests/test_emulator/test_moto_patches.py`` checks each
property directly.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import string
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

_LOCK = threading.RLock()
_APPLIED: set[str] = set()

#: The moto these fixes were written against; pyproject.toml's ``local`` extra pins it.
MOTO_VERSION = "5.2.5"

#: What the fixes replace: (module, attribute path, its parameters in :data:`MOTO_VERSION`;
#: None where only its presence matters).
REPLACED: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("moto.dynamodb.models", "DynamoDBBackend.transact_write_items", ("self", "transact_items")),
    ("moto.dynamodb.models", "get_filter_expression", ("expr", "names", "values")),
    ("moto.dynamodb.models.table", "get_filter_expression", ("expr", "names", "values")),
    ("moto.dynamodb.models", "UpdateExpressionParser", None),
    ("moto.dynamodb.models", "copy", None),
    (
        "moto.dynamodb.comparisons",
        "ConditionExpressionParser.__init__",
        ("self", "condition_expression", "expression_attribute_names", "expression_attribute_values"),
    ),
    ("moto.dynamodb.responses", "DynamoHandler.call_action", ("self",)),
    ("moto.dynamodb.responses", "create_condition_expression_parser", ("expr", "names", "values")),
    ("moto.sqs.models", "unix_time", ("dt",)),
    ("moto.sqs.models", "unix_time_millis", ("dt",)),
    (
        "moto.sqs.models",
        "SQSBackend.is_message_valid_based_on_retention_period",
        ("self", "queue_name", "message"),
    ),
    ("moto.sqs.models", "camelcase_to_underscores", ("argument",)),
    ("moto.sqs.models", "generate_receipt_handle", ()),
    (
        "moto.sqs.models",
        "SQSBackend.send_message",
        (
            "self",
            "queue_name",
            "message_body",
            "message_attributes",
            "delay_seconds",
            "deduplication_id",
            "group_id",
            "system_attributes",
            "validate_group_id",
        ),
    ),
    ("moto.sqs.models", "Queue.delete_message", ("self", "receipt_handle")),
    ("moto.sqs.models", "Queue.wait_for_messages", ("self", "timeout")),
    ("moto.core.serialize", "XFormedAttributePicker.get_possible_keys", ("self", "context")),
    (
        "moto.core.serialize",
        "ResponseSerializer._serialize_structure_member",
        ("self", "serialized", "value", "shape", "key"),
    ),
    ("moto.backends", "list_of_moto_modules", ()),
    ("moto.core.responses", "method_names_from_class", ("clazz",)),
    ("jsonpath_ng.ext", "parse", ("path", "debug")),
    (
        "moto.dynamodb.models.table",
        "Table.query",
        (
            "self",
            "hash_key",
            "range_comparison",
            "range_objs",
            "limit",
            "exclusive_start_key",
            "scan_index_forward",
            "projection_expressions",
            "index_name",
            "consistent_read",
            "filter_expression",
            "hash_key_conditions",
            "range_key_conditions",
            "filter_kwargs",
        ),
    ),
    ("moto.dynamodb.models.table", "Table.all_items", ("self",)),
)


class MotoMismatchError(RuntimeError):
    """The installed moto is not the one the fixes were written against."""


def check_moto(installed: str | None = None) -> None:
    """Refuse a moto whose version or patched functions differ from :data:`MOTO_VERSION`'s.

    Raises:
        MotoMismatchError: naming the version or the function that changed, and the fix.
    """
    import importlib  # noqa: PLC0415
    import importlib.metadata  # noqa: PLC0415
    import inspect  # noqa: PLC0415

    install = f"install the moto it was written for: pip install 'moto[server]=={MOTO_VERSION}'"
    version = importlib.metadata.version("moto") if installed is None else installed
    if version != MOTO_VERSION:
        raise MotoMismatchError(
            f"cloud-ws local patches moto {MOTO_VERSION}'s internals and found moto {version}; {install}"
        )
    for module_name, path, parameters in REPLACED:
        target: Any = importlib.import_module(module_name)
        try:
            for part in path.split("."):
                target = getattr(target, part)
        except AttributeError:
            raise MotoMismatchError(f"moto has no {module_name}.{path} any more; {install}") from None
        if parameters is not None and tuple(inspect.signature(target).parameters) != parameters:
            raise MotoMismatchError(f"{module_name}.{path} no longer takes {parameters}; {install}")


def serialize_dynamodb() -> None:
    """Make moto's DynamoDB answer one request at a time (idempotent; part of :func:`apply`).

    moto's models are not thread-safe: a transaction deep-copies its tables while
    another thread's write changes them ("dictionary changed size during
    iteration"). DynamoDB itself applies each request atomically. The tests' own
    in-process moto (``mock_aws``), which the broadcaster calls from several
    threads at once, needs this fix alone; the local stack's backend gets it with
    the rest.
    """
    if "lock" in _APPLIED:
        return
    check_moto()
    from moto.dynamodb.responses import DynamoHandler  # noqa: PLC0415 - moto is imported only where it runs

    _serialize(DynamoHandler)
    _APPLIED.add("lock")


def apply() -> None:
    """Check moto (:func:`check_moto`), then install every fix (idempotent)."""
    serialize_dynamodb()  # first: it checks moto, once, before any fix is installed
    if "dynamodb" not in _APPLIED:
        from moto.dynamodb import models  # noqa: PLC0415 - moto is imported only where it runs

        _item_level_snapshots(models)
        _cache_expressions(models)
        _APPLIED.add("dynamodb")
    if "events" not in _APPLIED:
        _cache_jsonpath()
        _APPLIED.add("events")
    if "sqs" not in _APPLIED:
        _fast_queue()
        _APPLIED.add("sqs")
    if "dispatch" not in _APPLIED:
        _fast_dispatch()
        _APPLIED.add("dispatch")
    if "serialize" not in _APPLIED:
        _remember_member_keys()
        _APPLIED.add("serialize")
    if "partition" not in _APPLIED:
        _query_one_partition()
        _APPLIED.add("partition")


# Measured (bench/bench_moto_patches.py, server CPU without / with, median of paired runs):
# 1.53x on the DynamoDB workload (1.52-1.57, its table growing to about 1,000 items), 8.9x with
# 20,000 rows of other deployments in the table first (8.1-9.2; 222 against 25 ms per round).
# The deployment list's 16 index Queries with 20,000 history rows in the table: 2,395 against 641 ms.
def _query_one_partition() -> None:
    from moto.dynamodb.models import table as table_module  # noqa: PLC0415 - moto is imported only where it runs

    table_class: Any = table_module.Table
    query: Callable[..., Any] = table_class.query
    all_items: Callable[[Any], list[Any]] = table_class.all_items
    # What the Query this thread is answering keeps: (table, its own partition key, None), or
    # (table, None, the index's hash key conditions as (attribute, value) pairs).
    answering = threading.local()

    @functools.wraps(query)
    def query_one_partition(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        # moto passes index_name as the 8th parameter (7th after hash_key), by position.
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        conditions = kwargs.get("hash_key_conditions")
        if index_name is None and hash_key is not None and self.range_key_attr:
            answering.keeps = (self, hash_key, None)
        elif index_name is not None and conditions:
            answering.keeps = (self, None, tuple(conditions))
        else:
            return query(self, hash_key, *args, **kwargs)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            answering.keeps = None

    @functools.wraps(all_items)
    def partition_items(self: Any) -> list[Any]:
        keeps = getattr(answering, "keeps", None)
        if keeps is None or keeps[0] is not self:
            return all_items(self)
        table, hash_key, conditions = keeps
        if conditions is None:
            # The same items moto's list holds for this key (it keeps those whose hash key equals
            # it), in its order: by range key; moto then sorts them by range key again.
            items = self.items.get(hash_key)
            return sorted(items.values(), key=lambda item: item.range_key) if items else []
        # An index: the items moto's own hash key check keeps (the same test, made before its
        # sort instead of after), in its order: by the table's (hash, range) key. The sort of
        # the whole table was the cost; the few items left are sorted as moto sorts them.
        kept = []
        for partition in table.items.values():
            for item in partition.values() if table.range_key_attr else (partition,):
                for name, expected in conditions:
                    value = item.attrs.get(name)
                    if not value or value != expected:
                        break
                else:
                    kept.append(item)
        return sorted(kept, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

    table_class.query = query_one_partition
    table_class.all_items = partition_items


# Measured (bench/bench_moto_patches.py, server CPU without / with, median of 16 paired runs):
# 1.08x on the mixed workload (0.92-1.22; DynamoDB rounds 1.07-1.12x, SQS 1.06-1.08x). The
# smallest gain of the five, and the closest to the 5 % a patch must earn to be kept.
def _remember_member_keys() -> None:
    from moto.core import serialize  # noqa: PLC0415 - moto is imported only where it runs

    picker_class: Any = serialize.XFormedAttributePicker
    original: Callable[[Any, Any], Iterator[str]] = picker_class.get_possible_keys
    defaults = serialize.DEFAULT_ALIAS_PROVIDERS
    # (member name, id(shape), id(parent)) -> (shape, parent, keys): the shapes are kept so
    # that their ids stay theirs (botocore's models live as long as the process anyway).
    remembered: dict[tuple[str, int, int], tuple[Any, Any, tuple[str, ...]]] = {}

    def get_possible_keys(self: Any, context: Any) -> Iterator[str]:
        # For a plain dict, every provider's answer depends on the key and the shapes only
        # (a dict has no ``Meta`` and its class name is "dict"); anything else asks moto.
        if type(context.obj) is not dict or self.alias_providers is not defaults:
            yield from original(self, context)
            return
        shape = context.shape
        parent = getattr(shape, "parent", None)
        key = (context.key, id(shape), id(parent))
        entry = remembered.get(key)
        if entry is None or entry[0] is not shape or entry[1] is not parent:
            try:
                keys = tuple(original(self, context))
            except Exception:  # noqa: BLE001 - moto's own lazy order decides what it raises, and when
                yield from original(self, context)
                return
            if len(remembered) >= 65536:
                remembered.clear()
            remembered[key] = (shape, parent, keys)
        else:
            keys = entry[2]
        yield from keys

    picker_class.get_possible_keys = get_possible_keys

    serializer_class: Any = serialize.ResponseSerializer
    serialize_member: Callable[..., None] = serializer_class._serialize_structure_member

    def _serialize_structure_member(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        # A member a plain dict holds under none of its keys is one moto would pick as None and
        # skip (with no transformer to turn None into something): skipped without asking again.
        picker = self._value_picker
        if (
            type(value) is dict
            and type(picker) is picker_class
            and picker.alias_providers is defaults
            and not picker.response_transformers
        ):
            parent = getattr(shape, "parent", None)
            entry = remembered.get((key, id(shape), id(parent)))
            if (
                entry is not None
                and entry[0] is shape
                and entry[1] is parent
                and not any("." in name or name in value for name in entry[2])
            ):
                return
        serialize_member(self, serialized, value, shape, key)

    serializer_class._serialize_structure_member = _serialize_structure_member


# Measured (bench/bench_moto_patches.py, server CPU without / with, median of 6 paired runs):
# 1.41x on the mixed workload (1.18-1.46): an SQS round 1.71x, a PutEvents 1.30x, DynamoDB 1.10x.
def _fast_dispatch() -> None:
    from moto import backends  # noqa: PLC0415 - moto is imported only where it runs
    from moto.core import responses  # noqa: PLC0415

    modules = tuple(backends.list_of_moto_modules())
    patched_backends: Any = backends
    patched_backends.list_of_moto_modules = lambda: modules
    patched_responses: Any = responses
    patched_responses.method_names_from_class = functools.lru_cache(maxsize=None)(
        patched_responses.method_names_from_class
    )


class _CachedCondition:
    """Stands in for moto's ``ConditionExpressionParser``: ``parse()`` answers from the cache."""

    def __init__(self, cache: _ConditionCache, expr: Any, names: Any, values: Any) -> None:
        self._cache = cache
        self._args = (expr, names, values)
        self.expr_attr_names_found: list[str] = []
        self.expr_attr_values_found: list[str] = []

    def parse(self) -> Any:
        op, names_found, values_found = self._cache.parse(*self._args)
        self.expr_attr_names_found.extend(names_found)
        self.expr_attr_values_found.extend(values_found)
        return op


class _ConditionCache:
    """Parsed condition expressions keyed by the expression, its names and its values."""

    def __init__(self, parser_class: Callable[..., Any], size: int = 4096) -> None:
        self._parser_class = parser_class
        self._size = size
        self._parsed: dict[str, tuple[Any, tuple[str, ...], tuple[str, ...]]] = {}
        self.parses = 0  # moto's own parses (what the cache saved is the calls beyond these)

    def parse(self, expr: Any, names: Any, values: Any) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
        key = json.dumps([expr, names, values], sort_keys=True, default=str)
        parsed = self._parsed.get(key)
        if parsed is None:
            parser = self._parser_class(expr, names, values)
            self.parses += 1
            op = parser.parse()  # a refused expression raises and is not cached
            parsed = (op, tuple(parser.expr_attr_names_found), tuple(parser.expr_attr_values_found))
            if len(self._parsed) >= self._size:
                self._parsed.clear()
            self._parsed[key] = parsed
        return parsed

    def parser(self, expr: Any, names: Any, values: Any) -> _CachedCondition:
        """What ``create_condition_expression_parser`` returns."""
        return _CachedCondition(self, expr, names, values)

    def get_filter_expression(self, expr: Any, names: Any, values: Any) -> Any:
        """What ``get_filter_expression`` returns."""
        return self.parse(expr, names, values)[0]


class _UpdateExpressionCache:
    """Stands in for moto's ``UpdateExpressionParser``: ``make`` keeps what it parsed, by text."""

    def __init__(self, parser_class: Any, size: int = 1024) -> None:
        self._make: Callable[[str], Any] = parser_class.make
        self._size = size
        self._parsed: dict[str, Any] = {}
        self.parses = 0

    def make(self, expression_str: Any) -> Any:
        if not isinstance(expression_str, str):
            return self._make(expression_str)
        ast = self._parsed.get(expression_str)
        if ast is None:
            self.parses += 1
            ast = self._make(expression_str)  # a refused expression raises and is not cached
            if len(self._parsed) >= self._size:
                self._parsed.clear()
            self._parsed[expression_str] = ast
        return ast


#: The caches installed by :func:`apply` (tests read their counters).
EXPRESSION_CACHES: dict[str, Any] = {}


# Measured (bench/bench_moto_patches.py, server CPU without / with, median of 6 paired runs):
# 1.34x on the DynamoDB workload (1.13-1.41; 50.0 against 36.7 ms per round of a 21-item
# conditional transaction, a conditional UpdateItem, a Query, a GetItem, a BatchWriteItem).
def _cache_expressions(models: Any) -> None:
    from moto.dynamodb import comparisons  # noqa: PLC0415 - moto is imported only where it runs
    from moto.dynamodb import responses as responses_module  # noqa: PLC0415
    from moto.dynamodb.models import table as table_module  # noqa: PLC0415

    # These modules import the parsers by name without re-exporting them.
    responses: Any = responses_module
    table: Any = table_module
    conditions = _ConditionCache(comparisons.ConditionExpressionParser)
    updates = _UpdateExpressionCache(models.UpdateExpressionParser)
    for module in (models, responses):
        module.create_condition_expression_parser = conditions.parser
        module.UpdateExpressionParser = updates
    models.get_filter_expression = conditions.get_filter_expression
    table.get_filter_expression = conditions.get_filter_expression
    EXPRESSION_CACHES.update(conditions=conditions, updates=updates)


# Measured (bench/bench_moto_patches.py, server CPU without / with, median of 6 paired runs):
# 12.8x on the SQS workload with 200 messages waiting (9.7-13.4x; 464 against 38 ms per round of
# 10 SendMessage, a ReceiveMessage and a DeleteMessageBatch), 4.5x on a PutEvents of 10 entries
# delivered to a queue drained between blocks. (wait_for_messages is a timing fix, not a speed-up.)
def _fast_queue() -> None:
    from moto.sqs import models as sqs_models  # noqa: PLC0415 - moto is imported only where it runs

    models: Any = sqs_models  # it imports the clock functions without re-exporting them
    slow_unix_time = models.unix_time

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(slow_unix_time(dt))

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    models.unix_time = unix_time
    models.unix_time_millis = unix_time_millis

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention_period = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_period + message.sent_timestamp / 1000 > unix_time())

    models.SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period
    models.camelcase_to_underscores = functools.lru_cache(maxsize=1024)(models.camelcase_to_underscores)

    table = bytes(ord(string.ascii_lowercase[b % 26]) for b in range(256))

    def generate_receipt_handle() -> str:
        # The same shape as moto's (185 lowercase letters), drawn from the OS's randomness.
        return os.urandom(185).translate(table).decode("ascii")

    models.generate_receipt_handle = generate_receipt_handle

    original_send = models.SQSBackend.send_message
    longest_delay = models.MAXIMUM_MESSAGE_DELAY

    def send_message(
        self: Any,
        queue_name: str,
        message_body: str,
        message_attributes: dict[str, Any] | None = None,
        delay_seconds: int | None = None,
        deduplication_id: str | None = None,
        group_id: str | None = None,
        system_attributes: dict[str, Any] | None = None,
        validate_group_id: bool = True,
    ) -> Any:
        queue = self.get_queue(queue_name)
        delay = int(queue.delay_seconds if delay_seconds is None else delay_seconds)
        special = queue.fifo_queue or deduplication_id is not None or group_id is not None
        if special or not 0 <= delay <= longest_delay:
            return original_send(
                self,
                queue_name,
                message_body,
                message_attributes,
                delay_seconds,
                deduplication_id,
                group_id,
                system_attributes,
                validate_group_id,
            )
        # A standard queue: moto's own steps, without building every queue attribute (three
        # scans of the queue) to learn that content-based deduplication is off, as it always is.
        self._validate_message(queue, message_body=message_body, delay_seconds=int(delay_seconds or 0))
        message = models.Message(str(models.random.uuid4()), message_body, system_attributes)
        if message_attributes:
            message.message_attributes = message_attributes
        message.mark_sent(delay_seconds=delay)
        queue.add_message(message)
        return message

    models.SQSBackend.send_message = send_message

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return  # already deleted: moto lets it be deleted again
        messages = self._messages
        index = next(
            (i for i, message in enumerate(messages) if receipt_handle in message.all_receipt_handles), None
        )
        if index is None:
            raise models.ReceiptHandleIsInvalid()
        message = messages[index]
        # One pass instead of moto's two over the whole queue (a receipt handle names one message);
        # the queue is replaced, not mutated, as moto does.
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)
        self._messages = messages[:index] + messages[index + 1 :]

    models.Queue.delete_message = delete_message

    def wait_for_messages(self: Any, timeout: float) -> None:
        with self._messages_lock:
            self._messages_lock.wait_for(
                lambda: self.messages, timeout=_until_next_due(self._messages, timeout)
            )

    models.Queue.wait_for_messages = wait_for_messages


def _until_next_due(messages: list[Any], longest: float) -> float:
    """Seconds until the next delayed or invisible message may be received, at most ``longest``."""
    now = time.time() * 1000.0
    due: list[float] = [
        max(message.delayed_until, message.visible_at)
        for message in messages
        if message.delayed_until > now or message.visible_at > now
    ]
    if not due:
        return longest
    # A millisecond past the instant: moto's own checks compare strictly.
    return max(0.0, min(longest, (min(due) - now + 1.0) / 1000.0))


# Measured (bench/bench_moto_patches.py, server CPU without / with, median of 6 paired runs):
# 13.3x on a PutEvents of 10 entries through a rule to an SQS target (12.4-13.7x; 88 against 6.7 ms).
def _cache_jsonpath() -> None:
    """moto's EventBridge imports ``jsonpath_ng.ext.parse`` on every call: cache what it returns.

    A compiled expression is only read by ``find``, so one instance can serve
    every event (and every thread).
    """
    import jsonpath_ng.ext  # noqa: PLC0415 - moto's dependency, present where moto runs

    module: Any = jsonpath_ng.ext  # re-exports ``parse`` without declaring it
    module.parse = functools.lru_cache(maxsize=512)(module.parse)


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
