"""The embedded AWS-compatible backend: moto in server mode, provisioned like the cloud stack.

Tables come from ``contract.spec``; the EventBridge rule uses
``spec.event_pattern`` (the same one the Pulumi component deploys) and targets
an SQS queue that the local stack drains into the broadcaster, which is how
EventBridge's asynchronous Lambda invocation behaves: at least once, retried on
failure, dead-lettered after repeated failures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config as BotoConfig

from contract import spec
from emulator.moto_process import bind_reusable

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp.client import CognitoIdentityProviderClient

#: Credentials for the embedded backend; moto accepts any, boto3 requires some.
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}

DEV_USERNAME = "dev"
#: The dev user's password: the pool is local and throwaway, so it is fixed and documented.
DEV_PASSWORD = "Local-Dev-Passw0rd!"
DEV_GROUP = "developers"


@dataclass(frozen=True)
class BackendInfo:
    """What the provisioned backend is called and where it listens."""

    endpoint: str
    region: str
    tables: dict[str, str]
    """Handler env var (``CONNECTIONS_TABLE``...) → table name."""
    user_pool_id: str
    user_pool_client_id: str
    event_bus_name: str
    event_source: str
    rule_name: str
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str

    @property
    def issuer(self) -> str:
        """``iss`` of the tokens the embedded Cognito mints (moto always uses the AWS form)."""
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"

    @property
    def jwks_url(self) -> str:
        """Where the embedded Cognito serves the pool's keys."""
        return f"{self.endpoint}/{self.user_pool_id}/.well-known/jwks.json"


def client(service: str, endpoint: str, region: str, **config: Any) -> Any:
    """A boto3 client for the embedded backend."""
    return boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name=region,
        config=BotoConfig(**config) if config else None,
        **LOCAL_CREDENTIALS,
    )


def port_is_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound as the backend binds it (moto would hang on a taken port).

    With ``SO_REUSEADDR``, as the backend's server binds: a port left with
    only TIME-WAIT connections by a stack stopped a moment ago is free, one
    something listens on is not.
    """
    try:
        probe = bind_reusable(host, port)
    except OSError:
        return False
    probe.close()
    return True


class MotoBackend:
    """moto's server on a loopback port, with the cloud-ws resources created."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        token_lifetime_seconds: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.region = region
        self.token_lifetime_seconds = token_lifetime_seconds
        """How long the tokens the embedded Cognito mints live (None: moto's hour)."""
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> str:
        """Start the server in its own process; returns its endpoint URL."""
        if self.port and not port_is_free(self.host, self.port):
            raise OSError(f"port {self.port} is already in use")
        command = [
            sys.executable,
            "-m",
            "emulator.moto_process",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        if self.token_lifetime_seconds is not None:
            command += ["--token-lifetime", str(self.token_lifetime_seconds)]
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # Its own process group: Ctrl-C in a terminal signals the whole group, and the
            # backend must outlive the stack's clean shutdown (it exits when stdin closes).
            start_new_session=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait()
            raise OSError(f"the embedded AWS backend did not start (exit code {code})")
        self.port = int(json.loads(line)["port"])
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the server (all state is in memory and goes with it)."""
        if self._process is not None:
            assert self._process.stdin is not None
            self._process.stdin.close()  # the child exits when its stdin closes
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def provision(
        self, endpoint: str, stage: str, event_source: str = spec.DEFAULT_EVENT_SOURCE
    ) -> BackendInfo:
        """Create tables, the dev user pool, the bus, the rule and its queue."""
        prefix = f"cloud-ws-{stage}"
        ddb = client("dynamodb", endpoint, self.region)
        tables: dict[str, str] = {}
        for table in spec.TABLES:
            name = f"{prefix}-{table.role}"
            ddb.create_table(**table.create_table_kwargs(name))
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
            tables[table.env_var] = name

        idp: CognitoIdentityProviderClient = client("cognito-idp", endpoint, self.region)
        pool_id = idp.create_user_pool(PoolName=prefix)["UserPool"]["Id"]
        client_id = idp.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName=f"{prefix}-client",
            ExplicitAuthFlows=[
                "ALLOW_USER_PASSWORD_AUTH",
                "ALLOW_REFRESH_TOKEN_AUTH",
                "ALLOW_ADMIN_USER_PASSWORD_AUTH",
            ],
        )["UserPoolClient"]["ClientId"]
        idp.create_group(UserPoolId=pool_id, GroupName=DEV_GROUP)
        ensure_user(idp, pool_id, DEV_USERNAME, groups=(DEV_GROUP,))

        sqs = client("sqs", endpoint, self.region)
        dlq_url = sqs.create_queue(QueueName=f"{prefix}-broadcaster-dlq")["QueueUrl"]
        dlq_arn = _queue_arn(sqs, dlq_url)
        delivery = spec.DELIVERY
        queue_url = sqs.create_queue(
            QueueName=f"{prefix}-broadcaster",
            Attributes={
                # The cloud queue's settings: the broadcaster itself shortens the visibility of
                # the records it reports as failed, so they come back in seconds.
                "VisibilityTimeout": str(delivery.visibility_timeout_seconds),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(delivery.max_receive_count)}
                ),
            },
        )["QueueUrl"]
        queue_arn = _queue_arn(sqs, queue_url)

        events = client("events", endpoint, self.region)
        bus = f"{prefix}-bus"
        events.create_event_bus(Name=bus)
        rule = f"{prefix}-to-broadcaster"
        events.put_rule(
            Name=rule, EventBusName=bus, EventPattern=json.dumps(spec.event_pattern(event_source))
        )
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "broadcaster", "Arn": queue_arn}])

        return BackendInfo(
            endpoint=endpoint,
            region=self.region,
            tables=tables,
            user_pool_id=pool_id,
            user_pool_client_id=client_id,
            event_bus_name=bus,
            event_source=event_source,
            rule_name=rule,
            queue_url=queue_url,
            queue_arn=queue_arn,
            dead_letter_queue_url=dlq_url,
        )


def _queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    return str(attributes["QueueArn"])


def ensure_user(
    idp: CognitoIdentityProviderClient,
    pool_id: str,
    username: str,
    password: str = DEV_PASSWORD,
    groups: tuple[str, ...] = (),
) -> None:
    """Create a confirmed user with a permanent password (no-op if it exists)."""
    try:
        idp.admin_create_user(
            UserPoolId=pool_id,
            Username=username,
            MessageAction="SUPPRESS",
            TemporaryPassword="Tmp-" + password,
            UserAttributes=[{"Name": "email", "Value": f"{username}@localhost"}],
        )
    except idp.exceptions.UsernameExistsException:
        return
    idp.admin_set_user_password(UserPoolId=pool_id, Username=username, Password=password, Permanent=True)
    for group in groups:
        idp.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)


def id_token(
    idp: CognitoIdentityProviderClient, client_id: str, username: str, password: str = DEV_PASSWORD
) -> str:
    """A fresh ID token through the real Cognito flow (USER_PASSWORD_AUTH)."""
    result = idp.initiate_auth(
        ClientId=client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password},
    )
    return result["AuthenticationResult"]["IdToken"]
