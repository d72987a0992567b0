"""Pure protocol pieces: frame parsing, route selection, the table spec, configuration, the JWKS cache."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.utilities.utils import load_resource

from contract import protocol, spec
from contract.protocol import ErrorCode, ProtocolError
from server.apigw import WebSocketEvent
from server.cognito import JwksCache, TokenError
from server.config import ConfigError, load_config
from tests.support import apigw

LIMITS = {"max_bytes": 4096, "max_depth": 4}


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    """A log-like string full of brackets is not deep."""
    frame = protocol.parse_frame(json.dumps({"action": "ping", "note": '[[[[{{{{\\"]]]'}), **LIMITS)

    assert frame.action == "ping"


def test_nesting_at_the_limit_is_accepted_and_one_more_is_refused() -> None:
    """Depth 4 passes, depth 5 does not."""
    ok = '{"action": "ping", "a": {"b": {"c": {}}}}'
    deep = '{"action": "ping", "a": {"b": {"c": {"d": {}}}}}'

    assert protocol.parse_frame(ok, **LIMITS).action == "ping"
    with pytest.raises(ProtocolError) as refused:
        protocol.parse_frame(deep, **LIMITS)
    assert refused.value.code == ErrorCode.MESSAGE_TOO_DEEP


def test_size_is_counted_in_utf8_bytes() -> None:
    """Multi-byte characters count as the bytes they take on the wire."""
    frame = json.dumps({"action": "ping", "x": "é" * 2100})  # ~4200 bytes, 2100 characters

    with pytest.raises(ProtocolError) as refused:
        protocol.parse_frame(frame, **LIMITS)
    assert refused.value.code == ErrorCode.MESSAGE_TOO_LARGE


@pytest.mark.parametrize(
    ("body", "route"),
    [
        ('{"action": "subscribe", "deployment_id": "D1"}', "subscribe"),
        ('{"action": "unsubscribe"}', "unsubscribe"),
        ('{"action": "ping"}', "ping"),
        ('{"action": "$connect"}', "$default"),
        ('{"action": "$disconnect"}', "$default"),
        ('{"action": "nope"}', "$default"),
        ('{"action": 1}', "$default"),
        ("[1]", "$default"),
        ("not json", "$default"),
        ("", "$default"),
        (None, "$default"),
        ("[" * 5000, "$default"),
    ],
)
def test_route_selection_follows_request_body_action(body: str | None, route: str) -> None:
    """As API Gateway: a known action picks its route, everything else is $default."""
    assert spec.select_route(body) == route


def test_every_route_module_exists_and_has_a_handler() -> None:
    """The spec names real modules; the component and the emulator rely on it."""
    import importlib

    for route in spec.FUNCTIONS:
        module = importlib.import_module(f"handlers.{route.module}")
        assert callable(module.handler), route.handler


def test_route_for_unknown_key_raises() -> None:
    """Asking for a route that does not exist is a programming error."""
    with pytest.raises(KeyError):
        spec.route_for("$nope")


def test_table_spec_builds_create_table_arguments() -> None:
    """Keys, the by-connection index and on-demand billing come from one place."""
    kwargs = spec.SUBSCRIPTIONS.create_table_kwargs("subs")

    assert kwargs["TableName"] == "subs"
    assert kwargs["BillingMode"] == "PAY_PER_REQUEST"
    assert kwargs["KeySchema"] == [
        {"AttributeName": "deploymentId", "KeyType": "HASH"},
        {"AttributeName": "connectionId", "KeyType": "RANGE"},
    ]
    assert {a["AttributeName"] for a in kwargs["AttributeDefinitions"]} == {"deploymentId", "connectionId"}
    (index,) = kwargs["GlobalSecondaryIndexes"]
    assert index["IndexName"] == spec.SUBSCRIPTIONS_BY_CONNECTION_INDEX
    assert index["KeySchema"][0] == {"AttributeName": "connectionId", "KeyType": "HASH"}
    # The connections' by-expiry index: the sweeper reads a minute's expiring tokens, never a Scan.
    (expiry,) = spec.CONNECTIONS.create_table_kwargs("c")["GlobalSecondaryIndexes"]
    assert expiry["IndexName"] == spec.CONNECTIONS_BY_EXPIRY_INDEX
    assert expiry["KeySchema"] == [
        {"AttributeName": "expiresMinute", "KeyType": "HASH"},
        {"AttributeName": "tokenExpiresAt", "KeyType": "RANGE"},
    ]
    assert expiry["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_event_pattern_matches_the_envelope_source_and_requires_a_deployment() -> None:
    """The rule wakes the broadcaster only for deployment events from the configured source."""
    assert spec.event_pattern("acme.deployer") == {
        "source": ["acme.deployer"],
        "detail": {"deployment_id": [{"exists": True}]},
    }


ENV = {
    "CONNECTIONS_TABLE": "c",
    "SUBSCRIPTIONS_TABLE": "s",
    "EVENTS_TABLE": "e",
    "EVENT_IDS_TABLE": "i",
    "COGNITO_USER_POOL_ID": "eu-west-1_AbCdEf",
    "COGNITO_CLIENT_IDS": "client-a, client-b",
}


def test_config_derives_issuer_and_jwks_from_the_pool_id() -> None:
    """The pool's own region is in its id; the JWKS sits under the issuer."""
    config = load_config(ENV)

    assert config.auth.issuer == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf"
    assert config.auth.jwks_url == config.auth.issuer + "/.well-known/jwks.json"
    assert config.auth.client_ids == {"client-a", "client-b"}
    assert config.auth.token_uses == {"id", "access"}
    assert config.connection_ttl_seconds == 24 * 3600
    assert config.history_ttl_seconds == 72 * 3600


