"""The token sweeper: a connection lives no longer than its token (docs/protocol.md, "Token lifetime").

An EventBridge schedule runs it every minute in the cloud; ``cloud-ws local``
runs it every few seconds. Each run

1. reads the connections whose token expires before the next run is due, from
   the connections table's sparse by-expiry index (one Query per minute of
   ``lookback`` + the horizon, never a Scan): a few reads per run, however
   many connections are open;
2. closes each one through the @connections API (``DELETE``) a few seconds
   after requests on it are first refused (its token's ``exp`` plus the
   verifier's leeway, plus ``CLOSE_GRACE_SECONDS``), waiting inside the
   invocation for the ones not due yet: a schedule fires once a minute and not
   to the second, and the contract is "closed no later than 60 s after
   ``exp``". API Gateway then runs ``$disconnect``, which deletes the rows;
3. deletes the rows (and subscriptions) of a connection that answers 410 Gone:
   API Gateway forgot it already and no ``$disconnect`` will come.

A close that fails otherwise (429, 5xx, a timeout) leaves the row in the
index: the next run, which reads the past ``lookback`` minutes again, retries it.
Requests on such a connection meanwhile are answered ``token_expired``
(``server.messages``) and the broadcaster posts nothing to it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError

from contract import spec
from contract.log import get_logger, invocation
from server.runtime import Runtime, get_runtime

log = get_logger("sweeper")

#: Closes in flight at once: a run that finds thousands of connections due together
#: (tokens minted in one burst) still closes them in seconds.
CLOSE_CONCURRENCY = 16
#: A run stops taking connections this long before its Lambda timeout; the next run takes them.
_DEADLINE_MARGIN_SECONDS = 5.0
#: A connection is closed this long after requests on it are first refused (``exp`` + leeway):
#: a request made just after ``exp`` is answered ``token_expired``, the client's cue to reconnect
#: with a fresh token, rather than racing the close. Well inside the contract's 60 s.
CLOSE_GRACE_SECONDS = 5


class CloseOutcome(Enum):
    """What asking API Gateway to close one connection did."""

    CLOSED = "closed"
    GONE = "gone"
    """410: API Gateway no longer knows it; no ``$disconnect`` will follow."""
    FAILED = "failed"


@dataclass
class SweepResult:
    """Totals of one run."""

    found: int = 0
    """Connections read from the index (due now or before the horizon)."""
    closed: int = 0
    gone: int = 0
    failed: int = 0
    deferred: int = 0
    """Not due before this invocation's deadline: left for the next run."""


class Sweeper:
    """Closes the connections whose token has expired; the clock, the waits and the closes are injected.

    Args:
        store: the connections table (``server.store.Store``).
        close: asks API Gateway to close one connection.
        leeway_seconds: the verifier's clock-skew leeway on ``exp``: requests on a
            connection are refused ``token_expired`` from ``exp + leeway`` on, and it
            is closed ``CLOSE_GRACE_SECONDS`` later.
        clock: epoch seconds.
        sleep: how a run waits for a connection to come due.
    """

    def __init__(
        self,
        store: Any,
        close: Callable[[str], CloseOutcome],
        *,
        leeway_seconds: int,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        concurrency: int = CLOSE_CONCURRENCY,
    ) -> None:
        self._store = store
        self._close = close
        self._leeway = leeway_seconds
        self._clock = clock
        self._sleep = sleep
        self._concurrency = concurrency

    def run(
        self,
        horizon_seconds: float = spec.SWEEP.horizon_seconds,
        lookback_minutes: int = spec.SWEEP.lookback_minutes,
        deadline: float | None = None,
    ) -> SweepResult:
        """One run: close what is due now, and what comes due within ``horizon_seconds``, as it does.

        Args:
            deadline: epoch seconds by which the run must have returned (the
                invocation's timeout); connections due later are left to the next run.
        """
        now = self._clock()
        # Due at exp + leeway + grace: the tokens with an exp up to `until` come due within the horizon.
        until = int(now + horizon_seconds) - self._leeway - CLOSE_GRACE_SECONDS
        first = (int(now) - self._leeway - CLOSE_GRACE_SECONDS) // 60 - lookback_minutes
        found = self._store.expiring_connections(first, until // 60, until)
        result = SweepResult(found=len(found))
        if not found:
            return result
        pending: list[Future[CloseOutcome]] = []
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="sweep") as pool:
            for connection_id, expires_at in found:  # soonest first
                due = expires_at + self._leeway + CLOSE_GRACE_SECONDS
                wait = due - self._clock()
                if (
                    deadline is not None
                    and self._clock() + max(0.0, wait) > deadline - _DEADLINE_MARGIN_SECONDS
                ):
                    result.deferred += 1
                    continue
                if wait > 0:
                    self._sleep(wait)
                pending.append(pool.submit(self._close_one, connection_id))
        for future in pending:
            outcome = future.result()
            if outcome is CloseOutcome.CLOSED:
                result.closed += 1
            elif outcome is CloseOutcome.GONE:
                result.gone += 1
            else:
                result.failed += 1
        return result

    def _close_one(self, connection_id: str) -> CloseOutcome:
        try:
            outcome = self._close(connection_id)
        except Exception:  # one connection's trouble must not stop the run
            log.exception("closing an expired connection failed", extra={"connection_id": connection_id})
            return CloseOutcome.FAILED
        if outcome is CloseOutcome.GONE:
            # API Gateway forgot it without a $disconnect: the rows are ours to delete.
            self._store.delete_connection(connection_id)
        log.info(
            "token expired: connection closed",
            extra={"connection_id": connection_id, "outcome": outcome.value},
        )
        return outcome


