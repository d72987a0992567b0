"""Publishes sequenced events to the AppSync GraphQL API, for GraphQL subscribers.

After the broadcaster has stored a deployment's batch, it hands the
:class:`~contract.events.SequencedEvent` list to :meth:`AppSyncPublisher.publish`:
every event becomes one ``publishDeploymentEvent`` mutation (same ``seq`` as on
the WebSocket API) and every ``deployment.status`` one ``publishDeploymentUpdate``
too; AppSync fans them out to its subscribers itself.

Publishing is best effort by design: the history table already holds every
event and GraphQL clients fill any gap with the ``deploymentEvents`` query, so a
failed publish is retried with backoff, then logged and dropped. It never raises
into the broadcaster, whose WebSocket delivery must not depend on AppSync.

Requests are IAM (SigV4, service ``appsync``) signed with the function's
botocore credentials and sent over one keep-alive urllib3 pool. Only the standard
library is imported at module level: botocore loads with the first publish.
"""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contract import backoff
from contract.log import get_logger

if TYPE_CHECKING:
    from botocore.credentials import Credentials
    from botocore.httpsession import URLLib3Session

    from contract.events import SequencedEvent
    from server.config import Config

log = get_logger("appsync")

#: Every field of the returned type is selected, because subscribers can only
#: receive the fields the publishing mutation selected.
PUBLISH_EVENT = """mutation PublishDeploymentEvent($deployment_id: ID!, $seq: Int!, $type: String!,
  $event_id: String, $timestamp: String, $data: AWSJSON!, $project: String) {
  publishDeploymentEvent(deployment_id: $deployment_id, seq: $seq, type: $type, event_id: $event_id,
    timestamp: $timestamp, data: $data, project: $project) {
    deployment_id seq type event_id timestamp data project
  }
}"""

PUBLISH_UPDATE = """mutation PublishDeploymentUpdate($deployment_id: ID!, $status: String!,
  $current_layer: Int, $total_layers: Int, $updated_at: String!, $project: String) {
  publishDeploymentUpdate(deployment_id: $deployment_id, status: $status, current_layer: $current_layer,
    total_layers: $total_layers, updated_at: $updated_at, project: $project) {
    deployment_id status current_layer total_layers updated_at project
  }
}"""

#: AppSync error types worth another attempt (the rest would fail the same way again).
_RETRYABLE_ERROR_TYPES = ("Throttl", "Timeout", "InternalFailure", "ServiceUnavailable", "LimitExceeded")


@dataclass(frozen=True)
class PublishRequest:
    """One mutation to send: what it is about (for logs) and its GraphQL body."""

    deployment_id: str
    seq: int
    field: str
    body: bytes


