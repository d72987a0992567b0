"""Delivery under load on `cloud-ws local`, beside a bare `websockets` relay with the same clients.

Everything runs for real: the stack in its own process (moto, the emulator, the
real handlers and the delivery queue's event source mapping), the clients in
another (plain `websockets`, splitting multi-message frames), events emitted
through the real plugin (hook → EventBridge → queue → broadcaster → posts). The
bare relay gets the same clients and a producer that sends over a WebSocket.
Every figure is hook → screen: from the moment the hook (or the producer's
send) is called to the moment a client has the message.

1. burst: 1,000 events from one deployment to 5 subscribers: events/s, lag, order;
2. steady: 100 events/s for 10 s to 5 subscribers: lag p50 / p99;
3. idle: one event at a time, 300 ms apart, to 1 subscriber: lag p50 / p99;
4. fan-out: one event to 1,000 subscribers: time to the last receipt;
5. fairness: right after a burst of 1,000 events on deployment A, one event on
   deployment B (its own producer): B's hook → screen time.

"in emission order" means that, at every subscriber, `seq` order is the order
the hooks were called in (the local stack runs 5 delivery batches at once, as
AWS's event source mapping does, so commit order would break it).

The burst also prints what each process spent on CPU per event (the stack, its
embedded backend, the producer, the clients; ``bench/cpu.py``) and the rate
those figures allow on this machine's cores: on 2 shared cores that, not any
one request, is what bounds a burst.

Set BENCH_SMALL=1 for a quick run (fewer events and subscribers), BENCH_BURST
to another burst size (a longer one to profile the stack with), and
BENCH_CASES to a comma-separated subset of ``burst,steady,idle,fanout,fairness``
to run only those (the default runs all five).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_local import Helper, ms, quiesce  # noqa: E402
from bench.cpu import CpuMeter, children, command  # noqa: E402
from emulator.launcher import LocalStackProcess, start_local_stack, stop_local_stack  # noqa: E402
from plugin import DeliveryOptions, OrchestratorPlugin  # noqa: E402

SMALL = bool(os.environ.get("BENCH_SMALL"))
BURST = int(os.environ.get("BENCH_BURST") or (200 if SMALL else 1_000))
STEADY_SECONDS = 3 if SMALL else 10
STEADY_RATE = 100
IDLE_EVENTS = 10 if SMALL else 30
FANOUT = 100 if SMALL else 1_000
#: The plugin's PutEvents requests in flight (BENCH_IN_FLIGHT; the plugin's default is 1).
IN_FLIGHT = int(os.environ.get("BENCH_IN_FLIGHT") or 1)
CASES = set((os.environ.get("BENCH_CASES") or "burst,steady,idle,fanout,fairness").split(","))


class Producer:
    """Emits timed events through one of the two paths."""

    def emit(self, i: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush what is buffered."""


class PluginProducer(Producer):
    """The orchestrator plugin, as an orchestrator uses it."""

    def __init__(self, outputs: Path, deployment: str) -> None:
        self.deployment = deployment
        options = DeliveryOptions(requests_in_flight=IN_FLIGHT)
        self.plugin = OrchestratorPlugin.from_outputs(outputs, options=options)

    def emit(self, i: int) -> None:
        self.plugin.emit(
            "log.created",
            self.deployment,
            {"level": "info", "message": f"line {i}", "sent_at": time.time(), "i": i},
        )

    def close(self) -> None:
        self.plugin.close(timeout=30)


class RelayProducer(Producer):
    """A WebSocket producer on the bare relay (sent from a loop in a thread, like the plugin's sender)."""

    def __init__(self, port: int) -> None:
        import threading

        from websockets.sync.client import connect

        self.ws = connect(f"ws://127.0.0.1:{port}/produce", compression=None)
        self.lock = threading.Lock()

    def emit(self, i: int) -> None:
        message = {"type": "log.created", "seq": i + 1, "data": {"sent_at": time.time(), "i": i}}
        with self.lock:
            self.ws.send(json.dumps(message))

    def close(self) -> None:
        self.ws.close()


