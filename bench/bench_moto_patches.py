"""What each of moto's speed patches (``emulator/moto_patches.py``) earns on the local stack's requests.

The local stack serves moto from its own process (``emulator/moto_process.py``:
waitress, 32 threads, the heap frozen after each operation's first request).
This benchmark starts that same server, in a fresh process per configuration
(a patch cannot be undone in-process), with

* ``all``: every patch, as ``cloud-ws local`` runs it;
* ``-GROUP``: every patch except GROUP, one of the six speed groups
  (``_cache_expressions``, ``_cache_jsonpath``, ``_fast_queue``,
  ``_fast_dispatch``, ``_remember_member_keys``, ``_query_one_partition``). The two correctness fixes
  (``_serialize``, ``_item_level_snapshots``) are always on.

Against each server it drives, through boto3 clients with kept-alive
connections as the handlers' are, three workloads shaped like the stack's hot
path, in alternating blocks:

``dynamodb`` (one round = 5 requests, what a broadcast of 10 events asks of the
  store): a TransactWriteItems of 21 conditional Puts (the counter with
  ``lastSeq = :last AND (attribute_not_exists(projectName) OR projectName =
  :project)``, then per event a history row and an identity row with
  ``attribute_not_exists``), a conditional UpdateItem (``SET upTo = :seq`` if
  ``attribute_not_exists(upTo) OR upTo < :seq``), a Query of the 10 rows just
  written (``deploymentId = :d AND seq BETWEEN :a AND :b``), a GetItem of the
  counter and a BatchWriteItem of 10 rows, on a table with hash ``deploymentId``
  (S) and range ``seq`` (N); 20 deployments in turn, so the history grows.
``sqs`` (one round = 12 requests): 10 SendMessage, a ReceiveMessage of 10
  (``WaitTimeSeconds=1``, all attributes, as the stack's poller asks) and a
  DeleteMessageBatch of them, on a queue that holds a backlog of ``--backlog``
  messages (a burst the poller has not caught up with).
``events`` (one round = 1 request): a PutEvents of 10 entries on a custom bus
  whose rule (the stack's detail pattern) targets an SQS queue; the queue is
  drained between blocks, outside the measurement, as the poller would.

For each workload it records the server process's CPU time per round (read by
the server itself, ``time.process_time``, around each block: the figure the
patches change, and the one least disturbed by other work on the machine) and
the client's wall time per round. Configurations run in a rotated order in
each repetition, so each one meets the machine's background load at every
position; the figures are medians over repetitions, and each group's ratio is
(without it) / (all), on the workload the group targets (``all`` for the two
that touch every request).

Run (about 12 minutes on 2 cores; the -queue and -jsonpath servers take the longest)::

    .venv/bin/python bench/bench_moto_patches.py [--reps 5] [--blocks 12] [--backlog 200] [--history 0]

``--history N`` first writes N rows of other deployments' history (100 each) to the
dynamodb workload's table, as a stack that has run a while holds them.

``--serve`` is internal (the server process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: The speed groups: name -> the function of emulator.moto_patches that installs it.
GROUPS: dict[str, str] = {
    "expressions": "_cache_expressions",
    "jsonpath": "_cache_jsonpath",
    "queue": "_fast_queue",
    "dispatch": "_fast_dispatch",
    "member_keys": "_remember_member_keys",
    "partition": "_query_one_partition",
}
#: The workload each group is judged on.
TARGET: dict[str, str] = {
    "expressions": "dynamodb",
    "jsonpath": "events",
    "queue": "sqs",
    "dispatch": "all",
    "member_keys": "all",
    "partition": "dynamodb",
}
WORKLOADS = ("dynamodb", "sqs", "events")
REQUESTS_PER_ROUND = {"dynamodb": 5, "sqs": 12, "events": 1}
CPU_PATH = "/__bench_cpu__"
SOURCE = "cloud.orchestrator"
REGION = "us-east-1"


# --------------------------------------------------------------------------- the server process


def apply_patches(without: str | None) -> None:
    """What ``moto_patches.apply()`` installs, in its order, except the speed group ``without``."""
    sys.path.insert(0, str(ROOT))
    from moto.dynamodb import models
    from moto.dynamodb.responses import DynamoHandler

    from emulator import moto_patches

    patches: Any = moto_patches
    patches.check_moto()
    patches._serialize(DynamoHandler)
    patches._item_level_snapshots(models)
    for group, function in GROUPS.items():
        if group == without:
            continue
        if group == "expressions":
            patches._cache_expressions(models)
        else:
            getattr(patches, function)()


def serve(without: str | None) -> None:
    """The local stack's moto server (emulator/moto_process.py) with the chosen patches."""
    apply_patches(without)
    import logging

    import waitress
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from emulator.moto_process import SERVER_THREADS, bind_reusable, freezing_after_first_requests

    moto_app = freezing_after_first_requests(DomainDispatcherApplication(create_backend_app))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == CPU_PATH:  # this process's CPU seconds, for the client
            body = json.dumps({"cpu": time.process_time()}).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        return moto_app(environ, start_response)

    logging.getLogger("waitress").setLevel(logging.ERROR)
    server = waitress.create_server(
        app,
        sockets=[bind_reusable("127.0.0.1", 0)],
        threads=SERVER_THREADS,
        connection_limit=1000,
        channel_timeout=120,
    )
    import threading

    threading.Thread(target=server.run, daemon=True).start()
    print(json.dumps({"port": server.effective_port}), flush=True)
    sys.stdin.read()
    server.close()


