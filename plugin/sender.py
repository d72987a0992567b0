"""The background sender: one thread that moves events from the buffer to EventBridge.

Guarantees (see docs/plugin.md):

* **Never in the way.** :meth:`Sender.offer` takes a lock, appends to a bounded
  buffer and returns; it never blocks on the network and never raises.
* **Order.** Events are submitted in the order they were accepted. A request
  holds the oldest events; when some of its entries fail, *only those* are
  retried, alone, before anything newer is sent, so a retry never lets a later
  event overtake an earlier one across requests.
* **Persistence.** A request that fails as a whole (bus unreachable, throttled,
  5xx) is retried with exponential backoff and full jitter until it succeeds or
  the plugin is closed past its deadline. An entry EventBridge rejects is
  retried up to ``max_entry_attempts`` times, unless retrying cannot help
  (malformed entry), then counted as ``failed``.
* **Accounting.** Every accepted event ends up counted exactly once in
  :class:`DeliveryStats` as sent, dropped, failed or abandoned.

PutEvents partial failures come back as HTTP 200 with ``FailedEntryCount``, so
botocore's own retries never see them: the client is built with botocore
retries off and all retrying happens here.
"""

from __future__ import annotations

import atexit
import enum
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, ParamValidationError

from contract import backoff, spec
from plugin.buffer import EventBuffer, Pending, entry_bytes
from plugin.envelope import Envelope, packed_entry
from plugin.ratelog import RateLimitedLog

log = logging.getLogger("cloud_ws.plugin")

#: PutEvents' own limits.
PUT_EVENTS_MAX_ENTRIES = 10
PUT_EVENTS_MAX_BYTES = 256 * 1024

#: Most PutEvents requests one plugin sends at once (botocore's connection pool holds 10).
MAX_REQUESTS_IN_FLIGHT = 8

#: What the sender counts (:class:`DeliveryStats` reads them).
_COUNTERS = (
    *("accepted", "sent", "dropped", "failed", "abandoned", "refused"),  # what became of events
    *("put_calls", "retried", "packed"),  # what the requests did
)

#: The events one PutEvents entry carries: one, or several of one deployment (a packed entry).
Entry = list[Pending]

#: Per-entry error codes a retry cannot fix: the entry is dropped at once.
POISON_ENTRY_CODES = frozenset({"InvalidArgument", "MalformedDetail", "ValidationException"})

#: Whole-request errors caused by the request itself: split it to find the bad entry.
POISON_REQUEST_CODES = frozenset({"ValidationException", "InvalidArgument", "MalformedDetail"})


