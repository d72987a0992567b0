"""Parsing server frames into typed messages."""

from __future__ import annotations

import json

import pytest

from cloud_ws_client import (
    DeploymentStatus,
    ErrorMessage,
    Event,
    LogCreated,
    MalformedMessage,
    Message,
    Pong,
    StackEvent,
    Subscribed,
    Unsubscribed,
    parse_message,
    split_frame,
)


def frame(**fields: object) -> str:
    return json.dumps(fields)


def test_acknowledgements_pong_and_errors_are_typed() -> None:
    """Each server message of docs/protocol.md gets its class and fields."""
    ack = parse_message(frame(type="subscribed", deployment_id="D1", seq=16, replay=3))
    assert ack == Subscribed(type="subscribed", raw={}, deployment_id="D1", seq=16, replay=3)
    assert parse_message(frame(type="subscribed", deployment_id="D1", seq=0)) == Subscribed(
        type="subscribed", raw={}, deployment_id="D1", seq=0, replay=0
    )
    assert isinstance(parse_message(frame(type="unsubscribed", deployment_id="D1")), Unsubscribed)
    pong = parse_message(frame(type="pong", timestamp="2026-11-26T10:05:00.123Z"))
    assert isinstance(pong, Pong)
    assert pong.timestamp == "2026-11-26T10:05:00.123Z"
    error = parse_message(b'{"type": "error", "code": "forbidden", "message": "no", "action": "subscribe"}')
    assert error == ErrorMessage(type="error", raw={}, code="forbidden", message="no", action="subscribe")


def test_events_get_typed_accessors() -> None:
    """The plugin's event types read their data through typed properties."""
    status = parse_message(
        frame(
            type="deployment.status",
            deployment_id="D1",
            seq=13,
            event_id="e13",
            data={"status": "failed", "current_layer": 2, "total_layers": 4, "error_message": "boom"},
            timestamp="2026-11-26T10:05:00Z",
        )
    )
    assert isinstance(status, DeploymentStatus)
    assert (status.status, status.current_layer, status.total_layers) == ("failed", 2, 4)
    assert status.error_message == "boom"
    assert status.is_terminal
    assert status.duration_seconds is None
    assert status.event_id == "e13"
    assert status.timestamp == "2026-11-26T10:05:00Z"

    deployed = parse_message(
        frame(
            type="stack.deployed",
            deployment_id="D1",
            seq=14,
            data={
                "stack_name": "network",
                "environment": "dev",
                "layer": 1,
                "duration_seconds": 300,
                "resource_count": 15,
            },
        )
    )
    assert isinstance(deployed, StackEvent)
    assert (deployed.stack_name, deployed.environment, deployed.layer) == ("network", "dev", 1)
    assert (deployed.duration_seconds, deployed.resource_count) == (300.0, 15)
    assert deployed.error_message is None
    assert deployed.resources_done is None

    log = parse_message(frame(type="log.created", deployment_id="D1", seq=16, data={"message": "hi"}))
    assert isinstance(log, LogCreated)
    assert (log.level, log.message, log.stack_name) == ("info", "hi", None)


def test_unknown_types_pass_through() -> None:
    """A sequenced unknown type is an Event; anything else unknown is a plain Message."""
    custom = parse_message(frame(type="widget.spun", deployment_id="D1", seq=3, data=[1]))
    assert type(custom) is Event
    assert custom.seq == 3
    assert custom.data == {}
    notice = parse_message(frame(type="notice", text="maintenance at noon"))
    assert type(notice) is Message
    assert notice.raw["text"] == "maintenance at noon"
    assert json.loads(notice.to_json()) == {"type": "notice", "text": "maintenance at noon"}


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"no": "type"}',
        '{"type": 5}',
        '{"type": "subscribed", "seq": 1}',
        '{"type": "subscribed", "deployment_id": "D1", "seq": true}',
        '{"type": "error", "message": "no code"}',
    ],
)
def test_malformed_frames_are_refused(text: str) -> None:
    """Frames that break the protocol raise MalformedMessage (the client logs and skips them)."""
    with pytest.raises(MalformedMessage):
        parse_message(text)


def test_replies_expose_their_request_id_and_pong_its_latest() -> None:
    """id on every reply; latest keeps only integer seqs; errors name their deployment."""
    pong = parse_message(
        '{"type": "pong", "timestamp": "t", "latest": {"D1": 4, "D2": "x", "D3": true}, "id": "9"}'
    )
    assert isinstance(pong, Pong)
    assert (pong.request_id, pong.latest) == ("9", {"D1": 4})
    assert parse_message('{"type": "pong"}').request_id is None
    error = parse_message(
        '{"type": "error", "code": "forbidden", "message": "m", "deployment_id": "D1", "id": "3"}'
    )
    assert isinstance(error, ErrorMessage)
    assert (error.deployment_id, error.request_id) == ("D1", "3")
    assert (
        parse_message('{"type": "subscribed", "deployment_id": "D1", "seq": 0, "id": 7}').request_id is None
    )


def test_split_frame_yields_each_message() -> None:
    """One JSON object per line; blank lines skipped; bytes stay bytes."""
    assert split_frame('{"a":1}\n{"b":2}') == ['{"a":1}', '{"b":2}']
    assert split_frame(b'{"a":1}\n\n{"b":2}\n') == [b'{"a":1}', b'{"b":2}']
    assert split_frame("") == []