def measure(
    clients: Helper,
    producer: Producer,
    events: int,
    subscribers: int,
    interval: float,
    meter: CpuMeter | None = None,
) -> dict[str, Any]:
    """Emit ``events`` (``interval`` apart, 0 for a burst) and wait until every subscriber has all.

    With a ``meter``, what each process spent on CPU meanwhile is in the result's ``cpu`` line.
    """
    clients.send({"cmd": "reset"})
    if meter is not None:
        meter.start()
    first = time.time()
    next_at = time.monotonic()
    for i in range(events):
        if interval:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        producer.emit(i)
    result = clients.send({"cmd": "wait", "count": events * subscribers, "timeout": 300})
    assert result["received"] == events * subscribers, result
    cpu = ""
    if meter is not None:
        meter.stop()
        cpu = meter.per_event(events)
    p50, p99, worst = result["latencies"]
    return {
        "cpu": cpu,
        "rate": events / (result["last_received"] - first),
        "p50": p50,
        "p99": p99,
        "max": worst,
        "last": result["last_received"] - first,
        "in_order": result["in_order"],
        "emission_order": result.get("emission_order"),
    }


def fairness(stack: LocalStackProcess) -> float:
    """A burst on A, then at once one event on B from its own producer: seconds until B's subscriber has it."""
    busy, quiet = f"FAIRA{uuid.uuid4().hex[:6].upper()}", f"FAIRB{uuid.uuid4().hex[:6].upper()}"
    url = f"{stack.outputs['websocket_url']}?token={stack.token('bench')}"
    watch_a, watch_b = Helper("ws_clients.py"), Helper("ws_clients.py")
    try:
        watch_a.send({"cmd": "open", "url": url, "n": 5, "subscribe": busy, "concurrency": 5})
        watch_b.send({"cmd": "open", "url": url, "n": 1, "subscribe": quiet, "concurrency": 1})
        burst, single = PluginProducer(stack.outputs_path, busy), PluginProducer(stack.outputs_path, quiet)
        try:
            measure(watch_b, single, 1, 1, 0)  # warm both producers' clients
            measure(watch_a, burst, 1, 5, 0)
            watch_a.send({"cmd": "reset"})
            watch_b.send({"cmd": "reset"})
            for i in range(BURST):
                burst.emit(i)
            single.emit(0)
            result = watch_b.send({"cmd": "wait", "count": 1, "timeout": 120})
            assert result["received"] == 1, result
            watch_a.send({"cmd": "wait", "count": BURST * 5, "timeout": 300})
            return float(result["latencies"][0])
        finally:
            burst.close()
            single.close()
    finally:
        for helper in (watch_a, watch_b):
            helper.send({"cmd": "close"})
            helper.stop()


