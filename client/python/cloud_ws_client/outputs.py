"""Building a client from a stack's outputs (``pulumi stack output --json`` or ``cloud-ws local``'s file)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cloud_ws_client.auth import CognitoPasswordAuth

#: The password of ``cloud-ws local``'s dev user. The local pool is throwaway and
#: the password fixed and printed in its banner; this is a copy of
#: ``emulator.backend.DEV_PASSWORD``, which this package must not import.
LOCAL_DEV_PASSWORD = "Local-Dev-Passw0rd!"

# The outputs keys this client reads: copies of ``contract.outputs`` (the contract, with
# every key's meaning), which this package must not import; tests/test_client/test_contract.py
# holds them equal.
WEBSOCKET_URL = "websocket_url"
REGION = "region"
USER_POOL_CLIENT_ID = "user_pool_client_id"
AWS_ENDPOINT_URL = "aws_endpoint_url"
DEV_USERNAME = "dev_username"

#: What a client needs to connect; signing in (:func:`password_auth`) needs :data:`SIGN_IN_NEEDS` too.
CONNECT_NEEDS = (WEBSOCKET_URL,)
SIGN_IN_NEEDS = (REGION, USER_POOL_CLIENT_ID)


def read_outputs(
    source: Mapping[str, Any] | str | os.PathLike[str], needs: Iterable[str] = CONNECT_NEEDS
) -> dict[str, Any]:
    """The outputs as a dict, from a mapping (a parsed ``pulumi stack output --json``) or a JSON file.

    The same rules as the server side's ``contract.outputs.load_outputs``: each of
    ``needs`` must be a non-empty string, and the message names the file and the keys.

    Raises:
        ValueError: The file does not hold a JSON object, or it lacks one of ``needs``.
        OSError: The file cannot be read.
    """
    if isinstance(source, Mapping):
        outputs = dict(source)
        where = "the outputs"
    else:
        where = f"outputs file {source}"
        try:
            outputs = json.loads(Path(source).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"cannot read {where}: {exc}") from None
        if not isinstance(outputs, dict):
            raise ValueError(f"{where} must hold a JSON object (`pulumi stack output --json`)")
    missing = [key for key in dict.fromkeys(needs) if not _present(outputs.get(key))]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}")
    return outputs


def _present(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def password_auth(
    outputs: Mapping[str, Any], username: str | None = None, password: str | None = None
) -> CognitoPasswordAuth:
    """A Cognito sign-in provider for the stack's user pool.

    Against ``cloud-ws local`` (outputs with ``aws_endpoint_url``) the user
    defaults to the dev user and its documented password. Against a cloud
    stack both must be given.

    Raises:
        ValueError: No password for a cloud stack, or the outputs lack the pool.
    """
    endpoint = outputs.get(AWS_ENDPOINT_URL)
    if endpoint:
        username = username or outputs.get(DEV_USERNAME) or "dev"
        password = password or LOCAL_DEV_PASSWORD
    if not username or not password:
        raise ValueError("pass a token (or a username and password) for a cloud stack")
    read_outputs(outputs, SIGN_IN_NEEDS)
    return CognitoPasswordAuth(
        region=str(outputs[REGION]),
        client_id=str(outputs[USER_POOL_CLIENT_ID]),
        username=username,
        password=password,
        endpoint=str(endpoint) if endpoint else None,
    )
