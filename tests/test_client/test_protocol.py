"""The sans-I/O client protocol: frames out, ordered messages in (no sockets)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloud_ws_client import ClientOptions, ClientProtocol, ErrorMessage, Event, Outgoing, Pong, Subscribed
from cloud_ws_client.protocol import MAX_PENDING_REQUESTS, PING_FRAME, check_deployment_id


def wire(**fields: Any) -> str:
    return json.dumps(fields)


def sent(outgoing: Outgoing) -> dict[str, Any]:
    """The frame as the server reads it, without its id (checked apart)."""
    body: dict[str, Any] = json.loads(outgoing.text)
    assert body.pop("id") == outgoing.request_id
    return body


def ack(outgoing: Outgoing, seq: int, replay: int = 0) -> str:
    """The server's ``subscribed`` reply to a subscribe frame."""
    assert outgoing.deployment_id is not None
    return wire(
        type="subscribed",
        deployment_id=outgoing.deployment_id,
        seq=seq,
        replay=replay,
        id=outgoing.request_id,
    )


def ev(seq: int, deployment_id: str = "D1") -> str:
    return wire(type="log.created", deployment_id=deployment_id, seq=seq, data={"message": f"m{seq}"})


def delivered(
    protocol: ClientProtocol, *frames: str | bytes, now: float = 0.0
) -> list[tuple[str, int | None]]:
    out = []
    for text in frames:
        for message in protocol.receive(text, now):
            out.append((message.type, getattr(message, "seq", None)))
    return out


def test_subscribe_frames_validate_and_carry_since() -> None:
    """Frames are what docs/protocol.md shows; ids and since are checked before sending."""
    protocol = ClientProtocol()
    assert sent(protocol.subscribe("D1")) == {"action": "subscribe", "deployment_id": "D1"}
    assert sent(protocol.subscribe("D2", since=12)) == {
        "action": "subscribe",
        "deployment_id": "D2",
        "since": 12,
    }
    assert sent(protocol.unsubscribe("D1")) == {"action": "unsubscribe", "deployment_id": "D1"}
    assert sent(protocol.ping()) == {"action": "ping"}
    assert json.loads(PING_FRAME) == {"action": "ping"}
    assert protocol.subscriptions == ("D2",)
    for bad_id in ("", "has space", "x" * 65):
        with pytest.raises(ValueError, match="deployment_id"):
            protocol.subscribe(bad_id)
    for bad_since in (-1, True, 1.5, "3"):
        with pytest.raises(ValueError, match="since"):
            protocol.subscribe("D3", since=bad_since)  # type: ignore[arg-type]
    assert check_deployment_id("a_B-9") == "a_B-9"


def test_resubscribe_frames_resume_from_the_last_seq() -> None:
    """After a reconnect every deployment is asked for what follows its last delivered seq."""
    protocol = ClientProtocol()
    protocol.subscribe("D1", since=0)
    protocol.subscribe("LIVE")
    delivered(protocol, ev(1), ev(2))
    assert [sent(f) for f in protocol.resubscribe_frames()] == [
        {"action": "subscribe", "deployment_id": "D1", "since": 2},
        {"action": "subscribe", "deployment_id": "LIVE"},
    ]
    # Subscribing again keeps the position: the frame asks for what follows it.
    assert sent(protocol.subscribe("D1", since=0))["since"] == 2
    assert protocol.position("D1") == 2
    assert protocol.position("nope") is None


def test_receive_orders_dedupes_and_passes_the_rest_through() -> None:
    """Ack first, then events in seq order once; other deployments' events are dropped."""
    protocol = ClientProtocol()
    protocol.subscribe("D1", since=0)
    out = delivered(
        protocol,
        wire(type="subscribed", deployment_id="D1", seq=3, replay=3),
        ev(2),
        ev(1),
        ev(1),
        ev(3),
        ev(1, deployment_id="OTHER"),
        wire(type="subscribed", deployment_id="OTHER", seq=0, replay=0),
        wire(type="error", code="forbidden", message="no", action="subscribe"),
        wire(type="notice"),
        "garbage",
    )
    assert out == [
        ("subscribed", 3),
        ("log.created", 1),
        ("log.created", 2),
        ("log.created", 3),
        ("subscribed", 0),
        ("error", None),
        ("notice", None),
    ]
    assert protocol.duplicates == 1
    assert protocol.malformed == 1
    protocol.unsubscribe("D1")
    assert delivered(protocol, ev(4)) == []