# -- the Lambda entry point ---------------------------------------------------------------------------

_lock = threading.Lock()
_clients: dict[str, Any] = {}


def management_client(runtime: Runtime) -> Any:
    """boto3's @connections client for the stack's endpoint, built once per container.

    ``server.management`` is the broadcaster's hot path and only POSTs; a
    sweep closes a handful of connections a minute, which boto3's client
    (signing, retries, the error codes) does plainly.

    Raises:
        RuntimeError: ``MANAGEMENT_ENDPOINT`` is not set (the component and the local stack set it).
    """
    endpoint = runtime.config.management_endpoint
    if not endpoint:
        raise RuntimeError("the sweeper needs MANAGEMENT_ENDPOINT: the @connections endpoint of the stage")
    with _lock:
        made = _clients.get(endpoint)
        if made is None:
            import boto3  # noqa: PLC0415 - imported with the first invocation
            from botocore.config import Config as BotoConfig  # noqa: PLC0415

            session: Any = boto3.session.Session()
            made = session.client(
                "apigatewaymanagementapi",
                endpoint_url=endpoint,
                region_name=runtime.config.region,
                config=BotoConfig(
                    max_pool_connections=CLOSE_CONCURRENCY,
                    retries={"mode": "standard", "total_max_attempts": 3},
                    connect_timeout=3,
                    read_timeout=5,
                ),
            )
            _clients[endpoint] = made
        return made


def closer(client: Any) -> Callable[[str], CloseOutcome]:
    """``DeleteConnection`` through ``client``: closed, gone (410), or failed (logged)."""

    def close(connection_id: str) -> CloseOutcome:
        try:
            client.delete_connection(ConnectionId=connection_id)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code")
            if status == 410 or code == "GoneException":
                return CloseOutcome.GONE
            log.warning(
                "could not close an expired connection",
                extra={"connection_id": connection_id, "status_code": status, "error": code},
            )
            return CloseOutcome.FAILED
        return CloseOutcome.CLOSED

    return close


def _horizon(event: Mapping[str, Any]) -> float:
    """The task's horizon (``{"cloud_ws_sweep": {"horizon_seconds": N}}``), else the cloud's default."""
    task = event.get(spec.SWEEP_TASK_KEY) if isinstance(event, Mapping) else None
    value = task.get("horizon_seconds") if isinstance(task, Mapping) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 600:
        return float(value)
    return float(spec.SWEEP.horizon_seconds)


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry: a scheduled run (EventBridge's event, or the task of ``cloud-ws local``).

    An unexpected error is logged and raised: a scheduled invocation has no
    client to shield, and Lambda's error metric is how an operator hears of it.
    """
    with invocation(event, context):
        runtime = get_runtime()
        sweeper = Sweeper(
            runtime.store,
            closer(management_client(runtime)),
            leeway_seconds=runtime.config.auth.leeway_seconds,
        )
        deadline = None
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            deadline = time.time() + context.get_remaining_time_in_millis() / 1000
        try:
            result = sweeper.run(horizon_seconds=_horizon(event), deadline=deadline)
        except Exception:
            log.exception("sweep failed")
            raise
        if result.found:
            log.info("swept", extra={"route": "sweeper", **vars(result)})
        return dict(vars(result))
