"""``$connect`` hardening: ``aud`` lists and other oddly-typed claims, and the JWKS refreshed on a schedule.

Every refusal is checked twice: the handshake answers 401 (never a 500) and
DynamoDB is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk
from moto.utilities.utils import load_resource

from server.cognito import CognitoJwtVerifier, JwksCache, JwksUnavailableError, TokenError
from server.runtime import get_runtime
from tests.support.moto_stack import Stack

# -- aud as a list, and claims of the wrong JSON type ---------------------------------------------


def test_aud_list_naming_our_client_is_accepted(stack: Stack) -> None:
    """RFC 7519 lets ``aud`` be a list: one accepted client id in it is enough (as aws-jwt-verify)."""
    token = stack.pool.forge({"aud": ["some-other-app", stack.pool.client_id]})
    before = stack.snapshot()

    reply, _ = stack.connect(token)

    assert reply["statusCode"] == 200
    assert len(stack.snapshot()["CONNECTIONS_TABLE"]) == len(before["CONNECTIONS_TABLE"]) + 1


ODD_CLAIMS: dict[str, Callable[[Stack], str]] = {
    "aud list without our client": lambda s: s.pool.forge({"aud": ["another-client", "a-third"]}),
    "aud empty list": lambda s: s.pool.forge({"aud": []}),
    "aud list with a number": lambda s: s.pool.forge({"aud": [s.pool.client_id, 5]}),
    "aud list with an object": lambda s: s.pool.forge({"aud": [{"id": s.pool.client_id}]}),
    "aud list with a nested list": lambda s: s.pool.forge({"aud": [[s.pool.client_id]]}),
    "aud a number": lambda s: s.pool.forge({"aud": 42}),
    "aud an object": lambda s: s.pool.forge({"aud": {s.pool.client_id: True}}),
    "token_use a list": lambda s: s.pool.forge({"token_use": ["id"]}),
    "token_use an object": lambda s: s.pool.forge({"token_use": {"id": 1}}),
    "access token client_id a list": lambda s: s.pool.forge(
        {"client_id": [s.pool.client_id]}, base=s.pool.tokens("carol")["access"]
    ),
    "access token client_id an object": lambda s: s.pool.forge(
        {"client_id": {"id": s.pool.client_id}}, base=s.pool.tokens("carol")["access"]
    ),
}


@pytest.mark.parametrize("case", sorted(ODD_CLAIMS))
def test_oddly_typed_audience_claims_are_a_401_and_store_nothing(stack: Stack, case: str) -> None:
    """A list or object where a string is expected used to be unhashable (a 500); now it is refused."""
    stack.open("alice")  # some state that must survive untouched
    token = ODD_CLAIMS[case](stack)
    before = stack.snapshot()

    reply, connection_id = stack.connect(token)

    assert reply == {"statusCode": 401}
    assert stack.snapshot() == before
    assert connection_id not in str(before)


# -- the JWKS, refreshed on a schedule ------------------------------------------------------------


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand."""

    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeJwksEndpoint:
    """The pool's JWKS endpoint: serves ``document``, counts requests, fails when told to."""

    document: Mapping[str, Any]
    requests: int = 0
    failing: bool = False
    urls: list[str] = field(default_factory=list)

    def __call__(self, url: str) -> Mapping[str, Any]:
        self.requests += 1
        self.urls.append(url)
        if self.failing:
            raise JwksUnavailableError("endpoint down")
        return self.document


def _new_key(kid: str) -> tuple[str, dict[str, Any]]:
    """A fresh RSA key: its PEM (to sign) and its public JWK entry (to publish)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = jwk.construct(pem, algorithm="RS256").public_key().to_dict()
    return pem, {**public, "kid": kid, "alg": "RS256", "use": "sig"}


MOTO_PUBLIC: dict[str, Any] = load_resource("cognitoidp/resources/jwks-public.json")["keys"][0]


def _scheduled_verifier(stack: Stack, endpoint: FakeJwksEndpoint, clock: FakeClock) -> JwksCache:
    """Give the container's runtime a verifier whose JWKS comes from ``endpoint`` on ``clock``."""
    runtime = get_runtime()
    config = runtime.config.auth
    jwks = JwksCache(
        config.jwks_url, penalty_seconds=10.0, fetch=endpoint, clock=clock, max_age_seconds=3600.0
    )
    runtime._verifier = CognitoJwtVerifier(config, jwks=jwks)
    return jwks


