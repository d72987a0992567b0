"""Broadcaster benchmarks (issue: serverless core).

1. DynamoDB items read per broadcast as the table grows: 100 subscribers of one
   deployment among 100 / 1,000 / 10,000 connections. The broadcaster's Query
   reads only the deployment's subscribers; a Scan-based lookup (what the
   simple-websockets-chat sample does) reads every row.
2. Fan-out throughput against a @connections stand-in that answers after
   20 ms: posts per second with the lean poster's bounded concurrency, as a
   ratio to its ceiling (posts in flight / 20 ms) and to a sequential loop.
3. DynamoDB requests per event: batches of 1 and of 10 events of one busy
   deployment with 5 subscribers (the counter read, the sequencing
   transaction, the subscriber Query, marking the batch sent), by operation.

Runs against moto (in-process) and a real-HTTP stand-in; prints figures and ratios.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
from botocore.credentials import Credentials
from moto import mock_aws

from emulator.eventbridge import eventbridge_event
from emulator.management_standin import ManagementStandIn
from emulator.tables import create_tables
from handlers import broadcaster
from server.management import ManagementApi
from server.runtime import get_runtime, reset_runtime

REGION = "us-east-1"
SUBSCRIBERS = 100
DELAY = 0.020


def _env(tables: dict[str, str], endpoint: str, concurrency: int) -> None:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            **tables,
            "COGNITO_USER_POOL_ID": f"{REGION}_bench",
            "COGNITO_CLIENT_IDS": "bench",
            "MANAGEMENT_ENDPOINT": endpoint,
            "BROADCAST_CONCURRENCY": str(concurrency),
            "LOG_LEVEL": "WARNING",
        }
    )
    reset_runtime()


#: What the broadcaster checks on a subscription row before each post, as
#: server.store's put_subscription writes it: a grant covering every project, and a token
#: that outlives the run. Without them the broadcaster (rightly) posts to no one.
_SUBSCRIBER_TRUST = {"grants": {"L": [{"S": "*"}]}, "tokenExpiresAt": {"N": str(int(time.time()) + 86400)}}


def _fill(ddb: object, tables: dict[str, str], total: int, target: str) -> None:
    """``total`` connections, SUBSCRIBERS of them on ``target``, the rest spread over 50 other deployments."""
    expires = str(int(time.time()) + 86400)
    subs, conns = [], []
    for i in range(total):
        conn = f"c{i:06d}="
        deployment = target if i < SUBSCRIBERS else f"OTHER{i % 50}"
        conns.append({"PutRequest": {"Item": {"connectionId": {"S": conn}, "ttl": {"N": expires}}}})
        subs.append(
            {
                "PutRequest": {
                    "Item": {
                        "deploymentId": {"S": deployment},
                        "connectionId": {"S": conn},
                        "ttl": {"N": expires},
                        **_SUBSCRIBER_TRUST,
                    }
                }
            }
        )
    for table, requests in ((tables["CONNECTIONS_TABLE"], conns), (tables["SUBSCRIPTIONS_TABLE"], subs)):
        for start in range(0, len(requests), 25):
            ddb.batch_write_item(RequestItems={table: requests[start : start + 25]})  # type: ignore[attr-defined]


def _scan_items_read(ddb: object, table: str, target: str) -> int:
    """Items a Scan must read to find one deployment's subscribers."""
    read, kwargs = (
        0,
        {
            "TableName": table,
            "FilterExpression": "deploymentId = :d",
            "ExpressionAttributeValues": {":d": {"S": target}},
        },
    )
    while True:
        page = ddb.scan(**kwargs)  # type: ignore[attr-defined]
        read += page["ScannedCount"]
        if "LastEvaluatedKey" not in page:
            return read
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def items_read_vs_table_size() -> list[str]:
    rows = [
        "| connections | subscribers | items read (Query) | items read (Scan) | Scan / Query |",
        "|---:|---:|---:|---:|---:|",
    ]
    print("\n1. DynamoDB items read per broadcast (100 subscribers)")
    for total in (100, 1_000, 10_000):
        with mock_aws(), ManagementStandIn().running() as standin:
            ddb = boto3.client("dynamodb", region_name=REGION)
            tables = create_tables(ddb, prefix=f"b{total}")
            _env(tables, standin.endpoint, 32)
            _fill(ddb, tables, total, "TARGET")
            summary = broadcaster.handler(
                eventbridge_event(
                    "deployment.status", {"deployment_id": "TARGET", "event_id": str(uuid.uuid4())}
                )
            )
            scan = _scan_items_read(ddb, tables["SUBSCRIPTIONS_TABLE"], "TARGET")
            assert summary["delivered"] == SUBSCRIBERS, summary
            ratio = scan / summary["items_read"]
            print(
                f"  {total:>6} connections: Query read {summary['items_read']:>5} items, "
                f"Scan would read {scan:>6} ({ratio:.0f}x)"
            )
            rows.append(f"| {total:,} | {SUBSCRIBERS} | {summary['items_read']} | {scan:,} | {ratio:.0f}x |")
    return rows


