"""conformance/sequence.json through the Python client's ClientProtocol: the delivery rules as data.

The same file is run by the TypeScript client; its description says what each
kind of step means.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloud_ws_client import (
    ClientProtocol,
    DeploymentSnapshot,
    ErrorMessage,
    Event,
    HistoryReset,
    Message,
    Outgoing,
)

VECTORS = json.loads((Path(__file__).parents[2] / "conformance" / "sequence.json").read_text())


class Runner:
    """Plays one case against a ClientProtocol, keeping time and the requests sent."""

    def __init__(self, gap_timeout_ms: int) -> None:
        self.protocol = ClientProtocol(gap_timeout=gap_timeout_ms / 1000)
        self.now = 0.0
        self.sent: list[Outgoing] = []
        self.delivered: list[Message] = []

    def send(self, outgoing: Outgoing | list[Outgoing]) -> None:
        self.sent.extend(outgoing if isinstance(outgoing, list) else [outgoing])

    def fire_due(self) -> None:
        """Whatever is due at the current time: the client's supervisor does this when it wakes."""
        frames, released = self.protocol.repair(self.now)
        self.send(frames)
        self.delivered.extend(released)

    def resolve(self, value: Any) -> Any:
        """A received message with ``"@n"`` ids replaced by the n-th request's id."""
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if isinstance(value, str) and value.startswith("@") and value[1:].isdigit():
            return self.sent[int(value[1:]) - 1].request_id
        return value

    def step(self, step: dict[str, Any]) -> None:
        if "receive" in step:
            received = step["receive"]
            messages = received if isinstance(received, list) else [received]
            frame = "\n".join(json.dumps(self.resolve(message)) for message in messages)
            self.delivered.extend(self.protocol.receive(frame, self.now))
        elif "advance_ms" in step:
            target = self.now + step["advance_ms"] / 1000
            # Every timer due on the way fires at its own time, not at the end.
            while (due := self.protocol.next_repair_at()) is not None and due <= target:
                self.now = max(self.now, due)
                self.fire_due()
            self.now = target
        elif step.get("reconnect"):
            # Replies to what the old connection sent will never come; the new one resubscribes.
            self.protocol.forget([outgoing.request_id for outgoing in self.sent])
            self.send(self.protocol.resubscribe_frames())
        elif step.get("ping"):
            self.send(self.protocol.ping())
        else:
            raise AssertionError(f"unknown step {step}")
        self.fire_due()


def requests(sent: list[Outgoing]) -> list[dict[str, Any]]:
    """The frames sent, without their ids."""
    bodies = [json.loads(outgoing.text) for outgoing in sent]
    return [{key: value for key, value in body.items() if key != "id"} for body in bodies]


def delivered_entry(message: Event | DeploymentSnapshot | HistoryReset) -> dict[str, Any]:
    """What expect.delivered lists of a message handed to the user."""
    if isinstance(message, HistoryReset):
        return {"type": message.type, "seq": message.seq, "previous": message.previous}
    return {"type": message.type, "seq": message.seq}


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[case["name"] for case in VECTORS["cases"]])
def test_sequence_vector(case: dict[str, Any]) -> None:
    """The client delivers, asks and drops exactly what the vector says."""
    runner = Runner(VECTORS["gap_timeout_ms"])
    runner.send(runner.protocol.subscribe(case["deployment_id"], case["subscribe"]["since"]))
    for step in case["steps"]:
        runner.step(step)

    expect = case["expect"]
    delivered = [
        delivered_entry(m)
        for m in runner.delivered
        if isinstance(m, Event | DeploymentSnapshot | HistoryReset)
    ]
    assert delivered == expect["delivered"]
    assert requests(runner.sent) == expect["requests"]
    assert [m.code for m in runner.delivered if isinstance(m, ErrorMessage)] == expect["errors"]
    assert (case["deployment_id"] in runner.protocol.subscriptions) is expect["subscribed"]


def test_every_kind_of_step_is_exercised() -> None:
    """The vectors cover receive, advance_ms, reconnect and ping, and frames of several messages."""
    steps = [step for case in VECTORS["cases"] for step in case["steps"]]
    kinds = {next(iter(step)) for step in steps}
    assert kinds == {"receive", "advance_ms", "reconnect", "ping"}
    assert any(isinstance(step.get("receive"), list) for step in steps)
