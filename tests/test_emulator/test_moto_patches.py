"""The embedded backend's DynamoDB: atomic requests and transactions that undo only what they touched."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.backend import MotoBackend, client


@pytest.fixture(scope="module")
def ddb() -> Iterator[Any]:
    """A patched moto backend process with one table keyed by (pk, sk)."""
    backend = MotoBackend()
    endpoint = backend.start()
    db = client("dynamodb", endpoint, "us-east-1", max_pool_connections=20)
    _create_table(db, "t")
    yield db
    backend.stop()


def _create_table(db: Any, name: str, index: tuple[str, str, str] | None = None) -> None:
    """A table keyed by (pk S, sk N); ``index`` = (name, hash, range): a global index on (S, N)."""
    attributes = [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "N"},
    ]
    extra: dict[str, Any] = {}
    if index is not None:
        index_name, hash_key, range_key = index
        attributes += [
            {"AttributeName": hash_key, "AttributeType": "S"},
            {"AttributeName": range_key, "AttributeType": "N"},
        ]
        extra["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index_name,
                "KeySchema": [
                    {"AttributeName": hash_key, "KeyType": "HASH"},
                    {"AttributeName": range_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ]
    db.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=attributes,
        **extra,
    )


def _rows(db: Any, pk: str) -> list[dict[str, Any]]:
    reply = db.query(
        TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": pk}}
    )
    rows: list[dict[str, Any]] = reply["Items"]
    return rows


def _item(pk: str, sk: int, **extra: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}, **{k: {"S": v} for k, v in extra.items()}}


def _claim_next(db: Any, pk: str, writer: str) -> int:
    """Take the next number of a counter with a conditional transaction, retrying on conflicts."""
    while True:
        counter = db.get_item(TableName="t", Key=_item(pk, 0), ConsistentRead=True).get("Item")
        last = int(counter["last"]["N"]) if counter else 0
        condition = "attribute_not_exists(#last)" if last == 0 else "#last = :last"
        values: dict[str, Any] = {":next": {"N": str(last + 1)}}
        if last:
            values[":last"] = {"N": str(last)}
        try:
            db.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": "t",
                            "Key": _item(pk, 0),
                            "UpdateExpression": "SET #last = :next",
                            "ConditionExpression": condition,
                            "ExpressionAttributeNames": {"#last": "last"},
                            "ExpressionAttributeValues": values,
                        }
                    },
                    {
                        "Put": {
                            "TableName": "t",
                            "Item": _item(pk, last + 1, writer=writer),
                            "ConditionExpression": "attribute_not_exists(sk)",
                        }
                    },
                ]
            )
        except db.exceptions.TransactionCanceledException:
            continue
        return last + 1


def test_racing_transactions_never_lose_or_share_a_number(ddb: Any) -> None:
    """Six writers race on one counter while others write unrelated items: nothing is lost."""
    # A table with history: moto's own snapshot of it is slow enough for writes to land inside it.
    for start in range(0, 3000, 25):
        batch = [
            {"PutRequest": {"Item": _item("history", n, pad="x" * 200)}} for n in range(start, start + 25)
        ]
        ddb.batch_write_item(RequestItems={"t": batch})
    claimed: list[int] = []
    lock = threading.Lock()

    def writer(name: str) -> None:
        for _ in range(15):
            number = _claim_next(ddb, "race", name)
            with lock:
                claimed.append(number)

    def bystander(index: int) -> None:
        for n in range(30):
            ddb.put_item(TableName="t", Item=_item(f"other-{index}", n))

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(6)]
    threads += [threading.Thread(target=bystander, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(claimed) == list(range(1, 91))
    assert len(_rows(ddb, "race")) == 91  # the counter and 90 claimed numbers
    for index in range(2):
        others = _rows(ddb, f"other-{index}")
        assert len(others) == 30  # no failed transaction rolled a bystander's write back


def test_a_cancelled_transaction_changes_nothing(ddb: Any) -> None:
    """The first write of a transaction whose second condition fails is undone; the reasons are kept."""
    ddb.put_item(TableName="t", Item=_item("undo", 1, state="before"))
    ddb.put_item(TableName="t", Item=_item("undo", 2, state="taken"))

    with pytest.raises(ddb.exceptions.TransactionCanceledException) as cancelled:
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "t", "Item": _item("undo", 1, state="after")}},
                {"Put": {"TableName": "t", "Item": _item("undo", 3, state="new")}},
                {
                    "Put": {
                        "TableName": "t",
                        "Item": _item("undo", 2, state="overwritten"),
                        "ConditionExpression": "attribute_not_exists(sk)",
                    }
                },
            ]
        )

    reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "ConditionalCheckFailed"]
    rows = _rows(ddb, "undo")
    assert {int(i["sk"]["N"]): i["state"]["S"] for i in rows} == {1: "before", 2: "taken"}


def test_eventbridge_delivers_a_burst_to_the_queue_unchanged() -> None:
    """With compiled JSONPath expressions cached, every event still reaches the queue as sent."""
    backend = MotoBackend()
    endpoint = backend.start()
    try:
        info = backend.provision(endpoint, "patches")
        events = client("events", endpoint, "us-east-1")
        sqs = client("sqs", endpoint, "us-east-1")
        details = [{"deployment_id": "D1", "event_id": f"e{i}", "data": {"i": i}} for i in range(30)]
        for start in range(0, 30, 10):
            reply = events.put_events(
                Entries=[
                    {
                        "Source": info.event_source,
                        "DetailType": "log.created",
                        "Detail": json.dumps(detail),
                        "EventBusName": info.event_bus_name,
                    }
                    for detail in details[start : start + 10]
                ]
            )
            assert reply["FailedEntryCount"] == 0
        bodies: list[dict[str, Any]] = []
        for _ in range(20):
            batch = sqs.receive_message(QueueUrl=info.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            bodies += [json.loads(m["Body"]) for m in batch.get("Messages", [])]
            if len(bodies) >= 30:
                break
        assert sorted(b["detail"]["event_id"] for b in bodies) == sorted(d["event_id"] for d in details)
        assert {b["detail-type"] for b in bodies} == {"log.created"}
        assert {b["source"] for b in bodies} == {info.event_source}
        assert all(
            b["id"] and b["time"] and b["detail"]["data"] == {"i": int(b["detail"]["event_id"][1:])}
            for b in bodies
        )
    finally:
        backend.stop()


def test_a_long_queue_hands_out_each_message_once_and_hides_received_ones() -> None:
    """With the fast clock, visibility still works: 300 queued messages are received once each."""
    backend = MotoBackend()
    endpoint = backend.start()
    try:
        sqs = client("sqs", endpoint, "us-east-1")
        url = sqs.create_queue(QueueName="long", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        for start in range(0, 300, 10):
            sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)]
            )
        received: list[str] = []
        while True:
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                break
            received += [m["Body"] for m in batch]
        assert sorted(received) == sorted(f"m{i}" for i in range(300))
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["ApproximateNumberOfMessagesNotVisible"] == "300"
        assert attributes["ApproximateNumberOfMessages"] == "0"
    finally:
        backend.stop()


def _run_expressions(mode: str) -> dict[str, Any]:
    """What ``tests/test_emulator/expressions_probe.py`` answers in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_emulator.expressions_probe", mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_cached_expressions_answer_as_moto_does_and_are_parsed_once() -> None:
    """Repeated transactions, refusals and updates answer the same patched and unpatched;
    patched, a repeated update expression is parsed once and a condition once per request at most."""
    plain, patched = _run_expressions("plain"), _run_expressions("patched")
    counts = patched.pop("counts_after_5")
    plain_counts = plain.pop("counts_after_5")
    picks, plain_picks = patched.pop("picks"), plain.pop("picks")
    counts.pop("picks")
    plain_counts.pop("picks")
    assert patched == plain
    assert patched["counter"] == {"lastSeq": "10", "batches": "5"}
    assert patched["rows"] == list(range(11))
    assert [reason[0] for reason in patched["stale"]] == ["TransactionCanceledException"] * 2
    assert [r["Code"] for r in patched["stale"][0][2]] == ["ConditionalCheckFailed", "None", "None"]
    assert [r["Code"] for r in patched["taken"][0][2]] == [
        "None",
        "ConditionalCheckFailed",
        "ConditionalCheckFailed",
    ]
    for refused in ("unused_names", "unused_in_update_item", "bad_syntax", "missing_value"):
        assert [code for code, *_ in patched[refused]] == ["ValidationException"] * 2, refused
    assert patched["update_item"] == ["1", "2", "3"]
    # Unpatched: 2 parses of the update expression and at least 3 of each item's condition, every request.
    assert plain_counts["update"] == 5 * 2
    assert plain_counts["condition"] >= 5 * 3 * 3
    # Patched: the update expression once; the Update's condition (its values change) once per request;
    # the Puts' condition once with the request's own names and values ({}) and once as the transaction
    # passes them on (None), which the cache keeps apart; the counter row's creation (no condition) once.
    assert counts == {"condition": 5 + 2 + 1, "update": 1}
    # Serialized responses: the same answers (above), with members a dict does not hold skipped
    # instead of picked one by one (every DynamoDB AttributeValue has ten).
    assert patched["answers"][0]["Items"][0]["b"] == {"B": repr(b"\x00\xffbytes")}
    assert 0 < picks * 3 < plain_picks


