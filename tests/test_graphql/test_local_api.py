"""The local GraphQL API's parts without a stack: AppSync's rules read from the schema, AWSJSON,
the real-time handshake's header forms, the subscription registry and SigV4 verification."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from graphql import OperationType, execute, parse

from emulator.graphql.api import MAX_PENDING_EVENTS, GraphQLApi, Listener, PubSub
from emulator.graphql.auth import Authenticator, AuthError, Caller, SignedRequest
from emulator.graphql.realtime import connection_headers
from emulator.graphql.schema import COGNITO, IAM, load_schema

SCHEMA = load_schema()
MUTATIONS = frozenset({OperationType.MUTATION})


def test_schema_modes_follow_appsync_rules() -> None:
    """Field directive first, then the type's, then the default mode."""
    schema = SCHEMA.schema
    assert schema.mutation_type is not None
    assert schema.query_type is not None
    event_type = schema.get_type("DeploymentEvent")
    mutation, query = schema.mutation_type, schema.query_type
    assert SCHEMA.allowed_modes(mutation, mutation.fields["publishDeploymentEvent"]) == {IAM}
    assert SCHEMA.allowed_modes(query, query.fields["deploymentEvents"]) == {COGNITO}
    assert SCHEMA.allowed_modes(event_type, event_type.fields["seq"]) == {COGNITO, IAM}  # type: ignore[arg-type,union-attr]
    assert SCHEMA.triggers == {
        "publishDeploymentEvent": ("onDeploymentEvent",),
        "publishDeploymentUpdate": ("onDeploymentUpdated",),
    }


def test_awsjson_travels_as_a_json_string() -> None:
    """In: a string holding JSON (anything else is refused); out: compact JSON text."""
    schema = load_schema().schema
    assert schema.query_type is not None
    schema.query_type.fields["deployment"].resolve = lambda *_, **__: {"status": "failed", "n": [1]}
    assert execute(schema, parse('{ deployment(deployment_id: "D") }')).data == {
        "deployment": '{"status":"failed","n":[1]}'
    }
    api = GraphQLApi(runtime=lambda: None)  # type: ignore[arg-type,return-value]
    mutation = (
        'mutation($d: AWSJSON!) { publishDeploymentEvent(deployment_id: "D", seq: 1, type: "a.b", data: $d) '
        "{ seq } }"
    )
    document = api.prepare(mutation, None, MUTATIONS)
    assert not isinstance(document, list)
    for bad in ("not json", {"an": "object"}):
        result = execute(api.schema.schema, document, variable_values={"d": bad})
        assert result.errors is not None
        assert result.data is None


def test_prepare_refuses_what_the_schema_refuses_and_caches_what_it_accepts() -> None:
    """Syntax and validation errors come back with AppSync's errorType; accepted documents are reused."""
    api = GraphQLApi(runtime=lambda: None)  # type: ignore[arg-type,return-value]
    syntax = api.prepare("mutation {", None, MUTATIONS)
    assert isinstance(syntax, list)
    assert syntax[0]["errorType"] == "InvalidSyntax"
    invalid = api.prepare("mutation { publishDeploymentEvent { seq } }", None, MUTATIONS)
    assert isinstance(invalid, list)
    assert {error["errorType"] for error in invalid} == {"ValidationError"}
    wrong_kind = api.prepare('query { deployment(deployment_id: "D") }', None, MUTATIONS)
    assert isinstance(wrong_kind, list)
    assert wrong_kind[0]["errorType"] == "UnsupportedOperation"
    good = 'mutation { publishDeploymentUpdate(deployment_id: "D", status: "s", updated_at: "t") { status } }'
    assert api.prepare(good, None, MUTATIONS) is api.prepare(good, None, MUTATIONS)


def _b64(headers: dict[str, str], urlsafe: bool = False) -> str:
    raw = json.dumps(headers).encode()
    return (base64.urlsafe_b64encode(raw).decode().rstrip("=")) if urlsafe else base64.b64encode(raw).decode()