def run_case(
    name: str,
    stack: LocalStackProcess,
    relay_port: int,
    events: int,
    subscribers: int,
    interval: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One case on the stack, then the same on the bare relay, with one clients process."""
    deployment = f"{name}{uuid.uuid4().hex[:6].upper()}"
    url = f"{stack.outputs['websocket_url']}?token={stack.token('bench')}"
    clients = Helper("ws_clients.py")
    try:
        clients.send(
            {"cmd": "open", "url": url, "n": subscribers, "subscribe": deployment, "concurrency": 50}
        )
        producer: Producer = PluginProducer(stack.outputs_path, deployment)
        try:
            measure(clients, producer, 1, subscribers, 0)  # warm the broadcaster's clients and pools
            meter = CpuMeter(stack_roles(stack) | {"producer": os.getpid(), "clients": clients.process.pid})
            stack_result = measure(clients, producer, events, subscribers, interval, meter)
        finally:
            producer.close()
        clients.send({"cmd": "close"})
        quiesce(stack)
        clients.send(
            {"cmd": "open", "url": f"ws://127.0.0.1:{relay_port}/", "n": subscribers, "concurrency": 50}
        )
        relay = RelayProducer(relay_port)
        try:
            measure(clients, relay, 1, subscribers, 0)
            relay_result = measure(clients, relay, events, subscribers, interval)
        finally:
            relay.close()
        return stack_result, relay_result
    finally:
        clients.send({"cmd": "close"})
        clients.stop()


def stack_roles(stack: LocalStackProcess) -> dict[str, int]:
    """The local stack's process and its embedded backend's (a child of it), by role."""
    roles = {"stack": stack.process.pid}
    for child in children(stack.process.pid):
        if "moto_process" in command(child):
            roles["backend"] = child
    return roles


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_local_stack(Path(tmp))
        relay = Helper("bare_relay.py")
        try:
            port = relay.read()["port"]
            if "burst" in CASES:
                burst_case(stack, port)
            if "steady" in CASES:
                steady_case(stack, port)
            if "idle" in CASES:
                idle_case(stack, port)
            if "fanout" in CASES:
                fanout_case(stack, port)
            if "fairness" in CASES:
                quiesce(stack)
                print(
                    f"5. fairness: one event on B right after a {BURST:,}-event burst on A → B's subscriber"
                )
                print(f"   cloud-ws {ms(fairness(stack))} (hook → screen)")
        finally:
            relay.stop()
            stop_local_stack(stack)


def burst_case(stack: LocalStackProcess, port: int) -> None:
    """1. A burst from one plugin to 5 subscribers."""
    s, r = run_case("BURST", stack, port, BURST, 5, 0)
    print(f"1. burst: {BURST:,} events from one deployment → 5 subscribers")
    print(
        f"   cloud-ws {s['rate']:,.0f} events/s, last at {s['last']:.2f} s, lag p50 {ms(s['p50'])} "
        f"max {ms(s['max'])}, in emission order at every subscriber: {s['emission_order']}"
    )
    print(
        f"   bare relay {r['rate']:,.0f} events/s, last at {r['last']:.2f} s, lag p50 {ms(r['p50'])} "
        f"max {ms(r['max'])}; ratio {s['rate'] / r['rate']:.2f}"
    )
    if s["cpu"]:
        print(f"   {s['cpu']}")


def steady_case(stack: LocalStackProcess, port: int) -> None:
    """2. A steady rate to 5 subscribers."""
    s, r = run_case("STEADY", stack, port, STEADY_RATE * STEADY_SECONDS, 5, 1 / STEADY_RATE)
    print(f"2. steady: {STEADY_RATE} events/s for {STEADY_SECONDS} s → 5 subscribers (hook → screen)")
    print(
        f"   cloud-ws p50 {ms(s['p50'])}, p99 {ms(s['p99'])}, max {ms(s['max'])}, in order: {s['in_order']}"
    )
    print(f"   bare relay p50 {ms(r['p50'])}, p99 {ms(r['p99'])}, max {ms(r['max'])}")


def idle_case(stack: LocalStackProcess, port: int) -> None:
    """3. One event at a time to one subscriber."""
    s, r = run_case("IDLE", stack, port, IDLE_EVENTS, 1, 0.3)
    print(f"3. idle: {IDLE_EVENTS} events, 300 ms apart → 1 subscriber (hook → screen)")
    print(f"   cloud-ws p50 {ms(s['p50'])}, p99 {ms(s['p99'])}")
    print(f"   bare relay p50 {ms(r['p50'])}, p99 {ms(r['p99'])}")


def fanout_case(stack: LocalStackProcess, port: int) -> None:
    """4. One event to many subscribers."""
    s, r = run_case("FANOUT", stack, port, 1, FANOUT, 0)
    print(f"4. fan-out: one event → {FANOUT:,} subscribers, last receipt")
    print(f"   cloud-ws {ms(s['max'])}; bare relay {ms(r['max'])}; ratio {s['max'] / r['max']:.1f}")


if __name__ == "__main__":
    main()
