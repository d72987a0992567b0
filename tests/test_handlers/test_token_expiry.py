"""Every request on a connection whose token has expired is refused ``token_expired``, ping included."""

from __future__ import annotations

import pytest

from tests.support.moto_stack import Stack


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "ping", "id": "p1"},
        {"action": "subscribe", "deployment_id": "D1", "id": "p1"},
        {"action": "unsubscribe", "deployment_id": "D1", "id": "p1"},
        {"action": "list_deployments", "id": "p1"},
    ],
    ids=lambda frame: frame["action"],
)
def test_a_request_after_exp_is_refused_token_expired(stack: Stack, frame: dict[str, str]) -> None:
    connection = stack.open()
    stack.send(connection, {"action": "subscribe", "deployment_id": "D1"})
    stack.expire_token(connection)
    stack.mgmt.clear()
    before = stack.snapshot()
    stack.send(connection, frame)
    (reply,) = stack.replies(connection)
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "token_expired", "p1")
    # Nothing stored changes (a refused ping does record that it came: lastPing).
    after = stack.snapshot()
    for rows in (before, after):
        for item in rows["CONNECTIONS_TABLE"]:
            item.pop("lastPing", None)
    assert after == before


def test_a_ping_before_exp_is_answered_pong(stack: Stack) -> None:
    connection = stack.open()
    stack.send(connection, {"action": "ping", "id": "p1"})
    (reply,) = stack.replies(connection)
    assert (reply["type"], reply["id"]) == ("pong", "p1")
