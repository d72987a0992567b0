"""Posting to connections through API Gateway's @connections Management API.

Retries are botocore's standard mode: exponential backoff with full jitter on
throttling (429, base 1 s) and 5xx (base 50 ms), bounded by botocore's retry
quota so a failing endpoint cannot cause a retry storm. A 410 Gone is never
retried: the connection is dead and the caller cleans it up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from handlers.log import get_logger

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi.client import ApiGatewayManagementApiClient

log = get_logger("management")


class PostOutcome(Enum):
    """What happened to one post."""

    DELIVERED = "delivered"
    GONE = "gone"
    FAILED = "failed"


@dataclass
class FanOutResult:
    """Totals of one fan-out."""

    delivered: int = 0
    gone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    retries: int = 0

    @property
    def attempted(self) -> int:
        """Connections a post was attempted to."""
        return self.delivered + len(self.gone) + len(self.failed)


def make_client(
    endpoint: str, region: str, pool_size: int, max_attempts: int
) -> ApiGatewayManagementApiClient:
    """A Management API client whose HTTP pool matches the fan-out concurrency."""
    config = BotoConfig(
        max_pool_connections=pool_size,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=3,
        read_timeout=10,
        tcp_keepalive=True,
    )
    return boto3.session.Session().client(
        "apigatewaymanagementapi", endpoint_url=endpoint, region_name=region, config=config
    )


class ManagementApi:
    """Sends messages to connections, one at a time or fanned out over a bounded pool."""

    def __init__(self, client: ApiGatewayManagementApiClient, concurrency: int) -> None:
        self._client = client
        self._concurrency = concurrency
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def post(self, connection_id: str, data: bytes) -> tuple[PostOutcome, int]:
        """Post one message; returns the outcome and how many retries it took."""
        try:
            reply = self._client.post_to_connection(ConnectionId=connection_id, Data=data)
        except ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            retries = int(meta.get("RetryAttempts", 0))
            if meta.get("HTTPStatusCode") == 410:
                return PostOutcome.GONE, retries
            log.warning(
                "post failed",
                extra={
                    "connection_id": connection_id,
                    "status": meta.get("HTTPStatusCode"),
                    "error_code": exc.response.get("Error", {}).get("Code"),
                    "retries": retries,
                },
            )
            return PostOutcome.FAILED, retries
        except BotoCoreError as exc:  # connection refused, timeouts after botocore's own retries
            log.warning("post failed", extra={"connection_id": connection_id, "error": type(exc).__name__})
            return PostOutcome.FAILED, 0
        return PostOutcome.DELIVERED, int(reply.get("ResponseMetadata", {}).get("RetryAttempts", 0))

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                # One pool per container, reused across invocations: threads are
                # cheap to keep and costly to start on every event.
                self._executor = ThreadPoolExecutor(self._concurrency, thread_name_prefix="fanout")
            return self._executor

    def fan_out(
        self,
        connection_ids: Iterable[str],
        data: bytes,
        on_gone: Callable[[str], None] | None = None,
    ) -> FanOutResult:
        """Post ``data`` to every connection, at most ``concurrency`` posts in flight.

        ``connection_ids`` is consumed lazily, so the first posts start while
        later pages of subscribers are still being read. ``on_gone`` runs (in
        the worker) for each connection that answered 410, and the fan-out
        carries on with the others.
        """
        result = FanOutResult()
        in_flight = threading.BoundedSemaphore(self._concurrency * 2)
        results_lock = threading.Lock()
        pool = self._pool()

        def post_one(connection_id: str) -> None:
            try:
                outcome, retries = self.post(connection_id, data)
                if outcome is PostOutcome.GONE and on_gone is not None:
                    try:
                        on_gone(connection_id)
                    except Exception:
                        log.exception(
                            "cleanup of a gone connection failed", extra={"connection_id": connection_id}
                        )
                with results_lock:
                    result.retries += retries
                    if outcome is PostOutcome.DELIVERED:
                        result.delivered += 1
                    elif outcome is PostOutcome.GONE:
                        result.gone.append(connection_id)
                    else:
                        result.failed.append(connection_id)
            finally:
                in_flight.release()

        futures: list[Future[None]] = []
        for connection_id in connection_ids:
            in_flight.acquire()
            futures.append(pool.submit(post_one, connection_id))
        for future in futures:
            future.result()
        return result
