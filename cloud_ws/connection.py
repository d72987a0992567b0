"""The connection options ``cloud-ws monitor`` and ``cloud-ws list`` share, and the client built from them.

``--outputs``, ``--url`` and ``--token`` say where the WebSocket API is and
who signs in; :func:`build_client` turns them into a
:class:`cloud_ws_client.CloudWebSocketClient` (for a local stack without a
token, one that signs the dev user in on every connection and follows the
stack across restarts: :class:`LocalSignIn`). A token the server refuses is
explained by :func:`explain_refusal`. The commands that only read the
outputs file (emit, demo, notify, pulumi) share :func:`add_outputs_argument`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud_ws.text import format_duration
from contract import outputs as contract
from contract.outputs import OutputsError

if TYPE_CHECKING:
    from cloud_ws_client import CloudWebSocketClient

#: Where the token comes from when ``--token`` is not given.
TOKEN_ENV = "CLOUD_WS_TOKEN"
#: The help of ``--outputs`` for the commands that read the file (``cloud-ws local`` writes it).
OUTPUTS_HELP = "stack outputs file (default: .cloud-ws/outputs.json)"

#: The outputs keys the client signs in with when no token is given.
SIGN_IN_OUTPUTS = (contract.REGION, contract.USER_POOL_CLIENT_ID)
#: The outputs keys that name the stack a local sign-in goes to: another value is another stack.
STACK_IDENTITY = (
    contract.WEBSOCKET_URL,
    contract.AWS_ENDPOINT_URL,
    contract.REGION,
    contract.USER_POOL_ID,
    contract.USER_POOL_CLIENT_ID,
)


def add_outputs_argument(parser: argparse.ArgumentParser) -> None:
    """``--outputs FILE`` (a string): the outputs file of emit, demo, notify and pulumi."""
    parser.add_argument("--outputs", metavar="FILE", help=OUTPUTS_HELP)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--outputs``, ``--url`` and ``--token``: what :func:`build_client` reads (monitor and list)."""
    # No metavar: the published help of monitor and list reads ``--outputs OUTPUTS``.
    parser.add_argument("--outputs", type=Path, default=None, help=OUTPUTS_HELP)
    parser.add_argument("--url", help="WebSocket URL, instead of reading it from the outputs")
    parser.add_argument(
        "--token", help=f"Cognito JWT (default: ${TOKEN_ENV}, else the local stack's dev user)"
    )


def given_token(args: argparse.Namespace) -> str | None:
    """The token ``--token`` gives, else ``$CLOUD_WS_TOKEN``; None when neither does."""
    token: str | None = args.token or os.environ.get(TOKEN_ENV)
    return token


def build_client(
    args: argparse.Namespace, *, announce: Callable[[str], None] | None = None
) -> CloudWebSocketClient:
    """The client for ``--url``/``--token``, or for the outputs file.

    Without a token, for a local stack, the client signs the dev user in on
    every connection and follows the stack across restarts
    (:class:`LocalSignIn`); ``announce`` is told when it does.

    Raises:
        ValueError: No way to get a token.
        OutputsError: The outputs file is missing or incomplete.
    """
    from cloud_ws_client import CloudWebSocketClient  # noqa: PLC0415

    token = given_token(args)
    if args.url:
        if not token:
            raise ValueError(f"--url needs --token (or ${TOKEN_ENV})")
        return CloudWebSocketClient(args.url, token)
    # Without a token the client signs in through the stack's user pool.
    needs = (contract.WEBSOCKET_URL,) if token else (contract.WEBSOCKET_URL, *SIGN_IN_OUTPUTS)
    outputs = contract.load_outputs(args.outputs, needs=needs)
    if token is None and not outputs.get(contract.AWS_ENDPOINT_URL):
        raise ValueError(f"pass --token or set ${TOKEN_ENV} for a cloud stack (`cloud-ws token` prints one)")
    if token is not None:
        return CloudWebSocketClient.from_outputs(outputs, token)
    # Without a token the client signs the local dev user in on every
    # connection, so a reconnect an hour later still has a valid token.
    sign_in = LocalSignIn(args.outputs or contract.default_path(), outputs, announce=announce)
    client = CloudWebSocketClient(str(outputs[contract.WEBSOCKET_URL]), sign_in)
    sign_in.client = client
    return client


