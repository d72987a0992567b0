"""Bench helper: a stand-in for API Gateway's @connections API under the account throttle.

Every ``POST /{stage}/@connections/{id}`` is answered after ``--latency``
seconds (20 ms: a post's round trip to API Gateway from Lambda), unless the
account's token bucket (``--rate`` per second, ``--burst`` deep: 10,000 and
5,000 on AWS, shared by every API of the account) is empty: then it answers 429
``LimitExceededException`` at once, as API Gateway does. Connections are kept
alive; replies on one connection go out in request order. HTTP is parsed with
httptools (uvicorn's parser). Prints ``{"port": N}`` when listening; on stdin,
``reset`` forgets what was received and ``report`` prints what was: deliveries
per connection, the time of the last delivery, and how many posts were throttled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter

import httptools

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Type: application/json\r\n\r\n"
_BODY_429 = b'{"message":"Too Many Requests"}'
THROTTLED = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
    b"x-amzn-ErrorType: LimitExceededException\r\nContent-Length: "
    + str(len(_BODY_429)).encode()
    + b"\r\n\r\n"
    + _BODY_429
)


class Account:
    """The account-wide token bucket and what was delivered."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = burst, time.monotonic()
        self.delivered: Counter[str] = Counter()
        self.last_delivery = 0.0
        self.throttled = 0

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.throttled += 1
        return False

    def reset(self) -> None:
        self.tokens, self.updated = self.burst, time.monotonic()
        self.delivered.clear()
        self.last_delivery = 0.0
        self.throttled = 0


class Connection(asyncio.Protocol):
    """One kept-alive client connection."""

    def __init__(self, account: Account, latency: float) -> None:
        self.account, self.latency = account, latency
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.WriteTransport | None = None
        self.url = b""
        self.ready_at = 0.0  # replies leave in order: none before the previous one

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP transport (uvloop's is not a subclass)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        url, self.url = self.url.decode(), b""
        loop = asyncio.get_running_loop()
        connection_id = url.rsplit("/", 1)[-1]
        if self.account.take():
            due = max(loop.time() + self.latency, self.ready_at)
            self.ready_at = due
            loop.call_at(due, self._deliver, connection_id)
        else:
            due = max(loop.time(), self.ready_at)
            self.ready_at = due
            loop.call_at(due, self._write, THROTTLED)

    def _deliver(self, connection_id: str) -> None:
        self.account.delivered[connection_id] += 1
        self.account.last_delivery = time.time()
        self._write(OK)

    def _write(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.020)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--burst", type=float, default=5_000)
    args = parser.parse_args()
    account = Account(args.rate, args.burst)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(account, args.latency), "127.0.0.1", 0, backlog=4096)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if not line:
            return
        if line == "reset":
            account.reset()
            print(json.dumps({"ok": True}), flush=True)
        elif line == "report":
            print(
                json.dumps(
                    {
                        "connections": len(account.delivered),
                        "delivered": sum(account.delivered.values()),
                        "last_delivery": account.last_delivery,
                        "throttled": account.throttled,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