def test_gap_repair_resubscribes_with_the_last_contiguous_seq() -> None:
    """A gap that outlives gap_timeout yields a subscribe with since; the replay fills it."""
    protocol = ClientProtocol(gap_timeout=0.5)
    protocol.subscribe("D1", since=0)
    protocol.subscribe("D2", since=0)
    assert delivered(protocol, ev(1), ev(3), now=10.0) == [("log.created", 1)]
    assert protocol.next_repair_at() == 10.5
    assert protocol.repair(10.4) == ([], [])
    frames, released = protocol.repair(10.5)
    assert [sent(f) for f in frames] == [{"action": "subscribe", "deployment_id": "D1", "since": 1}]
    assert released == []
    assert protocol.repairs == 1
    assert delivered(protocol, ack(frames[0], seq=3, replay=2), ev(2), ev(3), now=10.6) == [
        ("subscribed", 3),
        ("log.created", 2),
        ("log.created", 3),
    ]
    assert protocol.next_repair_at() is None


def test_repair_of_a_live_subscription_without_ack_releases_what_it_holds() -> None:
    """The lost-ack case surfaces the held events from repair() itself."""
    protocol = ClientProtocol(gap_timeout=0.5)
    protocol.subscribe("D1")
    assert delivered(protocol, ev(5), now=0.0) == []
    frames, released = protocol.repair(1.0)
    assert [sent(f)["since"] for f in frames] == [5]
    assert [(m.type, m.seq) for m in released if isinstance(m, Event)] == [("log.created", 5)]


def test_message_types_survive_receive() -> None:
    """receive() returns the typed objects, not dicts."""
    protocol = ClientProtocol()
    protocol.subscribe("D1")
    ack, *_ = protocol.receive(wire(type="subscribed", deployment_id="D1", seq=0, replay=0), 0)
    assert isinstance(ack, Subscribed)
    (error,) = protocol.receive(wire(type="error", code="token_expired", message="m"), 0)
    assert isinstance(error, ErrorMessage)
    assert error.action is None


# -- several messages per frame -------------------------------------------------------------------


def test_a_multi_message_frame_is_split_and_handled_in_order() -> None:
    """Ack and replay in one frame, then a live batch; a blank line and junk line are skipped."""
    protocol = ClientProtocol()
    request = protocol.subscribe("D1", since=0)
    replay = "\n".join([ack(request, seq=3, replay=3), ev(1), ev(2), ev(3)])
    batch = "\n".join([ev(5), "", "not json", ev(4)])
    assert delivered(protocol, replay, batch) == [
        ("subscribed", 3),
        ("log.created", 1),
        ("log.created", 2),
        ("log.created", 3),
        ("log.created", 4),
        ("log.created", 5),
    ]
    assert protocol.malformed == 1
    assert delivered(protocol, (ev(6) + "\n" + ev(7)).encode()) == [("log.created", 6), ("log.created", 7)]


# -- replies matched by id ------------------------------------------------------------------------


def test_every_request_gets_a_fresh_id() -> None:
    """Ids are unique per client, also across resubscribes and pings."""
    protocol = ClientProtocol()
    frames = [
        protocol.subscribe("D1"),
        protocol.subscribe("D2"),
        protocol.ping(),
        *protocol.resubscribe_frames(),
    ]
    ids = [f.request_id for f in frames]
    assert len(set(ids)) == len(ids) == 5
    assert all(1 <= len(i) <= 64 for i in ids)
    assert protocol.pending == 5