class LocalSignIn:
    """The token provider of a client of ``cloud-ws local``: the dev user, signed in on every connection.

    Every start of ``cloud-ws local`` is a new stack: a new user pool and app
    client, empty tables, no history. A client that signed in to the previous
    one is refused by the new one ("Cognito refused the sign-in of dev"), so a
    refused sign-in re-reads the outputs file: when it names another stack,
    the client follows it (signs in there, and connects to its URL), and
    ``announce`` says that the stack restarted and forgot its deployments.
    The resubscribe that follows finds the history gone, which the client
    reports as a history that went back. An unreachable Cognito endpoint
    (a stack that came back on other ports) re-reads the file too. While the
    file is missing (the stack stopped, or is starting: it writes the file
    once it answers) or still names the refusing stack for up to
    :attr:`grace` seconds (a stack killed without removing its file), the
    refusal is retried as a network error is, with the client's backoff.

    Args:
        path: The outputs file.
        outputs: What it holds now.
        announce: Told, in a sentence, when the client follows a restarted stack.
    """

    grace = 30.0
    """Seconds a refused sign-in is retried while the outputs file still names the same stack."""

    def __init__(
        self, path: Path, outputs: Mapping[str, Any], *, announce: Callable[[str], None] | None = None
    ) -> None:
        from cloud_ws_client.outputs import password_auth  # noqa: PLC0415

        self.path = path
        self.announce = announce
        self.client: CloudWebSocketClient | None = None
        """The client whose ``url`` follows the stack (set once it is built)."""
        self.outputs = dict(outputs)
        self._auth = password_auth(self.outputs)
        self._refused_since: float | None = None

    async def __call__(self) -> str:
        """A fresh ID token of the dev user, from the stack the outputs file names now."""
        from cloud_ws_client import AuthenticationError  # noqa: PLC0415

        try:
            token = await self._auth()
        except (AuthenticationError, OSError) as failure:
            token = await self._follow(failure)
        self._refused_since = None
        return token

    async def _follow(self, failure: Exception) -> str:
        """After a failed sign-in: the stack the outputs file names now, if it is another one.

        A refusal (the pool or app client is gone) and an unreachable endpoint (a stack that
        came back on other ports) both send the client to the file; anything else is raised
        for the client to decide (an ``OSError`` is retried, a refusal is final).
        """
        from cloud_ws_client.outputs import password_auth  # noqa: PLC0415

        unreachable = isinstance(failure, OSError)
        try:
            outputs = contract.load_outputs(self.path, needs=(contract.WEBSOCKET_URL, *SIGN_IN_OUTPUTS))
        except OutputsError as exc:
            # Stopped (the file is removed) or starting (written once it answers): wait for it.
            if unreachable:
                raise failure from None
            raise ConnectionError(f"{failure}; waiting for the local stack ({exc})") from None
        if [outputs.get(key) for key in STACK_IDENTITY] == [self.outputs.get(key) for key in STACK_IDENTITY]:
            if unreachable:
                raise failure
            now = time.monotonic()
            if self._refused_since is None:
                self._refused_since = now
            if now - self._refused_since < self.grace:
                raise ConnectionError(f"{failure}; waiting for the local stack to write {self.path}")
            raise failure
        self.outputs = dict(outputs)
        self._auth = password_auth(self.outputs)
        if self.client is not None:
            self.client.url = str(outputs[contract.WEBSOCKET_URL])  # read by the connection attempt
        if self.announce is not None:
            self.announce(
                f"the local stack restarted ({self.path} names a new user pool): every restart starts "
                "with no deployments and no history; signed in again and watching on"
            )
        return await self._auth()


def explain_refusal(exc: Exception, token: str | None) -> str:
    """The error, and for a token the server refused (HTTP 401), what is wrong with it and what to do.

    The server answers 401 alike for an expired token and for one that is no
    token at all; the token's claims are read here, without verifying it, to
    tell the two apart.
    """
    from cloud_ws_client import AuthenticationError  # noqa: PLC0415

    message = str(exc)
    if not isinstance(exc, AuthenticationError) or getattr(exc, "status", None) != 401 or not token:
        return message
    return f"{message}: {diagnose_token(token)}"


def diagnose_token(token: str, now: datetime | None = None) -> str:
    """What a refused token is, read without verifying it: malformed, expired, or neither."""
    claims = _jwt_claims(token)
    if claims is None:
        return (
            "this is not a JWT (three base64url parts); pass the ID token that `cloud-ws token` prints"
            f" (or set ${TOKEN_ENV} to it), not an access token, a file name or a quoted string"
        )
    expires = claims.get("exp")
    now = now or datetime.now(UTC)
    try:
        when = datetime.fromtimestamp(expires, UTC) if isinstance(expires, int | float) else None
    except (OverflowError, ValueError, OSError):  # an exp past the calendar: far from expired
        when = None
    if when is not None and not isinstance(expires, bool) and when <= now:
        ago = format_duration((now - when).total_seconds())
        return (
            f"the token expired at {when:%Y-%m-%d %H:%M} UTC ({ago} ago); get a fresh one with"
            f" `cloud-ws token` (or your sign-in step) and pass it with --token or ${TOKEN_ENV}"
        )
    if claims.get("token_use") not in (None, "id"):
        return f"this is an {claims.get('token_use')} token; pass the ID token (`cloud-ws token` prints one)"
    return (
        "the token is a JWT that has not expired; check that it comes from this stack's user pool"
        " (its `iss`) and app client (its `aud`): `cloud-ws token --outputs FILE` for the same outputs"
    )


def _jwt_claims(token: str) -> dict[str, object] | None:
    """The claims of a JWT, decoded but not verified; None when it is not one."""
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None