class PublishError(Exception):
    """A publish failed.

    ``retryable``: another attempt may succeed. ``batch_wide``: the cause is not
    this event (the API is unreachable, the signature is refused), so the rest of
    the batch would fail the same way.
    """

    def __init__(self, message: str, *, retryable: bool, batch_wide: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.batch_wide = batch_wide


def requests_for(events: Sequence[SequencedEvent]) -> list[PublishRequest]:
    """The mutations for a batch, in ``seq`` order: each event, then its status update if any."""
    out: list[PublishRequest] = []
    for sequenced in events:
        event = sequenced.event
        try:
            # The stored wire message, so GraphQL subscribers get byte-for-byte what the history
            # (and the deploymentEvents query) holds, oversize markers included.
            data = json.loads(sequenced.message).get("data", event.data)
        except (ValueError, AttributeError):
            data = event.data
        variables = {
            "deployment_id": event.deployment_id,
            "seq": sequenced.seq,
            "type": event.type,
            "event_id": event.event_id,
            "timestamp": event.timestamp,
            "data": json.dumps(data, separators=(",", ":")),
            # What AppSync's subscription filters admit a subscriber by (its groups' grants).
            "project": event.project,
        }
        out.append(
            _request(event.deployment_id, sequenced.seq, "publishDeploymentEvent", PUBLISH_EVENT, variables)
        )
        if event.type == "deployment.status" and isinstance(data, Mapping):
            update = _update_variables(event.deployment_id, event.timestamp, data)
            if update is not None:
                update["project"] = event.project
                out.append(
                    _request(
                        event.deployment_id, sequenced.seq, "publishDeploymentUpdate", PUBLISH_UPDATE, update
                    )
                )
    return out


def _update_variables(deployment_id: str, timestamp: str, data: Mapping[str, Any]) -> dict[str, Any] | None:
    status = data.get("status")
    if not isinstance(status, str) or not status:
        return None

    def layer(name: str) -> int | None:
        value = data.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return {
        "deployment_id": deployment_id,
        "status": status,
        "current_layer": layer("current_layer"),
        "total_layers": layer("total_layers"),
        "updated_at": timestamp,
    }


def _request(
    deployment_id: str, seq: int, field: str, query: str, variables: dict[str, Any]
) -> PublishRequest:
    body = json.dumps({"query": query, "variables": variables}, separators=(",", ":")).encode()
    return PublishRequest(deployment_id, seq, field, body)


class AppSyncPublisher:
    """Sends the publish mutations of sequenced events to one AppSync API, IAM-signed."""

    def __init__(
        self,
        url: str,
        region: str,
        *,
        credentials: Credentials | None = None,
        max_attempts: int = 4,
        timeout_seconds: int = 5,
        backoff_seconds: float = 0.05,
        max_backoff_seconds: float = 1.0,
        concurrency: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Create a publisher; nothing is imported or connected until the first publish.

        Args:
            url: The API's GraphQL endpoint (``graphql_url``).
            region: The API's region, part of the SigV4 scope.
            credentials: botocore credentials; the default chain (the function's role) when omitted.
            max_attempts: Attempts per mutation before it is logged and dropped.
            timeout_seconds: Connect and read timeout of each request.
            backoff_seconds: First retry delay; doubles per attempt, with full jitter.
            max_backoff_seconds: Ceiling of a retry delay.
            concurrency: Event mutations of a batch in flight at once.
            sleep: How to wait between attempts (tests pass a fake).
        """
        self.url = url
        self.region = region
        self.max_attempts = max(1, max_attempts)
        self.timeout_seconds = timeout_seconds
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.concurrency = max(1, concurrency)
        self._credentials = credentials
        self._sleep = sleep
        self._http: URLLib3Session | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.published = 0
        """Mutations AppSync accepted (observable, for tests and metrics)."""
        self.dropped = 0
        """Mutations given up on after their retries."""

    def publish(self, events: Sequence[SequencedEvent]) -> None:
        """Publish a stored batch; never raises.

        The event mutations go up to :attr:`concurrency` at a time: one at a time,
        a container published about 66 events a second at 15 ms a mutation, far
        behind a busy deployment, and its invocations waited seconds for it
        (GraphQL clients order by ``seq`` whatever order mutations land in). The
        first goes alone, so an AppSync that is down or refuses the signature costs
        one mutation's retries per batch, not one per mutation in flight. Status
        updates follow, one at a time in order: nothing else orders two updates.

        A mutation that keeps failing is dropped after ``max_attempts``; when the
        failure is not specific to one event (the API is unreachable, the
        signature is refused), the rest of the batch is dropped too, so a broken
        AppSync costs the broadcaster one retry budget per batch, not one per event.
        """
        try:
            pending = requests_for(events)
        except Exception:  # a malformed event must not reach the broadcaster
            log.exception("appsync publish skipped: could not build the mutations")
            return
        singles = [request for request in pending if request.field == "publishDeploymentEvent"]
        updates = [request for request in pending if request.field != "publishDeploymentEvent"]
        waves = [singles[:1]] if singles else []
        waves += [singles[i : i + self.concurrency] for i in range(1, len(singles), self.concurrency)]
        waves += [[update] for update in updates]
        for index, wave in enumerate(waves):
            stop = False
            for request, failure in zip(wave, self._send_wave(wave), strict=True):
                if failure is None:
                    continue
                self.dropped += 1
                fields = {"deployment_id": request.deployment_id, "seq": request.seq, "field": request.field}
                if not isinstance(failure, PublishError):  # never into the broadcaster, whatever happens
                    log.error("appsync publish failed", exc_info=failure, extra=fields)
                    stop = True
                elif failure.batch_wide:
                    log.error("appsync publish gave up", extra={**fields, "error": str(failure)})
                    stop = True
                else:
                    log.error("appsync publish refused", extra={**fields, "error": str(failure)})
            if stop:
                rest = sum(len(later) for later in waves[index + 1 :])
                self.dropped += rest
                if rest:
                    log.error("appsync publish skipped the rest of the batch", extra={"skipped": rest})
                return

    def _send_wave(self, wave: list[PublishRequest]) -> list[BaseException | None]:
        """Send ``wave`` (at most :attr:`concurrency` mutations) at once; each one's failure or None."""
        if len(wave) == 1:
            return [self._attempt(wave[0])]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="appsync-mutation")
            pool = self._pool
        futures = [pool.submit(self._attempt, request) for request in wave]
        return [future.result() for future in futures]

    def _attempt(self, request: PublishRequest) -> BaseException | None:
        try:
            self._send_with_retries(request)
        except Exception as exc:  # noqa: BLE001 - reported by publish(), which never raises
            return exc
        return None

    def _send_with_retries(self, request: PublishRequest) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                self._send(request)
            except PublishError as exc:
                if not exc.retryable or attempt == self.max_attempts:
                    raise
                self._sleep(backoff.delay(attempt, base=self.backoff_seconds, cap=self.max_backoff_seconds))
            else:
                with self._lock:  # mutations of a wave finish on several threads
                    self.published += 1
                return

    def _send(self, request: PublishRequest) -> None:
        from botocore.auth import SigV4Auth  # noqa: PLC0415 - loaded with the first publish
        from botocore.awsrequest import AWSRequest  # noqa: PLC0415
        from botocore.exceptions import BotoCoreError  # noqa: PLC0415

        aws_request = AWSRequest(
            method="POST",
            url=self.url,
            data=request.body,
            headers={"content-type": "application/json", "accept": "application/json"},
        )
        try:
            http, credentials = self._clients()
            SigV4Auth(credentials, "appsync", self.region).add_auth(aws_request)
            reply = http.send(aws_request.prepare())
        except BotoCoreError as exc:  # connection refused, timeouts, expired credentials
            raise PublishError(
                f"request failed: {type(exc).__name__}", retryable=True, batch_wide=True
            ) from None
        status = reply.status_code
        if status == 429 or status >= 500:
            raise PublishError(f"HTTP {status}", retryable=True, batch_wide=True)
        if status >= 400:
            # 401/403: the signature or the role is refused, for every event alike.
            raise PublishError(
                f"HTTP {status}: {_error_types(reply.content)}",
                retryable=False,
                batch_wide=status in (401, 403),
            )
        error_types = _error_types(reply.content)
        if error_types:
            retryable = any(marker in error_types for marker in _RETRYABLE_ERROR_TYPES)
            raise PublishError(f"GraphQL errors: {error_types}", retryable=retryable, batch_wide=retryable)

    def _clients(self) -> tuple[URLLib3Session, Credentials]:
        with self._lock:
            if self._http is None:
                import botocore.session  # noqa: PLC0415 - loaded with the first publish
                from botocore.httpsession import URLLib3Session  # noqa: PLC0415

                if self._credentials is None:
                    self._credentials = botocore.session.get_session().get_credentials()
                # botocore's session passes no socket options, which drops urllib3's default
                # TCP_NODELAY: each small POST then waits ~40 ms on Nagle + delayed ACK.
                self._http = URLLib3Session(
                    timeout=self.timeout_seconds,
                    max_pool_connections=self.concurrency,
                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],  # type: ignore[list-item]  # stubs say str
                )
            if self._credentials is None:
                from botocore.exceptions import NoCredentialsError  # noqa: PLC0415

                raise NoCredentialsError()
            return self._http, self._credentials


def _error_types(content: bytes) -> str:
    """The ``errorType``s of a GraphQL reply, comma-separated ('' when it has no errors)."""
    try:
        reply = json.loads(content or b"{}")
    except ValueError:
        return "unreadable reply"
    errors = reply.get("errors") if isinstance(reply, dict) else None
    if not errors:
        return ""
    return ",".join(
        str(error.get("errorType") or "GraphQLError") if isinstance(error, dict) else "GraphQLError"
        for error in errors
    )


@functools.lru_cache(maxsize=4)
def _publisher(url: str, region: str) -> AppSyncPublisher:
    return AppSyncPublisher(url, region)


def publisher_for(config: Config) -> AppSyncPublisher | None:
    """The container's publisher for ``config.appsync_graphql_url``; None when AppSync is off.

    One instance per endpoint and container, so its connection pool outlives invocations.
    """
    if not config.appsync_graphql_url:
        return None
    return _publisher(config.appsync_graphql_url, config.region)
