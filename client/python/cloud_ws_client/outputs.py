"""Building a client from a stack's outputs (``pulumi stack output --json`` or ``cloud-ws local``'s file)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cloud_ws_client.auth import CognitoPasswordAuth

#: The password of ``cloud-ws local``'s dev user. The local pool is throwaway and
#: the password fixed and printed in its banner; this is a copy of
#: ``emulator.backend.DEV_PASSWORD``, which this package must not import.
LOCAL_DEV_PASSWORD = "Local-Dev-Passw0rd!"


def read_outputs(source: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """The outputs as a dict, from a mapping or a JSON file.

    Raises:
        ValueError: The file does not hold a JSON object with ``websocket_url``.
        OSError: The file cannot be read.
    """
    if isinstance(source, Mapping):
        outputs = dict(source)
    else:
        outputs = json.loads(Path(source).read_text(encoding="utf-8"))
        if not isinstance(outputs, dict):
            raise ValueError(f"{source} does not hold a JSON object")
    if not isinstance(outputs.get("websocket_url"), str):
        raise ValueError("the outputs lack websocket_url")
    return outputs


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
    endpoint = outputs.get("aws_endpoint_url")
    if endpoint:
        username = username or outputs.get("dev_username") or "dev"
        password = password or LOCAL_DEV_PASSWORD
    if not username or not password:
        raise ValueError("pass a token (or a username and password) for a cloud stack")
    missing = [key for key in ("region", "user_pool_client_id") if not outputs.get(key)]
    if missing:
        raise ValueError(f"the outputs lack {', '.join(missing)}")
    return CognitoPasswordAuth(
        region=str(outputs["region"]),
        client_id=str(outputs["user_pool_client_id"]),
        username=username,
        password=password,
        endpoint=str(endpoint) if endpoint else None,
    )
