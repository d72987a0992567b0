"""A stand-in for API Gateway's @connections Management API, over real HTTP.

The handlers post through boto3 exactly as on AWS; this server records what
each connection received and can be told to answer 410 Gone for some
connections, 429/5xx for the next N posts, or to answer after a delay (for the
fan-out benchmark). It speaks HTTP/1.1 keep-alive like API Gateway, so
botocore's connection pool behaves as in production.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

_ERROR_TYPES = {
    410: "GoneException",
    429: "LimitExceededException",
    500: "InternalServerErrorException",
    503: "ServiceUnavailableException",
}


class ManagementStandIn:
    """State of the stand-in; thread-safe."""

    def __init__(self, delay_seconds: float = 0.0) -> None:
        self.delay_seconds = delay_seconds
        self.gone: set[str] = set()
        self.failures: list[int] = []
        """Statuses to answer to the next posts, in order (any connection)."""
        self.failures_for: dict[str, list[int]] = defaultdict(list)
        """Statuses to answer to the next posts to one connection, in order."""
        self.received: dict[str, list[bytes]] = defaultdict(list)
        self.requests: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        """Base URL to give boto3 as ``endpoint_url`` (with a stage path, as on AWS)."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}/test"

    def messages(self, connection_id: str) -> list[dict[str, Any]]:
        """Decoded JSON messages a connection received, in order."""
        with self._lock:
            return [json.loads(m) for m in self.received.get(connection_id, [])]

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._lock:
            self.received.clear()
            self.requests.clear()

    def total_posts(self) -> int:
        """Successful posts across connections."""
        with self._lock:
            return sum(len(v) for v in self.received.values())

    def _handle(self, method: str, connection_id: str, body: bytes) -> int:
        with self._lock:
            self.requests.append((method, connection_id))
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
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                connection_id = unquote(self.path.rsplit("/@connections/", 1)[-1])
                status = standin._handle(self.command, connection_id, body)
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

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
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
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    with ManagementStandIn(delay_seconds=args.delay).running() as standin:
        print(standin.endpoint, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


if __name__ == "__main__":
    main()