def fan_out_throughput() -> list[str]:
    print(f"\n2. Fan-out throughput against a stand-in answering after {DELAY * 1000:.0f} ms")
    rows = [
        "| mode | posts | seconds | posts/s | ceiling posts/s | of ceiling | vs sequential |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    results: dict[str, float] = {}
    for label, pool, posts in (
        ("sequential (1 in flight)", 1, 100),
        ("8 in flight", 8, 400),
        ("64 in flight", 64, 2000),
    ):
        # The stand-in runs in its own process so it does not compete with the
        # broadcaster for this interpreter's GIL (API Gateway is not in the Lambda either).
        server = subprocess.Popen(
            [sys.executable, "-m", "emulator.management_standin", "--delay", str(DELAY)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        try:
            assert server.stdout is not None
            endpoint = server.stdout.readline().strip()
            api = ManagementApi(endpoint, REGION, concurrency=pool, credentials=Credentials("AKIDBENCH", "s"))
            ids = [f"c{i}" for i in range(posts)]
            api.fan_out(ids[:pool], [b"{}"])  # open the kept-alive connections
            start = time.perf_counter()
            result = api.fan_out(ids, [b'{"type":"log.created"}'])
            elapsed = time.perf_counter() - start
            assert result.delivered == posts, result
        finally:
            server.kill()
            server.wait()
        rate = posts / elapsed
        results[label] = rate
        ceiling = pool / DELAY
        vs_seq = rate / results["sequential (1 in flight)"]
        print(
            f"  {label:<20} {posts:>5} posts in {elapsed:6.2f} s = {rate:7.0f}/s; "
            f"ceiling {ceiling:5.0f}/s ({rate / ceiling:.0%}); {vs_seq:.1f}x sequential"
        )
        rows.append(
            f"| {label} | {posts} | {elapsed:.2f} | {rate:.0f} | {ceiling:.0f} | {rate / ceiling:.0%} | {vs_seq:.1f}x |"
        )
    return rows


def _records(deployment_id: str, first: int, count: int) -> dict[str, object]:
    """An SQS batch of ``count`` events, as the delivery queue's mapping hands it over."""
    import json

    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "rh",
                "body": json.dumps(
                    eventbridge_event(
                        "log.created",
                        {
                            "deployment_id": deployment_id,
                            "event_id": str(uuid.uuid4()),
                            "data": {"n": first + i},
                        },
                    )
                ),
            }
            for i in range(count)
        ]
    }


def requests_per_event() -> list[str]:
    print("\n3. DynamoDB requests per event (one busy deployment, 5 subscribers)")
    rows = ["| batch | events | requests | per event | by operation |", "|---:|---:|---:|---:|---|"]
    for batch in (1, 10):
        with mock_aws(), ManagementStandIn().running() as standin:
            ddb = boto3.client("dynamodb", region_name=REGION)
            tables = create_tables(ddb, prefix=f"r{batch}")
            _env(tables, standin.endpoint, 32)
            _fill_subscribers(ddb, tables, "BUSY", 5)
            calls: dict[str, int] = {}

            def count(event_name: str, calls: dict[str, int] = calls, **_: object) -> None:
                operation = event_name.rsplit(".", 1)[-1]
                calls[operation] = calls.get(operation, 0) + 1

            runtime = get_runtime()
            runtime.store._db.meta.events.register("before-call.dynamodb", count)  # type: ignore[attr-defined]
            events = 100
            for first in range(0, events, batch):
                result = broadcaster.handler(_records("BUSY", first, batch))
                assert result == {"batchItemFailures": []}, result
            total = sum(calls.values())
            breakdown = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
            print(
                f"  batches of {batch:>2}: {total} requests for {events} events = {total / events:.2f} per event ({breakdown})"
            )
            rows.append(f"| {batch} | {events} | {total} | {total / events:.2f} | {breakdown} |")
    return rows


def _fill_subscribers(ddb: object, tables: dict[str, str], deployment_id: str, count: int) -> None:
    expires = str(int(time.time()) + 86400)
    for i in range(count):
        item = {
            "deploymentId": {"S": deployment_id},
            "connectionId": {"S": f"s{i}="},
            "ttl": {"N": expires},
            **_SUBSCRIBER_TRUST,
        }
        ddb.put_item(TableName=tables["SUBSCRIPTIONS_TABLE"], Item=item)  # type: ignore[attr-defined]


if __name__ == "__main__":
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": REGION}
    )
    with mock_aws():
        pass  # import-time cost of moto out of the way
    table_rows = items_read_vs_table_size()
    throughput_rows = fan_out_throughput()
    request_rows = requests_per_event()
    print("\nMarkdown:\n")
    print("\n".join(table_rows))
    print()
    print("\n".join(throughput_rows))
    print()
    print("\n".join(request_rows))
