"""subscribe / unsubscribe / ping / $default / $disconnect, driven as API Gateway drives them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from server.runtime import reset_runtime
from tests.support.moto_stack import Stack
from tests.test_handlers.wire import replies


def _subscriptions(stack: Stack) -> set[tuple[str, str]]:
    items = stack.snapshot()["SUBSCRIPTIONS_TABLE"]
    return {(i["deploymentId"]["S"], i["connectionId"]["S"]) for i in items}


def test_subscribe_stores_the_subscription_and_acknowledges(stack: Stack) -> None:
    """The ack names the deployment, its latest seq (0 before any event) and the replay count."""
    conn = stack.open()

    assert stack.send(conn, {"action": "subscribe", "deployment_id": "D1BRV40"}) == {"statusCode": 200}

    assert replies(stack, conn) == [{"type": "subscribed", "deployment_id": "D1BRV40", "seq": 0, "replay": 0}]
    assert _subscriptions(stack) == {("D1BRV40", conn)}


def test_subscribe_acknowledges_the_latest_seq(stack: Stack) -> None:
    """A subscriber without ``since`` learns where live events start."""
    for _ in range(3):
        stack.publish("D1")
    conn = stack.open()

    stack.send(conn, {"action": "subscribe", "deployment_id": "D1"})

    assert replies(stack, conn) == [{"type": "subscribed", "deployment_id": "D1", "seq": 3, "replay": 0}]


def test_subscribe_since_replays_missed_events_in_order(stack: Stack) -> None:
    """``since`` replays exactly the stored events with ``seq > since``, after the ack."""
    for layer in range(1, 6):
        stack.publish("D1", data={"status": "deploying", "current_layer": layer, "total_layers": 5})
    conn = stack.open()

    stack.send(conn, {"action": "subscribe", "deployment_id": "D1", "since": 2})

    got = replies(stack, conn)
    assert got[0] == {"type": "subscribed", "deployment_id": "D1", "seq": 5, "replay": 3}
    assert [m["seq"] for m in got[1:]] == [3, 4, 5]
    assert [m["data"]["current_layer"] for m in got[1:]] == [3, 4, 5]
    assert all(m["type"] == "deployment.status" and m["deployment_id"] == "D1" for m in got[1:])


def test_replay_is_bounded(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client far behind gets REPLAY_LIMIT events; the ack's seq tells it to ask again."""
    monkeypatch.setenv("REPLAY_LIMIT", "2")
    reset_runtime()
    for _ in range(5):
        stack.publish("D1")
    conn = stack.open()

    stack.send(conn, {"action": "subscribe", "deployment_id": "D1", "since": 0})

    got = replies(stack, conn)
    assert got[0]["seq"] == 5
    assert got[0]["replay"] == 2
    assert [m["seq"] for m in got[1:]] == [1, 2]


def test_since_at_or_past_the_latest_replays_nothing(stack: Stack) -> None:
    """A client that is up to date gets only the ack."""
    stack.publish("D1")
    conn = stack.open()

    stack.send(conn, {"action": "subscribe", "deployment_id": "D1", "since": 1})
    stack.send(conn, {"action": "subscribe", "deployment_id": "D1", "since": 7})

    assert [m["type"] for m in replies(stack, conn)] == ["subscribed", "subscribed"]


def test_resubscribing_is_idempotent(stack: Stack) -> None:
    """Subscribing twice keeps one row (and does not count twice against the limit)."""
    conn = stack.open()
    stack.send(conn, {"action": "subscribe", "deployment_id": "D1"})
    stack.send(conn, {"action": "subscribe", "deployment_id": "D1"})

    assert _subscriptions(stack) == {("D1", conn)}


def test_unsubscribe_removes_only_that_subscription(stack: Stack) -> None:
    """The other deployment's subscription and other connections stay."""
    conn, other = stack.open("alice"), stack.open("bob")
    for c in (conn, other):
        stack.send(c, {"action": "subscribe", "deployment_id": "D1"})
    stack.send(conn, {"action": "subscribe", "deployment_id": "D2"})

    stack.send(conn, {"action": "unsubscribe", "deployment_id": "D1"})

    assert replies(stack, conn)[-1] == {"type": "unsubscribed", "deployment_id": "D1"}
    assert _subscriptions(stack) == {("D2", conn), ("D1", other)}


def test_unsubscribe_without_subscription_is_acknowledged(stack: Stack) -> None:
    """Unsubscribe is idempotent: the end state is what the client asked for."""
    conn = stack.open()
    before = stack.snapshot()

    stack.send(conn, {"action": "unsubscribe", "deployment_id": "D9"})

    assert replies(stack, conn) == [{"type": "unsubscribed", "deployment_id": "D9"}]
    assert stack.snapshot() == before


