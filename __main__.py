"""The cloud-ws stack: one per environment (`pulumi up -s dev`, `pulumi up -s prod`).

Reads the `cloud-ws:*` configuration (docs/design.md), creates a Cognito user pool
and app client unless an existing pool is configured, instantiates
`WebSocketMonitoring` and exports the outputs the plugin and the clients read
(`pulumi stack output --json`).
"""

import re
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from contract import outputs
from pulumi_component import (
    WebSocketMonitoring,
    WebSocketMonitoringArgs,
    WebSocketMonitoringArgsError,
    arguments,
    validate_args,
)

NAMESPACE = "cloud-ws"

#: Component argument ← configuration key, and how each key is read: both from the table of
#: the component's arguments (pulumi_component/arguments.py). Errors found by the component
#: are reported under the key the user actually set.
CONFIG_KEYS: Mapping[str, str] = arguments.CONFIG_KEYS
CONFIG_TYPES: Mapping[str, arguments.ConfigType] = arguments.CONFIG_TYPES


def read_config(config: pulumi.Config) -> dict[str, Any]:
    """The component's arguments from stack configuration (only the keys that are set)."""
    args: dict[str, Any] = {}
    for field, key in CONFIG_KEYS.items():
        kind = CONFIG_TYPES[field]
        if kind == "integer":
            value: Any = config.get_int(key)
        elif kind == "number":
            value = config.get_float(key)
        elif kind == "boolean":
            value = config.get_bool(key)
        elif kind == "object":
            # A YAML mapping in Pulumi.<stack>.yaml, or a JSON string from `pulumi config set`.
            value = config.get_object(key)
        elif kind == "list":  # a YAML list, or "a,b" from `pulumi config set`
            raw = config.get(key)
            if raw is not None and raw.lstrip().startswith("["):
                value = config.get_object(key)
            else:
                value = None if raw is None else [part.strip() for part in raw.split(",") if part.strip()]
        else:
            value = config.get(key)
        if value is not None:
            args[field] = value
    if ("user_pool_id" in args) != ("user_pool_client_id" in args):
        missing = "userPoolClientId" if "user_pool_id" in args else "userPoolId"
        raise pulumi.RunError(
            f"{NAMESPACE}:{missing} must be set too: an existing pool needs both "
            f"{NAMESPACE}:userPoolId and {NAMESPACE}:userPoolClientId (or neither, to create one)"
        )
    return args


def unknown_keys() -> list[str]:
    """``cloud-ws:*`` keys set on the stack that this program does not read (typos, usually)."""
    known = {f"{NAMESPACE}:{key}" for key in CONFIG_KEYS.values()}
    # The SDK has no public way to list config keys: read the bag the language host filled.
    present = {*pulumi.runtime.config.CONFIG.get(), *pulumi.runtime.get_config_env()}
    return sorted(k for k in present if k.startswith(f"{NAMESPACE}:") and k not in known)


def create_user_pool(stack: str) -> tuple[aws.cognito.UserPool, aws.cognito.UserPoolClient]:
    """A user pool for this environment (administrators create the users) and a public app client."""
    pool = aws.cognito.UserPool(
        "users",
        name=f"cloud-ws-{stack}",
        username_attributes=["email"],
        auto_verified_attributes=["email"],
        admin_create_user_config=aws.cognito.UserPoolAdminCreateUserConfigArgs(
            allow_admin_create_user_only=True
        ),
        password_policy=aws.cognito.UserPoolPasswordPolicyArgs(
            minimum_length=12,
            require_lowercase=True,
            require_uppercase=True,
            require_numbers=True,
            require_symbols=False,
        ),
        account_recovery_setting=aws.cognito.UserPoolAccountRecoverySettingArgs(
            recovery_mechanisms=[
                aws.cognito.UserPoolAccountRecoverySettingRecoveryMechanismArgs(
                    name="verified_email", priority=1
                )
            ]
        ),
    )
    client = aws.cognito.UserPoolClient(
        "users-client",
        name=f"cloud-ws-{stack}-clients",
        user_pool_id=pool.id,
        generate_secret=False,  # used by the CLI and browsers: a public client
        explicit_auth_flows=["ALLOW_USER_SRP_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        prevent_user_existence_errors="ENABLED",
    )
    return pool, client


def config_error(exc: WebSocketMonitoringArgsError) -> pulumi.RunError:
    """The component's complaint, told in configuration keys (``[stage_name]`` → ``cloud-ws:stageName``)."""

    def key(field: str) -> str:
        return f"{NAMESPACE}:{CONFIG_KEYS.get(field, field)}"

    reason = re.sub(r"\[(\w+)\]", lambda match: key(match.group(1)), exc.reason)
    return pulumi.RunError(f"{key(exc.field)} {reason}")


def main() -> None:
    """Build the stack and export the outputs."""
    config = pulumi.Config(NAMESPACE)
    for key in unknown_keys():
        pulumi.log.warn(f"{key} is not a cloud-ws setting and is ignored (see docs/deploying.md)")
    args = read_config(config)
    args.setdefault("stage_name", pulumi.get_stack())
    try:
        # Check everything before the first resource exists: a bad value creates nothing.
        validate_args({"user_pool_id": "-", "user_pool_client_id": "-", **args})
        if "user_pool_id" not in args:
            pool, client = create_user_pool(pulumi.get_stack())
            args["user_pool_id"] = pool.id
            args["user_pool_client_id"] = client.id
        component_args: WebSocketMonitoringArgs = args  # type: ignore[assignment]  # checked above
        monitoring = WebSocketMonitoring("cloud-ws", component_args)
    except WebSocketMonitoringArgsError as exc:
        raise config_error(exc) from exc

    # The outputs contract (contract.outputs): the component names each output after its key.
    for key in outputs.REQUIRED:
        pulumi.export(key, getattr(monitoring, key))
    # Only when AppSync is enabled: consumers take an absent key for "no GraphQL API".
    # Only when notifications are configured (cloud-ws notify test reads the bus).
    for key in (
        outputs.GRAPHQL_URL,
        outputs.GRAPHQL_REALTIME_URL,
        outputs.NOTIFICATION_BUS_NAME,
        outputs.NOTIFICATION_TOPIC_ARN,
    ):
        if getattr(monitoring, key) is not None:
            pulumi.export(key, getattr(monitoring, key))


# Pulumi runs the program as ``__main__``; the tests also load it under another name to read its tables.
if __name__ == "__main__":
    main()
