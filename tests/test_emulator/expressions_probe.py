"""Run by ``test_moto_patches`` in a fresh interpreter (``python -m tests.test_emulator.expressions_probe``).

The patches change moto for the life of a process, and other tests run moto unpatched in theirs.
DynamoDB requests whose expressions repeat, in moto's in-process backend, with the parses moto's
own parsers perform counted; ``MODE`` ``patched`` applies ``emulator.moto_patches`` first. Prints
what the requests answered and the counts, as one JSON line.
"""

import json
import os
import sys

os.environ.update(
    AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
)
import boto3
from moto import mock_aws
from moto.core import serialize
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.parsing.expressions import UpdateExpressionParser

counts = {"condition": 0, "update": 0, "picks": 0}
pick = serialize.ResponseSerializer.get_value


def counted_pick(self, value, key, shape):
    counts["picks"] += 1
    return pick(self, value, key, shape)


serialize.ResponseSerializer.get_value = counted_pick
parse, make = ConditionExpressionParser.parse, UpdateExpressionParser.make.__func__


def counted_parse(self):
    counts["condition"] += 1
    return parse(self)


def counted_make(cls, text):
    counts["update"] += 1
    return make(cls, text)


ConditionExpressionParser.parse = counted_parse
UpdateExpressionParser.make = classmethod(counted_make)
if sys.argv[1] == "patched":
    from emulator import moto_patches

    moto_patches.apply()


def error(call):
    try:
        call()
    except Exception as exc:
        error = exc.response["Error"]
        return error["Code"], error["Message"], exc.response.get("CancellationReasons")
    return None


out = {}
with mock_aws():
    db = boto3.client("dynamodb", region_name="us-east-1")
    db.create_table(
        TableName="t",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
    )

    def claim(last, first_sk, condition=None):
        values = {":seq": {"N": str(last + 2)}, ":zero": {"N": "0"}, ":one": {"N": "1"}}
        if last:
            values[":last"] = {"N": str(last)}
        update = {
            "TableName": "t",
            "Key": {"pk": {"S": "c"}, "sk": {"N": "0"}},
            "UpdateExpression": "SET lastSeq = :seq, #n = if_not_exists(#n, :zero) + :one",
            "ConditionExpression": condition
            or ("lastSeq = :last" if last else "attribute_not_exists(lastSeq)"),
            "ExpressionAttributeNames": {"#n": "batches"},
            "ExpressionAttributeValues": values,
        }
        puts = [
            {
                "Put": {
                    "TableName": "t",
                    "Item": {"pk": {"S": "c"}, "sk": {"N": str(sk)}},
                    "ConditionExpression": "attribute_not_exists(sk)",
                }
            }
            for sk in (first_sk, first_sk + 1)
        ]
        db.transact_write_items(TransactItems=[{"Update": update}, *puts])

    counts.update(condition=0, update=0)
    for i in range(5):
        claim(2 * i, 2 * i + 1)
    out["counts_after_5"] = dict(counts)
    counter = db.get_item(TableName="t", Key={"pk": {"S": "c"}, "sk": {"N": "0"}})["Item"]
    out["counter"] = {"lastSeq": counter["lastSeq"]["N"], "batches": counter["batches"]["N"]}
    out["rows"] = sorted(
        int(i["sk"]["N"])
        for i in db.query(
            TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "c"}}
        )["Items"]
    )
    # A stale counter, then a row taken: cancelled, with the reasons, twice (each request decides anew).
    out["stale"] = [error(lambda: claim(4, 21)) for _ in range(2)]
    out["taken"] = [error(lambda: claim(10, 3)) for _ in range(2)]
    # Refusals the request's validation makes from what a parse found, each time.
    unused = {
        "TableName": "t",
        "Key": {"pk": {"S": "c"}, "sk": {"N": "0"}},
        "UpdateExpression": "SET lastSeq = :v",
        "ExpressionAttributeNames": {"#unused": "x"},
        "ExpressionAttributeValues": {":v": {"N": "1"}},
    }
    out["unused_names"] = [
        error(lambda: db.transact_write_items(TransactItems=[{"Update": unused}])) for _ in range(2)
    ]
    out["unused_in_update_item"] = [error(lambda: db.update_item(**unused)) for _ in range(2)]
    bad = {**unused, "UpdateExpression": "SET lastSeq = = :v", "ExpressionAttributeNames": None}
    del bad["ExpressionAttributeNames"]
    out["bad_syntax"] = [error(lambda: db.update_item(**bad)) for _ in range(2)]
    missing = {**bad, "UpdateExpression": "SET lastSeq = :w"}
    out["missing_value"] = [error(lambda: db.update_item(**missing)) for _ in range(2)]
    out["update_item"] = [
        db.update_item(
            TableName="t",
            Key={"pk": {"S": "u"}, "sk": {"N": "0"}},
            UpdateExpression="SET n = if_not_exists(n, :z) + :one",
            ExpressionAttributeValues={":z": {"N": "0"}, ":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        )["Attributes"]["n"]["N"]
        for _ in range(3)
    ]
    # Responses moto serializes from plain dicts: every attribute type, projections, misses.
    item = {
        "pk": {"S": "all"},
        "sk": {"N": "1"},
        "s": {"S": "text"},
        "n": {"N": "-1.5"},
        "b": {"B": b"\x00\xffbytes"},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2"]},
        "bs": {"BS": [b"x", b"y"]},
        "m": {"M": {"inner": {"L": [{"S": "x"}, {"NULL": True}, {"BOOL": False}, {"M": {}}]}}},
        "l": {"L": []},
        "null": {"NULL": True},
        "bool": {"BOOL": True},
    }
    db.put_item(TableName="t", Item=item)
    key = {"pk": {"S": "all"}, "sk": {"N": "1"}}
    counts["picks"] = 0
    answers = [
        db.query(
            TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "all"}}
        ),
        db.get_item(TableName="t", Key=key),
        db.get_item(
            TableName="t",
            Key=key,
            ProjectionExpression="m.inner[0], ns, #b",
            ExpressionAttributeNames={"#b": "bool"},
        ),
        db.get_item(TableName="t", Key={"pk": {"S": "none"}, "sk": {"N": "1"}}),
        db.batch_get_item(RequestItems={"t": {"Keys": [key]}}),
        db.scan(TableName="t", FilterExpression="attribute_exists(ss)"),
        db.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="SET n = n + :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        ),
    ]
    out["picks"] = counts["picks"]
    for answer in answers:
        answer.pop("ResponseMetadata")
    out["answers"] = json.loads(json.dumps(answers, default=repr))
    table = db.describe_table(TableName="t")["Table"]
    out["table"] = {
        k: table[k] for k in ("KeySchema", "AttributeDefinitions", "TableStatus", "ItemCount", "TableName")
    }
print(json.dumps(out))