def test_config_overrides_for_the_local_stack() -> None:
    """The local stack points issuer and JWKS at its embedded Cognito."""
    config = load_config(
        {
            **ENV,
            "COGNITO_ISSUER": "https://issuer.example/",
            "COGNITO_JWKS_URL": "http://127.0.0.1:5000/pool/.well-known/jwks.json",
            "MANAGEMENT_ENDPOINT": "http://127.0.0.1:8080/local/",
        }
    )

    assert config.auth.issuer == "https://issuer.example"
    assert config.auth.jwks_url.startswith("http://127.0.0.1:5000/")
    assert config.management_endpoint == "http://127.0.0.1:8080/local"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"CONNECTIONS_TABLE": ""}, "CONNECTIONS_TABLE"),
        ({"COGNITO_USER_POOL_ID": ""}, "COGNITO_USER_POOL_ID"),
        ({"COGNITO_CLIENT_IDS": " , "}, "COGNITO_CLIENT_IDS"),
        ({"COGNITO_TOKEN_USES": "id,refresh"}, "COGNITO_TOKEN_USES"),
        ({"CONNECTION_TTL_HOURS": "soon"}, "CONNECTION_TTL_HOURS"),
        ({"CONNECTION_TTL_HOURS": "0"}, "CONNECTION_TTL_HOURS"),
        ({"JWKS_PENALTY_SECONDS": "-1"}, "JWKS_PENALTY_SECONDS"),
        ({"JWKS_PENALTY_SECONDS": "ten"}, "JWKS_PENALTY_SECONDS"),
    ],
)
def test_bad_configuration_names_the_variable(change: dict[str, str], named: str) -> None:
    """A misconfigured function fails with a message an operator can act on."""
    with pytest.raises(ConfigError, match=named):
        load_config({**ENV, **change})


class _FakeJwks:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.calls = 0

    def __call__(self, url: str) -> dict[str, Any]:
        self.calls += 1
        return self.document


def test_penalty_box_expires() -> None:
    """After the penalty, an unknown kid may trigger one more refetch (keys do rotate)."""
    now = [1000.0]
    fetch = _FakeJwks(load_resource("cognitoidp/resources/jwks-public.json"))
    cache = JwksCache("https://example/jwks", penalty_seconds=10, fetch=fetch, clock=lambda: now[0])

    assert cache.key_for("dummy") is not None
    for _ in range(3):
        with pytest.raises(TokenError):
            cache.key_for("unknown")
    assert fetch.calls == 2
    now[0] += 10.5
    with pytest.raises(TokenError):
        cache.key_for("unknown")
    assert fetch.calls == 3


