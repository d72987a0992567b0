"""Tokens: providers, expiry, where the handshake carries them, outputs and Cognito sign-in."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_ws_client import AuthenticationError, CloudWebSocketClient, CognitoPasswordAuth, token_expiry
from cloud_ws_client.auth import handshake, resolve_token
from cloud_ws_client.outputs import LOCAL_DEV_PASSWORD, password_auth, read_outputs
from tests.support.scripted_http import ScriptedHttp


def jwt(payload: Any) -> str:
    def part(value: Any) -> str:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(payload)}.c2ln"


def test_token_expiry_reads_exp_without_verifying() -> None:
    """exp comes from the payload; anything that is not a JWT with a numeric exp gives None."""
    assert token_expiry(jwt({"exp": 1795683133, "sub": "x"})) == 1795683133.0
    assert token_expiry(jwt({"exp": 17.5})) == 17.5
    assert token_expiry(jwt({"sub": "x"})) is None
    assert token_expiry(jwt({"exp": True})) is None
    assert token_expiry(jwt([1, 2])) is None
    assert token_expiry(jwt(b"\xff not json")) is None
    assert token_expiry("opaque-token") is None


def test_handshake_puts_the_token_where_asked() -> None:
    """Header, query (replacing a token already there) or the browser's subprotocol pair."""
    assert handshake("ws://h/local", "T", "header") == ("ws://h/local", {"Authorization": "Bearer T"}, None)
    assert handshake("ws://h/local?a=1&token=old", "T", "query") == ("ws://h/local?a=1&token=T", {}, None)
    assert handshake("ws://h/local", "T", "subprotocol") == ("ws://h/local", {}, ["cloud-ws", "bearer.T"])
    with pytest.raises(ValueError, match="token_transport"):
        handshake("ws://h/local", "T", "cookie")  # type: ignore[arg-type]


async def test_token_sources_sync_async_and_fixed() -> None:
    """A string, a function and a coroutine function all give a token; a bad result is refused."""

    async def fetch() -> str:
        return "async-token"

    assert await resolve_token("fixed") == "fixed"
    assert await resolve_token(lambda: "sync-token") == "sync-token"
    assert await resolve_token(fetch) == "async-token"
    with pytest.raises(AuthenticationError, match="NoneType"):
        await resolve_token(lambda: None)  # type: ignore[arg-type,return-value]


def test_outputs_give_the_url_and_a_sign_in(tmp_path: Path) -> None:
    """Local outputs sign in the dev user; cloud outputs need a token or credentials."""
    local = {
        "websocket_url": "ws://127.0.0.1:1/local",
        "region": "us-east-1",
        "user_pool_client_id": "client",
        "aws_endpoint_url": "http://127.0.0.1:2",
        "dev_username": "dev",
    }
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(local))
    assert read_outputs(path) == local
    auth = password_auth(local)
    assert (auth.endpoint, auth.username, auth.client_id) == ("http://127.0.0.1:2/", "dev", "client")
    assert "dev" in repr(auth)
    assert LOCAL_DEV_PASSWORD not in repr(auth)

    client = CloudWebSocketClient.from_outputs(path)
    assert client.url == "ws://127.0.0.1:1/local"
    assert CloudWebSocketClient.from_outputs(local, "T").url == client.url

    cloud = {key: value for key, value in local.items() if key not in ("aws_endpoint_url", "dev_username")}
    with pytest.raises(ValueError, match="token"):
        CloudWebSocketClient.from_outputs(cloud)
    cloud_auth = password_auth(cloud, "alice", "pw")
    assert cloud_auth.endpoint == "https://cognito-idp.us-east-1.amazonaws.com/"
    with pytest.raises(ValueError, match="region"):
        password_auth({"websocket_url": "ws://x", "aws_endpoint_url": "http://y"})
    with pytest.raises(ValueError, match="websocket_url"):
        read_outputs({"region": "us-east-1"})
    path.write_text("[1]")
    with pytest.raises(ValueError, match="JSON object"):
        read_outputs(path)


def test_local_dev_password_matches_the_local_stack() -> None:
    """The client's copy of the dev password is the one cloud-ws local provisions."""
    from emulator.backend import DEV_PASSWORD

    assert LOCAL_DEV_PASSWORD == DEV_PASSWORD


@pytest.fixture
def cognito() -> Iterator[ScriptedHttp]:
    """A stand-in Cognito answering InitiateAuth with whatever the test scripts."""
    with ScriptedHttp() as server:
        yield server


async def test_cognito_sign_in_outcomes(cognito: ScriptedHttp) -> None:
    """A token; a refusal (fatal); Cognito's 5xx and a closed port (OSError: retried); a challenge."""
    auth = CognitoPasswordAuth(
        region="eu-west-1", client_id="c", username="u", password="p", endpoint=cognito.url
    )
    cognito.script = [
        (200, {"AuthenticationResult": {"IdToken": "the-token"}}),
        (400, {"__type": "NotAuthorizedException", "message": "Incorrect username or password."}),
        (503, {"message": "try later"}),
        (200, {"ChallengeName": "NEW_PASSWORD_REQUIRED"}),
    ]
    assert await auth() == "the-token"
    assert cognito.headers[0]["x-amz-target"] == "AWSCognitoIdentityProviderService.InitiateAuth"
    assert cognito.received[0] == {
        "AuthFlow": "USER_PASSWORD_AUTH",
        "ClientId": "c",
        "AuthParameters": {"USERNAME": "u", "PASSWORD": "p"},
    }
    with pytest.raises(AuthenticationError, match="Incorrect username or password"):
        await auth()
    with pytest.raises(OSError, match="503"):
        await auth()
    with pytest.raises(AuthenticationError, match="NEW_PASSWORD_REQUIRED"):
        await auth()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = CognitoPasswordAuth(
        region="eu-west-1",
        client_id="c",
        username="u",
        password="p",
        endpoint=f"http://127.0.0.1:{closed_port}",
    )
    with pytest.raises(OSError, match="refused"):
        await unreachable()
