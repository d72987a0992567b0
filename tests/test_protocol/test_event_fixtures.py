"""The sample events of tests/fixtures/events.json are events the system really accepts:
the envelope has the plugin's fields, the EventBridge event matches the rule's source, and
every sample deployment passes the broadcaster's parser, renders messages the AsyncAPI
document allows and folds to the outcome its name says."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract import events as server_events
from contract import spec, state
from plugin.envelope import build_envelope
from tests.support import asyncapi, events


def test_the_envelope_has_exactly_the_plugins_fields() -> None:
    built = json.loads(build_envelope("deployment.status", "D1BRV40", {"status": "deploying"}).detail)
    assert set(events.FIXTURES["envelope"]) == set(built)
    assert events.FIXTURES["eventbridge"]["detail"] == events.FIXTURES["envelope"]


def test_the_eventbridge_event_matches_the_rule_and_is_what_the_helpers_build() -> None:
    sample = events.FIXTURES["eventbridge"]
    assert sample["source"] == spec.DEFAULT_EVENT_SOURCE
    built = events.eventbridge_event(sample["detail-type"], sample["detail"], sample["id"])
    assert built == sample
    assert events.envelope("D1BRV40", event_id=sample["detail"]["event_id"]) == sample["detail"]


@pytest.mark.parametrize(
    ("name", "outcome"),
    [("one layer that succeeds", "succeeded"), ("two layers, the second fails", "failed")],
)
def test_every_sample_deployment_is_accepted_and_folds_to_its_outcome(name: str, outcome: str) -> None:
    messages: list[dict[str, Any]] = []
    for seq, (type_, data) in enumerate(events.deployment(name), 1):
        event = events.eventbridge_event(type_, events.envelope("D1BRV40", data))
        message = json.loads(server_events.parse_event(event).render(seq))
        assert asyncapi.validate_server_message(message)
        messages.append(message)

    folded = state.public(state.fold(state.initial(), messages))

    assert folded["status"] == outcome
    assert all(stack["status"] in ("deployed", "failed") for stack in folded["stacks"].values())
