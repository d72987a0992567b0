"""One connection's frames are handled concurrently, as API Gateway may handle them.

The gateway runs on a real socket (uvicorn, as the local stack serves it) in
front of stand-in functions that hold each route invocation until told: two
slow frames overlap, at most ``frames_in_flight`` run at once, and
``$disconnect`` follows the connection's route invocations, whether they
finish or the stack stops and cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

import uvicorn
from websockets.asyncio.client import connect

from contract import spec
from emulator.gateway import Gateway, GatewaySettings
from tests.support.waiting import eventually

CONNECT = spec.route_for("$connect").function
DISCONNECT = spec.route_for("$disconnect").function


class Functions:
    """Stand-in handlers: ``$connect`` accepts, routes wait for ``gate``, everything is logged in order."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.gate = asyncio.Event()
        self.running = 0
        self.most_running = 0

    async def invoke(self, function: str, event: Mapping[str, Any]) -> Any:
        if function == CONNECT:
            return {"statusCode": 200}
        if function == DISCONNECT:
            self.log.append("disconnect")
            return None
        body = event["body"]
        self.log.append(f"start {body}")
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.log.append(f"cancelled {body}")
            raise
        finally:
            self.running -= 1
        self.log.append(f"end {body}")
        return None

    def started(self) -> list[str]:
        return [entry.removeprefix("start ") for entry in self.log if entry.startswith("start ")]


@contextlib.asynccontextmanager
async def serving(
    functions: Functions, frames_in_flight: int = 8
) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """The gateway on a loopback port; yields its WebSocket URL and the server."""
    gateway = Gateway(GatewaySettings(frames_in_flight=frames_in_flight), functions)  # type: ignore[arg-type]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        gateway.app(),
        ws="websockets-sansio",
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started, "the server started")
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/{gateway.settings.stage}", server
    finally:
        functions.gate.set()
        server.should_exit = True
        await task
        sock.close()


async def test_two_slow_frames_of_one_connection_overlap() -> None:
    functions = Functions()
    async with serving(functions) as (url, _), connect(url) as ws:
        await ws.send("a")
        await ws.send("b")
        await eventually(lambda: functions.running == 2, "both route invocations running at once")
        functions.gate.set()
        await eventually(lambda: functions.running == 0, "both finished")
    assert functions.log[:2] == ["start a", "start b"]
    assert functions.most_running == 2


async def test_at_most_frames_in_flight_run_at_once_and_the_others_wait() -> None:
    functions = Functions()
    async with serving(functions, frames_in_flight=3) as (url, _), connect(url) as ws:
        for n in range(5):
            await ws.send(f"f{n}")
        await eventually(lambda: functions.running == 3, "three route invocations running")
        await asyncio.sleep(0.2)  # time enough for the other two to start, were they not held back
        assert functions.started() == ["f0", "f1", "f2"]
        functions.gate.set()
        await eventually(lambda: len(functions.started()) == 5, "the waiting frames handled in turn")
        await eventually(lambda: functions.running == 0, "all finished")
    assert functions.most_running == 3
    assert sorted(functions.started()) == ["f0", "f1", "f2", "f3", "f4"]


async def test_disconnect_runs_after_the_connections_route_invocations_finish() -> None:
    functions = Functions()
    async with serving(functions) as (url, _):
        async with connect(url) as ws:
            await ws.send("a")
            await ws.send("b")
            await eventually(lambda: functions.running == 2, "both route invocations running")
        await asyncio.sleep(0.2)  # the close has arrived; $disconnect must still wait
        assert "disconnect" not in functions.log
        functions.gate.set()
        await eventually(lambda: "disconnect" in functions.log, "$disconnect after the close")
    assert sorted(functions.log[2:4]) == ["end a", "end b"]
    assert functions.log[4:] == ["disconnect"]


async def test_stopping_the_stack_cancels_route_invocations_in_flight_cleanly() -> None:
    """The stack stops with frames still being handled: they are cancelled, nothing is left running."""
    functions = Functions()
    async with serving(functions) as (url, server):
        ws = await connect(url)
        await ws.send("a")
        await ws.send("b")
        await eventually(lambda: functions.running == 2, "both route invocations running")
        server.should_exit = True  # the gate stays closed: only cancelling ends them
        await eventually(lambda: functions.running == 0, "the route invocations ended")
        await ws.close()
    assert sorted(functions.log[2:4]) == ["cancelled a", "cancelled b"]
    assert all(entry == "disconnect" for entry in functions.log[4:])  # if it ran, it ran last
