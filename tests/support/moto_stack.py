"""The handlers wired to moto's AWS and the @connections stand-in, driven like API Gateway
and EventBridge drive them (the ``stack`` fixture of tests/conftest.py builds one)."""

from __future__ import annotations

import contextlib
import importlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jose import jwt
from moto.utilities.utils import load_resource

from contract import spec

# create_tables lives in the emulator so the benchmarks need not import the tests' helpers;
# re-exported here (the redundant alias says so) for the tests that import it from this module.
from emulator.tables import create_tables as create_tables
from tests.support.apigw import websocket_event
from tests.support.cognito import ensure_user, sign_in
from tests.support.events import envelope, eventbridge_event
from tests.support.management_standin import ManagementStandIn

REGION = "us-east-1"


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
            ensure_user(self.idp, self.pool_id, username, email)
            self.users.add(username)
        for group in groups:
            with contextlib.suppress(self.idp.exceptions.GroupExistsException):
                self.idp.create_group(UserPoolId=self.pool_id, GroupName=group)
            self.idp.admin_add_user_to_group(UserPoolId=self.pool_id, Username=username, GroupName=group)

    def tokens(self, username: str = "alice", groups: tuple[str, ...] = ()) -> dict[str, str]:
        """Real tokens from moto's Cognito (``id``, ``access``)."""
        self.user(username, groups)
        result = sign_in(self.idp, self.pool_id, self.client_id, username, create=False)
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


class AtomicRequests:
    """A DynamoDB client whose requests are atomic, as on DynamoDB, while callers interleave.

    moto's in-process backend applies a transaction by snapshotting tables and
    restoring them on failure, which is not safe across threads; tests that race
    threads on one store give it this wrapper (one request at a time).
    """

    def __init__(self, client: Any, lock: threading.Lock | None = None) -> None:
        self._client = client
        self.lock = lock or threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                return attr(*args, **kwargs)

        return call


def counters_in_lockstep(store: Any, parties: int) -> Callable[[str], Any]:
    """Make ``store.counter`` hold each of ``parties`` threads, after its first read, until
    every one of them has read it: none writes before all have read, a guaranteed race.
    Returns the real ``counter``."""
    real_counter: Callable[[str], Any] = store.counter
    start_line = threading.Barrier(parties)
    first_read: set[int] = set()

    def counter_in_lockstep(deployment_id: str) -> Any:
        value = real_counter(deployment_id)
        if threading.get_ident() not in first_read:
            first_read.add(threading.get_ident())
            start_line.wait(timeout=10)
        return value

    store.counter = counter_in_lockstep
    return real_counter


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
        return websocket_event(route_key, connection_id, body, headers=headers, query=query)

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

    def subscribed(self, deployment_id: str, count: int, prefix: str = "user") -> list[str]:
        """``count`` connections (users ``prefix0``, ``prefix1``...) subscribed to
        ``deployment_id``, with the stand-in's record cleared of their acks and snapshots."""
        connections = []
        for i in range(count):
            conn = self.open(f"{prefix}{i}")
            self.send(conn, {"action": "subscribe", "deployment_id": deployment_id})
            connections.append(conn)
        self.mgmt.clear()
        return connections

    def expire_token(self, connection_id: str) -> None:
        """Make a registered connection outlive its token (expired a minute ago)."""
        self.ddb.update_item(
            TableName=self.tables[spec.CONNECTIONS.env_var],
            Key={"connectionId": {"S": connection_id}},
            UpdateExpression="SET tokenExpiresAt = :t",
            ExpressionAttributeValues={":t": {"N": str(int(time.time()) - 60)}},
        )

    def send(self, connection_id: str, frame: Any) -> dict[str, Any]:
        """Deliver a frame as API Gateway would: route by ``action``, then invoke that route."""
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

        detail = envelope(deployment_id, data, None if event_id in ("auto", None) else event_id)
        if event_id is None:
            del detail["event_id"]
        return broadcaster.handler(eventbridge_event(type_, detail, eb_id))

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every item of every table, sorted: compare before/after to prove nothing changed.

        Leaves out the rate limiter's bookkeeping on connection rows, which every frame
        moves, refused or not (``Store.take_frame_allowance``; tests/test_handlers/test_rate_limit.py
        checks it on its own).
        """
        from server.store import Store

        result: dict[str, list[dict[str, Any]]] = {}
        for env_var, name in self.tables.items():
            items = self.ddb.scan(TableName=name, ConsistentRead=True)["Items"]
            for item in items:
                item.pop(Store.FRAME_ALLOWANCE_ATTRIBUTE, None)
            result[env_var] = sorted(items, key=lambda i: json.dumps(i, sort_keys=True))
        return result
