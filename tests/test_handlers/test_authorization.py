"""The access policy: which groups may watch which projects (``contract.authorization``)."""

from __future__ import annotations

import json

import pytest

from contract.authorization import (
    EVERYTHING,
    AccessPolicy,
    AccessPolicyError,
    granted,
    grants_of,
    is_valid_project,
)
from contract.events import InvalidEventError, parse_event
from plugin.envelope import EnvelopeError, build_envelope
from server.config import ConfigError, load_config

POLICY = AccessPolicy.parse('{"team-a": ["alpha", "web-*"], "sre": ["*"], "audit": ["a*z"], "none": []}')


@pytest.mark.parametrize(
    ("patterns", "project", "expected"),
    [
        (["alpha"], "alpha", True),
        (["alpha"], "alphabet", False),  # whole names only
        (["alpha"], "xalpha", False),
        (["web-*"], "web-shop", True),
        (["web-*"], "web-", True),  # `*` matches any run, the empty one too
        (["web-*"], "webshop", False),
        (["a*z"], "abcz", True),
        (["a*z"], "abc", False),
        (["a.b"], "axb", False),  # `.` is a character, not a wildcard
        (["*"], "anything.at-all", True),
        ([], "alpha", False),
    ],
)
def test_patterns_match_whole_project_names(patterns: list[str], project: str, expected: bool) -> None:
    assert granted(patterns, project) is expected


def test_a_user_is_granted_what_any_of_their_groups_is() -> None:
    assert POLICY.grants(["team-a"]) == ("alpha", "web-*")
    assert POLICY.grants(["team-a", "sre"]) == ("alpha", "web-*", "*")
    assert POLICY.grants(["none"]) == ()
    assert POLICY.grants(["stranger"]) == ()
    assert POLICY.grants([]) == ()


def test_subscribe_groups_gate_and_no_policy() -> None:
    """SUBSCRIBE_GROUPS shuts out non-members whatever the policy; no policy grants everything."""
    assert grants_of(["team-a"], POLICY, frozenset()) == ("alpha", "web-*")
    assert grants_of(["team-a"], POLICY, frozenset({"ops"})) == ()
    assert grants_of(["team-a", "ops"], POLICY, frozenset({"ops"})) == ("alpha", "web-*")
    assert grants_of([], None, frozenset()) == EVERYTHING
    assert grants_of(["dev"], None, frozenset({"ops"})) == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "must be JSON"),
        ('["sre"]', "JSON object"),
        ('{"sre": "*"}', "list of project patterns"),
        ('{"sre": ["Alpha"]}', "list of project patterns"),  # upper case is no project name
        ('{"sre": ["a b"]}', "list of project patterns"),
        ('{"sre": [1]}', "list of project patterns"),
    ],
)
def test_a_malformed_policy_is_refused_with_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(AccessPolicyError, match=problem):
        AccessPolicy.parse(text)


def test_the_config_reads_the_policy_and_names_a_bad_one(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "CONNECTIONS_TABLE": "c",
        "SUBSCRIPTIONS_TABLE": "s",
        "EVENTS_TABLE": "e",
        "EVENT_IDS_TABLE": "i",
        "COGNITO_USER_POOL_ID": "us-east-1_Pool",
        "COGNITO_CLIENT_IDS": "client",
    }
    assert load_config(env).access is None  # unset: no policy, every project visible
    assert load_config({**env, "ACCESS_POLICY": "{}"}).access == AccessPolicy({})  # grants nothing
    policy = load_config({**env, "ACCESS_POLICY": '{"sre": ["*"]}'}).access
    assert policy is not None
    assert policy.grants(["sre"]) == ("*",)
    with pytest.raises(ConfigError, match="ACCESS_POLICY"):
        load_config({**env, "ACCESS_POLICY": '{"sre": "*"}'})


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("alpha", True),
        ("a.b-c_d", True),
        ("0", True),
        ("Alpha", False),
        ("-a", False),
        ("", False),
        (None, False),
    ],
)
def test_project_names(value: object, valid: bool) -> None:
    assert is_valid_project(value) is valid


def test_an_event_claims_its_project_in_detail_project() -> None:
    """Absent or null: ``default``; malformed: the event is invalid (dead-lettered, never stored)."""

    def event(**detail: object) -> dict[str, object]:
        return {"detail-type": "log.created", "detail": {"deployment_id": "D1", "event_id": "e1", **detail}}

    assert parse_event(event()).project == "default"
    assert parse_event(event(project=None)).project == "default"
    assert parse_event(event(project="alpha")).project == "alpha"
    for bad in ("Alpha", "", 7, "a" * 64):
        with pytest.raises(InvalidEventError, match=r"detail\.project"):
            parse_event(event(project=bad))
    # The plugin's envelope carries it as the broadcaster reads it, and refuses a bad one up front.
    envelope = build_envelope("log.created", "D1", {"message": "hi"}, project="alpha")
    assert (
        parse_event({"detail-type": "log.created", "detail": json.loads(envelope.detail)}).project == "alpha"
    )
    with pytest.raises(EnvelopeError, match="project"):
        build_envelope("log.created", "D1", {}, project="Not A Project")
