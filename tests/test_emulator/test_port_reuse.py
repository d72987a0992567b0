"""The embedded AWS endpoint's port can be taken again right after a stack stopped.

A stopped stack leaves its connections in TIME-WAIT for about a minute; the
probe and the server bind with ``SO_REUSEADDR`` (as the main port does), so
``make run`` right after Ctrl-C starts, while a port something still listens
on is still refused.
"""

from __future__ import annotations

import errno
import socket

import pytest

from emulator.backend import MotoBackend, client, port_is_free
from tests.support.waiting import eventually_sync

HOST = "127.0.0.1"


def _plain_bind_refused(port: int) -> bool:
    """Whether a bind without ``SO_REUSEADDR`` fails with "address in use" (what TIME-WAIT causes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


@pytest.fixture
def port_in_time_wait() -> int:
    """A port whose listener is closed and whose only socket left is a connection in TIME-WAIT."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(1)
    port: int = listener.getsockname()[1]
    peer = socket.create_connection((HOST, port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first: its end goes to TIME-WAIT once the peer closes too
    assert peer.recv(1) == b""
    peer.close()
    listener.close()
    eventually_sync(lambda: _plain_bind_refused(port), "the server side's connection in TIME-WAIT")
    return port


def test_the_probe_finds_a_port_in_time_wait_free(port_in_time_wait: int) -> None:
    assert port_is_free(HOST, port_in_time_wait)


def test_the_backend_starts_on_a_port_in_time_wait(port_in_time_wait: int) -> None:
    backend = MotoBackend(HOST, port_in_time_wait)
    endpoint = backend.start()
    try:
        assert endpoint == f"http://{HOST}:{port_in_time_wait}"
        assert client("sqs", endpoint, "us-east-1").list_queues()["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        backend.stop()


def test_a_port_something_listens_on_is_still_taken() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert not port_is_free(HOST, port)
        with pytest.raises(OSError, match="already in use"):
            MotoBackend(HOST, port).start()