@pytest.fixture(scope="module")
def sqs() -> Iterator[Any]:
    """A patched moto backend process and an SQS client of it."""
    backend = MotoBackend()
    endpoint = backend.start()
    yield client("sqs", endpoint, "us-east-1")
    backend.stop()


def test_a_long_poll_receives_a_delayed_message_that_comes_due_during_it(sqs: Any) -> None:
    """Unpatched, the poll rescans only every second: a message due half-way through a one-second
    poll was left for the next poll (the poll's deadline passed before its next scan)."""
    url = sqs.create_queue(QueueName="delayed")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="wake", DelaySeconds=1)
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None  # not due yet
    threading.Event().wait(0.5)
    reply = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)  # it comes due about half-way through
    assert [m["Body"] for m in reply.get("Messages", [])] == ["wake"]


def test_the_patches_refuse_a_moto_they_were_not_written_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another moto version, or a patched function whose parameters changed, stops the local stack
    with a message naming what changed and the moto to install."""
    from emulator import moto_patches

    moto_patches.check_moto()  # the pinned moto passes
    with pytest.raises(moto_patches.MotoMismatchError, match=r"found moto 5\.3\.0.*moto\[server\]==5\.2\.5"):
        moto_patches.check_moto("5.3.0")

    from moto.sqs import models

    def delete_message(self: Any, receipt_handle: str, force: bool = False) -> None:
        del self, receipt_handle, force

    monkeypatch.setattr(models.Queue, "delete_message", delete_message)
    with pytest.raises(moto_patches.MotoMismatchError, match=r"Queue\.delete_message no longer takes"):
        moto_patches.check_moto()
    monkeypatch.delattr(models.SQSBackend, "send_message")
    with pytest.raises(
        moto_patches.MotoMismatchError, match=r"has no moto\.sqs\.models\.SQSBackend\.send_message"
    ):
        moto_patches.check_moto()


def test_a_query_answers_from_its_partition_as_moto_does(ddb: Any) -> None:
    """A Query on the table's key reads only its partition (fix 9), and answers as moto did: in
    range-key order either way, paged by Limit and ExclusiveStartKey, filtered, other keys unseen."""
    for sk in (5, 1, 4, 2, 3):  # written out of order: the answer is in range-key order all the same
        ddb.put_item(TableName="t", Item=_item("partition-a", sk, kind="odd" if sk % 2 else "even"))
    for pk in ("partition-0", "partition-b", "partition-z"):
        for sk in range(1, 4):
            ddb.put_item(TableName="t", Item=_item(pk, sk))

    def query(**extra: Any) -> dict[str, Any]:
        reply: dict[str, Any] = ddb.query(
            TableName="t",
            KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
            ExpressionAttributeValues={
                ":p": {"S": "partition-a"},
                ":a": {"N": "2"},
                ":b": {"N": "5"},
                **extra.pop("values", {}),
            },
            ConsistentRead=True,
            **extra,
        )
        return reply

    def numbers(reply: dict[str, Any]) -> list[int]:
        return [int(item["sk"]["N"]) for item in reply["Items"]]

    assert numbers(query()) == [2, 3, 4, 5]
    assert numbers(query(ScanIndexForward=False)) == [5, 4, 3, 2]
    first = query(Limit=2)
    assert numbers(first) == [2, 3]
    assert first["LastEvaluatedKey"] == {
        "pk": {"S": "partition-a"},
        "sk": {"N": "3"},
    }
    assert numbers(query(Limit=2, ExclusiveStartKey=first["LastEvaluatedKey"])) == [4, 5]
    odd = query(FilterExpression="kind = :odd", values={":odd": {"S": "odd"}})
    assert numbers(odd) == [3, 5]
    assert odd["ScannedCount"] == 4
    assert _rows(ddb, "partition-nothing") == []
    # A Scan still sees every partition (it lists the table, as moto does).
    scanned = {item["pk"]["S"] for item in ddb.scan(TableName="t")["Items"]}
    assert {"partition-0", "partition-a", "partition-b", "partition-z"} <= scanned


def test_an_index_query_answers_as_moto_does(ddb: Any) -> None:
    """A Query on an index sorts only the items under the index key asked for (fix 9), and answers
    as moto did: by the index's range key either way, ties by the table's key, paged, others unseen."""
    _create_table(ddb, "g", ("byAt", "bucket", "at"))
    rows = [
        ("c", 0, "one", 30),
        ("a", 0, "one", 10),
        ("b", 0, "one", 30),
        ("a", 1, "two", 20),
        ("d", 0, "one", 20),
    ]
    for pk, sk, bucket, at in rows:
        item = {**_item(pk, sk), "bucket": {"S": bucket}, "at": {"N": str(at)}}
        ddb.put_item(TableName="g", Item=item)
    for n in range(50):  # items outside the index (no bucket), as history rows are
        ddb.put_item(TableName="g", Item=_item("history", n + 1))

    def query(**extra: Any) -> dict[str, Any]:
        reply: dict[str, Any] = ddb.query(
            TableName="g",
            IndexName="byAt",
            KeyConditionExpression="bucket = :b",
            ExpressionAttributeValues={":b": {"S": "one"}},
            **extra,
        )
        return reply

    def keys_of(reply: dict[str, Any]) -> list[str]:
        return [item["pk"]["S"] for item in reply["Items"]]

    assert keys_of(query()) == ["a", "d", "b", "c"]  # by `at`; the tie at 30 by the table's key
    assert keys_of(query(ScanIndexForward=False)) == ["c", "b", "d", "a"]
    first = query(ScanIndexForward=False, Limit=2)
    assert keys_of(first) == ["c", "b"]
    rest = query(ScanIndexForward=False, Limit=2, ExclusiveStartKey=first["LastEvaluatedKey"])
    assert keys_of(rest) == ["d", "a"]
    assert (
        keys_of(
            ddb.query(
                TableName="g",
                IndexName="byAt",
                KeyConditionExpression="bucket = :b",
                ExpressionAttributeValues={":b": {"S": "nothing"}},
            )
        )
        == []
    )


def test_in_process_moto_answers_one_dynamodb_request_at_a_time(aws: None) -> None:
    """The suite's own moto (``mock_aws``), called from several threads as the broadcaster does.

    Unserialized, a transaction deep-copies its table while another thread writes
    to it, and one of them fails ("dictionary changed size during iteration").
    """
    import boto3

    db = boto3.client("dynamodb", region_name="us-east-1")
    _create_table(db, "t")
    failures: list[BaseException] = []

    def transactions() -> None:
        for n in range(150):
            try:
                db.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": _item("tx", n)}}])
            except Exception as exc:  # any failure is the finding
                failures.append(exc)

    def writes(name: str) -> None:
        for n in range(300):
            try:
                db.put_item(TableName="t", Item=_item(name, n))
            except Exception as exc:
                failures.append(exc)

    threads = [threading.Thread(target=transactions)] + [
        threading.Thread(target=writes, args=(f"w{i}",)) for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(_rows(db, "tx")) == 150
    assert all(len(_rows(db, f"w{i}")) == 300 for i in range(3))
