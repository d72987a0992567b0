"""Fixtures shared by every suite: moto's AWS, a Cognito pool minting real JWTs,
the tables built from the shared spec, and a real-HTTP @connections stand-in."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from jose import jwt
from moto import mock_aws
from moto.utilities.utils import load_resource

from handlers import environment as names
from handlers import spec
from handlers.runtime import reset_runtime
from tests.support.management_standin import ManagementStandIn

REGION = "us-east-1"
PASSWORD = "Corr3ct-Horse!"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's mock of every AWS service, with throwaway credentials."""
    for name, value in {
        names.AWS_ACCESS_KEY_ID: "testing",
        names.AWS_SECRET_ACCESS_KEY: "testing",
        names.AWS_DEFAULT_REGION: REGION,
        names.AWS_REGION: REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


@dataclass
class CognitoPool:
    """A moto user pool with one app client; mints real tokens and forges bad ones."""

    idp: Any
    pool_id: str
    client_id: str
    users: set[str] = field(default_factory=set)

    @property
    def issuer(self) -> str:
        return f"https://cognito-idp.{REGION}.amazonaws.com/{self.pool_id}"

    def user(self, username: str, groups: tuple[str, ...] = (), email: str | None = None) -> None:
        """Create a user (once) and add it to ``groups``."""
        if username not in self.users:
            attributes = [{"Name": "email", "Value": email}] if email else []
            self.idp.admin_create_user(
                UserPoolId=self.pool_id,
                Username=username,
                TemporaryPassword="Tmp-Passw0rd!",
                MessageAction="SUPPRESS",
                UserAttributes=attributes,
            )
            self.idp.admin_set_user_password(
                UserPoolId=self.pool_id, Username=username, Password=PASSWORD, Permanent=True
            )
            self.users.add(username)
        for group in groups:
            with contextlib.suppress(self.idp.exceptions.GroupExistsException):
                self.idp.create_group(UserPoolId=self.pool_id, GroupName=group)
            self.idp.admin_add_user_to_group(UserPoolId=self.pool_id, Username=username, GroupName=group)

    def tokens(self, username: str = "alice", groups: tuple[str, ...] = ()) -> dict[str, str]:
        """Real tokens from moto's Cognito (``IdToken``, ``AccessToken``)."""
        self.user(username, groups)
        result = self.idp.admin_initiate_auth(
            UserPoolId=self.pool_id,
            ClientId=self.client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD},
        )["AuthenticationResult"]
        return {"id": result["IdToken"], "access": result["AccessToken"]}

    def token(self, username: str = "alice", groups: tuple[str, ...] = ()) -> str:
        """A real ID token."""
        return self.tokens(username, groups)["id"]

    def forge(
        self,
        claims: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        key: Any = None,
        algorithm: str = "RS256",
        base: str | None = None,
    ) -> str:
        """A token like a real one with ``claims`` changed (None deletes), signed with
        moto's own pool key unless ``key`` is given."""
        payload = jwt.get_unverified_claims(base or self.token())
        for name, value in (claims or {}).items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        return jwt.encode(
            payload,
            key if key is not None else load_resource("cognitoidp/resources/jwks-private.json"),
            algorithm=algorithm,
            headers={"kid": "dummy", **(headers or {})},
        )