# --------------------------------------------------------------------------- the client


class Stack:
    """The resources the workloads use, on one server, and the workloads themselves."""

    def __init__(self, port: int, backlog: int, history: int = 0) -> None:
        import boto3
        import urllib3
        from botocore.config import Config

        self.endpoint = f"http://127.0.0.1:{port}"
        self._http = urllib3.PoolManager(maxsize=1)
        session = boto3.session.Session(
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 - moto takes any key
            region_name=REGION,
        )
        config = Config(retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=4)
        self.db: Any = session.client("dynamodb", endpoint_url=self.endpoint, config=config)
        self.sqs: Any = session.client("sqs", endpoint_url=self.endpoint, config=config)
        self.events: Any = session.client("events", endpoint_url=self.endpoint, config=config)
        for table in ("bench-events", "bench-event-ids"):
            hash_key = "deploymentId" if table == "bench-events" else "eventKey"
            schema: list[Any] = [{"AttributeName": hash_key, "KeyType": "HASH"}]
            attributes: list[Any] = [{"AttributeName": hash_key, "AttributeType": "S"}]
            if table == "bench-events":
                schema.append({"AttributeName": "seq", "KeyType": "RANGE"})
                attributes.append({"AttributeName": "seq", "AttributeType": "N"})
            self.db.create_table(
                TableName=table,
                KeySchema=schema,
                AttributeDefinitions=attributes,
                BillingMode="PAY_PER_REQUEST",
            )
        self._history(history)
        dlq = self.sqs.create_queue(QueueName="bench-dlq")["QueueUrl"]
        dlq_arn = self._arn(dlq)
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
        attributes_: Any = {"VisibilityTimeout": "30", "RedrivePolicy": redrive}
        self.queue = self.sqs.create_queue(QueueName="bench-work", Attributes=attributes_)["QueueUrl"]
        self.target = self.sqs.create_queue(QueueName="bench-broadcaster", Attributes=attributes_)["QueueUrl"]
        self.events.create_event_bus(Name="bench-bus")
        pattern = {"source": [SOURCE], "detail": {"deployment_id": [{"exists": True}]}}
        self.events.put_rule(Name="bench-rule", EventBusName="bench-bus", EventPattern=json.dumps(pattern))
        self.events.put_targets(
            Rule="bench-rule",
            EventBusName="bench-bus",
            Targets=[{"Id": "broadcaster", "Arn": self._arn(self.target)}],
        )
        for start in range(0, backlog, 10):
            entries: list[Any] = [
                {"Id": str(i), "MessageBody": self._body(start + i)} for i in range(min(10, backlog - start))
            ]
            self.sqs.send_message_batch(QueueUrl=self.queue, Entries=entries)
        self._last = dict.fromkeys(range(20), 0)
        self._round = 0

    def _history(self, rows: int) -> None:
        """Other deployments' history, 100 rows each: what a stack that ran a while holds."""
        for start in range(0, rows, 25):
            self.db.batch_write_item(
                RequestItems={
                    "bench-events": [
                        {
                            "PutRequest": {
                                "Item": {
                                    "deploymentId": {"S": f"old-{n // 100:06d}"},
                                    "seq": {"N": str(n % 100 + 1)},
                                    "message": {"S": self._body(n)},
                                }
                            }
                        }
                        for n in range(start, min(rows, start + 25))
                    ]
                }
            )

    def _arn(self, url: str) -> str:
        reply = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(reply["Attributes"]["QueueArn"])

    @staticmethod
    def _body(n: int) -> str:
        detail = {
            "deployment_id": f"D{n % 20:06d}",
            "event_id": f"{n:08d}-1c4e-4a8e-9a51-3f1f0c6d2e7a",
            "data": {"status": "deploying", "resource": f"aws:s3:Bucket::b{n}"},
            "timestamp": "2026-11-26T10:00:00Z",
        }
        return json.dumps(detail)

    def cpu(self) -> float:
        """The server's CPU seconds so far."""
        reply = self._http.request("GET", self.endpoint + CPU_PATH)
        return float(json.loads(reply.data)["cpu"])

    def dynamodb(self) -> None:
        self._round += 1
        d = self._round % 20
        deployment = f"D{d:06d}"
        last = self._last[d]
        values: dict[str, Any] = {":project": {"S": "bench"}}
        if last:
            values[":last"] = {"N": str(last)}
        condition = "lastSeq = :last" if last else "attribute_not_exists(lastSeq)"
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": "bench-events",
                    "Item": {
                        "deploymentId": {"S": deployment},
                        "seq": {"N": "0"},
                        "lastSeq": {"N": str(last + 10)},
                        "summary": {"S": json.dumps({"status": "deploying", "events": last + 10})},
                        "projectName": {"S": "bench"},
                        "updatedMs": {"N": str(int(time.time() * 1000))},
                    },
                    "ConditionExpression": condition
                    + " AND (attribute_not_exists(projectName) OR projectName = :project)",
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        for seq in range(last + 1, last + 11):
            event_id = f"{deployment}-{seq:08d}"
            items.append(
                {
                    "Put": {
                        "TableName": "bench-events",
                        "Item": {
                            "deploymentId": {"S": deployment},
                            "seq": {"N": str(seq)},
                            "eventId": {"S": event_id},
                            "message": {"S": self._body(seq)},
                            "projectName": {"S": "bench"},
                            "ttl": {"N": "1900000000"},
                        },
                        "ConditionExpression": "attribute_not_exists(seq)",
                    }
                }
            )
            items.append(
                {
                    "Put": {
                        "TableName": "bench-event-ids",
                        "Item": {"eventKey": {"S": event_id}, "seq": {"N": str(seq)}},
                        "ConditionExpression": "attribute_not_exists(eventKey)",
                    }
                }
            )
        self.db.transact_write_items(TransactItems=items)
        self._last[d] = last + 10
        self.db.update_item(
            TableName="bench-events",
            Key={"deploymentId": {"S": deployment}, "seq": {"N": "0"}},
            UpdateExpression="SET upTo = :seq",
            ConditionExpression="attribute_not_exists(upTo) OR upTo < :seq",
            ExpressionAttributeValues={":seq": {"N": str(last + 10)}},
        )
        self.db.query(
            TableName="bench-events",
            KeyConditionExpression="deploymentId = :d AND seq BETWEEN :a AND :b",
            ExpressionAttributeValues={
                ":d": {"S": deployment},
                ":a": {"N": str(last + 1)},
                ":b": {"N": str(last + 10)},
            },
            ProjectionExpression="message",
            ConsistentRead=True,
        )
        self.db.get_item(
            TableName="bench-events",
            Key={"deploymentId": {"S": deployment}, "seq": {"N": "0"}},
            ConsistentRead=True,
        )
        inbox = f"inbox-{self._round % 50}"
        self.db.batch_write_item(
            RequestItems={
                "bench-events": [
                    {
                        "PutRequest": {
                            "Item": {
                                "deploymentId": {"S": inbox},
                                "seq": {"N": str(i)},
                                "owner": {"S": "bench"},
                                "until": {"N": str(self._round)},
                            }
                        }
                    }
                    for i in range(10)
                ]
            }
        )

    def sqs_round(self) -> None:
        self._round += 1
        for i in range(10):
            self.sqs.send_message(QueueUrl=self.queue, MessageBody=self._body(self._round * 10 + i))
        reply = self.sqs.receive_message(
            QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
        )
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(reply.get("Messages", []))
        ]
        if entries:
            self.sqs.delete_message_batch(QueueUrl=self.queue, Entries=entries)

    def events_round(self) -> None:
        self._round += 1
        entries = [
            {
                "Source": SOURCE,
                "DetailType": "deployment.status",
                "Detail": self._body(self._round * 10 + i),
                "EventBusName": "bench-bus",
            }
            for i in range(10)
        ]
        reply = self.events.put_events(Entries=entries)
        if reply.get("FailedEntryCount"):
            raise RuntimeError(f"PutEvents failed: {reply}")

    def drain_target(self) -> int:
        """Receive and delete everything the rule delivered (outside the measurement)."""
        drained = 0
        while True:
            reply = self.sqs.receive_message(QueueUrl=self.target, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = reply.get("Messages", [])
            if not messages:
                return drained
            drained += len(messages)
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            self.sqs.delete_message_batch(QueueUrl=self.target, Entries=entries)


def run_config(
    without: str | None, blocks: int, per_block: dict[str, int], backlog: int, history: int = 0
) -> dict[str, Any]:
    """One fresh server: warm up, then ``blocks`` blocks of each workload; CPU and wall ms per round."""
    command = [sys.executable, str(Path(__file__).resolve()), "--serve"]
    if without is not None:
        command += ["--without", without]
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line:
            raise RuntimeError(f"the server ({without=}) did not start")
        stack = Stack(int(json.loads(line)["port"]), backlog, history)
        rounds = {"dynamodb": stack.dynamodb, "sqs": stack.sqs_round, "events": stack.events_round}
        for run in rounds.values():  # warm-up: every operation's first request (and the heap's freeze)
            for _ in range(3):
                run()
        stack.drain_target()
        cpu: dict[str, float] = dict.fromkeys(WORKLOADS, 0.0)
        wall: dict[str, float] = dict.fromkeys(WORKLOADS, 0.0)
        for _ in range(blocks):
            for name in WORKLOADS:
                run = rounds[name]
                cpu_before = stack.cpu()
                wall_before = time.perf_counter()
                for _ in range(per_block[name]):
                    run()
                wall[name] += time.perf_counter() - wall_before
                cpu[name] += stack.cpu() - cpu_before
            stack.drain_target()
        result: dict[str, Any] = {"cpu": {}, "wall": {}}
        for name in WORKLOADS:
            n = blocks * per_block[name]
            result["cpu"][name] = cpu[name] * 1000 / n
            result["wall"][name] = wall[name] * 1000 / n
        return result
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def total(figures: dict[str, float], per_block: dict[str, int]) -> float:
    """ms for one block of every workload (the ``all`` workload: the three mixed as the blocks run)."""
    return sum(figures[name] * per_block[name] for name in WORKLOADS)


PER_BLOCK = {"dynamodb": 4, "sqs": 4, "events": 8}


def figure(result: dict[str, Any], kind: str, workload: str) -> float:
    """One run's ms per round of ``workload`` (per block of the three for ``all``)."""
    if workload == "all":
        return total(result[kind], PER_BLOCK)
    return float(result[kind][workload])


def report(runs: dict[str, list[dict[str, Any]]], header: str) -> None:
    """The tables: medians over repetitions, and ratios paired within each repetition.

    A repetition's ratio divides a configuration's figure by the ``all`` run of the same
    repetition (run minutes apart, under the same background load); the median of those
    is the ratio reported, with its range over repetitions.
    """

    def median(config: str, kind: str, workload: str) -> float:
        return statistics.median(figure(r, kind, workload) for r in runs[config])

    def ratios(config: str, kind: str, workload: str) -> list[float]:
        pairs = zip(runs[config], runs["all"], strict=True)
        return [figure(r, kind, workload) / figure(a, kind, workload) for r, a in pairs]

    def ratio(config: str, kind: str, workload: str) -> str:
        values = ratios(config, kind, workload)
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    print(header)
    print("'all' workload = one block: 4 dynamodb rounds + 4 sqs rounds + 8 events rounds")
    print("ratio = without / with, the median of per-repetition ratios (min-max)")
    print()
    print("per workload, every patch applied (median, min-max over repetitions):")
    for workload in (*WORKLOADS, "all"):
        unit = "block" if workload == "all" else f"round ({REQUESTS_PER_ROUND[workload]} requests)"
        values = [figure(r, "cpu", workload) for r in runs["all"]]
        print(
            f"  {workload:9} server CPU {median('all', 'cpu', workload):8.2f} ms/{unit}"
            f" [{min(values):.2f}-{max(values):.2f}], client wall {median('all', 'wall', workload):8.2f} ms"
        )
    print()
    print(f"{'group':12} {'workload':9} {'CPU with':>9} {'without':>9} {'CPU ratio':>18}", end="")
    print(f" {'wall with':>10} {'without':>9} {'wall ratio':>18}")
    groups = [g for g in GROUPS if g in runs]
    for group in groups:
        workload = TARGET[group]
        print(
            f"{group:12} {workload:9} {median('all', 'cpu', workload):9.2f} {median(group, 'cpu', workload):9.2f}"
            f" {ratio(group, 'cpu', workload):>18} {median('all', 'wall', workload):10.2f}"
            f" {median(group, 'wall', workload):9.2f} {ratio(group, 'wall', workload):>18}"
        )
    print()
    print("every group on every workload, server CPU ratio (without / with, median of repetitions):")
    print(f"{'group':12} " + " ".join(f"{w:>9}" for w in (*WORKLOADS, "all")))
    for group in groups:
        values = [statistics.median(ratios(group, "cpu", w)) for w in (*WORKLOADS, "all")]
        print(f"{group:12} " + " ".join(f"{v:9.2f}" for v in values))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=5, help="repetitions of every configuration")
    parser.add_argument("--blocks", type=int, default=12, help="blocks of each workload per run")
    parser.add_argument(
        "--backlog", type=int, default=200, help="messages waiting in the SQS workload's queue"
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="rows of other deployments' history written to the dynamodb workload's table first",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--without", choices=sorted(GROUPS), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="also write every run's figures here")
    parser.add_argument(
        "--groups", default=",".join(GROUPS), help="the groups to leave out in turn (default: all six)"
    )
    parser.add_argument("--report", type=Path, default=None, help="only report a --json file's runs")
    args = parser.parse_args()
    if args.serve:
        serve(args.without)
        return
    if args.report is not None:
        report(json.loads(args.report.read_text()), f"moto speed patches: the runs in {args.report}")
        return

    chosen = [g for g in args.groups.split(",") if g]
    unknown = set(chosen) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; choose from {list(GROUPS)}")
    configs: list[str | None] = [None, *chosen]
    runs: dict[str, list[dict[str, Any]]] = {str(c or "all"): [] for c in configs}
    started = time.monotonic()
    for rep in range(args.reps):
        order = configs[rep % len(configs) :] + configs[: rep % len(configs)]
        for config in order:
            result = run_config(config, args.blocks, PER_BLOCK, args.backlog, args.history)
            name = "all" if config is None else f"-{config}"
            runs[str(config or "all")].append(result)
            cpu = " ".join(f"{w} {result['cpu'][w]:6.2f}" for w in WORKLOADS)
            print(f"rep {rep + 1} {name:13} server CPU ms/round: {cpu}", file=sys.stderr, flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=1))
    minutes = (time.monotonic() - started) / 60
    report(
        runs,
        f"moto speed patches: {args.reps} reps x {args.blocks} blocks, backlog {args.backlog}, "
        f"history {args.history:,} rows, {minutes:.1f} min",
    )


if __name__ == "__main__":
    main()
