"""Wave 2 protocol on the routes: request ids echoed, errors that name their deployment,
``pong.latest``, and replays packed into multi-message posts."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from contract import spec
from server.runtime import reset_runtime
from tests.support.moto_stack import Stack
from tests.test_handlers.wire import posts, replies


def _subscriptions(stack: Stack) -> set[tuple[str, str]]:
    items = stack.snapshot()["SUBSCRIPTIONS_TABLE"]
    return {(i["deploymentId"]["S"], i["connectionId"]["S"]) for i in items}


# -- ids are echoed -------------------------------------------------------------------------------


def test_every_reply_echoes_the_request_id(stack: Stack) -> None:
    """subscribed, unsubscribed, pong and error each carry the id of the frame they answer."""
    conn = stack.open()

    stack.send(conn, {"action": "subscribe", "deployment_id": "D1", "id": "s-1"})
    stack.send(conn, {"action": "ping", "id": "p-1"})
    stack.send(conn, {"action": "unsubscribe", "deployment_id": "D1", "id": "u-1"})
    stack.send(conn, {"action": "subscribe", "deployment_id": "D1", "since": -1, "id": "e-1"})

    subscribed, pong, unsubscribed, error = replies(stack, conn)
    assert subscribed == {"type": "subscribed", "deployment_id": "D1", "seq": 0, "replay": 0, "id": "s-1"}
    assert (pong["type"], pong["id"]) == ("pong", "p-1")
    assert unsubscribed == {"type": "unsubscribed", "deployment_id": "D1", "id": "u-1"}
    assert (error["type"], error["code"], error["id"]) == ("error", "invalid_since", "e-1")


def test_replies_without_an_id_carry_none(stack: Stack) -> None:
    """A client that sends no id gets the replies it always got."""
    conn = stack.open()

    stack.send(conn, {"action": "subscribe", "deployment_id": "D1"})
    stack.send(conn, {"action": "ping"})

    got = replies(stack, conn)
    assert {"subscribed", "pong"} <= {reply["type"] for reply in got}  # not vacuous
    assert all("id" not in reply for reply in got)


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "frobnicate", "id": "x-1"},  # $default: unknown_action
        {"id": "x-1"},  # no action: invalid_message
        {"action": 7, "id": "x-1"},
        {"action": "subscribe", "deployment_id": "bad id", "id": "x-1"},
    ],
)
def test_errors_echo_a_well_formed_id_whatever_else_is_wrong(stack: Stack, frame: dict[str, Any]) -> None:
    """An id is matched even when the rest of the frame is refused; nothing is stored."""
    conn = stack.open()
    before = stack.snapshot()

    stack.send(conn, frame)

    (error,) = replies(stack, conn)
    assert (error["type"], error["id"]) == ("error", "x-1")
    assert stack.snapshot() == before


@pytest.mark.parametrize(
    ("frame_id", "what"),
    [
        (7, "number"),
        (True, "boolean"),
        (["a"], "list"),
        ({"a": 1}, "object"),
        ("", "empty"),
        ("x" * 65, "65 chars"),
    ],
)
@pytest.mark.parametrize("action", ["subscribe", "unsubscribe", "ping", "frobnicate"])
def test_invalid_ids_are_refused_without_echo_and_change_nothing(
    stack: Stack, frame_id: Any, what: str, action: str
) -> None:
    """Not a string of 1..64 characters: invalid_id, the bad id not sent back, no state change."""
    conn = stack.open()
    stack.send(conn, {"action": "subscribe", "deployment_id": "KEEP"})
    stack.send(conn, {"action": "subscribe", "deployment_id": "GONE"})
    stack.mgmt.clear()
    before = stack.snapshot()

    assert stack.send(conn, {"action": action, "deployment_id": "GONE", "id": frame_id}) == {
        "statusCode": 200
    }

    (error,) = replies(stack, conn)
    assert (error["type"], error["code"]) == ("error", "invalid_id"), what
    assert "id" not in error
    assert error["action"] == action
    assert error["deployment_id"] == "GONE"  # the request named a well-formed deployment
    assert len(error["message"]) > 10
    assert stack.snapshot() == before  # not subscribed, not unsubscribed, no lastPing moved
    assert _subscriptions(stack) == {("KEEP", conn), ("GONE", conn)}


def test_ids_at_the_limits_are_accepted(stack: Stack) -> None:
    """One character and 64 characters (counted as characters, not bytes) are fine."""
    conn = stack.open()
    for frame_id in ("a", "x" * 64, "é" * 64, "req 12: subscribe D1"):
        stack.send(conn, {"action": "ping", "id": frame_id})
    assert [r["id"] for r in replies(stack, conn)] == ["a", "x" * 64, "é" * 64, "req 12: subscribe D1"]
    assert all(r["type"] == "pong" for r in replies(stack, conn))


def test_a_null_id_is_the_same_as_none(stack: Stack) -> None:
    """``"id": null`` is absent, as ``since`` treats null."""
    conn = stack.open()
    stack.send(conn, {"action": "ping", "id": None})
    (pong,) = replies(stack, conn)
    assert pong["type"] == "pong"
    assert "id" not in pong


# -- errors name their deployment -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"action": "subscribe", "deployment_id": "D1", "since": "3"}, "invalid_since"),
        ({"action": "frobnicate", "deployment_id": "D1"}, "unknown_action"),
        ({"deployment_id": "D1"}, "invalid_message"),
    ],
)
def test_errors_carry_a_well_formed_deployment_id(stack: Stack, frame: dict[str, Any], code: str) -> None:
    """The client can tell which subscription a refusal is about, even without an id."""
    conn = stack.open()
    before = stack.snapshot()

    stack.send(conn, frame)

    (error,) = replies(stack, conn)
    assert (error["code"], error["deployment_id"]) == (code, "D1")
    assert stack.snapshot() == before


def test_too_many_subscriptions_names_the_refused_deployment(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal from deep in the action also carries the deployment and the id."""
    monkeypatch.setenv("MAX_SUBSCRIPTIONS_PER_CONNECTION", "1")
    reset_runtime()
    conn = stack.open()
    stack.send(conn, {"action": "subscribe", "deployment_id": "D1"})
    before = stack.snapshot()

    stack.send(conn, {"action": "subscribe", "deployment_id": "D2", "id": "r-2"})

    error = replies(stack, conn)[-1]
    assert (error["code"], error["deployment_id"], error["id"]) == ("too_many_subscriptions", "D2", "r-2")
    assert stack.snapshot() == before


