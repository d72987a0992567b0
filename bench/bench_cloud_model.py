"""Cloud model with DynamoDB: our real broadcaster and store on modelled AWS services, in virtual time.

What runs for real, unchanged: ``handlers.broadcaster.handler`` (grouping,
sequencing, fan-out, partial batch failures, fan-out tasks) with
``server.store.Store`` on a boto3 DynamoDB client whose requests moto
executes in-process (tables from ``contract.spec.TABLES``), every event
built by the plugin's ``plugin.envelope.build_envelope``, and what each
PutEvents request carries decided by the plugin's own buffer and packing
(``plugin.buffer.EventBuffer.pop_request``, ``plugin.envelope.packed_entry``)
in a model of its sending loop, one plugin per deployment (``ModelSender``).

What is modelled (``bench/cloudmodel/``, figures at the top of each module):
EventBridge (PutEvents, then a lognormal latency per entry), the SQS standard
queue and its event source mapping (at-least-once, best-effort order,
visibility, DLQ; 5 pollers, +300 a minute, batches of 10), Lambda (containers
with their own runtime, cold starts, asynchronous self-invocations),
DynamoDB's latency, per-partition capacity and transaction conflicts, and API
Gateway's @connections posts under the account's token bucket. Everything
runs in virtual time on a conservative scheduler (``bench/cloudmodel/clock.py``),
so the CPU our code and moto take on this machine is not counted: AWS gives
each invocation its own CPU.

Scenarios (one table each; figures, no assertions):

(a) one deployment, one producer at A_RATES events/s for A_SECONDS, 5 subscribers;
(b) B_DEPLOYMENTS deployments at 10 events/s each for B_SECONDS;
(c) one deployment bursting C_BURST events while C_OTHERS others emit 1 event/s.

Environment: A_RATES (default "300,500,1000"), A_SECONDS (10; the brief's 60
at 300/s took 6 minutes of wall time on 2 cores, at all three rates much
longer), B_DEPLOYMENTS (1000: 12 minutes),
B_SECONDS (1), B_POLLERS (1000: the mapping already scaled), C_BURST (10000),
C_POLLERS (5: the mapping as AWS starts it; more stands for one already scaled),
C_MIN_POLLERS (0; n: the component's ``deliveryMinPollers``, AWS's provisioned
mode: 10 x n batches at a time from the start, 1,000 more a minute),
C_OTHERS (100), C_SECONDS (20), DRAIN_SECONDS (30: how long after the last
emission the model waits for stragglers), SCENARIOS ("a,b,c"), SEED (1),
MAX_CONCURRENCY (1000), PRODUCER ("plugin"; "direct": each hook's entry on the
bus at once, as the model ran before it modelled the plugin's loop),
PLUGIN_IN_FLIGHT and PLUGIN_PACK_BACKLOG (the plugin's ``DeliveryOptions``
defaults; "none": never pack), CLOUD_MODEL_CODE (a directory holding the contract/,
server/, handlers/ and plugin/ to run, e.g. an export of a commit from this
layout on; default this tree).
"""

from __future__ import annotations

import inspect
import logging
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CODE = Path(os.environ.get("CLOUD_MODEL_CODE", str(ROOT))).resolve()
sys.path.insert(0, str(ROOT))
if CODE != ROOT:
    sys.path.insert(0, str(CODE))  # its packages shadow this tree's

os.environ.setdefault("AWS_ACCESS_KEY_ID", "model")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "model")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.dynamodb.models import dynamodb_backends  # noqa: E402

from bench.cloudmodel import apigw, clock, dynamodb, eventbridge, lambdas, sqs  # noqa: E402
from bench.cloudmodel.clock import Signal, VirtualClock  # noqa: E402
from contract import spec  # noqa: E402
from emulator import moto_patches  # noqa: E402
from handlers import broadcaster  # noqa: E402
from plugin import envelope as plugin_envelope  # noqa: E402
from plugin.buffer import EventBuffer, Pending  # noqa: E402
from plugin.envelope import build_envelope  # noqa: E402
from plugin.sender import DeliveryOptions  # noqa: E402
from server import appsync  # noqa: E402
from server.appsync import AppSyncPublisher  # noqa: E402
from server.config import load_config  # noqa: E402
from server.management import RetryPolicy  # noqa: E402
from server.store import Store  # noqa: E402