def test_acks_answered_out_of_order_are_matched_by_id() -> None:
    """Two subscribes answered in reverse: each ack goes to its own deployment's stream."""
    protocol = ClientProtocol()
    first, second = protocol.subscribe("D1"), protocol.subscribe("D2")
    out = delivered(protocol, ack(second, seq=7), ack(first, seq=2), ev(3, "D1"), ev(8, "D2"))
    assert out == [("subscribed", 7), ("subscribed", 2), ("log.created", 3), ("log.created", 8)]
    assert (protocol.position("D1"), protocol.position("D2")) == (3, 8)
    assert protocol.pending == 0


def test_replies_with_unknown_ids_are_ignored_safely() -> None:
    """A reply to no request of ours (or answered already) changes nothing; errors still show."""
    protocol = ClientProtocol()
    request = protocol.subscribe("D1")
    bogus = [
        wire(type="subscribed", deployment_id="D1", seq=99, replay=0, id="nope"),
        wire(type="pong", timestamp="t", latest={"D1": 50}, id="nope"),
        wire(type="unsubscribed", deployment_id="D1", id="nope"),
        # The right id on the wrong kind of reply, or for another deployment:
        wire(type="pong", timestamp="t", id=request.request_id),
        wire(type="subscribed", deployment_id="D2", seq=5, replay=0, id=request.request_id),
    ]
    assert delivered(protocol, *bogus) == []
    assert protocol.unmatched == 5
    assert protocol.position("D1") is None  # the bogus ack at seq 99 was not applied
    assert protocol.next_repair_at() is None  # nor the bogus latest
    assert delivered(protocol, ack(request, seq=4)) == [("subscribed", 4)]
    assert protocol.position("D1") == 4
    assert delivered(protocol, ack(request, seq=4)) == []  # answered already
    (error,) = protocol.receive(wire(type="error", code="internal", message="m", id="nope"), 0)
    assert isinstance(error, ErrorMessage)
    assert protocol.subscriptions == ("D1",)


def test_replies_without_an_id_are_taken_as_they_come() -> None:
    """A server that predates ids still works: the ack applies by deployment."""
    protocol = ClientProtocol()
    protocol.subscribe("D1")
    assert delivered(protocol, wire(type="subscribed", deployment_id="D1", seq=2, replay=0), ev(3)) == [
        ("subscribed", 2),
        ("log.created", 3),
    ]


@pytest.mark.parametrize("code", ["forbidden", "too_many_subscriptions", "invalid_since"])
def test_a_subscription_refused_for_good_is_dropped(code: str) -> None:
    """Matched by id, the refusal ends that subscription only; a new connection does not ask again."""
    protocol = ClientProtocol()
    keep, refused = protocol.subscribe("KEEP"), protocol.subscribe("D2")
    (error,) = protocol.receive(
        wire(
            type="error",
            code=code,
            message="no",
            action="subscribe",
            deployment_id="D2",
            id=refused.request_id,
        ),
        0,
    )
    assert isinstance(error, ErrorMessage)
    assert (error.deployment_id, error.request_id) == ("D2", refused.request_id)
    assert protocol.subscriptions == ("KEEP",)
    assert [sent(f)["deployment_id"] for f in protocol.resubscribe_frames()] == ["KEEP"]
    assert keep.request_id != refused.request_id


def test_a_refusal_that_a_new_connection_fixes_keeps_the_subscription() -> None:
    """token_expired is about the connection, not the subscription."""
    protocol = ClientProtocol()
    request = protocol.subscribe("D1")
    protocol.receive(
        wire(type="error", code="token_expired", message="m", action="subscribe", id=request.request_id), 0
    )
    assert protocol.subscriptions == ("D1",)


def test_pending_requests_are_bounded_and_forgettable() -> None:
    """Requests whose connection closed are forgotten; the table never grows without bound."""
    protocol = ClientProtocol()
    first = protocol.ping()
    protocol.forget([first.request_id])
    assert protocol.pending == 0
    assert delivered(protocol, wire(type="pong", timestamp="t", id=first.request_id)) == []
    for _ in range(MAX_PENDING_REQUESTS + 10):
        protocol.ping()
    assert protocol.pending == MAX_PENDING_REQUESTS


