"""A stand-in for API Gateway's @connections Management API, over real HTTP.

The handlers post exactly as on AWS; this server records what each connection
received (and the headers of every request) and can be told to answer 410 Gone
for some connections, 429/5xx/4xx for the next N posts, or to answer after a
delay (for the fan-out benchmark). Given credentials, it checks every request's
SigV4 signature as API Gateway does, recomputed with botocore's ``SigV4Auth``,
and answers 403 to a wrong one. It speaks HTTP/1.1 keep-alive like API Gateway,
so connection pools behave as in production.

It lives outside the tests so the benchmarks can run it (in process, or in its own
process with ``python -m emulator.management_standin``) without importing the tests'
helpers; ``tests.support.management_standin`` re-exports it under the tests' import path.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import ssl
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

if TYPE_CHECKING:
    from botocore.credentials import Credentials

_ERROR_TYPES = {
    400: "BadRequestException",
    403: "ForbiddenException",
    410: "GoneException",
    413: "PayloadTooLargeException",
    429: "LimitExceededException",
    500: "InternalServerErrorException",
    503: "ServiceUnavailableException",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its end (a timed-out post, a dropped kept-alive
        # connection, a refused certificate) is part of what the tests exercise.
        if isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            return
        super().handle_error(request, client_address)


class ManagementStandIn:
    """State of the stand-in; thread-safe."""

    def __init__(
        self,
        delay_seconds: float = 0.0,
        credentials: Credentials | None = None,
        region: str = "us-east-1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.delay_seconds = delay_seconds
        self.tls = tls
        """When set, the stand-in serves https with this (server-side) context, as API Gateway does."""
        self.credentials = credentials
        """When set, requests whose SigV4 signature does not match these credentials answer 403."""
        self.region = region
        self.bad_signatures = 0
        self.gone: set[str] = set()
        self.failures: list[int] = []
        """Statuses to answer to the next posts, in order (any connection)."""
        self.failures_for: dict[str, list[int]] = defaultdict(list)
        """Statuses to answer to the next posts to one connection, in order."""
        self.received: dict[str, list[bytes]] = defaultdict(list)
        self.requests: list[tuple[str, str]] = []
        self.headers: list[dict[str, str]] = []
        """Headers of each request, in the order of ``requests`` (names lower case)."""
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._open: set[socket.socket] = set()

    @property
    def endpoint(self) -> str:
        """Base URL to post to (with a stage path, as on AWS)."""
        assert self._server is not None
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_port}/test"

    def messages(self, connection_id: str) -> list[dict[str, Any]]:
        """Decoded JSON messages a connection received, in order (a post may carry several, one per line)."""
        with self._lock:
            posts = list(self.received.get(connection_id, []))
        return [json.loads(line) for post in posts for line in post.split(b"\n")]

    def frames(self, connection_id: str) -> list[list[dict[str, Any]]]:
        """What a connection received post by post, each post split into its messages."""
        with self._lock:
            posts = list(self.received.get(connection_id, []))
        return [[json.loads(line) for line in post.split(b"\n")] for post in posts]

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._lock:
            self.received.clear()
            self.requests.clear()
            self.headers.clear()

    def drop_connections(self) -> int:
        """Close every kept-alive connection from the server side (an idle timeout); returns how many."""
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return len(conns)

    def total_posts(self) -> int:
        """Successful posts across connections."""
        with self._lock:
            return sum(len(v) for v in self.received.values())

    def signature_matches(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bool:
        """Whether ``Authorization`` is the SigV4 signature botocore computes for this request."""
        assert self.credentials is not None
        authorization = headers.get("authorization", "")
        fields = dict(part.strip().split("=", 1) for part in authorization.split(",") if "=" in part)
        signed = fields.get("SignedHeaders", "").split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            return False
        request = AWSRequest(
            method=method,
            url=f"http://{headers['host']}{path}",
            data=body,
            headers={name: headers.get(name, "") for name in signed},
        )
        request.context["timestamp"] = headers["x-amz-date"]
        auth = SigV4Auth(self.credentials.get_frozen_credentials(), "execute-api", self.region)
        canonical = auth.canonical_request(request)
        expected = auth.signature(auth.string_to_sign(request, canonical), request)
        return authorization == (
            f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, "
            f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(request))}, Signature={expected}"
        )

    def _handle(
        self, method: str, connection_id: str, body: bytes, headers: dict[str, str], path: str
    ) -> int:
        verified = self.credentials is None or self.signature_matches(method, path, headers, body)
        with self._lock:
            self.requests.append((method, connection_id))
            self.headers.append(headers)
            if not verified:
                self.bad_signatures += 1
                return 403
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            scripted = self.failures_for.get(connection_id)
            if scripted:
                status = scripted.pop(0)
            elif self.failures:
                status = self.failures.pop(0)
            else:
                status = 200
            if connection_id in self.gone:
                status = 410
        try:
            if self.delay_seconds:
                time.sleep(self.delay_seconds)
            if status == 200 and method == "POST":
                with self._lock:
                    self.received[connection_id].append(body)
            return status
        finally:
            with self._lock:
                self.in_flight -= 1

    @contextmanager
    def running(self) -> Iterator[ManagementStandIn]:
        """Serve on an ephemeral loopback port for the duration of the block."""
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            # Buffered: the reply (headers and body) leaves in one write, flushed after
            # each request, as API Gateway's small replies arrive in one segment.
            wbufsize = -1

            def setup(self) -> None:
                super().setup()
                with standin._lock:
                    standin._open.add(self.connection)

            def finish(self) -> None:
                with standin._lock:
                    standin._open.discard(self.connection)
                super().finish()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                connection_id = unquote(self.path.rsplit("/@connections/", 1)[-1])
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = standin._handle(self.command, connection_id, body, headers, self.path)
                payload = b"{}" if status == 200 else json.dumps({"message": "stand-in"}).encode()
                self.send_response(status)
                if status != 200:
                    self.send_header("x-amzn-ErrorType", _ERROR_TYPES.get(status, "UnknownError"))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_GET = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = _Server(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


def main() -> None:
    """Serve a stand-in in its own process (benchmarks): prints the endpoint, runs until killed."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    with ManagementStandIn(delay_seconds=args.delay).running() as standin:
        print(standin.endpoint, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


if __name__ == "__main__":
    main()
