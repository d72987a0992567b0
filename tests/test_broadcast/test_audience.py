"""The audience: a container sends from the subscriber list it read last, and misses no newcomer.

Reading a deployment's subscribers after every transaction cost a DynamoDB round trip on
every event's path and read units that grow with the subscribers on every send. The lease
holder now sends from the list its container kept under the deployment's audience token, a
value on the lease row that every subscribe and unsubscribe replaces (docs/delivery.md,
"The audience"). These tests hold the three promises that makes: no read while nothing
changed, the next event after a subscribe or unsubscribe goes to exactly the new set, and a
subscriber that joins while the holder is sending (its history read before the holder's
events were stored) is still sent them, once.
"""

from __future__ import annotations

from typing import Any

import pytest

from server.runtime import get_runtime
from tests.support.moto_stack import Stack


def _seqs(stack: Stack, conn: str) -> list[int]:
    return [m["seq"] for m in stack.replies(conn) if m.get("type") == "deployment.status"]


class _Recorder:
    """The store's DynamoDB client, recording each request's operation and table."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, str(kwargs.get("TableName", ""))))
            return method(*args, **kwargs)

        return call


def test_while_nobody_subscribes_or_leaves_the_subscribers_are_read_once(stack: Stack) -> None:
    """Three events to two subscribers: the first send reads them, the next two read nothing."""
    connections = stack.subscribed("D1", 2)
    store = get_runtime().store
    recorder = _Recorder(store.client)
    store._db = recorder  # type: ignore[assignment]  # every part of the store reads it from here
    subscriptions = stack.tables["SUBSCRIPTIONS_TABLE"]

    first = stack.publish("D1")
    queries_first = recorder.calls.count(("query", subscriptions))
    second, third = stack.publish("D1"), stack.publish("D1")

    assert (first["items_read"], second["items_read"], third["items_read"]) == (2, 0, 0)
    assert queries_first == 1
    assert recorder.calls.count(("query", subscriptions)) == 1
    assert all(_seqs(stack, c) == [1, 2, 3] for c in connections)


def test_the_event_after_a_subscribe_reaches_the_newcomer(stack: Stack) -> None:
    """A subscribes, one event; B subscribes; the next event reaches both, read afresh."""
    (a,) = stack.subscribed("D2", 1, prefix="a")
    stack.publish("D2")
    (b,) = stack.subscribed("D2", 1, prefix="b")

    summary = stack.publish("D2")

    assert summary["items_read"] == 2
    assert _seqs(stack, a) == [2]  # stack.subscribed cleared what came before
    assert _seqs(stack, b) == [2]


def test_an_unsubscribed_connection_is_sent_nothing_more(stack: Stack) -> None:
    """A and B subscribe, one event; B unsubscribes; the next event reaches A only."""
    a, b = stack.subscribed("D3", 2)
    stack.publish("D3")
    assert stack.send(b, {"action": "unsubscribe", "deployment_id": "D3"})["statusCode"] == 200

    summary = stack.publish("D3")

    assert summary["recipients"] == 1
    assert _seqs(stack, a) == [1, 2]
    assert _seqs(stack, b) == [1]


def test_a_subscriber_that_joins_while_the_holder_sends_gets_what_its_history_missed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B subscribes after the holder read the token and before it stores event 2.

    B's history read (its snapshot, at seq 1) comes before event 2 is stored, and the holder
    sends event 2 from the list it kept, which lacks B: the holder's release finds the token
    moved, and B is sent event 2 before the lease is let go. A, in the old list, gets it once.
    """
    (a,) = stack.subscribed("D4", 1, prefix="a")
    stack.publish("D4")
    store = get_runtime().store
    joined: list[str] = []
    real_append = store.append_events

    def append_after_a_subscribe(*args: Any, **kwargs: Any) -> Any:
        if not joined:  # B's whole subscribe (row, token, snapshot) between claim and transaction
            joined.append(stack.open("b0"))
            assert stack.send(joined[0], {"action": "subscribe", "deployment_id": "D4"})["statusCode"] == 200
        return real_append(*args, **kwargs)

    monkeypatch.setattr(store, "append_events", append_after_a_subscribe)

    stack.publish("D4")

    (b,) = joined
    acks = [m for m in stack.replies(b) if m.get("type") == "subscribed"]
    assert [ack["seq"] for ack in acks] == [1]  # its history ended before event 2
    assert _seqs(stack, b) == [2]
    assert _seqs(stack, a) == [1, 2]
