"""The embedded AWS backend's own process: moto's application, quiet, tied to its parent.

Running moto in a separate process lets DynamoDB, Cognito, EventBridge and SQS
work on the second core instead of competing with the WebSocket server and the
handlers for one interpreter lock. The process prints ``{"port": N}`` once it
listens and exits when its stdin closes, so it never outlives the stack (even
when the stack is killed).

moto's application is served by waitress rather than moto's own werkzeug
development server: werkzeug closes the connection after every response, so
each request paid for a new TCP connection and a new server thread; waitress
keeps connections alive (as AWS endpoints do, and botocore's pool expects) and
serves them from a fixed pool of threads. A request costs about half the CPU.

The heap is mostly what each service loads with its first request (botocore's
service models, moto's modules) and keeps for the life of the process; Python's
full garbage collections traversed all of it, stopping every request for 60 to
100 ms several times in a few seconds of load (the p99 of the local delivery
path). After the first request of each operation that state is frozen
(``gc.freeze``): the collector no longer walks it; what is allocated later is
collected as before.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

#: Threads serving requests: the handlers' pools and the pollers keep about this many open.
SERVER_THREADS = 32


def bind_reusable(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEADDR``; ``OSError`` when the port is taken.

    With ``SO_REUSEADDR`` a port whose only sockets are in TIME-WAIT (the
    connections of a stack stopped a moment ago, kept for about a minute) can
    be bound again, while a port something still listens on cannot: restarting
    the stack right after Ctrl-C works, and two stacks still cannot share a port.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def freezing_after_first_requests(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """``app``, freezing the heap after the first request of each operation (see the module's doc)."""
    seen: set[tuple[str, str]] = set()

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        operation = (environ.get("HTTP_X_AMZ_TARGET", ""), environ.get("HTTP_HOST", ""))
        reply = app(environ, start_response)
        if operation not in seen:
            seen.add(operation)
            gc.freeze()  # constant time: the tracked objects join the permanent generation
        return reply

    return serve


def set_token_lifetime(seconds: int) -> None:
    """Make the embedded Cognito mint ID and access tokens that expire ``seconds`` after issue.

    Local only (``cloud-ws local --token-lifetime``): Cognito's shortest
    lifetime is 5 minutes and moto's is a fixed hour, too long to watch a
    connection outlive its token in a test. Every token moto mints goes
    through ``create_jwt`` with its default lifetime; that default is replaced.
    """
    from moto.cognitoidp.models import CognitoIdpUserPool  # noqa: PLC0415 - moto only runs here

    mint = CognitoIdpUserPool.create_jwt

    @functools.wraps(mint)
    def create_jwt(self: Any, *args: Any, **kwargs: Any) -> tuple[str, int]:
        if len(args) < 4:  # (client_id, username, token_use[, expires_in]): no lifetime given
            kwargs["expires_in"] = seconds
        return mint(self, *args, **kwargs)

    CognitoIdpUserPool.create_jwt = create_jwt  # type: ignore[method-assign]


def main() -> None:
    """Serve moto on ``--host``/``--port`` (0 picks a free port) until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token-lifetime", type=int, default=None, help="seconds an ID/access token lives")
    args = parser.parse_args()

    import waitress  # noqa: PLC0415 - heavy, and only this process needs it
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
        DomainDispatcherApplication,
        create_backend_app,
    )

    from emulator import moto_patches  # noqa: PLC0415

    try:
        moto_patches.apply()
    except moto_patches.MotoMismatchError as exc:
        print(f"cloud-ws local: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None
    if args.token_lifetime is not None:
        set_token_lifetime(args.token_lifetime)
    logging.getLogger("waitress").setLevel(logging.ERROR)  # no line per request or per queue depth
    server = waitress.create_server(
        freezing_after_first_requests(DomainDispatcherApplication(create_backend_app)),
        # Bound here, not by waitress, so the port is reusable in TIME-WAIT by our own rule.
        sockets=[bind_reusable(args.host, args.port)],
        threads=SERVER_THREADS,
        connection_limit=1000,
        channel_timeout=120,
        ident="cloud-ws-local",
    )
    thread = threading.Thread(target=server.run, name="moto-server", daemon=True)
    thread.start()
    print(json.dumps({"port": server.effective_port}), flush=True)
    sys.stdin.read()  # until the parent exits or closes the pipe
    server.close()


if __name__ == "__main__":
    main()