def test_only_rsa_signing_keys_are_usable() -> None:
    """An HMAC or encryption key in the set can never be selected by a crafted kid."""
    rsa_key = load_resource("cognitoidp/resources/jwks-public.json")["keys"][0]
    fetch = _FakeJwks(
        {
            "keys": [
                {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
                {**rsa_key, "kid": "enc", "use": "enc"},
                {**rsa_key, "kid": "es", "alg": "ES256"},
                {"kid": "broken", "kty": "RSA", "n": "!", "e": "AQAB"},
                "not a key",
                rsa_key,
            ]
        }
    )
    cache = JwksCache("https://example/jwks", fetch=fetch)

    assert cache.key_for("dummy") is not None
    for kid in ("hmac", "enc", "es", "broken"):
        with pytest.raises(TokenError):
            cache.key_for(kid)


def test_websocket_event_decodes_base64_bodies_and_lowercases_headers() -> None:
    """Binary frames arrive base64-encoded; header names are case-insensitive."""
    event = WebSocketEvent.from_lambda(
        apigw.websocket_event(
            "$default",
            "c1",
            '{"action":"ping"}',
            headers={"Sec-WebSocket-Protocol": "cloud-ws"},
            base64_body=True,
        )
    )

    assert event.body == '{"action":"ping"}'
    assert event.headers == {"sec-websocket-protocol": "cloud-ws"}
    assert event.management_endpoint == apigw.MANAGEMENT_ENDPOINT
    with pytest.raises(ValueError, match="connectionId"):
        WebSocketEvent.from_lambda({"body": "x"})


# -- request ids, errors that name their request, pong.latest, several messages per frame --------


@pytest.mark.parametrize("good", ["a", "x" * 64, "é" * 64, "7", None])
def test_request_ids_of_1_to_64_characters_are_accepted(good: str | None) -> None:
    """Counted in characters; absent or null means no id."""
    body: dict[str, Any] = {"action": "ping"}
    if good is not None:
        body["id"] = good
    assert protocol.parse_frame(json.dumps(body), **LIMITS).request_id == good


@pytest.mark.parametrize("bad", ["", "x" * 65, 7, 1.5, True, [], {}])
def test_bad_request_ids_are_refused_without_echo(bad: Any) -> None:
    """invalid_id names the action and a well-formed deployment, never the bad id."""
    frame = json.dumps({"action": "subscribe", "deployment_id": "D1", "id": bad})
    with pytest.raises(ProtocolError) as refused:
        protocol.parse_frame(frame, **LIMITS)
    message = refused.value.to_message()
    assert message["code"] == ErrorCode.INVALID_ID == "invalid_id"
    assert (message["action"], message["deployment_id"]) == ("subscribe", "D1")
    assert "id" not in message


def test_a_frame_without_action_still_has_its_id_matched() -> None:
    """invalid_message echoes a good id and names a well-formed deployment."""
    with pytest.raises(ProtocolError) as refused:
        protocol.parse_frame('{"id": "r1", "deployment_id": "D1"}', **LIMITS)
    assert refused.value.to_message() == {
        "type": "error",
        "code": "invalid_message",
        "message": refused.value.message,
        "deployment_id": "D1",
        "id": "r1",
    }


def test_parsed_frame_keeps_only_a_well_formed_deployment_id() -> None:
    """Frame.deployment_id is what errors may name; a malformed one is dropped."""
    assert (
        protocol.parse_frame('{"action": "subscribe", "deployment_id": "D1"}', **LIMITS).deployment_id == "D1"
    )
    assert (
        protocol.parse_frame('{"action": "subscribe", "deployment_id": "a b"}', **LIMITS).deployment_id
        is None
    )


def test_replies_carry_the_id_only_when_given() -> None:
    """Builders of subscribed, unsubscribed and pong add ``id`` and ``latest`` as asked."""
    assert protocol.subscribed("D1", 3, 1, "r") == {
        "type": "subscribed",
        "deployment_id": "D1",
        "seq": 3,
        "replay": 1,
        "id": "r",
    }
    assert protocol.unsubscribed("D1") == {"type": "unsubscribed", "deployment_id": "D1"}
    pong = protocol.pong({"D1": 4, "D2": 0}, "p")
    assert (pong["latest"], pong["id"]) == ({"D1": 4, "D2": 0}, "p")
    assert "latest" not in protocol.pong()


def test_pack_frames_joins_greedily_under_the_limit_in_order() -> None:
    """As many whole messages per frame as fit; one too big alone gets its own frame."""
    messages = [b"a" * 4, b"b" * 4, b"c" * 4, b"d" * 20, b"e"]
    frames = protocol.pack_frames(messages, max_bytes=10)
    assert frames == [b"aaaa\nbbbb", b"cccc", b"d" * 20, b"e"]
    assert protocol.pack_frames([], max_bytes=10) == []
    assert b"\n".join(frames).split(b"\n") == messages