def test_ping_answers_pong_and_records_activity(stack: Stack) -> None:
    """The pong carries a timestamp; the row's lastPing moves."""
    conn = stack.open()
    key = {"connectionId": {"S": conn}}
    table = stack.tables["CONNECTIONS_TABLE"]
    stack.ddb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET lastPing = :z",
        ExpressionAttributeValues={":z": {"N": "0"}},
    )

    stack.send(conn, {"action": "ping"})

    (pong,) = replies(stack, conn)
    assert pong["type"] == "pong"
    assert pong["timestamp"].endswith("Z")
    assert int(stack.ddb.get_item(TableName=table, Key=key)["Item"]["lastPing"]["N"]) >= time.time() - 60


def test_disconnect_removes_the_connection_and_all_its_subscriptions(stack: Stack) -> None:
    """Nothing of a closed connection remains; other connections are untouched."""
    conn, other = stack.open("alice"), stack.open("bob")
    for deployment in ("D1", "D2", "D3"):
        stack.send(conn, {"action": "subscribe", "deployment_id": deployment})
    stack.send(other, {"action": "subscribe", "deployment_id": "D1"})

    assert stack.disconnect(conn) == {"statusCode": 200}

    snapshot = stack.snapshot()
    assert [i["connectionId"]["S"] for i in snapshot["CONNECTIONS_TABLE"]] == [other]
    assert _subscriptions(stack) == {("D1", other)}
    assert stack.disconnect(conn) == {"statusCode": 200}  # a repeated $disconnect is harmless


# -- refusals: every one answers an error frame and changes nothing -----------------------------

REFUSED_FRAMES: dict[str, tuple[Any, str]] = {
    "not json": ("subscribe me please", "invalid_json"),
    "truncated json": ('{"action": "subscribe", ', "invalid_json"),
    "json array": ('["subscribe"]', "invalid_message"),
    "json string": ('"subscribe"', "invalid_message"),
    "json number": ("42", "invalid_message"),
    "json null": ("null", "invalid_message"),
    "no action": ({"deployment_id": "D1"}, "invalid_message"),
    "action not a string": ({"action": 7}, "invalid_message"),
    "empty frame": ("", "invalid_json"),
    "unknown action": ({"action": "delete_everything"}, "unknown_action"),
    "deeply nested": ('{"action": "subscribe", "x": ' + "[" * 50 + "]" * 50 + "}", "message_too_deep"),
    "hostile nesting": ("[" * 3000 + "]" * 1000, "message_too_deep"),
    "oversize": ({"action": "subscribe", "deployment_id": "D1", "pad": "x" * 5000}, "message_too_large"),
    "missing deployment id": ({"action": "subscribe"}, "invalid_deployment_id"),
    "empty deployment id": ({"action": "subscribe", "deployment_id": ""}, "invalid_deployment_id"),
    "deployment id with slash": (
        {"action": "subscribe", "deployment_id": "D1/../x"},
        "invalid_deployment_id",
    ),
    "deployment id too long": ({"action": "subscribe", "deployment_id": "D" * 65}, "invalid_deployment_id"),
    "deployment id not a string": ({"action": "subscribe", "deployment_id": 12}, "invalid_deployment_id"),
    "deployment id with newline": ({"action": "subscribe", "deployment_id": "D1\n"}, "invalid_deployment_id"),
    "since negative": ({"action": "subscribe", "deployment_id": "D1", "since": -1}, "invalid_since"),
    "since string": ({"action": "subscribe", "deployment_id": "D1", "since": "3"}, "invalid_since"),
    "since float": ({"action": "subscribe", "deployment_id": "D1", "since": 2.5}, "invalid_since"),
    "since boolean": ({"action": "subscribe", "deployment_id": "D1", "since": True}, "invalid_since"),
    "unsubscribe bad id": ({"action": "unsubscribe", "deployment_id": "bad id"}, "invalid_deployment_id"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_FRAMES))
def test_refused_frame_gets_an_error_and_changes_nothing(stack: Stack, case: str) -> None:
    """A clear error frame with a stable code; DynamoDB unchanged; the connection still works."""
    frame, code = REFUSED_FRAMES[case]
    conn = stack.open()
    stack.send(conn, {"action": "subscribe", "deployment_id": "KEEP"})
    stack.publish("KEEP")
    stack.mgmt.clear()
    before = stack.snapshot()

    assert stack.send(conn, frame) == {"statusCode": 200}

    (error,) = replies(stack, conn)
    assert error["type"] == "error"
    assert error["code"] == code
    assert len(error["message"]) > 10
    assert stack.snapshot() == before
    stack.send(conn, {"action": "ping"})  # the connection stays usable
    assert replies(stack, conn)[-1]["type"] == "pong"


