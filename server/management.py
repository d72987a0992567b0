"""Posting to connections through API Gateway's @connections Management API.

What each answer means:

- 2xx: delivered.
- 410 Gone: the connection is dead. Never retried; a fan-out hands it to the
  caller's ``on_gone`` (which deletes it) and carries on with the others.
- 429, 5xx, and connection errors or timeouts: retried with exponential backoff
  and full jitter, at most ``max_attempts`` attempts in all, then failed.
- Any other 4xx (400, 403, 413): failed at once, as retrying cannot change it.

Every failure is logged as one structured line (connection id, status, error
type, retries), never with the message body or credentials.

A fan-out keeps up to ``concurrency`` connections' posts in flight from the
calling thread: requests are written on kept-alive connections and their
replies read as they become readable (a selector), so there is no thread per
post and no lock per result. Posting threads cost more CPU than the posts
themselves here (about 75 µs more per post with 32 of them), and a Lambda
function is billed for that CPU: ``bench/bench_poster.py`` measures about
0.13 ms per post this way against 0.6-1 ms with boto3's ``post_to_connection``.
The price of one thread: opening a replacement connection, or the rest of a
reply that has started to arrive, blocks the others for at most
``connect_timeout``.
"""

from __future__ import annotations

import contextvars
import heapq
import random
import selectors
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

from contract import backoff
from contract.log import get_logger
from server.poster import (
    STALE_CONNECTION_ERRORS,
    TRANSPORT_ERRORS,
    Connection,
    ConnectionPath,
    CredentialSource,
    Endpoint,
    Poster,
    Reply,
    Signer,
    default_credentials,
)

log = get_logger("management")

_SWEEP_SECONDS = 0.25
"""How often a fan-out looks for replies past their deadline."""


class PostOutcome(Enum):
    """What happened to one post."""

    DELIVERED = "delivered"
    GONE = "gone"
    FAILED = "failed"


