"""A loopback HTTP server that answers each POST with the next scripted JSON reply and records
what it was sent: a stand-in for an AWS JSON API (Cognito, AppSync...) a client under test calls."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: A scripted answer: the HTTP status and the JSON body.
Reply = tuple[int, dict[str, Any]]


class ScriptedHttp:
    """Answers each POST with the next of ``script``, then with ``otherwise``; records every body
    (``received``) and its headers, names lower-cased (``headers``). A context manager that serves
    on a free loopback port, at ``url``."""

    def __init__(self, script: list[Reply] | None = None, otherwise: Reply = (200, {})) -> None:
        self.script = list(script or [])
        self.otherwise = otherwise
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.received.append(json.loads(body))
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                status, reply = outer.script.pop(0) if outer.script else outer.otherwise
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ScriptedHttp:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
