"""``$connect``: Cognito JWT authentication at the handshake, and the negative matrix."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk
from moto.utilities.utils import load_resource

from server.runtime import get_runtime
from tests.support.moto_stack import Stack


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)])


def _hs256_with_public_key(stack: Stack) -> str:
    """The classic algorithm-confusion forgery: HMAC keyed with the pool's public key."""
    public = load_resource("cognitoidp/resources/jwks-public.json")["keys"][0]
    secret = jwk.construct(public, algorithm="RS256").to_pem()
    from jose import jwt as jose_jwt

    claims = jose_jwt.get_unverified_claims(stack.pool.token())
    header = {"alg": "HS256", "kid": "dummy", "typ": "JWT"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _connection_row(stack: Stack, connection_id: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = stack.ddb.get_item(
        TableName=stack.tables["CONNECTIONS_TABLE"], Key={"connectionId": {"S": connection_id}}
    ).get("Item")
    return item


@pytest.mark.parametrize("via", ["query", "header", "subprotocol"])
def test_valid_id_token_registers_the_connection(stack: Stack, via: str) -> None:
    """A real ID token from any of the three sources opens the connection and stores who it is."""
    stack.pool.user("alice", groups=("ops",), email="alice@example.com")
    token = stack.pool.token("alice")

    reply, connection_id = stack.connect(token, via=via)

    assert reply["statusCode"] == 200
    row = _connection_row(stack, connection_id)
    assert row is not None
    assert row["username"] == {"S": "alice"}
    assert row["groups"] == {"L": [{"S": "ops"}]}
    assert row["userId"]["S"]
    now = time.time()
    assert abs(int(row["ttl"]["N"]) - (now + 24 * 3600)) < 60
    assert now < int(row["tokenExpiresAt"]["N"]) <= now + 3600 + 5


def test_access_token_is_accepted(stack: Stack) -> None:
    """Access tokens carry client_id instead of aud; both token uses are accepted by default."""
    reply, connection_id = stack.connect(stack.pool.tokens("bob")["access"], via="header")

    assert reply["statusCode"] == 200
    assert _connection_row(stack, connection_id) is not None


def test_subprotocol_handshake_echoes_our_protocol(stack: Stack) -> None:
    """Browsers need one offered subprotocol echoed back, never the token when ours was offered."""
    reply, _ = stack.connect(stack.pool.token(), via="subprotocol")

    assert reply["headers"] == {"Sec-WebSocket-Protocol": "cloud-ws"}


def test_subprotocol_with_only_the_token_echoes_the_token_entry(stack: Stack) -> None:
    """With the token as the only offer, the token entry is the only acceptable echo."""
    token = stack.pool.token()
    reply, _ = stack.connect(headers={"Sec-WebSocket-Protocol": f"bearer.{token}"})

    assert reply["statusCode"] == 200
    assert reply["headers"] == {"Sec-WebSocket-Protocol": f"bearer.{token}"}


def test_no_subprotocol_header_when_none_was_offered(stack: Stack) -> None:
    """Query-string auth without subprotocols answers without a Sec-WebSocket-Protocol header."""
    reply, _ = stack.connect(stack.pool.token(), via="query")

    assert "headers" not in reply


def test_header_takes_precedence_over_query(stack: Stack) -> None:
    """A bad Authorization header refuses the handshake even if the query has a good token."""
    before = stack.snapshot()
    reply, _ = stack.connect(stack.pool.token(), via="query", headers={"Authorization": "Bearer nope"})

    assert reply["statusCode"] == 401
    assert stack.snapshot() == before


def _expired(stack: Stack) -> str:
    return stack.pool.forge({"exp": int(time.time()) - 600, "iat": int(time.time()) - 4200})


BAD_TOKENS = {
    "no token": lambda s: None,
    "empty": lambda s: "",
    "not a jwt": lambda s: "definitely-not-a-jwt",
    "malformed segments": lambda s: "a.b.c",
    "alg none": lambda s: _unsigned({"alg": "none", "kid": "dummy"}, {"sub": "x", "token_use": "id"}),
    "HS256 keyed with the public key": _hs256_with_public_key,
    "unknown kid": lambda s: s.pool.forge(
        headers={"kid": "rotated-away"},
        key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ),
    "known kid, other key": lambda s: s.pool.forge(
        key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ),
    "tampered payload": lambda s: (
        lambda t: t.split(".")[0] + "." + _b64(b'{"sub":"admin"}') + "." + t.split(".")[2]
    )(s.pool.token()),
    "wrong issuer": lambda s: s.pool.forge(
        {"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_other"}
    ),
    "issuer with trailing slash": lambda s: s.pool.forge({"iss": s.pool.issuer + "/"}),
    "wrong audience": lambda s: s.pool.forge({"aud": "another-client"}),
    "access token for another client": lambda s: s.pool.forge(
        {"client_id": "another-client"}, base=s.pool.tokens("carol")["access"]
    ),
    "wrong token_use": lambda s: s.pool.forge({"token_use": "refresh"}),
    "missing token_use": lambda s: s.pool.forge({"token_use": None}),
    "expired": _expired,
    "not yet valid": lambda s: s.pool.forge({"nbf": int(time.time()) + 600}),
    "missing exp": lambda s: s.pool.forge({"exp": None}),
    "missing sub": lambda s: s.pool.forge({"sub": None}),
    "groups not a list": lambda s: s.pool.forge({"cognito:groups": "admins"}),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_refused_handshake_is_401_and_stores_nothing(stack: Stack, case: str) -> None:
    """Every bad token is refused with 401, and DynamoDB is left exactly as it was."""
    stack.open("alice")  # some state that must survive untouched
    token = BAD_TOKENS[case](stack)
    before = stack.snapshot()

    reply, connection_id = stack.connect(token, via="query")

    assert reply == {"statusCode": 401}
    assert _connection_row(stack, connection_id) is None
    assert stack.snapshot() == before


@pytest.mark.parametrize("via", ["header", "subprotocol"])
def test_bad_token_is_refused_from_every_source(stack: Stack, via: str) -> None:
    """The header and subprotocol paths verify as strictly as the query path."""
    before = stack.snapshot()
    reply, _ = stack.connect(_expired(stack), via=via)

    assert reply["statusCode"] == 401
    assert stack.snapshot() == before


def test_non_bearer_authorization_scheme_is_refused(stack: Stack) -> None:
    """``Authorization: Basic`` is not a token source."""
    before = stack.snapshot()
    reply, _ = stack.connect(headers={"Authorization": f"Basic {stack.pool.token()}"})

    assert reply["statusCode"] == 401
    assert stack.snapshot() == before


def test_leeway_tolerates_small_clock_skew(stack: Stack) -> None:
    """A token that expired two seconds ago is inside the default 5 s leeway."""
    # The keys fetched first: on a loaded machine that first fetch alone can outlast the leeway.
    assert stack.connect(stack.pool.tokens("warm")["id"])[0]["statusCode"] == 200
    token = stack.pool.forge({"exp": int(time.time()) - 2})

    reply, _ = stack.connect(token)

    assert reply["statusCode"] == 200


def test_token_use_can_be_restricted_to_id_tokens(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """COGNITO_TOKEN_USES=id refuses access tokens."""
    from server.runtime import reset_runtime

    monkeypatch.setenv("COGNITO_TOKEN_USES", "id")
    reset_runtime()
    before = stack.snapshot()

    refused, _ = stack.connect(stack.pool.tokens("dave")["access"])
    accepted, _ = stack.connect(stack.pool.tokens("dave")["id"])

    assert refused["statusCode"] == 401
    assert accepted["statusCode"] == 200
    assert len(stack.snapshot()["CONNECTIONS_TABLE"]) == len(before["CONNECTIONS_TABLE"]) + 1


def test_jwks_is_fetched_once_per_container(stack: Stack) -> None:
    """Keys are cached: many handshakes, one fetch."""
    for name in ("a1", "a2", "a3"):
        stack.open(name)

    assert get_runtime().verifier.jwks.fetches == 1


def test_unknown_kid_refetches_once_then_waits_in_the_penalty_box(stack: Stack) -> None:
    """Garbage kids cannot make the verifier hammer the JWKS endpoint."""
    stack.open("alice")
    jwks = get_runtime().verifier.jwks
    assert jwks.fetches == 1

    for kid in ("k1", "k2", "k3", "k4"):
        reply, _ = stack.connect(stack.pool.forge(headers={"kid": kid}))
        assert reply["statusCode"] == 401

    assert jwks.fetches == 2  # one refetch for k1; k2..k4 fall in the penalty box
    assert stack.connect(stack.pool.token())[0]["statusCode"] == 200  # known kid still served from cache


def test_unreachable_jwks_is_a_server_error_not_a_401(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients must retry a 5xx, not give up as on a 401; nothing is stored."""
    from server.runtime import reset_runtime

    monkeypatch.setenv("COGNITO_JWKS_URL", "http://127.0.0.1:9/jwks.json")
    reset_runtime()
    before = stack.snapshot()

    reply, _ = stack.connect(stack.pool.token())

    assert reply == {"statusCode": 500}
    assert stack.snapshot() == before


def test_unexpected_failure_is_a_bare_500(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A storage failure never leaks an exception to API Gateway."""
    from server.runtime import reset_runtime

    monkeypatch.setenv("CONNECTIONS_TABLE", "no-such-table")
    reset_runtime()

    reply, _ = stack.connect(stack.pool.token())

    assert reply == {"statusCode": 500}


def test_event_without_connection_id_is_a_500(stack: Stack) -> None:
    """Garbage input from the integration is contained too."""
    from handlers import connect

    assert connect.handler({"requestContext": {}}) == {"statusCode": 500}
