"""CPU per @connections post: boto3's ``post_to_connection`` against the lean poster.

A Lambda function is billed for its CPU, and one broadcast posts to every
subscriber, so the CPU one post costs decides what a fan-out costs. For each
stand-in latency (20 ms, as the broadcast benchmark assumes; 0 ms, the pure
client cost) this prints the client process's CPU per post, posts per second
and the ratio; then the designs the one-thread fan-out was chosen over (a thread
per connection with http.client, or urllib3's pool), the cold-import cost of
each side and the cost of signing.

The stand-in runs in its own process so that only the client's CPU is counted
(``resource.getrusage(RUSAGE_SELF)``: user + system time of this process), and
where the machine has two CPUs or more, on another CPU than the client: API
Gateway does not share the Lambda's CPU, and a stand-in preempting the client
on the same core inflates the client's CPU by a third here (cold caches after
every preemption). About 20 seconds: ``python bench/bench_poster.py``.
"""

from __future__ import annotations

import datetime
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials

from server.management import ManagementApi, RetryPolicy
from server.poster import Endpoint, Poster, Signer

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
CREDENTIALS = Credentials("AKIDBENCH", "bench-secret", "bench-session-token")
FRAME = (
    b'{"type":"log.created","deployment_id":"D1","seq":1,"data":{"level":"info","message":"layer 2 of 4"}}'
)
#: (stand-in latency s, concurrency, posts per run); each side runs REPEATS times.
CASES = ((0.020, 32, 480), (0.020, 64, 720), (0.0, 1, 240), (0.0, 32, 480))
#: The machine is shared: the best of a few runs is the least disturbed estimate of each side.
REPEATS = 3


def cpu_seconds() -> float:
    """User + system CPU of this process (the stand-in is another process)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpus() -> tuple[set[int], set[int]] | None:
    """(client CPUs, stand-in CPUs), or None when they cannot be kept apart."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return {available[0]}, set(available[1:])


CPUS = _cpus()


def _pin_standin() -> None:
    if CPUS is not None:
        os.sched_setaffinity(0, CPUS[1])


@contextmanager
def standin(delay: float) -> Iterator[str]:
    """A @connections stand-in in its own process (on its own CPUs); yields its endpoint."""
    server = subprocess.Popen(
        [sys.executable, "-m", "emulator.management_standin", "--delay", str(delay)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=_pin_standin,
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        server.kill()
        server.wait()


def measure(run: Callable[[list[str]], None], posts: int, warm: int) -> tuple[float, float]:
    """Best (CPU µs per post, posts per second) of ``run`` over ``posts`` connection ids, after a warm-up."""
    run([f"warm{i}" for i in range(warm)])  # connections opened, code paths warm
    ids = [f"conn-{i:05d}=" for i in range(posts)]
    best_cpu, best_rate = float("inf"), 0.0
    for _ in range(REPEATS):
        cpu, wall = cpu_seconds(), time.perf_counter()
        run(ids)
        cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
        best_cpu, best_rate = min(best_cpu, cpu / posts * 1e6), max(best_rate, posts / wall)
    return best_cpu, best_rate


def boto3_runner(endpoint: str, concurrency: int) -> Callable[[list[str]], None]:
    """boto3's client on a thread pool of ``concurrency``: how posting worked before."""
    client = boto3.session.Session(
        aws_access_key_id=CREDENTIALS.access_key,
        aws_secret_access_key=CREDENTIALS.secret_key,
        aws_session_token=CREDENTIALS.token,
    ).client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name=REGION,
        config=BotoConfig(max_pool_connections=concurrency, retries={"mode": "standard"}),
    )
    pool = ThreadPoolExecutor(concurrency)

    def run(ids: list[str]) -> None:
        for reply in pool.map(lambda c: client.post_to_connection(ConnectionId=c, Data=FRAME), ids):
            assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200

    return run


def lean_runner(endpoint: str, concurrency: int) -> Callable[[list[str]], None]:
    """``ManagementApi.fan_out``: SigV4 with a cached key, http.client, one thread."""
    api = ManagementApi(
        endpoint, REGION, concurrency=concurrency, retry=RetryPolicy(max_attempts=3), credentials=CREDENTIALS
    )

    def run(ids: list[str]) -> None:
        result = api.fan_out(ids, (FRAME,))
        assert result.delivered == len(ids), result

    return run


def threaded_runner(endpoint: str, concurrency: int, use_urllib3: bool) -> Callable[[list[str]], None]:
    """The same signed requests from ``concurrency`` threads, each with its own http.client
    connection, or sharing a urllib3 pool: the designs the one-thread fan-out was chosen over."""
    parsed = Endpoint.parse(endpoint)
    poster = Poster(parsed, Signer(CREDENTIALS, REGION))
    pool = ThreadPoolExecutor(concurrency)
    local = threading.local()
    http = urllib3.HTTPConnectionPool(parsed.hostname, parsed.port, maxsize=concurrency, retries=False)
    signer = Signer(CREDENTIALS, REGION)

    def with_http_client(connection_id: str) -> int:
        conn = getattr(local, "conn", None) or poster.take()
        local.conn = conn
        poster.send(conn, parsed.path_for(connection_id), FRAME)
        return poster.receive(conn).status

    def with_urllib3(connection_id: str) -> int:
        path = parsed.path_for(connection_id)
        headers = dict(signer.headers("POST", parsed.host_header, path.canonical, FRAME))
        headers["Host"] = parsed.host_header
        return http.urlopen("POST", path.request, body=FRAME, headers=headers).status

    post = with_urllib3 if use_urllib3 else with_http_client

    def run(ids: list[str]) -> None:
        assert set(pool.map(post, ids)) == {200}

    return run


def alternatives() -> list[str]:
    delay, concurrency, posts = CASES[0]
    print(f"\n2. Designs not chosen, {delay * 1000:.0f} ms, concurrency {concurrency} (same signer)")
    rows = []
    with standin(delay) as endpoint:
        for label, use_urllib3 in (("http.client, a thread each", False), ("urllib3 pool, threads", True)):
            cpu, rate = measure(threaded_runner(endpoint, concurrency, use_urllib3), posts, warm=concurrency)
            print(f"  {label:<28} {cpu:5.0f} µs/post {rate:6.0f} posts/s")
            rows.append(f"| {label} | {cpu:.0f} | {rate:.0f} |")
    return rows


def delivery() -> list[str]:
    rows = []
    print(
        f"1. CPU per post (client process only, best of {REPEATS}), boto3 post_to_connection vs the lean poster"
    )
    for delay, concurrency, posts in CASES:
        figures: dict[str, tuple[float, float]] = {}
        with standin(delay) as endpoint:
            for label, build in (("boto3", boto3_runner), ("lean", lean_runner)):
                figures[label] = measure(build(endpoint, concurrency), posts, warm=concurrency)
        (b_cpu, b_rate), (l_cpu, l_rate) = figures["boto3"], figures["lean"]
        print(
            f"  {delay * 1000:>4.0f} ms, concurrency {concurrency:>3}: "
            f"boto3 {b_cpu:6.0f} µs/post {b_rate:6.0f} posts/s | "
            f"lean {l_cpu:5.0f} µs/post {l_rate:6.0f} posts/s | CPU ratio {b_cpu / l_cpu:4.1f}x"
        )
        rows.append(
            f"| {delay * 1000:.0f} ms | {concurrency} | {b_cpu:.0f} | {b_rate:.0f} | "
            f"{l_cpu:.0f} | {l_rate:.0f} | {b_cpu / l_cpu:.1f}x |"
        )
    return rows


def import_ms(module: str, after: str = "", runs: int = 3) -> float:
    """Cumulative ``-X importtime`` of ``module`` in a fresh interpreter (best of ``runs``), in ms.

    With ``after``, that module is imported first, so only what ``module`` adds is counted.
    """
    best = float("inf")
    statement = f"import {after}, {module}" if after else f"import {module}"
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            check=True,
        ).stderr
        for line in out.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] == module:
                best = min(best, int(parts[1]) / 1000)
    return best


