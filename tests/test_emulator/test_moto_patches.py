"""The embedded backend's DynamoDB: atomic requests and transactions that undo only what they touched."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from emulator.backend import MotoBackend, client


@pytest.fixture(scope="module")
def ddb() -> Iterator[Any]:
    """A patched moto backend process with one table keyed by (pk, sk)."""
    backend = MotoBackend()
    endpoint = backend.start()
    db = client("dynamodb", endpoint, "us-east-1", max_pool_connections=20)
    db.create_table(
        TableName="t",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
    )
    yield db
    backend.stop()


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
