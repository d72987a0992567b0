"""A scripted cloud-ws server on localhost, for failures a real stack rarely produces on demand."""

from __future__ import annotations

import contextlib
import json
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


class Gateway:
    """A tiny cloud-ws server: acks subscriptions (replaying ``seq > since``), answers pings
    (with ``latest``), publishes events to subscribers, echoes request ids; handshakes can be
    refused, behaviour switched off, replies held back and released in another order."""

    def __init__(self) -> None:
        self.refuse: list[int] = []
        """Statuses for the next handshakes, in order (then they are accepted)."""
        self.answer_subscribe = True
        self.answer_ping = True
        self.limit_pings = False
        """Answer pings with a ``rate_limited`` refusal (a flooding connection's)."""
        self.echo_ids = True
        """Echo request ids (False: a server that predates them)."""
        self.pong_id: str | None = None
        """Answer pings with this id instead of the request's (an unknown one)."""
        self.pack = False
        """Send a subscription's ack and replay as one multi-message frame."""
        self.hold = False
        """Keep replies back (in ``held``) until :meth:`release`."""
        self.held: list[tuple[ServerConnection, str]] = []
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
                if frame["action"] == "ping" and self.limit_pings:
                    refusal = {"type": "error", "code": "rate_limited", "message": "retry in 0.1 s"}
                    await self.reply(ws, {**refusal, "action": "ping"}, frame)
                elif frame["action"] == "ping" and self.answer_ping:
                    latest = {d: len(self.history.get(d, [])) for d in self.subscribers.get(ws, ())}
                    asked = frame if self.pong_id is None else {**frame, "id": self.pong_id}
                    await self.reply(ws, {"type": "pong", "timestamp": "now", "latest": latest}, asked)
                elif frame["action"] == "subscribe" and self.answer_subscribe:
                    await self._subscribe(ws, frame["deployment_id"], frame.get("since"), frame)
                elif frame["action"] == "unsubscribe":
                    self.subscribers[ws].discard(frame["deployment_id"])
                    await self.reply(
                        ws, {"type": "unsubscribed", "deployment_id": frame["deployment_id"]}, frame
                    )
        except ConnectionClosed:
            pass
        finally:
            self.subscribers.pop(ws, None)
            self.closed.append(number)

    async def reply(self, ws: ServerConnection, message: dict[str, Any], frame: dict[str, Any]) -> None:
        """Send a reply that echoes the request's id (or hold it back)."""
        if "id" in frame and self.echo_ids:
            message = {**message, "id": frame["id"]}
        await self.send(ws, json.dumps(message))

    async def send(self, ws: ServerConnection, text: str) -> None:
        if self.hold:
            self.held.append((ws, text))
        else:
            await ws.send(text)

    async def release(self, *, reverse: bool = False) -> None:
        """Send the replies held back, in the order received or reversed."""
        held, self.held, self.hold = self.held, [], False
        for ws, text in reversed(held) if reverse else held:
            await ws.send(text)

    async def _subscribe(
        self, ws: ServerConnection, deployment_id: str, since: int | None, frame: dict[str, Any]
    ) -> None:
        self.subscribers[ws].add(deployment_id)
        history = self.history.setdefault(deployment_id, [])
        replay = [e for e in history if since is not None and e["seq"] > since]
        ack: dict[str, Any] = {
            "type": "subscribed",
            "deployment_id": deployment_id,
            "seq": len(history),
            "replay": len(replay),
        }
        if "id" in frame and self.echo_ids:
            ack["id"] = frame["id"]
        messages = [json.dumps(ack), *(json.dumps(event) for event in replay)]
        if self.pack:
            await self.send(ws, "\n".join(messages))
        else:
            for text in messages:
                await self.send(ws, text)

    async def publish(self, deployment_id: str, message: str = "m", *, deliver: bool = True) -> int:
        """Store the deployment's next event and send it to its subscribers (``deliver=False``: lose it)."""
        history = self.history.setdefault(deployment_id, [])
        seq = len(history) + 1
        event: dict[str, Any] = {
            "type": "log.created",
            "deployment_id": deployment_id,
            "seq": seq,
            "data": {"message": message},
            "timestamp": "2026-11-26T10:00:00Z",
        }
        history.append(event)
        if deliver:
            for ws, deployments in list(self.subscribers.items()):
                if deployment_id in deployments:
                    # A connection closing meanwhile (a replaced one) loses it, as a 410 would.
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(json.dumps(event))
        return seq

    def connection(self, number: int) -> ServerConnection:
        return next(ws for ws, n in self._numbers.items() if n == number)

    def frames_of(self, number: int, action: str) -> list[dict[str, Any]]:
        """Frames of one action on one connection, without their (client-chosen) ids."""
        return [
            {k: v for k, v in f.items() if k != "id"}
            for n, f in self.frames
            if n == number and f["action"] == action
        ]

    def ids_of(self, number: int, action: str) -> list[str]:
        """The ids the client gave one action's frames on one connection."""
        return [f["id"] for n, f in self.frames if n == number and f["action"] == action]
