"""Per-container state: configuration, AWS clients and the JWKS cache, created lazily once.

A Lambda container serves many invocations; clients and caches built on the
first one are reused by the next. Creation is locked because the local stack
invokes handlers from several threads, and boto3's session setup is not
thread-safe.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from contract.log import get_logger, invocation
from server.apigw import LambdaResponse, response
from server.config import Config, load_config
from server.management import ManagementApi, RetryPolicy
from server.store import Store

if TYPE_CHECKING:
    from server.cognito import CognitoJwtVerifier

log = get_logger("runtime")


@dataclass
class Runtime:
    """What one container keeps between invocations."""

    config: Config
    store: Store
    _verifier: CognitoJwtVerifier | None = None
    _management: dict[str, ManagementApi] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def verifier(self) -> CognitoJwtVerifier:
        """The JWT verifier (imported on first use: only ``$connect`` needs python-jose)."""
        with self._lock:
            if self._verifier is None:
                from server.cognito import CognitoJwtVerifier  # noqa: PLC0415 - cold start

                self._verifier = CognitoJwtVerifier(self.config.auth)
            return self._verifier

    def management(self, endpoint: str) -> ManagementApi:
        """The Management API for ``endpoint`` (one per endpoint: its kept-alive connections are reused)."""
        with self._lock:
            api = self._management.get(endpoint)
            if api is None:
                cfg = self.config
                api = ManagementApi(
                    endpoint,
                    cfg.region,
                    concurrency=cfg.broadcast_concurrency,
                    retry=RetryPolicy(max_attempts=cfg.post_max_attempts),
                )
                self._management[endpoint] = api
            return api

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` (``lambda``, ``sqs``), built on first use and kept.

        Endpoints come from boto3's own configuration, so ``AWS_ENDPOINT_URL_LAMBDA``
        and friends point them elsewhere (the local stack does) without code here.
        """
        with self._lock:
            made = self._clients.get(service)
            if made is None:
                import boto3  # noqa: PLC0415 - the route handlers never need these clients
                from botocore.config import Config as BotoConfig  # noqa: PLC0415

                config = BotoConfig(
                    max_pool_connections=max(10, self.config.broadcast_concurrency),
                    retries={"mode": "standard", "total_max_attempts": 4},
                    connect_timeout=3,
                    read_timeout=10,
                )
                session: Any = boto3.session.Session()  # typed per service name; ours is a variable
                made = session.client(service, region_name=self.config.region, config=config)
                self._clients[service] = made
            return made

    def invoke_async(self, function: str, payload: Mapping[str, Any]) -> None:
        """Hand ``payload`` to an asynchronous invocation of ``function`` (Lambda queues and retries it).

        Raises:
            RuntimeError: Lambda did not accept the invocation.
        """
        reply = self.client("lambda").invoke(
            FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode("utf-8")
        )
        if reply.get("StatusCode") != 202:
            raise RuntimeError(f"asynchronous invocation of {function} answered {reply.get('StatusCode')}")


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The container's runtime, built from the environment on first use."""
    global _runtime  # noqa: PLW0603 - one per container, by design
    with _lock:
        if _runtime is None:
            import boto3  # noqa: PLC0415 - imported with the first invocation, not at module import
            from botocore.config import Config as BotoConfig  # noqa: PLC0415

            config = load_config()
            dynamodb = boto3.session.Session().client(
                "dynamodb",
                region_name=config.region,
                # Gone-connection cleanup runs in every fan-out worker.
                config=BotoConfig(max_pool_connections=max(10, config.broadcast_concurrency)),
            )
            _runtime = Runtime(config, Store(dynamodb, config.tables, config.history_ttl_seconds))
        return _runtime


def reset_runtime() -> None:
    """Forget the container's runtime so the next invocation rebuilds it from the environment."""
    global _runtime  # noqa: PLW0603
    with _lock:
        _runtime = None


F = TypeVar("F", bound=Callable[..., LambdaResponse])


def lambda_entry(route: str) -> Callable[[F], F]:
    """Wrap a handler so no exception ever reaches the caller, and its log lines name the invocation.

    An unexpected error becomes a bare 500 and one structured log line (with the
    traceback, never the request body); API Gateway then answers the client
    with a generic error, as it does for any failed integration.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(event: Mapping[str, Any], context: Any = None) -> LambdaResponse:
            with invocation(event, context):  # every log line of it names the invocation
                try:
                    return fn(event, context)
                except Exception:
                    # connection_id and the request ids come with the invocation's fields.
                    log.exception("handler failed", extra={"route": route})
                    return response(500)

        return wrapper  # type: ignore[return-value]

    return decorate