def test_connection_headers_come_from_any_of_the_three_forms() -> None:
    """``header`` parameter (a raw ``+`` kept), ``header-`` subprotocol, or the upgrade's own headers."""
    auth = {"host": "h", "Authorization": "a+b/c=="}
    assert connection_headers(f"header={_b64(auth)}&payload=e30=", [], {}) == {
        "host": "h",
        "authorization": "a+b/c==",
    }
    assert connection_headers("", ["graphql-ws", f"header-{_b64(auth, urlsafe=True)}"], {}) == {
        "host": "h",
        "authorization": "a+b/c==",
    }
    assert connection_headers("", ["graphql-ws"], {"Authorization": "jwt", "Host": "h"}) == {
        "authorization": "jwt",
        "host": "h",
    }
    assert connection_headers("", ["graphql-ws"], {"host": "h"}) is None
    with pytest.raises(ValueError, match="base64"):
        connection_headers("header=%%%&payload=e30=", [], {})
    with pytest.raises(ValueError, match="object"):
        connection_headers(f"header={base64.b64encode(b'[1]').decode()}", [], {})


async def test_listeners_get_only_their_deployment_and_a_stuck_one_is_bounded() -> None:
    """Argument filters pick the listeners; a full queue drops (counted) instead of growing."""
    pubsub = PubSub()
    mine, other = (
        Listener("onDeploymentEvent", {"deployment_id": "A"}),
        Listener("onDeploymentEvent", {"deployment_id": "B"}),
    )
    pubsub.add(mine)
    pubsub.add(other)
    assert pubsub.publish("onDeploymentEvent", {"deployment_id": "A", "seq": 1}) == 1
    assert mine.queue.qsize() == 1
    assert other.queue.qsize() == 0
    assert pubsub.publish("onDeploymentEvent", {"seq": 2}) == 0  # the filtered field was not selected
    for seq in range(MAX_PENDING_EVENTS):
        pubsub.publish("onDeploymentEvent", {"deployment_id": "A", "seq": seq})
    assert mine.queue.qsize() == MAX_PENDING_EVENTS
    assert mine.dropped == 1
    pubsub.remove(mine)
    pubsub.remove(mine)  # idempotent
    assert pubsub.count() == 1
    stream = other.stream()
    pubsub.publish("onDeploymentEvent", {"deployment_id": "B", "seq": 9})
    assert await asyncio.wait_for(anext(stream), 1) == {"onDeploymentEvent": {"deployment_id": "B", "seq": 9}}


def _signed(body: bytes, secret: str = "local", when: datetime | None = None) -> SignedRequest:  # noqa: S107
    request = AWSRequest(
        "POST", "http://127.0.0.1:9/graphql", data=body, headers={"content-type": "application/json"}
    )
    signer = SigV4Auth(Credentials("local", secret), "appsync", "us-east-1")
    if when is None:
        signer.add_auth(request)
    else:
        request.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
        request.headers["X-Amz-Date"] = request.context["timestamp"]
        signature = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request
        )
        scope = signer.credential_scope(request)
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential=local/{scope}, SignedHeaders=content-type;host;x-amz-date, "
            f"Signature={signature}"
        )
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers.setdefault("host", "127.0.0.1:9")
    return SignedRequest("POST", "/graphql", "", headers, body)


@pytest.fixture
def authenticator() -> Authenticator:
    """IAM verification only (no user pool needed)."""
    return Authenticator(verifier=None, region="us-east-1", access_key_id="local", secret_access_key="local")  # type: ignore[arg-type]


def test_sigv4_signature_from_botocore_is_accepted(authenticator: Authenticator) -> None:
    """The signature botocore computes for the local credentials identifies an IAM caller."""
    caller = authenticator.verify_signature(_signed(b'{"query":"{x}"}'))
    assert caller.mode == IAM
    assert caller.access_key_id == "local"