A_RATES = [int(r) for r in os.environ.get("A_RATES", "300,500,1000").split(",") if r]
A_SECONDS = float(os.environ.get("A_SECONDS", 10))
A_SUBSCRIBERS = int(os.environ.get("A_SUBSCRIBERS", 5))
B_DEPLOYMENTS = int(os.environ.get("B_DEPLOYMENTS", 1000))
B_RATE = float(os.environ.get("B_RATE", 10))
B_SECONDS = float(os.environ.get("B_SECONDS", 1))
B_POLLERS = int(os.environ.get("B_POLLERS", 1000))
C_BURST = int(os.environ.get("C_BURST", 10_000))
C_BURST_SECONDS = float(os.environ.get("C_BURST_SECONDS", 1))
C_OTHERS = int(os.environ.get("C_OTHERS", 100))
C_POLLERS = int(os.environ.get("C_POLLERS", 5))
#: The component's ``deliveryMinPollers`` (AWS's provisioned mode); 0: standard mode.
C_MIN_POLLERS = int(os.environ.get("C_MIN_POLLERS", 0))
C_SECONDS = float(os.environ.get("C_SECONDS", 20))
C_BURST_AT = float(os.environ.get("C_BURST_AT", 5))
SCENARIOS = os.environ.get("SCENARIOS", "a,b,c").split(",")
SEED = int(os.environ.get("SEED", 1))
#: The mapping's ScalingConfig.MaximumConcurrency. The component caps it at 50 by default
#: (``deliveryMaxConcurrency``); the model defaults to AWS's own ceiling of 1,000, the load
#: least kind to DynamoDB.
MAX_CONCURRENCY = int(os.environ.get("MAX_CONCURRENCY", 1000))
#: After the last emission, how long (virtual) the model waits for every delivery before it stops.
DRAIN_SECONDS = float(os.environ.get("DRAIN_SECONDS", 30))
#: How hooks reach the bus: "plugin" (the plugin's sending loop, with its own buffer and packing:
#: ``ModelSender``) or "direct" (each hook's entry put on the bus the moment it is emitted, as
#: this model did before it ran the plugin's loop: kinder than a real plugin, which sends one
#: request at a time).
PRODUCER = os.environ.get("PRODUCER", "plugin")
_DEFAULT_OPTIONS = DeliveryOptions()
#: The plugin's ``DeliveryOptions.requests_in_flight`` (its default unless set).
PLUGIN_IN_FLIGHT = int(os.environ.get("PLUGIN_IN_FLIGHT", _DEFAULT_OPTIONS.requests_in_flight))
#: The plugin's ``DeliveryOptions.pack_backlog`` (its default unless set; "none": never pack).
_PACK = os.environ.get("PLUGIN_PACK_BACKLOG", str(getattr(_DEFAULT_OPTIONS, "pack_backlog", "none")))
PLUGIN_PACK_BACKLOG = None if _PACK.lower() == "none" else int(_PACK)
#: AppSync publishing (the component's ``enableAppSync``, on by default there): milliseconds one
#: publish mutation takes, an estimate (no published figure); 0 (the default): AppSync off, as in
#: every figure before this option.
APPSYNC_MS = float(os.environ.get("APPSYNC_MS", 0))
APPSYNC_URL = "https://model.appsync-api.us-east-1.amazonaws.com/graphql"

SOURCE = spec.DEFAULT_EVENT_SOURCE
BUS = "cloud-ws-model"
TABLE_NAMES = {t.role: f"model-{t.role}" for t in spec.TABLES}
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/model-delivery"
DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/model-delivery-dlq"
PRODUCER_ID = "0123456789abcdef"
#: moto's default account, which its mock answers for.
ACCOUNT_ID = "123456789012"


@dataclass
class Emitted:
    """One event as the producer emitted it."""

    deployment_id: str
    index: int
    """Its place in the producer's emission order for this deployment (from 0)."""
    hook: float
    """When the hook was called (virtual epoch seconds)."""


class ModelSender:
    """The plugin's sending loop in virtual time, on the plugin's own buffer and packing.

    What runs for real: ``plugin.buffer.EventBuffer`` (its ``pop_request`` decides what one
    PutEvents request carries, packed or not) and ``plugin.envelope.packed_entry``. What is
    modelled: the thread (a task) and the request's round trip (``PUT_EVENTS_MS``): like
    ``plugin.sender.Sender``, each round sends up to ``requests_in_flight`` requests at once
    and packs when more than ``pack_backlog`` events wait.
    """

    def __init__(self, clock: VirtualClock, bus: eventbridge.EventBridge) -> None:
        self.clock, self.bus = clock, bus
        self.buffer = EventBuffer(_DEFAULT_OPTIONS.max_queue_events, _DEFAULT_OPTIONS.max_queue_bytes)
        self.signal = Signal(clock)
        self.seq = 0
        self.closed = False
        self.done = False
        self.requests = 0
        self.entries = 0
        self.packed = 0
        self.shed = 0

    def offer(self, envelope: Any) -> None:
        """A hook's event into the buffer (what ``Sender.offer`` does under its lock)."""
        self.seq += 1
        self.shed += len(self.buffer.push(Pending(self.seq, envelope, envelope.size(BUS, SOURCE))))
        self.signal.notify_all()

    def close(self) -> None:
        """No more hooks: the loop sends what waits, then ends."""
        self.closed = True
        self.signal.notify_all()

    def run(self) -> None:
        options = _DEFAULT_OPTIONS
        can_pack = hasattr(self.buffer, "pop_request")  # an older plugin: one entry per event
        while True:
            if not self.buffer:
                if self.closed:
                    self.done = True
                    return
                self.signal.wait(None)
                continue
            behind = PLUGIN_PACK_BACKLOG is not None and len(self.buffer) > PLUGIN_PACK_BACKLOG
            for _ in range(PLUGIN_IN_FLIGHT):
                if not self.buffer:
                    break
                if can_pack:
                    pack = getattr(options, "pack_bytes", 0) if behind else 0
                    request = self.buffer.pop_request(
                        options.max_batch_entries, options.max_batch_bytes, pack
                    )
                else:  # an older plugin's buffer (CLOUD_MODEL_CODE): one entry per event
                    pop_batch = getattr(self.buffer, "pop_batch")  # noqa: B009 - absent from this tree's buffer
                    request = [
                        [item] for item in pop_batch(options.max_batch_entries, options.max_batch_bytes)
                    ]
                self.requests += 1
                for entry in request:
                    self.entries += 1
                    if len(entry) == 1:
                        self.bus.put(entry[0].envelope.entry(BUS, SOURCE))
                    else:
                        self.packed += 1
                        self.bus.put(plugin_envelope.packed_entry([p.envelope for p in entry], BUS, SOURCE))
            self.clock.sleep(eventbridge.PUT_EVENTS_MS / 1000)  # the round's requests, in flight together