@dataclass(frozen=True)
class DeliveryOptions:
    """How the plugin buffers and retries. The defaults suit a production orchestrator."""

    max_queue_events: int = 10_000
    """Events kept in memory while the bus is unreachable; past it, the oldest logs go first."""
    max_queue_bytes: int = 32 * 1024 * 1024
    """The same bound in bytes, so a flood of large events cannot exhaust memory."""
    max_batch_entries: int = PUT_EVENTS_MAX_ENTRIES
    """Entries per PutEvents request (EventBridge allows at most 10)."""
    max_batch_bytes: int = PUT_EVENTS_MAX_BYTES
    """Bytes per PutEvents request (EventBridge allows at most 256 KiB)."""
    backoff_base: float = 0.05
    """First retry waits up to this many seconds; each further failure doubles the ceiling."""
    backoff_max: float = 5.0
    """Ceiling of the backoff, so a bus that comes back is used within seconds."""
    max_entry_attempts: int = 10
    """Tries for an entry EventBridge keeps rejecting before it is counted as failed."""
    close_timeout: float = 5.0
    """Deadline of ``close()`` from the context manager and at interpreter exit."""
    connect_timeout: float = 2.0
    """Socket connect timeout of the EventBridge client."""
    read_timeout: float = 5.0
    """Socket read timeout of the EventBridge client."""
    requests_in_flight: int = 1
    """PutEvents requests sent at once. One (the default) keeps the bus's arrival order
    and costs one round trip per 10 events: about 250 events/s at 40 ms a request. More
    lift that ceiling; the order subscribers see is unchanged, because the broadcaster
    stores a numbering producer's events in its emission order whatever order they reach
    the bus in, and :class:`~plugin.OrchestratorPlugin` numbers every event."""
    pack_backlog: int | None = 10
    """Events waiting past which consecutive events of one deployment share one entry (a
    packed entry, docs/protocol.md). The default, one request's worth of entries, means
    "behind": a sender that keeps up sends one entry per event, the plain envelope; one
    that falls behind (a burst, a steady rate past one request per round trip) packs, so
    a request carries hundreds of events instead of ten and the events reach the delivery
    queue as a few messages instead of thousands, which the queue's pollers would
    otherwise work through while every other deployment's events wait behind them, one
    invocation and one inbox write each. ``None``: never pack."""
    pack_bytes: int = spec.PACKED_MAX_BYTES
    """Most bytes of a packed entry's ``Detail``: within one 64 KB chunk, the unit EventBridge
    and SQS bill by."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_entries <= PUT_EVENTS_MAX_ENTRIES:
            raise ValueError(f"max_batch_entries must be within 1..{PUT_EVENTS_MAX_ENTRIES}")
        if not 1 <= self.max_batch_bytes <= PUT_EVENTS_MAX_BYTES:
            raise ValueError(f"max_batch_bytes must be within 1..{PUT_EVENTS_MAX_BYTES}")
        if self.max_queue_events < 1 or self.max_queue_bytes < 1 or self.max_entry_attempts < 1:
            raise ValueError("max_queue_events, max_queue_bytes and max_entry_attempts must be positive")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("backoff_base and backoff_max must not be negative")
        if not 1 <= self.requests_in_flight <= MAX_REQUESTS_IN_FLIGHT:
            raise ValueError(f"requests_in_flight must be within 1..{MAX_REQUESTS_IN_FLIGHT}")
        if self.pack_backlog is not None and self.pack_backlog < 0:
            raise ValueError("pack_backlog must be None or not negative")
        if not 1024 <= self.pack_bytes <= spec.PACKED_MAX_BYTES:
            raise ValueError(f"pack_bytes must be within 1024..{spec.PACKED_MAX_BYTES}")


@dataclass(frozen=True)
class DeliveryStats:
    """A snapshot of what happened to the events the hooks accepted."""

    accepted: int
    """Events the hooks queued."""
    sent: int
    """Accepted by EventBridge."""
    dropped: int
    """Shed because the queue was full (oldest logs first), or offered after ``close()``."""
    failed: int
    """Rejected by EventBridge for good (malformed, or still failing after every attempt)."""
    abandoned: int
    """Still undelivered when ``close()`` reached its deadline."""
    refused: int
    """Hook calls whose arguments could not make a valid event (never queued)."""
    queued: int
    """Waiting in the buffer now."""
    in_flight: int
    """In the request being sent or retried now."""
    put_calls: int
    """PutEvents requests made, including failed ones."""
    retried_entries: int
    """Events sent again after a failure (each event of a packed entry counts)."""
    packed_entries: int
    """Packed entries EventBridge accepted: each a moment the plugin had fallen behind and sent
    several events of one deployment as one entry (0 for a plugin that always kept up)."""
    last_error: str | None
    """The most recent delivery error, for a person to read."""
    last_error_code: str | None
    """Its code: the AWS error code (``ResourceNotFoundException``) or the exception's class name."""

    @property
    def undelivered(self) -> int:
        """Accepted events that did not reach the bus and never will."""
        return self.dropped + self.failed + self.abandoned


class SenderState(enum.Enum):
    """Where a sender is in its life; it only ever moves down this list."""

    RUNNING = 1
    """Accepting offers and sending them."""
    CLOSING = 2
    """``close()`` was called: offers are dropped, the thread sends what is queued, then exits."""
    ABORTING = 3
    """``close()``'s deadline passed: the thread exits as soon as it can (no more retries)."""
    CLOSED = 4
    """The thread has exited: whatever was still queued is counted as abandoned."""