# -- pong.latest ----------------------------------------------------------------------------------


def test_pong_latest_ahead_starts_a_catch_up_with_since() -> None:
    """The last event was lost: the pong reveals it; after gap_timeout a subscribe with since asks again."""
    protocol = ClientProtocol(gap_timeout=0.5)
    request = protocol.subscribe("D1", since=0)
    delivered(protocol, ack(request, seq=2), ev(1), ev(2), now=1.0)
    ping = protocol.ping()
    (pong,) = protocol.receive(
        wire(type="pong", timestamp="t", latest={"D1": 3, "OTHER": 9}, id=ping.request_id), now=2.0
    )
    assert isinstance(pong, Pong)
    assert pong.latest == {"D1": 3, "OTHER": 9}
    assert protocol.catch_ups == 1
    assert protocol.next_repair_at() == 2.5
    frames, _ = protocol.repair(2.5)
    assert [sent(f) for f in frames] == [{"action": "subscribe", "deployment_id": "D1", "since": 2}]
    replay = "\n".join([ack(frames[0], seq=3, replay=1), ev(3)])
    assert delivered(protocol, replay, now=2.6) == [("subscribed", 3), ("log.created", 3)]
    assert protocol.next_repair_at() is None


def test_pong_latest_that_the_events_in_flight_satisfy_needs_no_catch_up() -> None:
    """The pong overtook the event it counts: the event arrives within gap_timeout, nothing is sent."""
    protocol = ClientProtocol(gap_timeout=0.5)
    request = protocol.subscribe("D1", since=0)
    delivered(protocol, ack(request, seq=1), ev(1), now=1.0)
    ping = protocol.ping()
    protocol.receive(wire(type="pong", timestamp="t", latest={"D1": 2}, id=ping.request_id), now=1.1)
    assert delivered(protocol, ev(2), now=1.2) == [("log.created", 2)]
    assert protocol.next_repair_at() is None
    assert protocol.repair(5.0) == ([], [])


def test_pong_latest_at_or_behind_the_position_changes_nothing() -> None:
    """Up to date (or a live-only subscription not acknowledged yet): no gap."""
    protocol = ClientProtocol(gap_timeout=0.5)
    request = protocol.subscribe("D1", since=0)
    protocol.subscribe("LIVE")
    delivered(protocol, ack(request, seq=2), ev(1), ev(2))
    ping = protocol.ping()
    protocol.receive(wire(type="pong", timestamp="t", latest={"D1": 2, "LIVE": 40}, id=ping.request_id), 1.0)
    assert protocol.catch_ups == 0
    assert protocol.next_repair_at() is None


def test_default_keep_alive_notices_a_dead_connection_within_a_minute() -> None:
    """The defaults bound detection (a ping interval, then a pong timeout) to at most 60 s."""
    defaults = ClientOptions()
    assert defaults.detection_bound == defaults.ping_interval + defaults.pong_timeout
    assert defaults.detection_bound <= 60
    # The pong timeout leaves room for a slow route (a cold Lambda) before giving up.
    assert defaults.pong_timeout >= 10


def test_a_snapshot_passes_through_without_taking_a_seq() -> None:
    """deployment.snapshot names the last event folded in; that event still arrives as itself."""
    protocol = ClientProtocol()
    request = protocol.subscribe("D1", since=0)
    snapshot = wire(type="deployment.snapshot", deployment_id="D1", seq=2, data={"status": "deploying"})
    assert delivered(protocol, ack(request, seq=2, replay=2), snapshot, ev(1), ev(2)) == [
        ("subscribed", 2),
        ("deployment.snapshot", 2),
        ("log.created", 1),
        ("log.created", 2),
    ]
    assert protocol.duplicates == 0
