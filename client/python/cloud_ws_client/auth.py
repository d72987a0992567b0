"""Tokens: where they come from, when they expire, how they travel in the handshake.

A *token provider* is any callable returning a Cognito JWT, sync or async; the
client calls it before every connection attempt, so a reconnect an hour later
uses a fresh token. :class:`CognitoPasswordAuth` is a provider that signs in
through Cognito's ``InitiateAuth`` (``USER_PASSWORD_AUTH``) with the standard
library only: it works against a cloud user pool and against the embedded one
of ``cloud-ws local``.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from cloud_ws_client._protocol_generated import SUBPROTOCOL as SUBPROTOCOL
from cloud_ws_client._protocol_generated import TOKEN_SUBPROTOCOL_PREFIX as TOKEN_SUBPROTOCOL_PREFIX
from cloud_ws_client.errors import AuthenticationError

TokenProvider = Callable[[], str | Awaitable[str]]
"""A callable returning a token, or an awaitable of one."""
TokenSource = str | TokenProvider
"""A fixed token, or a provider called before every connection attempt."""
TokenTransport = Literal["header", "query", "subprotocol"]
"""Where the handshake carries the token: ``Authorization: Bearer``, ``?token=``, or
``Sec-WebSocket-Protocol: cloud-ws, bearer.<jwt>`` (docs/protocol.md, Connecting)."""

# SUBPROTOCOL (offered with the ``subprotocol`` transport; the server echoes it) and
# TOKEN_SUBPROTOCOL_PREFIX (``bearer.<jwt>``) come from conformance/protocol.json.


async def resolve_token(source: TokenSource) -> str:
    """The token to use now: ``source`` itself, or what its provider returns (awaited if needed)."""
    if isinstance(source, str):
        return source
    value = source()
    if inspect.isawaitable(value):
        value = await value
    if not isinstance(value, str) or not value:
        raise AuthenticationError(f"the token provider returned {type(value).__name__}, not a token")
    return value


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (epoch seconds), read without verifying the signature.

    The client only uses it to reconnect before the server starts refusing
    the token; the server does the verifying. ``None`` when the token is not
    a JWT or has no numeric ``exp``.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def handshake(
    url: str, token: str, transport: TokenTransport
) -> tuple[str, dict[str, str], list[str] | None]:
    """Where to put the token: returns the URL, extra headers and subprotocols to connect with."""
    if transport == "header":
        return url, {"Authorization": f"Bearer {token}"}, None
    if transport == "query":
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
        return urlunsplit(parts._replace(query=urlencode([*query, ("token", token)]))), {}, None
    if transport == "subprotocol":
        return url, {}, [SUBPROTOCOL, f"{TOKEN_SUBPROTOCOL_PREFIX}{token}"]
    raise ValueError(f"token_transport must be header, query or subprotocol, not {transport!r}")


class CognitoPasswordAuth:
    """A token provider that signs a user in through Cognito and returns the ID token.

    Args:
        region: The user pool's region.
        client_id: The app client id; it must allow ``USER_PASSWORD_AUTH``.
        username: Who signs in.
        password: Their password.
        endpoint: Cognito's endpoint; default the regional AWS one. ``cloud-ws
            local`` serves one at its ``aws_endpoint_url`` output.
        timeout: Seconds to wait for Cognito.
    """

    def __init__(
        self,
        *,
        region: str,
        client_id: str,
        username: str,
        password: str,
        endpoint: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.endpoint = (endpoint or f"https://cognito-idp.{region}.amazonaws.com").rstrip("/") + "/"
        self.client_id = client_id
        self.username = username
        self._password = password
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"CognitoPasswordAuth(endpoint={self.endpoint!r}, username={self.username!r})"

    async def __call__(self) -> str:
        """Sign in (in a worker thread: the call is blocking HTTP) and return a fresh ID token.

        Raises:
            AuthenticationError: Cognito refused the sign-in (wrong password,
                unknown user or app client): retrying cannot help.
            OSError: Cognito could not be reached (retried by the client).
        """
        return await asyncio.to_thread(self.sign_in)

    def sign_in(self) -> str:
        """The blocking sign-in behind :meth:`__call__`."""
        body = {
            "AuthFlow": "USER_PASSWORD_AUTH",
            "ClientId": self.client_id,
            "AuthParameters": {"USERNAME": self.username, "PASSWORD": self._password},
        }
        request = urllib.request.Request(  # noqa: S310 - the endpoint is the configured Cognito URL
            self.endpoint,
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                result = json.load(reply)
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise  # Cognito's own trouble: an OSError, so the client retries
            try:
                detail = json.load(exc)
            except ValueError:
                detail = {}
            reason = detail.get("message") or detail.get("__type") or f"HTTP {exc.code}"
            raise AuthenticationError(f"Cognito refused the sign-in of {self.username}: {reason}") from None
        token = (result.get("AuthenticationResult") or {}).get("IdToken")
        if not isinstance(token, str):
            # A challenge (new password required, MFA) cannot be answered unattended.
            challenge = result.get("ChallengeName", "no token")
            raise AuthenticationError(f"Cognito answered the sign-in of {self.username} with {challenge}")
        return token