def test_retired_key_stops_verifying_after_the_refresh_interval(stack: Stack) -> None:
    """The pool rotates: within the hour the held keys serve without a fetch; after it, the new set
    is fetched once, the retired key is refused (nothing stored) and the new key verifies."""
    clock = FakeClock()
    new_pem, new_public = _new_key("rotated-in")
    endpoint = FakeJwksEndpoint({"keys": [MOTO_PUBLIC]})
    _scheduled_verifier(stack, endpoint, clock)
    old_token = stack.pool.token("alice")

    for _ in range(20):  # many handshakes within the hour: one fetch, not one per request
        assert stack.connect(old_token)[0]["statusCode"] == 200
        clock.now += 60
    assert endpoint.requests == 1

    endpoint.document = {"keys": [new_public]}  # the pool retires moto's key
    clock.now += 2 * 3600
    before = stack.snapshot()

    reply, _ = stack.connect(old_token)

    assert reply == {"statusCode": 401}
    assert stack.snapshot() == before
    assert endpoint.requests == 2  # the scheduled refresh, and no extra unknown-kid refetch
    new_token = stack.pool.forge(headers={"kid": "rotated-in"}, key=new_pem)
    for _ in range(5):
        assert stack.connect(new_token)[0]["statusCode"] == 200
    assert endpoint.requests == 2


def test_key_replaced_under_the_same_kid_is_picked_up_after_the_interval() -> None:
    """A kid whose key material changed is only learnt by the scheduled refresh (no kid miss)."""
    clock = FakeClock()
    _, first = _new_key("k")
    _, second = _new_key("k")
    endpoint = FakeJwksEndpoint({"keys": [first]})
    jwks = JwksCache("https://jwks.test", fetch=endpoint, clock=clock, max_age_seconds=3600.0)

    assert jwks.key_for("k").to_dict()["n"] == first["n"]
    endpoint.document = {"keys": [second]}
    clock.now += 3599
    assert jwks.key_for("k").to_dict()["n"] == first["n"]  # still within the hour: no fetch
    assert endpoint.requests == 1
    clock.now += 1
    assert jwks.key_for("k").to_dict()["n"] == second["n"]
    assert endpoint.requests == 2


def test_failed_refresh_keeps_the_held_keys_and_retries_after_the_penalty() -> None:
    """Cognito briefly unreachable: handshakes keep verifying, and the endpoint is not hit per request."""
    clock = FakeClock()
    _, public = _new_key("k")
    endpoint = FakeJwksEndpoint({"keys": [public]})
    jwks = JwksCache("https://jwks.test", penalty_seconds=10.0, fetch=endpoint, clock=clock)
    jwks.key_for("k")

    endpoint.failing = True
    clock.now += 3600
    for _ in range(50):
        jwks.key_for("k")
    assert endpoint.requests == 2  # one failed attempt, then the held keys serve

    clock.now += 10
    endpoint.failing = False
    jwks.key_for("k")
    assert endpoint.requests == 3
    assert jwks.fetches == 2


def test_first_fetch_failing_is_a_server_error() -> None:
    """With no keys held there is nothing to fall back on: JwksUnavailableError (a 500, retried)."""
    endpoint = FakeJwksEndpoint({"keys": []}, failing=True)
    jwks = JwksCache("https://jwks.test", fetch=endpoint, clock=FakeClock())

    with pytest.raises(JwksUnavailableError):
        jwks.key_for("k")


def test_unknown_kid_after_a_scheduled_refresh_goes_to_the_penalty_box() -> None:
    """The scheduled refresh counts as the kid's one refetch; garbage kids still cannot hammer Cognito."""
    clock = FakeClock()
    _, public = _new_key("k")
    endpoint = FakeJwksEndpoint({"keys": [public]})
    jwks = JwksCache("https://jwks.test", penalty_seconds=10.0, fetch=endpoint, clock=clock)
    jwks.key_for("k")
    clock.now += 3600

    for kid in ("g1", "g2", "g3"):
        with pytest.raises(TokenError):
            jwks.key_for(kid)
    assert endpoint.requests == 2  # the scheduled refresh only
    clock.now += 10
    with pytest.raises(TokenError):
        jwks.key_for("g4")
    assert endpoint.requests == 3  # penalty over: one refetch
