"""The sans-I/O client protocol: frames out, ordered messages in (no sockets)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloud_ws_client import ClientProtocol, ErrorMessage, Event, Subscribed
from cloud_ws_client.protocol import PING_FRAME, check_deployment_id


def wire(**fields: Any) -> str:
    return json.dumps(fields)


def ev(seq: int, deployment_id: str = "D1") -> str:
    return wire(type="log.created", deployment_id=deployment_id, seq=seq, data={"message": f"m{seq}"})


def delivered(protocol: ClientProtocol, *frames: str, now: float = 0.0) -> list[tuple[str, int | None]]:
    out = []
    for text in frames:
        for message in protocol.receive(text, now):
            out.append((message.type, getattr(message, "seq", None)))
    return out


def test_subscribe_frames_validate_and_carry_since() -> None:
    """Frames are what docs/protocol.md shows; ids and since are checked before sending."""
    protocol = ClientProtocol()
    assert json.loads(protocol.subscribe("D1")) == {"action": "subscribe", "deployment_id": "D1"}
    assert json.loads(protocol.subscribe("D2", since=12)) == {
        "action": "subscribe",
        "deployment_id": "D2",
        "since": 12,
    }
    assert json.loads(protocol.unsubscribe("D1")) == {"action": "unsubscribe", "deployment_id": "D1"}
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
    assert [json.loads(f) for f in protocol.resubscribe_frames()] == [
        {"action": "subscribe", "deployment_id": "D1", "since": 2},
        {"action": "subscribe", "deployment_id": "LIVE"},
    ]
    # Subscribing again keeps the position: the frame asks for what follows it.
    assert json.loads(protocol.subscribe("D1", since=0))["since"] == 2
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
    assert [json.loads(f) for f in frames] == [{"action": "subscribe", "deployment_id": "D1", "since": 1}]
    assert released == []
    assert protocol.repairs == 1
    ack = wire(type="subscribed", deployment_id="D1", seq=3, replay=2)
    assert delivered(protocol, ack, ev(2), ev(3), now=10.6) == [
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
    assert [json.loads(f)["since"] for f in frames] == [5]
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