def test_error_names_the_action_it_refused(stack: Stack) -> None:
    """Clients can tell which request failed."""
    conn = stack.open()

    stack.send(conn, {"action": "subscribe", "deployment_id": "no spaces"})
    stack.send(conn, {"action": "frobnicate"})

    assert [r.get("action") for r in replies(stack, conn)] == ["subscribe", "frobnicate"]


def test_too_many_subscriptions(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-connection cap refuses a new deployment but lets existing ones be renewed."""
    monkeypatch.setenv("MAX_SUBSCRIPTIONS_PER_CONNECTION", "2")
    reset_runtime()
    conn = stack.open()
    stack.send(conn, {"action": "subscribe", "deployment_id": "D1"})
    stack.send(conn, {"action": "subscribe", "deployment_id": "D2"})
    before = stack.snapshot()

    stack.send(conn, {"action": "subscribe", "deployment_id": "D3"})
    stack.send(conn, {"action": "subscribe", "deployment_id": "D1", "since": 0})

    codes = [r.get("code") for r in replies(stack, conn)[2:]]
    assert codes == ["too_many_subscriptions", None]
    assert _subscriptions(stack) == {("D1", conn), ("D2", conn)}
    assert stack.snapshot()["CONNECTIONS_TABLE"] == before["CONNECTIONS_TABLE"]


def test_group_policy_forbids_users_outside_the_groups(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """With SUBSCRIBE_GROUPS set, only members may subscribe; others get ``forbidden``."""
    monkeypatch.setenv("SUBSCRIBE_GROUPS", "ops, release-managers")
    reset_runtime()
    outsider = stack.open("mallory", groups=("interns",))
    member = stack.open("alice", groups=("release-managers",))
    before = stack.snapshot()

    stack.send(outsider, {"action": "subscribe", "deployment_id": "D1"})

    (error,) = replies(stack, outsider)
    assert error["code"] == "forbidden"
    assert stack.snapshot() == before
    stack.send(member, {"action": "subscribe", "deployment_id": "D1"})
    assert replies(stack, member)[0]["type"] == "subscribed"


def test_default_policy_lets_any_pool_user_subscribe(stack: Stack) -> None:
    """Without SUBSCRIBE_GROUPS, a user with no groups may subscribe."""
    conn = stack.open("nogroups")

    stack.send(conn, {"action": "subscribe", "deployment_id": "D1"})

    assert replies(stack, conn)[0]["type"] == "subscribed"


def test_subscribe_after_the_token_expired_is_refused(stack: Stack) -> None:
    """A connection outliving its token cannot start new subscriptions."""
    conn = stack.open()
    stack.expire_token(conn)
    before = stack.snapshot()

    stack.send(conn, {"action": "subscribe", "deployment_id": "D1"})

    assert replies(stack, conn)[0]["code"] == "token_expired"
    assert stack.snapshot() == before


@pytest.mark.parametrize("frame", [{"action": "subscribe", "deployment_id": "D1"}, {"action": "ping"}])
def test_unknown_or_expired_connection_is_told_to_reconnect(stack: Stack, frame: dict[str, Any]) -> None:
    """Rows past their ttl are treated as absent even before DynamoDB's sweeper removes them."""
    conn = stack.open()
    stack.ddb.update_item(
        TableName=stack.tables["CONNECTIONS_TABLE"],
        Key={"connectionId": {"S": conn}},
        UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": "ttl"},
        ExpressionAttributeValues={":t": {"N": str(int(time.time()) - 1)}},
    )
    before = stack.snapshot()

    stack.send(conn, frame)
    stack.send("never-connected=", frame)

    assert replies(stack, conn)[0]["code"] == "unknown_connection"
    assert replies(stack, "never-connected=")[0]["code"] == "unknown_connection"
    assert stack.snapshot() == before


def test_sender_gone_before_reply_is_not_an_error(stack: Stack) -> None:
    """A client that left mid-request: the handler stops replying and still answers 200."""
    for _ in range(14):  # ~20 KB each: the replay needs three posts of at most 128 KB
        stack.publish("D1", type_="log.created", data={"message": "x" * 20_000})
    conn = stack.open()
    stack.mgmt.gone.add(conn)

    assert stack.send(conn, {"action": "subscribe", "deployment_id": "D1", "since": 0}) == {"statusCode": 200}
    assert [m for m, c in stack.mgmt.requests if c == conn] == ["POST"]  # stopped after the first 410


def test_storage_failure_in_a_route_is_a_bare_500(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """No exception or stack trace reaches the client."""
    conn = stack.open()
    monkeypatch.setenv("SUBSCRIPTIONS_TABLE", "missing-table")
    reset_runtime()

    assert stack.send(conn, {"action": "subscribe", "deployment_id": "D1"}) == {"statusCode": 500}
    assert replies(stack, conn) == []