def imports() -> list[str]:
    print("\n3. Cold import (fresh interpreter, cumulative, best of 3)")
    rows = []
    for module, after, note in (
        ("server.management", "", "the poster alone (standard library only at import)"),
        ("server.management", "boto3", "the poster once boto3 is loaded, as in a handler container"),
        ("botocore.session", "", "credentials, on the first post (the handlers' boto3 loads it anyway)"),
        ("boto3", "", "what posting imported before"),
    ):
        ms = import_ms(module, after)
        label = f"{module} (after {after})" if after else module
        print(f"  import {label:<36} {ms:6.1f} ms  {note}")
        rows.append(f"| `import {label}` | {ms:.0f} ms | {note} |")
    return rows


def signing() -> list[str]:
    print("\n4. Signing one post")
    endpoint = Endpoint.parse("https://abc123.execute-api.us-east-1.amazonaws.com/prod")
    path = endpoint.path_for("L0SM9cOFvHcCIhw=")
    signer = Signer(CREDENTIALS, REGION)
    frozen = CREDENTIALS.get_frozen_credentials()
    url = f"https://{endpoint.host_header}{path.request}"
    n = 5000

    def botocore_sign() -> Any:
        request = AWSRequest(method="POST", url=url, data=FRAME)
        SigV4Auth(frozen, "execute-api", REGION).add_auth(request)
        return request

    timings = {}
    for label, sign in (
        ("botocore SigV4Auth", botocore_sign),
        ("lean, cached key", lambda: signer.headers("POST", endpoint.host_header, path.canonical, FRAME)),
    ):
        sign()
        start = time.process_time()
        for _ in range(n):
            sign()
        timings[label] = (time.process_time() - start) / n * 1e6
        print(f"  {label:<20} {timings[label]:6.1f} µs")
    return [f"| {label} | {us:.1f} µs |" for label, us in timings.items()]


if __name__ == "__main__":
    print(f"(run at {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores)\n")
    if CPUS is not None:
        os.sched_setaffinity(0, CPUS[0])
        print(f"(client on CPU {sorted(CPUS[0])}, stand-in on CPUs {sorted(CPUS[1])})\n")
    delivery_rows = delivery()
    alternative_rows = alternatives()
    if CPUS is not None:
        os.sched_setaffinity(0, CPUS[0] | CPUS[1])
    import_rows = imports()
    signing_rows = signing()
    print("\nMarkdown:\n")
    print(
        "| latency | concurrency | boto3 µs/post | boto3 posts/s | lean µs/post | lean posts/s | CPU ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(delivery_rows))
    print()
    print("| import | ms | note |\n|---|---:|---|")
    print("\n".join(import_rows))
    print()
    print("| signing | CPU per post |\n|---|---:|")
    print("\n".join(signing_rows))
    print()
    print("| design not chosen | µs/post | posts/s |\n|---|---:|---:|")
    print("\n".join(alternative_rows))