class ModelPublisher(AppSyncPublisher):
    """A container's AppSync publisher: our real one (``server.appsync.AppSyncPublisher``: its
    mutations, waves and retries), each mutation taking ``APPSYNC_MS``, and one batch at a time
    per container, as the broadcaster's one publishing thread per container runs them."""

    def __init__(self, clock: VirtualClock, log: dict[str, float]) -> None:
        super().__init__(APPSYNC_URL, "us-east-1", sleep=clock.sleep)
        self.clock, self.log = clock, log
        self.busy = False
        self.free = Signal(clock)
        self.mutations = 0

    def publish(self, events: Any) -> None:
        while self.busy:  # the container's single publishing thread
            self.free.wait(None)
        self.busy = True
        try:
            super().publish(events)
        finally:
            self.busy = False
            self.free.notify_all()

    def _send(self, request: Any) -> None:
        self.clock.sleep(APPSYNC_MS / 1000)
        self.mutations += 1
        if request.field == "publishDeploymentEvent":
            self.log.setdefault(f"{request.deployment_id}/{request.seq}", self.clock.time())


@dataclass
class World:
    """Every modelled service of one scenario, wired to our code."""

    clock: VirtualClock
    meter: dynamodb.Meter
    db: dynamodb.ModelDynamoDB
    queue: sqs.Queue
    dlq: sqs.Queue
    bus: eventbridge.EventBridge
    account: apigw.Account
    service: lambdas.LambdaService
    mapping: sqs.EventSourceMapping
    raw: Any
    emitted: dict[str, Emitted] = field(default_factory=dict)
    subscribers: dict[str, list[str]] = field(default_factory=dict)
    numbering: str = ""
    publishers: dict[int, ModelPublisher] = field(default_factory=dict)
    """One per container (by its config's id), when ``APPSYNC_MS`` is set."""
    published: dict[str, float] = field(default_factory=dict)
    """``deployment/seq`` -> when its publish mutation completed."""
    senders: dict[str, ModelSender] = field(default_factory=dict)
    """One plugin per deployment (an orchestrator run each), when ``PRODUCER`` is "plugin"."""