class Sender:
    """A bounded buffer drained by one daemon thread that calls PutEvents."""

    def __init__(
        self,
        event_bus_name: str,
        source: str,
        client_factory: Callable[[], Any],
        options: DeliveryOptions | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.event_bus_name = event_bus_name
        self.source = source
        self.options = options or DeliveryOptions()
        self._client_factory = client_factory
        self._client: Any = None
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        # One condition for every wait (work to send, settled events, the state moving on).
        # Offers notify only when a waiter can care: when the buffer stops being empty (the
        # thread may be idle), or when shedding may complete a flush someone waits for. So a
        # hook call during an outage does not wake the thread out of its backoff.
        self._changed = threading.Condition(self._lock)
        self._state = SenderState.RUNNING
        self._flushers = 0  # threads waiting in flush()
        self._buffer = EventBuffer(self.options.max_queue_events, self.options.max_queue_bytes)
        self._inflight: dict[int, Pending] = {}
        self._next_seq = 0
        self._thread: threading.Thread | None = None
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._last_error: str | None = None
        self._last_error_code: str | None = None
        self._outage_log = RateLimitedLog(log, interval=30.0)
        self._drop_log = RateLimitedLog(log, interval=30.0)
        _LIVE.add(self)

    # -- the orchestrator's side ------------------------------------------------

    def offer(self, envelope: Envelope) -> bool:
        """Queue ``envelope``; False if it was dropped at once (closed, or larger than the bound)."""
        accepted, shed = self.offer_quietly(envelope)
        self.report_shed(shed)
        return accepted

    def offer_quietly(self, envelope: Envelope) -> tuple[bool, list[Pending]]:
        """Queue ``envelope`` without logging; whether it was kept, and what was shed to make room.

        For a caller that holds a lock of its own: the warning about what was
        shed goes through the orchestrator's logging, whose handlers may call
        back into the plugin (:meth:`report_shed`, once that lock is released).
        """
        size = envelope.size(self.event_bus_name, self.source)
        with self._lock:
            if self._state is not SenderState.RUNNING:
                self._counts["dropped"] += 1
                shed = [Pending(0, envelope, size)]
            else:
                self._next_seq += 1
                item = Pending(self._next_seq, envelope, size)
                self._counts["accepted"] += 1
                was_empty = not self._buffer
                shed = self._buffer.push(item)
                self._counts["dropped"] += len(shed)
                if (was_empty and self._buffer) or (shed and self._flushers):
                    self._changed.notify_all()  # work for an idle thread, or a flush completed
        return not any(item.envelope is envelope for item in shed), shed

    def report_shed(self, shed: list[Pending]) -> None:
        """Log (rate-limited) what :meth:`offer_quietly` shed."""
        if shed:
            self._drop_log.warning(
                "event queue full or closed: dropped %s (%s) for deployment %s",
                shed[-1].envelope.type,
                shed[-1].envelope.event_id,
                shed[-1].envelope.deployment_id,
                count=len(shed),
            )

    def count_refused(self) -> None:
        """Record a hook call that could not make an event."""
        with self._lock:
            self._counts["refused"] += 1

    def start(self) -> None:
        """Start the sending thread (idempotent)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cloud-ws-plugin-sender", daemon=True)
                self._thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event accepted before this call is settled; False on timeout."""
        self.start()
        with self._lock:
            target = self._next_seq
            self._flushers += 1
            try:
                return self._changed.wait_for(lambda: self._low_water() > target, timeout)
            finally:
                self._flushers -= 1

    def close(self, timeout: float | None = None) -> bool:
        """Stop accepting, deliver what is queued until ``timeout``, stop the thread.

        Returns True when everything accepted was settled (sent, or counted as
        dropped or failed) before the deadline. Idempotent.
        """
        timeout = self.options.close_timeout if timeout is None else timeout
        with self._lock:
            self._advance(SenderState.CLOSING)
            started = self._thread is not None
        if not started and self._buffer_is_empty():
            return True
        self.start()
        thread = self._thread
        assert thread is not None
        thread.join(max(timeout, 0.0))
        if thread.is_alive():
            with self._lock:
                self._advance(SenderState.ABORTING)
            # The thread may be inside a PutEvents call; it exits when the call
            # returns (bounded by the client's timeouts), not worth waiting for here.
            thread.join(0.05)
        with self._lock:
            undelivered = len(self._buffer) + len(self._inflight) + self._counts["abandoned"]
        _LIVE.discard(self)
        return undelivered == 0 and not thread.is_alive()

    def stats(self) -> DeliveryStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            c = self._counts
            return DeliveryStats(
                accepted=c["accepted"],
                sent=c["sent"],
                dropped=c["dropped"],
                failed=c["failed"],
                abandoned=c["abandoned"],
                refused=c["refused"],
                queued=len(self._buffer),
                in_flight=len(self._inflight),
                put_calls=c["put_calls"],
                retried_entries=c["retried"],
                packed_entries=c["packed"],
                last_error=self._last_error,
                last_error_code=self._last_error_code,
            )

    # -- the sending thread -------------------------------------------------------

    def _run(self) -> None:
        # Build the client now, not on the first event: loading botocore's service
        # model holds the GIL for ~100 ms, which a hook call would otherwise feel.
        try:
            self._client = self._client_factory()
        except Exception as exc:  # noqa: BLE001 - retried (and reported) when there is something to send
            log.debug("EventBridge client not built yet: %s", _describe(exc))
        width = self.options.requests_in_flight
        # Extra requests run on a small pool; the first batch of each round is sent from here.
        pool = ThreadPoolExecutor(width - 1, thread_name_prefix="cloud-ws-put") if width > 1 else None
        try:
            while True:
                with self._lock:
                    self._changed.wait_for(self._has_work)
                    if self._aborting() or not self._buffer:
                        break
                    backlog = self.options.pack_backlog
                    behind = backlog is not None and len(self._buffer) > backlog
                    pack = self.options.pack_bytes if behind else 0
                    batches: list[list[Entry]] = []
                    while self._buffer and len(batches) < width:
                        batch = self._buffer.pop_request(
                            self.options.max_batch_entries, self.options.max_batch_bytes, pack
                        )
                        self._inflight.update((item.seq, item) for entry in batch for item in entry)
                        batches.append(batch)
                others = [pool.submit(self._deliver, batch) for batch in batches[1:]] if pool else []
                self._deliver(batches[0])
                for other in others:
                    other.result()  # a bug there stops the thread as one here would
        except Exception:  # a bug here must not leave flush() waiting forever
            log.exception("event sender stopped unexpectedly")
            with self._lock:
                self._advance(SenderState.ABORTING)  # requests still on the pool stop retrying
        finally:
            if pool is not None:
                pool.shutdown(wait=True)  # nothing in flight is left unsettled when we count
            with self._lock:
                self._advance(SenderState.CLOSED)  # nothing would send what is offered from now on
                left = self._buffer.drain() + list(self._inflight.values())
                self._inflight.clear()
                self._counts["abandoned"] += len(left)
            if left:
                log.warning("event sender stopped with %d events undelivered", len(left))

    def _deliver(self, batch: list[Entry]) -> None:
        """Send ``batch`` until every entry is settled, or the close deadline passes."""
        pending = batch
        failures = 0  # consecutive failed attempts: the backoff exponent
        outage = 0  # of which whole requests failed (bus unreachable)
        while pending and not self._aborting():
            requests = self._requests(pending)
            if len(requests) > 1:
                # A packed entry split into its events no longer fits one request.
                for request in requests:
                    self._deliver(request)
                return
            try:
                response = self._put(pending)
            except Exception as exc:  # noqa: BLE001 - whatever failed, the bus is unreachable to us
                if _is_poison_request(exc):
                    # One bad entry must not sink its batch-mates: send them one by one. A
                    # packed entry alone is split into its events, sent as requests of
                    # several: a request holding the bad one is then split again.
                    if len(pending) > 1:
                        for entry in pending:
                            self._deliver([entry])
                    elif len(pending[0]) > 1:
                        self._deliver([[item] for item in pending[0]])
                    else:
                        self._settle_failed(pending[0][0], exc)
                    return
                failures += 1
                outage += 1
                self._note_outage(exc, outage)
                self._backoff(failures)
                continue
            if outage:
                log.info("event bus %s reachable again after %d failed attempts", self.event_bus_name, outage)
                outage = 0
            pending, failing = self._settle(pending, response)
            if failing:
                failures += 1
                with self._lock:
                    self._counts["retried"] += sum(len(entry) for entry in pending)
                self._backoff(failures)

    def _requests(self, entries: list[Entry]) -> list[list[Entry]]:
        """``entries`` as consecutive requests within the request limits (entries and bytes)."""
        most, limit = self.options.max_batch_entries, self.options.max_batch_bytes
        requests: list[list[Entry]] = []
        current: list[Entry] = []
        size = 0
        for entry in entries:
            grown = size + entry_bytes(entry)
            if current and (len(current) >= most or grown > limit):
                requests.append(current)
                current, grown = [], entry_bytes(entry)
            current.append(entry)
            size = grown
        if current:
            requests.append(current)
        return requests

    def _put(self, pending: list[Entry]) -> Mapping[str, Any]:
        with self._lock:
            self._counts["put_calls"] += 1
        if self._client is None:
            self._client = self._client_factory()
        entries = [
            entry[0].envelope.entry(self.event_bus_name, self.source)
            if len(entry) == 1
            else packed_entry([item.envelope for item in entry], self.event_bus_name, self.source)
            for entry in pending
        ]
        response = self._client.put_events(Entries=entries)
        if not isinstance(response, Mapping) or not isinstance(response.get("Entries"), list):
            # Not what PutEvents returns: treated like a failed call, retried.
            raise TypeError(f"PutEvents returned {type(response).__name__} without an Entries list")
        return response

    def _settle(self, pending: list[Entry], response: Mapping[str, Any]) -> tuple[list[Entry], bool]:
        """Count what EventBridge accepted and rejected.

        Returns the entries to send again, in order, and whether any of them failed
        (and so waits out a backoff). A packed entry refused as malformed comes back
        as its events, an entry each, so that only the bad one is given up on.
        """
        results = response.get("Entries") or []
        retry: list[Entry] = []
        failing = False
        given_up: list[tuple[Pending, str]] = []
        with self._lock:
            for index, entry in enumerate(pending):
                result = results[index] if index < len(results) else None
                if not isinstance(result, Mapping):
                    result = {"ErrorCode": "MissingResult", "ErrorMessage": "no result for this entry"}
                code = result.get("ErrorCode")
                if not code:
                    self._counts["sent"] += len(entry)
                    if len(entry) > 1:
                        self._counts["packed"] += 1
                    for item in entry:
                        del self._inflight[item.seq]
                    continue
                reason = f"{code}: {result.get('ErrorMessage', '')}".rstrip(": ")
                self._last_error, self._last_error_code = reason, str(code)
                if code in POISON_ENTRY_CODES and len(entry) > 1:
                    retry += [[item] for item in entry]
                    continue
                failing = True
                for item in entry:
                    item.attempts += 1
                if code in POISON_ENTRY_CODES or entry[0].attempts >= self.options.max_entry_attempts:
                    self._counts["failed"] += len(entry)
                    for item in entry:
                        del self._inflight[item.seq]
                        given_up.append((item, reason))
                else:
                    retry.append(entry)
            self._changed.notify_all()
        # Logged after the lock is released: an orchestrator may forward its log
        # records to the plugin's own hooks, which take that lock.
        for item, reason in given_up:
            _log_failed(item, reason)
        return retry, failing

    def _settle_failed(self, item: Pending, exc: Exception) -> None:
        reason = _describe(exc)
        with self._lock:
            self._counts["failed"] += 1
            self._inflight.pop(item.seq, None)
            self._last_error, self._last_error_code = reason, error_code(exc)
            self._changed.notify_all()
        _log_failed(item, reason)

    def _note_outage(self, exc: Exception, failures: int) -> None:
        reason = _describe(exc)
        with self._lock:
            self._last_error, self._last_error_code = reason, error_code(exc)
            queued = len(self._buffer) + len(self._inflight)
        self._outage_log.warning(
            "event bus %s unreachable (attempt %d, %d events waiting), retrying: %s",
            self.event_bus_name,
            failures,
            queued,
            reason,
        )

    def _backoff(self, failures: int) -> None:
        """Full jitter: a uniform wait below an exponentially growing ceiling (AWS's advice)."""
        options = self.options
        delay = backoff.delay(failures, base=options.backoff_base, cap=options.backoff_max, rng=self._rng)
        with self._lock:
            self._changed.wait_for(self._aborting, delay)

    def _advance(self, state: SenderState) -> None:
        """Move on to ``state`` unless already past it, and wake every waiter. Lock held."""
        if state.value > self._state.value:
            self._state = state
            self._changed.notify_all()

    def _has_work(self) -> bool:
        """Something to send, or ``close()`` was called (the thread then drains and exits). Lock held."""
        return bool(self._buffer) or self._state is not SenderState.RUNNING

    def _aborting(self) -> bool:
        """Whether the thread must stop retrying and exit (the close deadline passed, or it exited)."""
        return self._state in (SenderState.ABORTING, SenderState.CLOSED)

    def _low_water(self) -> int:
        """The oldest unsettled seq (next_seq + 1 when everything is settled). Lock held."""
        if self._inflight:
            return min(self._inflight)
        first = self._buffer.first_seq()
        return first if first is not None else self._next_seq + 1

    def _buffer_is_empty(self) -> bool:
        with self._lock:
            return not self._buffer


def _log_failed(item: Pending, reason: str) -> None:
    log.warning(
        "event %s (%s, deployment %s) rejected by EventBridge after %d attempts, not retried: %s",
        item.envelope.event_id,
        item.envelope.type,
        item.envelope.deployment_id,
        max(item.attempts, 1),
        reason,
    )


def error_code(exc: Exception) -> str:
    """The AWS error code of a ``ClientError``, else the exception's class name."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__


def _is_poison_request(exc: Exception) -> bool:
    return isinstance(exc, ParamValidationError) or error_code(exc) in POISON_REQUEST_CODES


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


#: Senders not closed yet; closed at interpreter exit so queued events are not lost silently.
_LIVE: weakref.WeakSet[Sender] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    senders = list(_LIVE)
    deadline = time.monotonic() + max((s.options.close_timeout for s in senders), default=0.0)
    for sender in senders:
        sender.close(max(deadline - time.monotonic(), 0.0))
