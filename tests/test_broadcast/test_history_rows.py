"""History rows hold runs of events: what one transaction stores is one row, read back exactly.

A deployment's history is one partition key, and a transaction pays 2 write units per KB of
each item, rounded up: a row per run of events instead of per event is what lets one
deployment go past about 420 events a second (docs/delivery.md). These tests hold the rows'
layout to what every reader relies on: keyed by their last ``seq``, ``firstSeq`` … ``seq`` in
``messages``, no more than ``HISTORY_ROW_EVENTS`` events or about ``HISTORY_ROW_BYTES`` of
them, and rows an older version wrote (one event each) still read.
"""

from __future__ import annotations

import json
import time
from typing import Any

from contract import keys
from contract.events import parse_event
from handlers import broadcaster
from server.runtime import get_runtime
from tests.support.events import eventbridge_event
from tests.support.moto_stack import Stack
from tests.test_handlers.wire import replies


def _event(deployment_id: str, n: int, size: int = 20) -> dict[str, Any]:
    detail = {
        "deployment_id": deployment_id,
        "event_id": f"{deployment_id}-{n}",
        "data": {"level": "info", "message": f"line {n} " + "x" * size},
        "producer_id": "p1",
        "producer_seq": n,
    }
    return eventbridge_event("log.created", detail)


def _append(deployment_id: str, numbers: range, size: int = 20) -> None:
    get_runtime().store.append_events(
        deployment_id, [parse_event(_event(deployment_id, n, size)) for n in numbers]
    )


def _history(stack: Stack, deployment_id: str) -> list[dict[str, Any]]:
    rows = [r for r in stack.snapshot()["EVENTS_TABLE"] if r["deploymentId"]["S"] == deployment_id]
    return sorted((r for r in rows if r["seq"]["N"] != "0"), key=lambda r: int(r["seq"]["N"]))


def _runs(rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(int(r["firstSeq"]["N"]), int(r["seq"]["N"])) for r in rows]


def _replayed(stack: Stack, deployment_id: str, since: int) -> list[int]:
    """The seqs a new subscriber with ``since`` is sent, through the subscribe route."""
    conn = stack.open()
    stack.send(conn, {"action": "subscribe", "deployment_id": deployment_id, "since": since})
    return [m["seq"] for m in replies(stack, conn) if m.get("type") == "log.created"]


def test_what_one_transaction_stores_is_one_row_keyed_by_its_last_seq(stack: Stack) -> None:
    """30 small events, then 5: two rows, 1..30 and 31..35, each message with its own seq."""
    _append("D1", range(1, 31))
    _append("D1", range(31, 36))

    rows = _history(stack, "D1")

    assert _runs(rows) == [(1, 30), (31, 35)]
    seqs = [json.loads(m["S"])["seq"] for r in rows for m in r["messages"]["L"]]
    assert seqs == list(range(1, 36))
    assert all(r["projectName"]["S"] and "ttl" in r for r in rows)


def test_a_replay_from_any_seq_sends_exactly_the_events_after_it(stack: Stack) -> None:
    """since inside a row, at its end and before the first: the events after since, once each."""
    _append("D2", range(1, 31))
    _append("D2", range(31, 36))

    assert _replayed(stack, "D2", 7) == list(range(8, 36))
    assert _replayed(stack, "D2", 30) == list(range(31, 36))
    assert _replayed(stack, "D2", 0) == list(range(1, 36))
    assert _replayed(stack, "D2", 35) == []
    store = get_runtime().store
    assert [json.loads(m)["seq"] for m in store.events_between("D2", 29, 32)] == [29, 30, 31, 32]
    picked = [json.loads(m) for m in store.messages("D2", [33, 2, 31])]  # from three rows' ranges
    assert [(m["seq"], m["data"]["message"]) for m in picked] == [
        (n, f"line {n} " + "x" * 20) for n in (2, 31, 33)
    ]


def test_large_events_fill_rows_by_bytes_and_a_row_stays_far_under_400_kb(stack: Stack) -> None:
    """Ten events of 20 KB: three to a row (about 64 KB each), never one row for all ten."""
    _append("D3", range(1, 11), size=20_000)

    rows = _history(stack, "D3")

    assert _runs(rows) == [(1, 3), (4, 6), (7, 9), (10, 10)]
    for row in rows:
        held = sum(len(m["S"].encode()) for m in row["messages"]["L"])
        assert held <= keys.HISTORY_ROW_BYTES
    assert _replayed(stack, "D3", 2) == list(range(3, 11))


def test_rows_an_older_version_wrote_one_event_each_are_read_alike(stack: Stack) -> None:
    """A history of one-event rows (``message``), then new runs after it: a replay reads both."""
    _append("D4", range(1, 4))
    table = stack.tables["EVENTS_TABLE"]
    (packed,) = _history(stack, "D4")
    stack.ddb.delete_item(TableName=table, Key={"deploymentId": {"S": "D4"}, "seq": {"N": "3"}})
    for n, message in enumerate(packed["messages"]["L"], start=1):  # as the older version stored them
        stack.ddb.put_item(
            TableName=table,
            Item={
                "deploymentId": {"S": "D4"},
                "seq": {"N": str(n)},
                "message": message,
                "ttl": packed["ttl"],
            },
        )
    _append("D4", range(4, 9))

    assert _runs([r for r in _history(stack, "D4") if "messages" in r]) == [(4, 8)]
    assert _replayed(stack, "D4", 1) == list(range(2, 9))
    snapshot = get_runtime().store.snapshot("D4")
    assert snapshot[0] == 8
    assert len(snapshot[1]["recent_logs"]) == 8


def test_a_batch_through_the_broadcaster_is_one_row_and_reaches_subscribers_whole(stack: Stack) -> None:
    """Ten records in one invocation: one history row 1..10, and the subscriber gets 1..10."""
    (conn,) = stack.subscribed("D5", 1)
    batch = {
        "Records": [
            {
                "messageId": f"m{n}",
                "receiptHandle": f"rh-{n}",
                "body": json.dumps(_event("D5", n)),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
            }
            for n in range(1, 11)
        ]
    }

    assert broadcaster.handler(batch) == {"batchItemFailures": []}

    assert _runs(_history(stack, "D5")) == [(1, 10)]
    sent = [m["seq"] for frame in stack.mgmt.frames(conn) for m in frame if m.get("type") == "log.created"]
    assert sent == list(range(1, 11))