@dataclass
class FanOutResult:
    """Totals of one fan-out."""

    delivered: int = 0
    """Connections that received every frame."""
    gone: list[str] = field(default_factory=list)
    """Connections that answered 410 Gone."""
    failed: list[str] = field(default_factory=list)
    """Connections with a frame still failing after retries (not 410)."""
    retries: int = 0
    """Posts that were retries of an earlier attempt."""
    posts: int = 0
    """HTTP posts made, retries included."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    The n-th retry waits a uniformly random time in ``[0, min(cap, base * 2**(n-1))]``:
    spreading retries at random keeps many failing posts from coming back all
    at once, which matters most when API Gateway is throttling the account.
    """

    max_attempts: int = 4
    """Attempts per post in all, the first one included."""
    base_seconds: float = 0.05
    """Backoff base after a 5xx or a connection error."""
    throttled_base_seconds: float = 0.1
    """Backoff base after a 429: the account's token bucket refills at its own pace."""
    cap_seconds: float = 2.0
    """No retry waits longer than this."""

    def delay(self, retry: int, throttled: bool, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        base = self.throttled_base_seconds if throttled else self.base_seconds
        return backoff.delay(retry, base=base, cap=self.cap_seconds, rng=rng)


def _judge(reply: Reply) -> tuple[PostOutcome, bool]:
    """(outcome, retryable) for an HTTP answer; a retryable FAILED may be retried."""
    status = reply.status
    if 200 <= status < 300:
        return PostOutcome.DELIVERED, False
    if status == 410:
        return PostOutcome.GONE, False
    return PostOutcome.FAILED, status == 429 or status >= 500


def _log_failure(connection_id: str, retries: int, reply: Reply | None, error: Exception | None) -> None:
    fields: dict[str, object] = {"connection_id": connection_id, "retries": retries}
    if reply is not None:
        fields["status"] = reply.status
        fields["error_type"] = reply.error_type
    if error is not None:
        fields["error"] = type(error).__name__
    log.warning("post failed", extra=fields)


@dataclass(eq=False)
class _Delivery:
    """One connection's frames in a fan-out: which frame is next, and on what connection."""

    connection_id: str
    path: ConnectionPath
    conn: Connection
    frame: int = 0
    attempt: int = 1
    """Attempt number of the current frame."""
    retries: int = 0
    reused: bool = False
    """The connection had served a request before the one in flight."""
    resent_stale: bool = False
    """The current frame was already resent once because a kept-alive connection was found closed."""
    deadline: float = 0.0
    last_reply: Reply | None = None
    last_error: Exception | None = None


class ManagementApi:
    """Sends messages to connections, one at a time or fanned out to many at once."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        *,
        concurrency: int,
        retry: RetryPolicy | None = None,
        credentials: CredentialSource | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
    ) -> None:
        """Set up the API; connections open with the first posts.

        Args:
            endpoint: the @connections endpoint with its stage path,
                ``https://{api}.execute-api.{region}.amazonaws.com/{stage}``.
            region: the API's region (part of the signature).
            concurrency: connections a fan-out posts to at the same time.
            retry: how failing posts are retried (defaults to :class:`RetryPolicy`).
            credentials: what signs the posts; botocore's resolved credentials by default.
            connect_timeout: seconds to open a connection (and for any one blocking read or write).
            read_timeout: seconds to wait for a reply before the post counts as failed (and is retried).

        Raises:
            ValueError: ``endpoint`` is not an http(s) URL, or ``concurrency`` is below 1.
            MissingCredentialsError: no credentials were given and botocore finds none.
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._concurrency = concurrency
        self._retry = retry or RetryPolicy()
        self._read_timeout = read_timeout
        signer = Signer(credentials if credentials is not None else default_credentials(), region)
        self._poster = Poster(
            Endpoint.parse(endpoint), signer, timeout=connect_timeout, max_idle=max(concurrency, 8)
        )
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._cleanup: ThreadPoolExecutor | None = None

    def close(self) -> None:
        """Close the kept-alive connections (they reopen on the next post)."""
        self._poster.close()

    # -- one post ----------------------------------------------------------------------------------

    def post(self, connection_id: str, data: bytes) -> tuple[PostOutcome, int]:
        """Post one message, retrying as the module describes; thread-safe.

        Returns:
            The outcome and how many retries it took.
        """
        poster = self._poster
        path = poster.endpoint.path_for(connection_id)
        conn = poster.take()
        retries = 0
        resent_stale = False
        try:
            while True:
                reused = conn.sock is not None
                reply: Reply | None = None
                error: Exception | None = None
                try:
                    poster.send(conn, path, data)
                    reply = poster.receive(conn, self._read_timeout)
                except TRANSPORT_ERRORS as exc:
                    conn.close()
                    if reused and not resent_stale and isinstance(exc, STALE_CONNECTION_ERRORS):
                        resent_stale = True
                        continue
                    error = exc
                if reply is not None:
                    outcome, retryable = _judge(reply)
                else:
                    outcome, retryable = PostOutcome.FAILED, True
                if outcome is not PostOutcome.FAILED:
                    return outcome, retries
                if not retryable or retries + 1 >= self._retry.max_attempts:
                    _log_failure(connection_id, retries, reply, error)
                    return outcome, retries
                retries += 1
                resent_stale = False
                throttled = reply is not None and reply.status == 429
                time.sleep(self._retry.delay(retries, throttled, self._rng))
        finally:
            poster.give(conn)

    # -- fan-out -----------------------------------------------------------------------------------

    def fan_out(
        self,
        connection_ids: Iterable[str],
        frames: Sequence[bytes],
        on_gone: Callable[[str], None] | None = None,
    ) -> FanOutResult:
        """Post every frame to every connection.

        One connection's frames go in order, each after the previous one was
        delivered; the first frame that fails (after its retries) or answers
        410 ends that connection's share. Up to ``concurrency`` connections are
        served at the same time.

        Args:
            connection_ids: consumed lazily, one more each time a connection is
                done, so the first posts go out while later pages of subscribers
                are still being read.
            frames: the frames every connection receives, in order. With no
                frames nothing is posted and ``connection_ids`` is not read.
            on_gone: called with each connection that answered 410 (on a helper
                thread, so a slow cleanup does not hold posts back); the fan-out
                waits for every call before it returns, and logs a call that raises.

        Returns:
            The totals; ``delivered + len(gone) + len(failed)`` is the number of connections read.
        """
        lone: object = frames
        if isinstance(lone, bytes | bytearray):
            # A lone frame is a sequence of ints: posting its bytes one by one is never meant.
            frames = (bytes(lone),)
        result = FanOutResult()
        if not frames:
            return result
        run = _PostingLoop(
            self._poster,
            self._retry,
            self._rng,
            self._concurrency,
            self._read_timeout,
            self._cleanup_pool,
            iter(connection_ids),
            frames,
            on_gone,
            result,
        )
        try:
            run.run()
        finally:
            run.finish()
        return result

    def _cleanup_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._cleanup is None:
                # Kept per container: threads are cheap to keep and costly to start per event.
                self._cleanup = ThreadPoolExecutor(4, thread_name_prefix="gone-cleanup")
            return self._cleanup


class _PostingLoop:
    """One fan-out's posts, multiplexed on the calling thread by a selector loop.

    It admits connection ids up to the concurrency, writes each one's frames on
    kept-alive connections, reads replies as they become readable, and schedules
    retries; its state is driven by one thread, so no locks are needed. (Not to be
    confused with ``server.fanout.FanOut``, the broadcaster's fan-out of an event.)
    """

    def __init__(
        self,
        poster: Poster,
        retry: RetryPolicy,
        rng: random.Random,
        concurrency: int,
        read_timeout: float,
        cleanup_pool: Callable[[], ThreadPoolExecutor],
        ids: Iterator[str],
        frames: Sequence[bytes],
        on_gone: Callable[[str], None] | None,
        result: FanOutResult,
    ) -> None:
        self._poster = poster
        self._retry = retry
        self._rng = rng
        self._concurrency = concurrency
        self._read_timeout = read_timeout
        self._cleanup_pool = cleanup_pool
        self._ids: Iterator[str] | None = ids
        self._frames = frames
        self._on_gone = on_gone
        self.result = result
        self._selector = selectors.DefaultSelector()
        self._in_flight: set[_Delivery] = set()
        self._waiting: list[tuple[float, int, _Delivery]] = []
        """Deliveries backing off before a retry: (due, tie-breaker, delivery), a heap."""
        self._spare: list[Connection] = []
        """Connections of finished deliveries, for the next ones."""
        self._active = 0
        self._ticket = 0
        self._cleanups: list[Future[None]] = []

    def run(self) -> None:
        """Post until every connection is done."""
        limit = self._concurrency
        next_sweep = time.monotonic() + _SWEEP_SECONDS
        while True:
            if self._ids is not None and self._active < limit:
                self._start_all(self._admit())
            if not self._active:
                if self._ids is None:
                    return
                continue  # every admitted connection finished at once (failed to open, say)
            now = time.monotonic()
            timeout = next_sweep - now
            if self._waiting:
                timeout = min(timeout, self._waiting[0][0] - now)
            if self._in_flight:
                for key, _ in self._selector.select(max(timeout, 0.0)):
                    self._on_readable(key.data)
            else:  # only backoffs pending: nothing to watch but the clock
                time.sleep(max(timeout, 0.0))
            now = time.monotonic()
            while self._waiting and self._waiting[0][0] <= now:
                _, _, delivery = heapq.heappop(self._waiting)
                self._start(delivery)
            if now >= next_sweep:
                next_sweep = now + _SWEEP_SECONDS
                for delivery in [d for d in self._in_flight if d.deadline <= now]:
                    self._unwatch(delivery)
                    self._attempt_failed(delivery, TimeoutError("no reply before the read timeout"))

    def finish(self) -> None:
        """Hand connections back, close those with a reply never read, wait for the cleanups."""
        for delivery in list(self._in_flight):
            self._unwatch(delivery)
            delivery.conn.close()
        for _, _, delivery in self._waiting:
            self._spare.append(delivery.conn)
        self._waiting.clear()
        for conn in self._spare:
            self._poster.give(conn)
        self._spare.clear()
        self._selector.close()
        for future in self._cleanups:
            future.result()  # exceptions were already logged by the cleanup itself

    # -- admitting connections ---------------------------------------------------------------------

    def _admit(self) -> list[_Delivery]:
        """Read connection ids while there is room; each gets a connection."""
        admitted: list[_Delivery] = []
        limit = self._concurrency
        while self._ids is not None and self._active < limit:
            connection_id = next(self._ids, None)
            if connection_id is None:
                self._ids = None
                break
            conn = self._spare.pop() if self._spare else self._poster.take()
            path = self._poster.endpoint.path_for(connection_id)
            admitted.append(_Delivery(connection_id, path, conn))
            self._active += 1
        return admitted

    def _start_all(self, deliveries: list[_Delivery]) -> None:
        errors = self._poster.open_all(d.conn for d in deliveries)
        for delivery in deliveries:
            error = errors.get(id(delivery.conn))
            if error is None:
                self._start(delivery)
            else:
                self.result.posts += 1
                self._attempt_failed(delivery, error)

    # -- one attempt -------------------------------------------------------------------------------

    def _start(self, delivery: _Delivery) -> None:
        """Write the current frame's request and watch for its reply."""
        conn = delivery.conn
        delivery.reused = conn.sock is not None
        self.result.posts += 1
        try:
            self._poster.send(conn, delivery.path, self._frames[delivery.frame])
        except TRANSPORT_ERRORS as exc:
            self._attempt_failed(delivery, exc)
            return
        sock = conn.sock
        if sock is None:  # cannot happen after a successful send; keeps the types honest
            self._attempt_failed(delivery, ConnectionError("connection closed after sending"))
            return
        delivery.deadline = time.monotonic() + self._read_timeout
        self._selector.register(sock, selectors.EVENT_READ, delivery)
        self._in_flight.add(delivery)

    def _unwatch(self, delivery: _Delivery) -> None:
        self._in_flight.discard(delivery)
        sock = delivery.conn.sock
        if sock is not None:
            self._selector.unregister(sock)

    def _on_readable(self, delivery: _Delivery) -> None:
        self._unwatch(delivery)
        try:
            # Readable means the reply has started to arrive; the rest follows at
            # once (a blocking read, bounded by the connection's timeout).
            reply = self._poster.receive(delivery.conn)
        except TRANSPORT_ERRORS as exc:
            self._attempt_failed(delivery, exc)
            return
        outcome, retryable = _judge(reply)
        if outcome is PostOutcome.DELIVERED:
            delivery.frame += 1
            delivery.attempt = 1
            delivery.resent_stale = False
            if delivery.frame < len(self._frames):
                self._start(delivery)
            else:
                self._done(delivery, PostOutcome.DELIVERED)
        elif outcome is PostOutcome.GONE:
            self._done(delivery, PostOutcome.GONE)
        else:
            delivery.last_reply, delivery.last_error = reply, None
            self._retry_or_fail(delivery, retryable, throttled=reply.status == 429)

    def _attempt_failed(self, delivery: _Delivery, error: Exception) -> None:
        """The request or its reply failed short of an HTTP answer: the connection is unusable."""
        delivery.conn.close()
        if delivery.reused and not delivery.resent_stale and isinstance(error, STALE_CONNECTION_ERRORS):
            # The server had closed this kept-alive connection before our request
            # (an idle timeout): it never saw the post, so send it again at once.
            delivery.resent_stale = True
            self._start(delivery)
            return
        delivery.last_reply, delivery.last_error = None, error
        self._retry_or_fail(delivery, retryable=True, throttled=False)

    def _retry_or_fail(self, delivery: _Delivery, retryable: bool, throttled: bool) -> None:
        if not retryable or delivery.attempt >= self._retry.max_attempts:
            _log_failure(delivery.connection_id, delivery.retries, delivery.last_reply, delivery.last_error)
            self._done(delivery, PostOutcome.FAILED)
            return
        delivery.retries += 1
        delivery.resent_stale = False
        delay = self._retry.delay(delivery.attempt, throttled, self._rng)
        delivery.attempt += 1
        self._ticket += 1
        heapq.heappush(self._waiting, (time.monotonic() + delay, self._ticket, delivery))

    def _done(self, delivery: _Delivery, outcome: PostOutcome) -> None:
        result = self.result
        result.retries += delivery.retries
        if outcome is PostOutcome.DELIVERED:
            result.delivered += 1
        elif outcome is PostOutcome.GONE:
            result.gone.append(delivery.connection_id)
            if self._on_gone is not None:
                pool = self._cleanup_pool()
                # In the invocation's context: the cleanup's log lines name the invocation too.
                run = contextvars.copy_context().run
                self._cleanups.append(pool.submit(run, _clean_up, self._on_gone, delivery.connection_id))
        else:
            result.failed.append(delivery.connection_id)
        self._spare.append(delivery.conn)
        self._active -= 1


def _clean_up(on_gone: Callable[[str], None], connection_id: str) -> None:
    try:
        on_gone(connection_id)
    except Exception:
        log.exception("cleanup of a gone connection failed", extra={"connection_id": connection_id})