@pytest.mark.parametrize("deployment_id", ["bad id", "", "D" * 65, 12, None, "D1\n"])
def test_errors_leave_out_a_malformed_deployment_id(stack: Stack, deployment_id: Any) -> None:
    """A deployment id that is not well-formed is never echoed back."""
    conn = stack.open()
    before = stack.snapshot()
    frame: dict[str, Any] = {"action": "subscribe", "id": "r-1"}
    if deployment_id is not None:
        frame["deployment_id"] = deployment_id

    stack.send(conn, frame)

    (error,) = replies(stack, conn)
    assert error["code"] == "invalid_deployment_id"
    assert error["id"] == "r-1"
    assert "deployment_id" not in error
    assert stack.snapshot() == before


def test_unparseable_frames_carry_neither_id_nor_deployment(stack: Stack) -> None:
    """Before the frame is JSON, nothing in it can be trusted."""
    conn = stack.open()
    stack.send(conn, '{"action": "subscribe", "deployment_id": "D1", "id": "r-1"')  # truncated
    (error,) = replies(stack, conn)
    assert error["code"] == "invalid_json"
    assert not {"id", "deployment_id"} & set(error)


# -- pong.latest ----------------------------------------------------------------------------------


def test_pong_lists_the_latest_seq_of_every_subscription(stack: Stack) -> None:
    """Every subscribed deployment, 0 for one nobody reported on; others' deployments are not listed."""
    for _ in range(3):
        stack.publish("D1")
    stack.publish("D2")
    stack.publish("NOT_MINE")
    conn, other = stack.open("alice"), stack.open("bob")
    for deployment in ("D1", "D2", "EMPTY"):
        stack.send(conn, {"action": "subscribe", "deployment_id": deployment})
    stack.send(other, {"action": "subscribe", "deployment_id": "NOT_MINE"})
    stack.mgmt.clear()

    stack.send(conn, {"action": "ping", "id": "p"})

    (pong,) = replies(stack, conn)
    assert pong["latest"] == {"D1": 3, "D2": 1, "EMPTY": 0}
    assert pong["timestamp"].endswith("Z")


