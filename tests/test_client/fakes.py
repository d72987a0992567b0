"""A scripted cloud-ws server on localhost, for failures a real stack rarely produces on demand."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


class Gateway:
    """A tiny cloud-ws server: acks subscriptions (replaying ``seq > since``), answers pings,
    publishes events to subscribers; handshakes can be refused and behaviour switched off."""

    def __init__(self) -> None:
        self.refuse: list[int] = []
        """Statuses for the next handshakes, in order (then they are accepted)."""
        self.answer_subscribe = True
        self.answer_ping = True
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.subscribers: dict[ServerConnection, set[str]] = {}
        self.frames: list[tuple[int, dict[str, Any]]] = []
        """(connection number, frame) for every frame received."""
        self.handshakes = 0
        self.opened = 0
        self.closed: list[int] = []
        self._numbers: dict[ServerConnection, int] = {}
        self.server: Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/test"

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        if self.refuse:
            status = HTTPStatus(self.refuse.pop(0))
            return connection.respond(status, f"{status.phrase}\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        self.opened += 1
        number = self._numbers[ws] = self.opened
        self.subscribers[ws] = set()
        try:
            async for raw in ws:
                frame = json.loads(raw)
                self.frames.append((number, frame))
                if frame["action"] == "ping" and self.answer_ping:
                    await ws.send(json.dumps({"type": "pong", "timestamp": "now"}))
                elif frame["action"] == "subscribe" and self.answer_subscribe:
                    await self._subscribe(ws, frame["deployment_id"], frame.get("since"))
        except ConnectionClosed:
            pass
        finally:
            self.subscribers.pop(ws, None)
            self.closed.append(number)

    async def _subscribe(self, ws: ServerConnection, deployment_id: str, since: int | None) -> None:
        self.subscribers[ws].add(deployment_id)
        history = self.history.setdefault(deployment_id, [])
        replay = [e for e in history if since is not None and e["seq"] > since]
        ack = {
            "type": "subscribed",
            "deployment_id": deployment_id,
            "seq": len(history),
            "replay": len(replay),
        }
        await ws.send(json.dumps(ack))
        for event in replay:
            await ws.send(json.dumps(event))

    async def publish(self, deployment_id: str, message: str = "m") -> int:
        history = self.history.setdefault(deployment_id, [])
        event = {
            "type": "log.created",
            "deployment_id": deployment_id,
            "seq": len(history) + 1,
            "data": {"message": message},
            "timestamp": "2026-11-26T10:00:00Z",
        }
        history.append(event)
        for ws, deployments in list(self.subscribers.items()):
            if deployment_id in deployments:
                await ws.send(json.dumps(event))
        return int(event["seq"])

    def connection(self, number: int) -> ServerConnection:
        return next(ws for ws, n in self._numbers.items() if n == number)

    def frames_of(self, number: int, action: str) -> list[dict[str, Any]]:
        return [f for n, f in self.frames if n == number and f["action"] == action]