@pytest.mark.parametrize(
    ("tamper", "error_type"),
    [
        (
            lambda r: SignedRequest(r.method, r.path, r.query, r.headers, b'{"query":"{y}"}'),
            "InvalidSignatureException",
        ),
        (
            lambda r: SignedRequest(r.method, "/other", r.query, r.headers, r.body),
            "InvalidSignatureException",
        ),
        (
            lambda r: SignedRequest(
                r.method,
                r.path,
                r.query,
                {
                    **r.headers,
                    "authorization": r.headers["authorization"].replace(
                        "Credential=local/", "Credential=other/"
                    ),
                },
                r.body,
            ),
            "UnrecognizedClientException",
        ),
        (
            lambda r: SignedRequest(
                r.method, r.path, r.query, {**r.headers, "authorization": "AWS4-HMAC-SHA256 nonsense"}, r.body
            ),
            "IncompleteSignatureException",
        ),
    ],
    ids=["body", "path", "key", "malformed"],
)
def test_sigv4_refusals(authenticator: Authenticator, tamper: Any, error_type: str) -> None:
    """A changed body or path, another key, a malformed header: each refused with AppSync's error type."""
    with pytest.raises(AuthError) as refused:
        authenticator.verify_signature(tamper(_signed(b'{"query":"{x}"}')))
    assert refused.value.error_type == error_type


def test_sigv4_wrong_secret_and_stale_date_are_refused(authenticator: Authenticator) -> None:
    """Other credentials' secret, and a signature older than five minutes."""
    with pytest.raises(AuthError) as wrong:
        authenticator.verify_signature(_signed(b"{}", secret="nope"))
    assert wrong.value.error_type == "InvalidSignatureException"
    stale = _signed(b"{}", when=datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(AuthError, match="expired"):
        authenticator.verify_signature(stale)
    authenticator.verify_signature(_signed(b"{}", when=datetime.now(UTC) - timedelta(minutes=1)))


def test_awsjson_output_must_be_json_and_literals_must_be_strings() -> None:
    """A resolver returning non-JSON text for AWSJSON is an error; an inline non-string literal is invalid."""
    schema = load_schema().schema
    assert schema.query_type is not None
    schema.query_type.fields["deployment"].resolve = lambda *_, **__: "not json"
    result = execute(schema, parse('{ deployment(deployment_id: "D") }'))
    assert result.errors is not None
    assert result.data == {"deployment": None}
    api = GraphQLApi(runtime=lambda: None)  # type: ignore[arg-type,return-value]
    literal = 'mutation { publishDeploymentEvent(deployment_id: "D", seq: 1, type: "a.b", data: 5) { seq } }'
    refused = api.prepare(literal, None, MUTATIONS)
    assert isinstance(refused, list)
    assert refused[0]["errorType"] == "ValidationError"


async def test_a_cached_document_still_coerces_variables_and_checks_each_callers_mode() -> None:
    """The document is parsed and validated once; every request's variables and caller are checked anew."""
    api = GraphQLApi(runtime=lambda: None)  # type: ignore[arg-type,return-value]
    mutation = (
        "mutation($d: ID!, $s: Int!) "
        '{ publishDeploymentEvent(deployment_id: $d, seq: $s, type: "a.b", data: "{}") { seq } }'
    )
    publisher, user = Caller(mode=IAM, access_key_id="AKID"), Caller(mode=COGNITO)
    first = await api.execute(publisher, {"query": mutation, "variables": {"d": "D", "s": 1}})
    assert first == {"data": {"publishDeploymentEvent": {"seq": 1}}}
    assert len(api._prepared) == 1
    refused = await api.execute(publisher, {"query": mutation, "variables": {"d": "D", "s": "not a number"}})
    assert refused["data"] is None
    assert "Int" in refused["errors"][0]["message"]
    missing = await api.execute(publisher, {"query": mutation, "variables": {"d": "D"}})
    assert missing["data"] is None
    assert "$s" in missing["errors"][0]["message"]
    other = await api.execute(user, {"query": mutation, "variables": {"d": "D", "s": 2}})
    assert other["data"] == {"publishDeploymentEvent": None}
    assert other["errors"][0]["errorType"] == "Unauthorized"
    again = await api.execute(publisher, {"query": mutation, "variables": {"d": "D", "s": 3}})
    assert again == {"data": {"publishDeploymentEvent": {"seq": 3}}}
    assert len(api._prepared) == 1  # one parse and validation served every request