def test_pong_follows_new_events_and_unsubscriptions(stack: Stack) -> None:
    """latest moves with the history and forgets a deployment once unsubscribed."""
    conn = stack.open()
    stack.send(conn, {"action": "subscribe", "deployment_id": "D1"})
    stack.send(conn, {"action": "subscribe", "deployment_id": "D2"})
    stack.publish("D1")
    stack.send(conn, {"action": "unsubscribe", "deployment_id": "D2"})
    stack.mgmt.clear()

    stack.send(conn, {"action": "ping"})

    (pong,) = replies(stack, conn)
    assert pong["latest"] == {"D1": 1}


def test_pong_of_a_connection_without_subscriptions_has_an_empty_latest(stack: Stack) -> None:
    """latest is always there, so a client need not special-case it."""
    conn = stack.open()
    stack.send(conn, {"action": "ping"})
    (pong,) = replies(stack, conn)
    assert pong["latest"] == {}


# -- replay in multi-message posts ----------------------------------------------------------------


def test_replay_is_packed_into_one_post_after_the_ack(stack: Stack) -> None:
    """Ack and five replayed events in one post, ``\\n``-separated, the ack first."""
    for _ in range(5):
        stack.publish("D1")
    conn = stack.open()

    stack.send(conn, {"action": "subscribe", "deployment_id": "D1", "since": 0, "id": "s"})

    (post,) = posts(stack, conn)
    lines = [json.loads(line) for line in post.split(b"\n")]
    assert lines[0] == {"type": "subscribed", "deployment_id": "D1", "seq": 5, "replay": 5, "id": "s"}
    assert (lines[1]["type"], lines[1]["seq"], lines[1]["id"]) == ("deployment.snapshot", 5, "s")
    assert [m["seq"] for m in lines[2:]] == [1, 2, 3, 4, 5]
    assert all("id" not in m for m in lines[2:])  # events are not replies


def test_a_long_replay_takes_as_few_posts_as_the_message_limit_allows(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events of ~20 KB each: six fit under 128 KB, so 14 events and the ack take three posts."""
    monkeypatch.setenv("REPLAY_LIMIT", "100")
    reset_runtime()
    for index in range(14):
        stack.publish("D1", type_="log.created", data={"message": f"{index}:" + "x" * 20_000})
    conn = stack.open()

    stack.send(conn, {"action": "subscribe", "deployment_id": "D1", "since": 0})

    sent = posts(stack, conn)
    limit = spec.API_GATEWAY_LIMITS.message_bytes
    assert all(len(post) <= limit for post in sent)
    assert len(sent) == 3
    messages = replies(stack, conn)
    assert messages[0]["type"] == "subscribed"
    assert [m["seq"] for m in messages[1:]] == list(range(1, 15))
    # Greedy packing: no post could have taken the next post's first message.
    for post, following in itertools.pairwise(sent):
        assert len(post) + 1 + len(following.split(b"\n")[0]) > limit


def test_subscribe_without_replay_is_one_post(stack: Stack) -> None:
    """Live only: the ack alone."""
    stack.publish("D1")
    conn = stack.open()
    stack.send(conn, {"action": "subscribe", "deployment_id": "D1"})
    assert len(posts(stack, conn)) == 1
