"""``cloud-ws token``: print a fresh Cognito ID token (the local dev user by default).

Against the local stack the user is created on first use with the dev
password. Against a cloud stack the password comes from ``CLOUD_WS_PASSWORD``
or a prompt, and the app client must allow ``USER_PASSWORD_AUTH``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cloud-ws token``."""
    parser.add_argument(
        "--outputs", type=Path, default=None, help="outputs file (default: .cloud-ws/outputs.json)"
    )
    parser.add_argument("--username", default=None, help="user to sign in (default: the local dev user)")


def run(args: argparse.Namespace) -> int:
    """Sign in through Cognito and print the ID token on stdout."""
    import boto3  # noqa: PLC0415
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    from contract import outputs as contract  # noqa: PLC0415

    try:
        outputs = contract.load_outputs(
            args.outputs, needs=(contract.REGION, contract.USER_POOL_ID, contract.USER_POOL_CLIENT_ID)
        )
    except contract.OutputsError as exc:
        print(f"cloud-ws token: {exc}", file=sys.stderr)
        return 2
    endpoint = outputs.get(contract.AWS_ENDPOINT_URL)
    username = args.username or outputs.get(contract.DEV_USERNAME) or "dev"
    try:
        if endpoint:
            from emulator.backend import DEV_PASSWORD, client, ensure_user  # noqa: PLC0415

            idp = client("cognito-idp", endpoint, outputs[contract.REGION])
            ensure_user(idp, outputs[contract.USER_POOL_ID], username)
            password = DEV_PASSWORD
        else:
            idp = boto3.client("cognito-idp", region_name=outputs[contract.REGION])
            password = os.environ.get("CLOUD_WS_PASSWORD") or getpass.getpass(f"password for {username}: ")
        result = idp.initiate_auth(
            ClientId=outputs[contract.USER_POOL_CLIENT_ID],
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )
    except (BotoCoreError, ClientError) as exc:
        print(f"cloud-ws token: sign-in failed: {exc}", file=sys.stderr)
        return 2
    print(result["AuthenticationResult"]["IdToken"])
    return 0
