"""The embedded AWS backend's own process: moto's server, quiet, tied to its parent.

Running moto in a separate process lets DynamoDB, Cognito and EventBridge work
on the second core instead of competing with the WebSocket server and the
handlers for one interpreter lock. The process prints ``{"port": N}`` once it
listens and exits when its stdin closes, so it never outlives the stack (even
when the stack is killed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def main() -> None:
    """Serve moto on ``--host``/``--port`` (0 picks a free port) until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    from moto.moto_server.werkzeug_app import MotoRequestHandler  # noqa: PLC0415
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - heavy, and only this process needs it

    from emulator import moto_patches  # noqa: PLC0415

    # Werkzeug writes a response's headers and body in separate sends; with
    # Nagle's algorithm on, the body waits for the client's delayed ACK.
    MotoRequestHandler.disable_nagle_algorithm = True
    moto_patches.apply()

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    print(json.dumps({"port": server.get_host_and_port()[1]}), flush=True)
    sys.stdin.read()  # until the parent exits or closes the pipe
    server.stop()


if __name__ == "__main__":
    main()