def _supported(fn: Callable[..., Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``fn`` accepts (the store's signature may change under us)."""
    accepted = inspect.signature(fn).parameters
    return {k: v for k, v in wanted.items() if k in accepted}


def build_world(rng: random.Random, initial_pollers: int, per_minute: int = sqs.POLLERS_PER_MINUTE) -> World:
    """Tables in moto, the modelled services around them, and the broadcaster wired in."""
    virtual = VirtualClock()
    clock.activate(virtual)
    raw = boto3.client("dynamodb", region_name="us-east-1")
    for table in spec.TABLES:
        raw.create_table(**table.create_table_kwargs(TABLE_NAMES[table.role]))
    backend = dynamodb_backends[ACCOUNT_ID]["us-east-1"]
    meter = dynamodb.Meter(virtual)
    db = dynamodb.ModelDynamoDB(
        raw, backend, virtual, meter, dynamodb.tables_from_spec(spec.TABLES, TABLE_NAMES)
    )
    dlq = sqs.Queue(virtual, rng, DLQ_URL, spec.DELIVERY.visibility_timeout_seconds, None)
    queue = sqs.Queue(
        virtual,
        rng,
        QUEUE_URL,
        spec.DELIVERY.visibility_timeout_seconds,
        spec.DELIVERY.max_receive_count,
        dlq,
    )
    bus = eventbridge.EventBridge(
        virtual,
        rng,
        queue,
        float(os.environ.get("EB_P50_MS", eventbridge.EB_P50_MS)),
        float(os.environ.get("EB_P99_MS", eventbridge.EB_P99_MS)),
    )
    account = apigw.Account(virtual)
    env = {
        **{table.env_var: TABLE_NAMES[table.role] for table in spec.TABLES},
        "COGNITO_USER_POOL_ID": "us-east-1_model",
        "COGNITO_CLIENT_IDS": "model",
        "MANAGEMENT_ENDPOINT": "https://model.execute-api.us-east-1.amazonaws.com/prod",
        "FANOUT_FUNCTION_NAME": "broadcaster",
        "DELIVERY_QUEUE_URL": QUEUE_URL,
        "AWS_REGION": "us-east-1",
    }
    if APPSYNC_MS:
        env["APPSYNC_GRAPHQL_URL"] = APPSYNC_URL
    config = load_config(env)
    poster = apigw.ModelPoster(
        virtual,
        account,
        config.broadcast_concurrency,
        RetryPolicy(max_attempts=config.post_max_attempts),
        random.Random(rng.random()),
    )
    sqs_client = sqs.ModelSqsClient(virtual, {QUEUE_URL: queue, DLQ_URL: dlq})
    containers = iter(range(1, 1 << 30))

    def make_runtime(service: lambdas.LambdaService) -> lambdas.ModelRuntime:
        store = Store(
            db,  # type: ignore[arg-type]  # boto3-shaped
            config.tables,
            config.history_ttl_seconds,
            **_supported(
                Store.__init__,
                {
                    "clock": virtual.time,
                    "sleep": virtual.sleep,
                    "rng": random.Random(SEED * 7919 + next(containers)),
                },
            ),
        )
        own = config
        if APPSYNC_MS:
            # A config of its own per container: the broadcaster finds the container's publisher by it.
            own = replace(config)
            publishers[id(own)] = ModelPublisher(virtual, published)
        runtime = lambdas.ModelRuntime(own, store)
        runtime.model = service
        return runtime

    publishers: dict[int, ModelPublisher] = {}
    published: dict[str, float] = {}
    if APPSYNC_MS:
        # The container's publisher, found by its config; each publish a task of the clock.
        setattr(broadcaster, "publisher_for", lambda own: publishers.get(id(own)))  # noqa: B010
        setattr(broadcaster, "_PUBLISHING", clock.VirtualExecutor())  # noqa: B010

    service = lambdas.LambdaService(virtual, make_runtime, broadcaster.handler, poster, sqs_client)
    broadcaster.get_runtime = service.current_runtime  # type: ignore[attr-defined]  # the container's
    mapping = sqs.EventSourceMapping(
        virtual,
        queue,
        lambda records: service.invoke({"Records": records}),
        MAX_CONCURRENCY,
        initial_pollers,
        per_minute,
    )
    return World(
        virtual,
        meter,
        db,
        queue,
        dlq,
        bus,
        account,
        service,
        mapping,
        raw,
        publishers=publishers,
        published=published,
    )


def install_seams() -> list[str]:
    """Point our modules' clocks (module references and bound defaults) and thread pools at the model."""
    patched = clock.patch_time(["contract.", "server.", "handlers.", "plugin."])
    patched += clock.patch_defaults(["contract.", "server.", "handlers."])
    # A batch's deployments run side by side in a thread pool, and the AppSync publisher sends a
    # batch's mutations on one: in the model, as tasks.
    for module, name in ((broadcaster, "handlers.broadcaster"), (appsync, "server.appsync")):
        if hasattr(module, "ThreadPoolExecutor"):
            setattr(module, "ThreadPoolExecutor", clock.VirtualExecutor)  # noqa: B010
            patched.append(f"{name}.ThreadPoolExecutor")

    return patched


def subscribe(world: World, deployment_id: str, count: int) -> None:
    """``count`` subscriptions to a deployment, written straight into moto (not metered)."""
    ids = [f"{deployment_id}-c{i}" for i in range(count)]
    ttl = int(world.clock.time()) + 24 * 3600
    for connection_id in ids:
        world.raw.put_item(
            TableName=TABLE_NAMES["subscriptions"],
            Item={
                "deploymentId": {"S": deployment_id},
                "connectionId": {"S": connection_id},
                "userId": {"S": "model"},
                "subscribedAt": {"N": str(int(world.clock.time()))},
                # What the broadcaster checks before each post (server.store.put_subscription):
                # a grant covering every project, and a token that outlives the run.
                "grants": {"L": [{"S": "*"}]},
                "tokenExpiresAt": {"N": str(ttl)},
                spec.TTL_ATTRIBUTE: {"N": str(ttl)},
            },
        )
    world.subscribers[deployment_id] = ids


_ENVELOPE_PARAMETERS = inspect.signature(build_envelope).parameters


def emit(world: World, deployment_id: str, seq: int, rng: random.Random) -> None:
    """One hook call: the plugin's envelope, numbered per deployment, put on the bus."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(world.clock.time())) + "Z"
    data = {"level": "info", "message": f"step {seq}: " + "x" * rng.randint(40, 160)}
    numbered: dict[str, Any] = {}
    if "producer" in _ENVELOPE_PARAMETERS:
        numbered["producer"] = (PRODUCER_ID, seq)
        world.numbering = "by the plugin's build_envelope(producer=...)"
    envelope = build_envelope("log.created", deployment_id, data, timestamp=stamp, **numbered)
    detail = envelope.detail
    if not numbered:
        # This plugin does not number: the two fields a numbering producer sends are added here.
        detail = detail[:-1] + f',"producer_id":"{PRODUCER_ID}","producer_seq":{seq}}}'
        world.numbering = "added to the plugin's envelope by the bench"
    world.emitted[envelope.event_id] = Emitted(deployment_id, seq - 1, world.clock.time())
    if PRODUCER == "plugin":
        if detail != envelope.detail:
            envelope = replace(envelope, detail=detail, detail_bytes=len(detail.encode("utf-8")))
        sender = world.senders.get(deployment_id)
        if sender is None:
            sender = world.senders[deployment_id] = ModelSender(world.clock, world.bus)
            world.clock.spawn(sender.run, name=f"plugin-{deployment_id}")
        sender.offer(envelope)
    else:
        world.bus.put({**envelope.entry(BUS, SOURCE), "Detail": detail})


def schedule(rates: Mapping[str, tuple[float, float, float]], rng: random.Random) -> list[tuple[float, str]]:
    """Emission times: deployment -> (start, rate per second, seconds), evenly spaced with a random phase."""
    times: list[tuple[float, str]] = []
    for deployment_id, (start, rate, seconds) in rates.items():
        step = 1.0 / rate
        t = start + rng.uniform(0, step)
        while t < start + seconds:
            times.append((t, deployment_id))
            t += step
    times.sort()
    return times


def run(world: World, times: list[tuple[float, str]], rng: random.Random) -> None:
    """The producer, the services, and a stop once every event reached every subscriber (or the drain ends)."""
    expected = sum(len(world.subscribers.get(d, [])) for _, d in times)
    counters: dict[str, int] = defaultdict(int)

    def main() -> None:
        world.bus.start()
        world.mapping.start()
        begin = world.clock.time()
        for offset, deployment_id in times:
            world.clock.sleep_until(begin + offset)
            counters[deployment_id] += 1
            emit(world, deployment_id, counters[deployment_id], rng)
        for sender in world.senders.values():
            sender.close()
        while not all(sender.done for sender in world.senders.values()):
            world.clock.sleep(0.01)
        world.bus.close()
        deadline = world.clock.time() + DRAIN_SECONDS
        while world.clock.time() < deadline:
            if delivered_unique(world) >= expected:
                break
            world.clock.sleep(0.5)
        world.mapping.stop()

    world.clock.run(main)


def delivered_unique(world: World) -> int:
    """Distinct (event, subscriber) deliveries so far."""
    return sum(len({r.event_id for r in receipts}) for receipts in world.account.received.values())


# -- what the subscribers saw --------------------------------------------------------------------


def inversions(sequence: list[int]) -> int:
    """Pairs received in the opposite of emission order (a Fenwick tree: n log n)."""
    if not sequence:
        return 0
    size = max(sequence) + 2
    tree = [0] * (size + 1)
    count = 0
    for seen, value in enumerate(sequence):
        i, below = value + 1, 0
        while i > 0:
            below += tree[i]
            i -= i & -i
        count += seen - below  # earlier arrivals emitted after this one
        i = value + 1
        while i <= size:
            tree[i] += 1
            i += i & -i
    return count


@dataclass
class Seen:
    """Delivery figures over a set of deployments."""

    expected: int = 0
    delivered: int = 0
    duplicates: int = 0
    inversions: int = 0
    late: int = 0
    """Events received after one the producer emitted later."""
    seq_order_breaks: int = 0
    """Adjacent receipts whose ``seq`` went down (a client would see a gap, then the fill)."""
    complete_in_order: int = 0
    subscribers: int = 0
    latencies: list[float] = field(default_factory=list)
    last_delivery: float = 0.0


def observe(world: World, deployments: list[str] | None = None, since: float | None = None) -> Seen:
    """What every subscriber of ``deployments`` (all by default) received, against what was emitted."""
    per_deployment: dict[str, int] = defaultdict(int)
    for emitted in world.emitted.values():
        if since is None or emitted.hook >= since:
            per_deployment[emitted.deployment_id] += 1
    seen = Seen()
    for deployment_id, connections in world.subscribers.items():
        if deployments is not None and deployment_id not in deployments:
            continue
        for connection_id in connections:
            seen.subscribers += 1
            seen.expected += per_deployment[deployment_id]
            receipts = sorted(world.account.received.get(connection_id, []), key=lambda r: r.at)
            first: dict[str, apigw.Receipt] = {}
            order: list[int] = []
            previous_seq = 0
            for receipt in receipts:
                if receipt.seq < previous_seq:
                    seen.seq_order_breaks += 1
                previous_seq = receipt.seq
                if receipt.event_id in first:
                    seen.duplicates += 1
                    continue
                first[receipt.event_id] = receipt
                source = world.emitted.get(receipt.event_id)
                if source is None or (since is not None and source.hook < since):
                    continue
                order.append(source.index)
                seen.latencies.append(receipt.at - source.hook)
                seen.last_delivery = max(seen.last_delivery, receipt.at)
            seen.delivered += len(order)
            count = inversions(order)
            seen.inversions += count
            high = -1
            for index in order:
                if index < high:
                    seen.late += 1
                high = max(high, index)
            if count == 0 and len(order) == per_deployment[deployment_id]:
                seen.complete_in_order += 1
    return seen


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank), 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def appsync_lines(world: World) -> list[str]:
    """Hook -> AppSync publish, per event (when ``APPSYNC_MS`` models AppSync)."""
    if not world.publishers:
        return ["    AppSync: not modelled (APPSYNC_MS=0)"]
    hooks: dict[str, float] = {}
    for deployment_id, connections in world.subscribers.items():
        for receipt in world.account.received.get(connections[0], []) if connections else []:
            source = world.emitted.get(receipt.event_id)
            if source is not None:
                hooks[f"{deployment_id}/{receipt.seq}"] = source.hook
    lags = [at - hooks[key] for key, at in world.published.items() if key in hooks]
    mutations = sum(p.mutations for p in world.publishers.values())
    return [
        f"    AppSync ({APPSYNC_MS:.0f} ms a mutation, batches one at a time per container, "
        f"{getattr(next(iter(world.publishers.values())), 'concurrency', 1)} mutations at a time): {mutations:,} "
        f"mutations by {len(world.publishers)} containers, {len(world.published):,} events published; hook -> "
        f"published p50 {percentile(lags, 50) * 1000:,.0f} ms, p99 {percentile(lags, 99) * 1000:,.0f} ms, "
        f"max {max(lags, default=0) * 1000:,.0f} ms"
    ]


def partition_kind(partition: dynamodb.Partition) -> str:
    """Names a partition by what lives on it (our key layouts, old and new)."""
    table, index, key = partition
    if index:
        return f"{table} index {index}"
    if table == TABLE_NAMES["events"]:
        for marker in ("#lease", "#state", "#in#"):
            if marker in key:
                return f"events {marker.strip('#')} rows"
        return "events history+counter"
    return table.removeprefix("model-")


def bound_lines(world: World) -> list[str]:
    """What limited the run: the busiest partitions, conflicts, throttles, retries, the mapping."""
    counts = world.meter.counts
    lines = []
    for kind, (partition, peak) in sorted(
        world.meter.peaks_by_kind(partition_kind).items(), key=lambda x: -x[1][1]
    ):
        lines.append(f"    busiest {kind:<32} peak {peak:>7,.0f} WCU/s  ({partition[2][:40]})")
    lines.append(
        "    transactions: "
        f"{counts['calls TransactWriteItems']:,} sent, {counts['conflicts (transaction)']:,} TransactionConflict, "
        f"{counts['cancelled (conditions)']:,} ConditionalCheckFailed, "
        f"{counts['throttled TransactWriteItems']:,} ThrottlingError"
    )
    refusals: dict[str, int] = defaultdict(int)
    for partition, times in world.meter.refusals.items():
        refusals[partition_kind(partition)] += times
    lines.append(f"    throttling partitions (refusals by kind): {dict(refusals) or 'none'}")
    throttles = {k: v for k, v in counts.items() if k.startswith("throttled") and v}
    lines.append(
        f"    throttled requests: {throttles or 'none'}; SDK retries {counts['sdk retries']:,}; "
        f"plain-write conflicts {counts['conflicts (plain write)']:,}"
    )
    calls = {k.removeprefix("calls "): v for k, v in counts.items() if k.startswith("calls ")}
    lines.append(f"    DynamoDB calls: {calls}")
    lines += appsync_lines(world)
    senders = world.senders.values()
    if not senders:
        lines.append("    producer: each hook's entry put on the bus at once (PRODUCER=direct)")
    else:
        lines.append(
            f"    producers: {len(senders):,} plugins (one per deployment), {PLUGIN_IN_FLIGHT} request(s) in "
            f"flight, pack_backlog {PLUGIN_PACK_BACKLOG}: {sum(x.seq for x in senders):,} events in "
            f"{sum(x.requests for x in senders):,} PutEvents requests, {sum(x.entries for x in senders):,} "
            f"entries ({sum(x.packed for x in senders):,} packed), {sum(x.shed for x in senders):,} shed"
        )
    m = world.mapping
    lines.append(
        f"    mapping: {m.batches:,} batches, {m.records / max(1, m.batches):.1f} records/batch, pollers "
        f"{m.pollers}, peak busy {m.peak_busy}, records failed {m.failed_records:,}, batches raised "
        f"{m.failed_batches:,}; queue sent {world.queue.sent:,}, duplicates {world.queue.duplicates:,}, "
        f"DLQ {world.dlq.sent:,}; SQS calls by the broadcaster {world.service.sqs.calls or 'none'}"
    )
    lines.append(
        f"    lambda: {world.service.containers} containers, {world.service.invocations:,} invocations "
        f"({world.service.async_invocations:,} asynchronous, {world.service.async_failures} failed); "
        f"@connections posts {world.account.posts:,}, throttled {world.account.throttled:,}"
    )
    return lines


# -- scenarios ------------------------------------------------------------------------------------


def fresh(
    seed: int, initial_pollers: int, per_minute: int = sqs.POLLERS_PER_MINUTE
) -> tuple[World, random.Random, Any]:
    """A new world inside a new moto mock."""
    mock = mock_aws()
    mock.start()
    rng = random.Random(seed)
    return build_world(rng, initial_pollers, per_minute), rng, mock


def scenario_a() -> None:
    """One deployment, one producer at a steady rate, 5 subscribers."""
    print(
        f"\n(a) one deployment, one producer at a steady rate for {A_SECONDS:.0f} s, {A_SUBSCRIBERS} subscribers"
    )
    header = (
        f"  {'rate':>6} {'emitted':>8} {'delivered':>10} {'in order':>9} {'inversions':>10} {'late':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'reached/s':>9} {'wall s':>7}"
    )
    print(header)
    details: list[str] = []
    for rate in A_RATES:
        started = time.perf_counter()
        world, rng, mock = fresh(SEED, sqs.INITIAL_POLLERS)
        try:
            subscribe(world, "DMODELA", A_SUBSCRIBERS)
            times = schedule({"DMODELA": (0.0, float(rate), A_SECONDS)}, rng)
            run(world, times, rng)
            seen = observe(world)
        finally:
            mock.stop()
        emitted = len(times)
        first = world.clock.start
        span = max(1e-9, seen.last_delivery - first)
        reached = seen.delivered / max(1, seen.subscribers) / span
        print(
            f"  {rate:>6} {emitted:>8,} {seen.delivered / max(1, seen.subscribers):>10,.0f} "
            f"{seen.complete_in_order}/{seen.subscribers:<7} {seen.inversions:>10,} {seen.late:>7,} "
            f"{percentile(seen.latencies, 50) * 1000:>8.0f} {percentile(seen.latencies, 99) * 1000:>8.0f} "
            f"{max(seen.latencies, default=0) * 1000:>8.0f} {reached:>9.0f} {time.perf_counter() - started:>7.1f}"
        )
        details.append(
            f"  at {rate}/s: seq order breaks seen by clients {seen.seq_order_breaks:,}, "
            f"duplicates {seen.duplicates:,}, virtual time {world.clock.elapsed():.1f} s"
        )
        details += bound_lines(world)
    print(
        f"  (numbering: {world.numbering}; 'in order' = subscribers that got every event in emission order)"
    )
    print("\n".join(details))


def scenario_b() -> None:
    """Many deployments at a modest rate each."""
    print(
        f"\n(b) {B_DEPLOYMENTS:,} deployments at {B_RATE:.0f} events/s each for {B_SECONDS:.0f} s, "
        f"1 subscriber each, the mapping already at {min(B_POLLERS, MAX_CONCURRENCY)} pollers"
    )
    started = time.perf_counter()
    world, rng, mock = fresh(SEED + 1, min(B_POLLERS, MAX_CONCURRENCY))
    try:
        ids = [f"DB{i:05d}" for i in range(B_DEPLOYMENTS)]
        for deployment_id in ids:
            subscribe(world, deployment_id, 1)
        times = schedule(dict.fromkeys(ids, (0.0, B_RATE, B_SECONDS)), rng)
        run(world, times, rng)
        seen = observe(world)
    finally:
        mock.stop()
    partition, peak = world.meter.peak()
    print(
        f"  {'emitted':>8} {'delivered':>10} {'in order':>11} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'peak WCU/s':>10} {'wall s':>7}"
    )
    print(
        f"  {len(times):>8,} {seen.delivered:>10,} {seen.complete_in_order:>5}/{seen.subscribers:<5} "
        f"{percentile(seen.latencies, 50) * 1000:>8.0f} {percentile(seen.latencies, 99) * 1000:>8.0f} "
        f"{max(seen.latencies, default=0) * 1000:>8.0f} {peak:>10,.0f} {time.perf_counter() - started:>7.1f}"
    )
    print(f"  busiest partition: {partition}; virtual time {world.clock.elapsed():.1f} s")
    print("\n".join(bound_lines(world)))


def scenario_c() -> None:
    """A burst on one deployment beside many quiet ones."""
    print(
        f"\n(c) one deployment bursts {C_BURST:,} events over {C_BURST_SECONDS:.0f} s at t={C_BURST_AT:.0f} s, "
        f"while {C_OTHERS} others emit 1 event/s for {C_SECONDS:.0f} s (5 / 1 subscribers), "
        + (
            f"the mapping in provisioned mode, {C_MIN_POLLERS} pollers kept ready "
            f"({C_MIN_POLLERS * sqs.INVOKES_PER_POLLER} batches at a time, +{sqs.PROVISIONED_PER_MINUTE}/min)"
            if C_MIN_POLLERS
            else f"the mapping starting at {min(C_POLLERS, MAX_CONCURRENCY)} pollers"
        )
    )
    started = time.perf_counter()
    if C_MIN_POLLERS:
        initial, per_minute = C_MIN_POLLERS * sqs.INVOKES_PER_POLLER, sqs.PROVISIONED_PER_MINUTE
    else:
        initial, per_minute = C_POLLERS, sqs.POLLERS_PER_MINUTE
    world, rng, mock = fresh(SEED + 2, min(initial, MAX_CONCURRENCY), per_minute)
    try:
        others = [f"DC{i:04d}" for i in range(C_OTHERS)]
        for deployment_id in others:
            subscribe(world, deployment_id, 1)
        subscribe(world, "DBURST", 5)
        rates = dict.fromkeys(others, (0.0, 1.0, C_SECONDS))
        rates["DBURST"] = (C_BURST_AT, C_BURST / C_BURST_SECONDS, C_BURST_SECONDS)
        times = schedule(rates, rng)
        run(world, times, rng)
        before = observe(world, others)
        during = observe(world, others, since=world.clock.start + C_BURST_AT)
        burst = observe(world, ["DBURST"])
        counter = counter_bytes(world, "DBURST")
    finally:
        mock.stop()
    print(
        f"  {'who':<34} {'delivered':>10} {'of':>8} {'in order':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    for label, seen in (
        ("others, whole run", before),
        ("others, from the burst on", during),
        ("the bursting deployment", burst),
    ):
        print(
            f"  {label:<34} {seen.delivered:>10,} {seen.expected:>8,} {seen.complete_in_order:>4}/{seen.subscribers:<4} "
            f"{percentile(seen.latencies, 50) * 1000:>8.0f} {percentile(seen.latencies, 99) * 1000:>8.0f} "
            f"{max(seen.latencies, default=0) * 1000:>8.0f}"
        )
    print(f"  wall {time.perf_counter() - started:.1f} s, virtual time {world.clock.elapsed():.1f} s")
    print(f"  the bursting deployment's counter item after its {C_BURST:,} events: {counter}")
    print("\n".join(bound_lines(world)))


def counter_bytes(world: World, deployment_id: str) -> str:
    """The counter item's size as DynamoDB counts it (attribute names plus values), and its last seq."""
    item = world.raw.get_item(
        TableName=TABLE_NAMES["events"], Key={"deploymentId": {"S": deployment_id}, "seq": {"N": "0"}}
    ).get("Item", {})
    size = sum(len(name) + len(str(next(iter(value.values())))) for name, value in item.items())
    last = item.get("lastSeq", {}).get("N", "?")
    return f"{size:,} bytes (lastSeq {last})"


def main() -> None:
    moto_patches.apply()  # moto's own CPU per request (the emulator's fixes); semantics unchanged
    if not os.environ.get("CLOUD_MODEL_LOG"):
        logging.disable(logging.CRITICAL)  # thousands of batch lines; the tables say what happened
    patched = install_seams()
    print(
        f"cloud model (virtual time): code from {CODE}; store {inspect.getsourcefile(Store)}\n"
        f"  DynamoDB item {dynamodb.ITEM_MS:.0f} ms, transaction {dynamodb.TRANSACT_MS:.0f} ms, query "
        f"{dynamodb.QUERY_MS:.0f} ms, batch {dynamodb.BATCH_MS:.0f} ms; {dynamodb.PARTITION_WCU:,.0f} WCU/s and "
        f"{dynamodb.PARTITION_RCU:,.0f} RCU/s per partition-key value, {dynamodb.BURST_SECONDS:.1f} s burst\n"
        f"  SQS {sqs.SQS_MS:.0f} ms; EventBridge PutEvents {eventbridge.PUT_EVENTS_MS:.0f} ms + latency P50 "
        f"{os.environ.get('EB_P50_MS', eventbridge.EB_P50_MS)} / P99 {os.environ.get('EB_P99_MS', eventbridge.EB_P99_MS)} ms; "
        f"Lambda overhead {lambdas.INVOKE_OVERHEAD_MS:.0f} ms, cold start {lambdas.COLD_START_MS:.0f} ms, async start "
        f"{lambdas.ASYNC_START_MS:.0f} ms; @connections {apigw.POST_MS:.0f} ms/post, "
        f"{apigw.ACCOUNT_RATE:,.0f}/s + {apigw.ACCOUNT_BURST:,.0f} burst; mapping 5 pollers +300/min <= {MAX_CONCURRENCY}\n"
        f"  time patched in: {', '.join(sorted(patched))}"
    )
    for name, scenario in (("a", scenario_a), ("b", scenario_b), ("c", scenario_c)):
        if name in SCENARIOS:
            scenario()


if __name__ == "__main__":
    main()