@pytest.fixture
def pool(aws: None) -> CognitoPool:
    """A user pool and app client in moto."""
    idp = boto3.client("cognito-idp", region_name=REGION)
    pool_id = idp.create_user_pool(PoolName="cloud-ws-test")["UserPool"]["Id"]
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id, ClientName="cli", ExplicitAuthFlows=["ADMIN_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    return CognitoPool(idp, pool_id, client_id)


@pytest.fixture
def standin() -> Iterator[ManagementStandIn]:
    """The @connections stand-in on a loopback port."""
    with ManagementStandIn().running() as server:
        yield server


def create_tables(client: Any, prefix: str = "cloud-ws-test") -> dict[str, str]:
    """Create every table of the spec; returns env var → table name."""
    names: dict[str, str] = {}
    for table in spec.TABLES:
        name = f"{prefix}-{table.role}"
        client.create_table(**table.create_table_kwargs(name))
        names[table.env_var] = name
    return names


@dataclass
class Stack:
    """The handlers wired to moto and the stand-in, driven like API Gateway drives them."""

    ddb: Any
    pool: CognitoPool
    mgmt: ManagementStandIn
    tables: dict[str, str]

    def event(
        self,
        route_key: str,
        connection_id: str,
        body: str | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """An API Gateway WebSocket proxy event."""
        event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route_key, "MESSAGE")
        event: dict[str, Any] = {
            "requestContext": {
                "routeKey": route_key,
                "eventType": event_type,
                "connectionId": connection_id,
                "stage": "test",
                "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
                "apiId": "abc123",
                "requestId": uuid.uuid4().hex,
                "connectedAt": int(time.time() * 1000),
                "identity": {"sourceIp": "127.0.0.1"},
            },
            "isBase64Encoded": False,
        }
        if event_type == "CONNECT":
            event["headers"] = headers or {}
            event["queryStringParameters"] = query
        if body is not None:
            event["body"] = body
        return event

    def connect(
        self,
        token: str | None = None,
        *,
        via: str = "query",
        connection_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Run ``$connect``; returns the Lambda response and the connection id."""
        from handlers import connect

        connection_id = connection_id or f"conn-{uuid.uuid4().hex[:12]}="
        headers = dict(headers or {})
        query = None
        if token is not None:
            if via == "query":
                query = {"token": token}
            elif via == "header":
                headers["Authorization"] = f"Bearer {token}"
            else:
                headers["Sec-WebSocket-Protocol"] = f"cloud-ws, bearer.{token}"
        return connect.handler(
            self.event("$connect", connection_id, headers=headers, query=query)
        ), connection_id

    def open(self, username: str = "alice", groups: tuple[str, ...] = ()) -> str:
        """A registered connection for ``username``."""
        reply, connection_id = self.connect(self.pool.token(username, groups))
        assert reply["statusCode"] == 200, reply
        return connection_id

    def send(self, connection_id: str, frame: Any) -> dict[str, Any]:
        """Deliver a frame as API Gateway would: route by ``action``, then invoke that route."""
        import importlib

        body = frame if isinstance(frame, str) else json.dumps(frame)
        route_key = spec.select_route(body)
        module = importlib.import_module(f"handlers.{spec.route_for(route_key).module}")
        result: dict[str, Any] = module.handler(self.event(route_key, connection_id, body=body))
        return result

    def disconnect(self, connection_id: str) -> dict[str, Any]:
        from handlers import disconnect

        result: dict[str, Any] = disconnect.handler(self.event("$disconnect", connection_id))
        return result

    def replies(self, connection_id: str) -> list[dict[str, Any]]:
        """Everything posted to ``connection_id`` so far."""
        return self.mgmt.messages(connection_id)

    def publish(
        self,
        deployment_id: str,
        type_: str = "deployment.status",
        data: dict[str, Any] | None = None,
        event_id: str | None = "auto",
        eb_id: str | None = None,
    ) -> dict[str, Any]:
        """Invoke the broadcaster with an EventBridge event carrying the plugin's envelope."""
        from handlers import broadcaster

        detail: dict[str, Any] = {
            "deployment_id": deployment_id,
            "data": data if data is not None else {"status": "deploying"},
            "timestamp": "2026-11-26T10:00:00Z",
        }
        if event_id is not None:
            detail["event_id"] = str(uuid.uuid4()) if event_id == "auto" else event_id
        return broadcaster.handler(eventbridge_event(type_, detail, eb_id))

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every item of every table, sorted: compare before/after to prove nothing changed."""
        result: dict[str, list[dict[str, Any]]] = {}
        for env_var, name in self.tables.items():
            items = self.ddb.scan(TableName=name, ConsistentRead=True)["Items"]
            result[env_var] = sorted(items, key=lambda i: json.dumps(i, sort_keys=True))
        return result


def eventbridge_event(type_: str, detail: dict[str, Any], eb_id: str | None = None) -> dict[str, Any]:
    """An event as EventBridge hands it to a Lambda target."""
    return {
        "version": "0",
        "id": eb_id or str(uuid.uuid4()),
        "detail-type": type_,
        "source": spec.DEFAULT_EVENT_SOURCE,
        "account": "123456789012",
        "time": "2026-11-26T10:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": detail,
    }


@pytest.fixture
def stack(
    aws: None, pool: CognitoPool, standin: ManagementStandIn, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    """Tables from the spec, handler configuration in the environment, a fresh runtime."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    tables = create_tables(ddb)
    for name, value in {
        **tables,
        names.COGNITO_USER_POOL_ID: pool.pool_id,
        names.COGNITO_CLIENT_IDS: pool.client_id,
        names.MANAGEMENT_ENDPOINT: standin.endpoint,
        names.POST_MAX_ATTEMPTS: "3",
    }.items():
        monkeypatch.setenv(name, value)
    reset_runtime()
    yield Stack(ddb, pool, standin, tables)
    reset_runtime()
