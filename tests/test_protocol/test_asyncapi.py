"""docs/asyncapi.yaml: a valid AsyncAPI 3.0 document that the server's messages actually match.

The document is checked against the AsyncAPI 3.0.0 document schema and for the
links a reader relies on (operations → channel messages → payload schemas);
every message builder of ``contract.protocol`` and every event of
``conformance/state.json`` must validate, and malformed messages must not.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract import protocol, state
from contract.events import DeploymentEvent, InvalidEventError, parse_event
from contract.protocol import ErrorCode, ProtocolError
from handlers.default import KNOWN_ACTIONS
from tests.support import asyncapi
from tests.support.asyncapi import MessageValidationError

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((ROOT / "conformance" / "state.json").read_text(encoding="utf-8"))["cases"]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The document as data."""
    return asyncapi.load_document()


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    """``components.schemas.<name>``."""
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def error_codes() -> set[str]:
    """Every stable error code ``contract.protocol`` defines."""
    return {value for name, value in vars(ErrorCode).items() if name.isupper() and isinstance(value, str)}


def expected_name(message: dict[str, Any]) -> str:
    """The document message a server message should be matched to, by its ``type``."""
    kind = str(message["type"])
    if kind.startswith("stack."):
        return "stack.*"
    if "." in kind and kind not in ("deployment.status", "log.created", "deployment.snapshot"):
        return "domain.verb"
    return kind


def event(type_: str = "stack.deployed", data: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """An event message as the broadcaster renders it."""
    rendered = DeploymentEvent(
        type=type_,
        deployment_id="D1BRV40",
        event_id="e-1",
        data={"stack_name": "network"} if data is None else data,
        timestamp="2026-12-02T10:00:00.000Z",
    ).render(fields.pop("seq", 1))
    message: dict[str, Any] = json.loads(rendered)
    message.update(fields)
    return message


# -- the document itself ------------------------------------------------------------------


def test_the_document_is_a_valid_asyncapi_3_document(document: dict[str, Any]) -> None:
    """Version 3.0.0, and nothing the AsyncAPI 3.0.0 document schema refuses."""
    assert document["asyncapi"] == "3.0.0"
    assert asyncapi.document_errors(document) == []


def test_the_asyncapi_schema_check_catches_a_broken_document(document: dict[str, Any]) -> None:
    """The document-schema check can fail: a made-up operation action is refused."""
    broken = copy.deepcopy(document)
    broken["operations"]["ping"]["action"] = "publish"

    assert asyncapi.document_errors(broken) != []


def test_servers_are_the_cloud_and_local_urls_with_the_three_token_sources(document: dict[str, Any]) -> None:
    """wss to API Gateway, ws to 127.0.0.1, each accepting the header, query and subprotocol JWT."""
    servers = document["servers"]
    cloud, local = servers["cloud"], servers["local"]
    assert (cloud["protocol"], cloud["host"], cloud["pathname"]) == (
        "wss",
        "{api}.execute-api.{region}.amazonaws.com",
        "/{stage}",
    )
    assert (local["protocol"], local["host"], local["pathname"]) == ("ws", "127.0.0.1:{port}", "/{stage}")
    schemes = document["components"]["securitySchemes"]
    for server in (cloud, local):
        used = [schemes[ref["$ref"].rsplit("/", 1)[1]] for ref in server["security"]]
        assert {"type": "http", "scheme": "bearer"}.items() <= used[0].items()
        assert [(s.get("in"), s.get("name")) for s in used[1:]] == [
            ("query", "token"),
            ("header", "Sec-WebSocket-Protocol"),
        ]


def test_operations_reference_their_channels_messages_and_every_message_has_a_payload(
    document: dict[str, Any],
) -> None:
    """Each operation's messages are its channel's; each message resolves to a payload schema."""
    contract = asyncapi.contract()
    assert len(document["channels"]) == 1
    for name, operation in document["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        channel_pointer, channel = contract.resolve(channel_ref)
        assert operation["action"] in ("send", "receive"), name
        assert operation["messages"], name
        for reference in [*operation["messages"], *operation.get("reply", {}).get("messages", [])]:
            assert reference["$ref"].startswith(f"#{channel_pointer}/messages/"), (name, reference)
            key = reference["$ref"].rsplit("/", 1)[1]
            assert key in channel["messages"], (name, key)
    for key, message in document["components"]["messages"].items():
        _, payload = contract.resolve(message["payload"]["$ref"])
        assert payload.get("type") == "object" or "allOf" in payload, key


def test_send_operations_are_the_servers_routes_and_every_message_is_used(document: dict[str, Any]) -> None:
    """Client messages are exactly the actions the server routes; no component message is orphaned."""
    contract = asyncapi.contract()
    assert {spec.name for spec in contract.client_messages} == set(KNOWN_ACTIONS)
    used = {spec.key for spec in (*contract.server_messages, *contract.client_messages)}
    assert used == set(document["components"]["messages"])


def test_every_example_validates_as_the_message_it_illustrates(document: dict[str, Any]) -> None:
    """Examples are right, and each is claimed by its own message only (types do not overlap)."""
    contract = asyncapi.contract()
    client = {spec.key for spec in contract.client_messages}
    checked = 0
    for key, message in document["components"]["messages"].items():
        for example in message.get("examples", []):
            validate = contract.validate_client_message if key in client else contract.validate_server_message
            assert validate(example["payload"]) == message["name"], key
            checked += 1
    assert checked >= 10


def test_the_documents_constants_are_the_servers(document: dict[str, Any]) -> None:
    """Error codes, statuses, patterns and limits are the ones handlers/ enforce."""
    assert set(schema(document, "ErrorCode")["enum"]) == error_codes()
    assert set(schema(document, "DeploymentStatus")["enum"]) == protocol.DEPLOYMENT_STATUSES
    assert set(schema(document, "StackStatus")["enum"]) == {"pending", *state.STACK_STATUS.values()}
    assert schema(document, "EventType")["pattern"] == protocol.EVENT_TYPE_PATTERN
    assert schema(document, "DeploymentId")["pattern"] == protocol.DEPLOYMENT_ID_PATTERN
    assert schema(document, "RequestId")["maxLength"] == protocol.MAX_REQUEST_ID_CHARS
    assert schema(document, "ListDeployments")["properties"]["limit"]["maximum"] == protocol.MAX_LIST_LIMIT
    assert schema(document, "Deployments")["properties"]["deployments"]["maxItems"] == protocol.MAX_LIST_LIMIT
    recent = schema(document, "SnapshotData")["properties"]["recent_logs"]
    assert recent["maxItems"] == state.RECENT_LOGS
    assert schema(document, "RecentLog")["properties"]["message"]["maxLength"] == state.LOG_MESSAGE_CHARS
    assert set(schema(document, "SnapshotData")["required"]) == set(state.public(state.initial()))
    assert set(schema(document, "DeploymentSummary")["required"]) == set(state.summary("D1", state.initial()))


# -- what the server's builders make ------------------------------------------------------


def folded(case: dict[str, Any]) -> dict[str, Any]:
    """The reducer's public state after a conformance case's events (in seq order, each once)."""
    by_seq = {message["seq"]: message for message in case["events"]}
    return state.public(state.fold(state.initial(), [by_seq[seq] for seq in sorted(by_seq)]))


def builder_messages() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every kind of message the server builds, with and without request ids."""
    yield "subscribed", protocol.subscribed("D1BRV40", 0, 0)
    yield "subscribed with id", protocol.subscribed("D1BRV40", 16, 3, "8")
    yield "snapshot of nothing", protocol.snapshot("D1BRV40", 0, state.public(state.initial()))
    for case in CASES:
        yield f"snapshot: {case['name']}", protocol.snapshot("D1", case["expect"]["seq"], folded(case), "7")
    yield "unsubscribed", protocol.unsubscribed("D1BRV40")
    yield "unsubscribed with id", protocol.unsubscribed("D1BRV40", "9")
    yield "pong without subscriptions", protocol.pong({})
    yield "pong", protocol.pong({"D1BRV40": 16, "D2": 0}, "10")
    yield "deployments, none", protocol.deployments([])
    rows = [state.summary("D1", state.initial()), *(state.summary("D1", folded(case)) for case in CASES)]
    yield "deployments", protocol.deployments(rows, "11")
    for code in sorted(error_codes()):
        yield f"error {code}", ProtocolError(code, "a sentence").to_message()
        yield (
            f"error {code} about a request",
            ProtocolError(code, "a sentence", "subscribe", request_id="7", deployment_id="D1").to_message(),
        )
    yield "deployment.status", event("deployment.status", {"status": "deploying", "current_layer": 2})
    yield "stack.failed", event("stack.failed", {"stack_name": "rds", "error_message": "Subnet not found"})
    yield "log.created", event("log.created", {"level": "info", "message": "hello"})
    yield "other type", event("approval.requested", {"by": "alice"})
    yield "truncated", event("log.created", {"level": "info", "message": "x" * 200_000})


@pytest.mark.parametrize(("label", "message"), list(builder_messages()), ids=lambda v: str(v)[:60])
def test_every_server_message_builder_output_validates(label: str, message: dict[str, Any]) -> None:
    """What contract/protocol.py (and DeploymentEvent.render) make is what the document describes."""
    assert asyncapi.validate_server_message(message) == expected_name(message), label


def test_an_oversize_event_is_rendered_with_the_truncated_marker() -> None:
    """The marker that replaces oversize data is a message of the document too."""
    message = event("stack.failed", {"stack_name": "s", "error_message": "x" * 200_000})

    assert message["data"] == {"truncated": True, "original_bytes": message["data"]["original_bytes"]}
    assert asyncapi.validate_server_message(message) == "stack.*"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("x" * 5000, "message_too_large"),
        ("[[[[[[]]]]]]", "message_too_deep"),
        ("not json", "invalid_json"),
        ("[1]", "invalid_message"),
        ('{"id": 5, "action": "ping"}', "invalid_id"),
        ('{"id": "7", "deployment_id": "D1"}', "invalid_message"),
    ],
)
def test_refusals_of_real_frames_validate(raw: str, code: str) -> None:
    """The errors parse_frame raises for real bad frames, as the client gets them."""
    with pytest.raises(ProtocolError) as refused:
        protocol.parse_frame(raw, max_bytes=4096, max_depth=4)

    message = refused.value.to_message()
    assert message["code"] == code
    assert asyncapi.validate_server_message(message) == "error"


# -- the conformance vectors ---------------------------------------------------------------


def conformance_events() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every conformance event, labelled by case and seq (bar those meant to break the schema)."""
    for case in CASES:
        if case.get("outside_the_schema"):
            continue  # what a careless producer may send: the reducer must cope, the schema refuses it
        for message in case["events"]:
            yield f"{case['name']} #{message['seq']}", message


@pytest.mark.parametrize(("label", "message"), list(conformance_events()), ids=lambda v: str(v)[:70])
def test_conformance_events_are_event_messages(label: str, message: dict[str, Any]) -> None:
    """Each vector event validates, except the deliberately untimed ones, which lack `timestamp`.

    The reducer must cope with an event without a time, but the server never
    sends one: every rendered event has the producer's time or EventBridge's.
    """
    if "timestamp" in message:
        assert asyncapi.validate_server_message(message) == expected_name(message), label
        return
    with pytest.raises(MessageValidationError, match="'timestamp' is a required property"):
        asyncapi.validate_server_message(message)
    timed = {**message, "timestamp": "2026-12-02T10:00:00.000Z"}
    assert asyncapi.validate_server_message(timed) == expected_name(message)


@pytest.mark.parametrize("case", CASES, ids=[case["name"][:60] for case in CASES])
def test_conformance_expectations_are_snapshot_data(case: dict[str, Any]) -> None:
    """`expect.data` is a snapshot's data, and the snapshot message carrying it validates."""
    asyncapi.validate_schema("SnapshotData", case["expect"]["data"])
    snapshot = protocol.snapshot(case["deployment_id"], case["expect"]["seq"], case["expect"]["data"])

    assert asyncapi.validate_server_message(snapshot) == "deployment.snapshot"


# -- client messages -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        {"action": "subscribe", "deployment_id": "D1BRV40"},
        {"action": "subscribe", "deployment_id": "D1BRV40", "since": 0, "id": "7"},
        {"action": "subscribe", "deployment_id": "D1BRV40", "since": None, "id": None},
        {"action": "unsubscribe", "deployment_id": "D1BRV40", "id": "x" * 64},
        {"action": "ping"},
        {"action": "list_deployments"},
        {"action": "list_deployments", "limit": 1},
        {"action": "list_deployments", "limit": 200, "id": "11"},
    ],
)
def test_client_messages_the_server_accepts_validate(message: dict[str, Any]) -> None:
    """Everything the server's validators accept, the document accepts."""
    assert asyncapi.validate_client_message(message) == message["action"]
    protocol.validate_deployment_id(message.get("deployment_id", "D1"))
    protocol.validate_since(message.get("since"))
    protocol.validate_request_id(message.get("id"))
    protocol.validate_limit(message.get("limit"))


@pytest.mark.parametrize(
    ("message", "path"),
    [
        ({"action": "subscribe"}, "$"),
        ({"action": "subscribe", "deployment_id": "not/valid"}, "$.deployment_id"),
        ({"action": "subscribe", "deployment_id": "D1", "since": -1}, "$.since"),
        ({"action": "subscribe", "deployment_id": "D1", "since": True}, "$.since"),
        ({"action": "subscribe", "deployment_id": "D1", "since": 1.5}, "$.since"),
        ({"action": "ping", "id": ""}, "$.id"),
        ({"action": "ping", "id": "x" * 65}, "$.id"),
        ({"action": "ping", "id": 7}, "$.id"),
        ({"action": "list_deployments", "limit": 0}, "$.limit"),
        ({"action": "list_deployments", "limit": 201}, "$.limit"),
        ({"action": "list_deployments", "limit": "50"}, "$.limit"),
        ({"action": "ping", "sinse": 3}, "$"),
        ({"action": "shout"}, "$.action"),
    ],
)
def test_client_messages_the_server_refuses_are_rejected(message: dict[str, Any], path: str) -> None:
    """Each refusal names the offending field."""
    with pytest.raises(MessageValidationError) as refused:
        asyncapi.validate_client_message(message)

    assert refused.value.path == path, refused.value


# -- server messages that break the contract -----------------------------------------------


def good_snapshot() -> dict[str, Any]:
    """A snapshot of a conformance case that has stacks."""
    case = next(case for case in CASES if case["expect"]["data"]["stacks"])
    return protocol.snapshot("D1", case["expect"]["seq"], copy.deepcopy(case["expect"]["data"]))


def broken(message: dict[str, Any], path: list[str], value: Any = KeyError) -> dict[str, Any]:
    """``message`` with the field at ``path`` set to ``value`` (removed when it is ``KeyError``)."""
    result = copy.deepcopy(message)
    target: Any = result
    for part in path[:-1]:
        target = target[part]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return result


def stack_name(snapshot: dict[str, Any]) -> str:
    """The name of the first stack in a snapshot."""
    return str(next(iter(snapshot["data"]["stacks"])))


BROKEN: list[tuple[str, dict[str, Any], str]] = [
    ("an event without seq", broken(event(), ["seq"]), "$"),
    ("an event with seq 0", broken(event(), ["seq"], 0), "$.seq"),
    ("an event with a string seq", broken(event(), ["seq"], "1"), "$.seq"),
    ("an event without event_id", broken(event(), ["event_id"]), "$"),
    ("an event whose data is a list", broken(event(), ["data"], []), "$.data"),
    ("a stack event without stack_name", event("stack.started", {"layer": 1}), "$.data"),
    (
        "a status event with an unknown status",
        event("deployment.status", {"status": "done"}),
        "$.data.status",
    ),
    ("a log event without a message", event("log.created", {"level": "info"}), "$.data"),
    ("an event with a request id", broken(event(), ["id"], "7"), "$"),
    ("subscribed without seq", broken(protocol.subscribed("D1", 3, 0), ["seq"]), "$"),
    ("subscribed with a negative replay", protocol.subscribed("D1", 3, -1), "$.replay"),
    ("an unknown error code", ProtocolError("oops", "a sentence").to_message(), "$.code"),
    ("an error without a sentence", ProtocolError("forbidden", "").to_message(), "$.message"),
    ("unsubscribed with a malformed deployment id", protocol.unsubscribed("a b"), "$.deployment_id"),
    (
        "an error naming a malformed deployment id",
        ProtocolError("forbidden", "a sentence", deployment_id="a/b").to_message(),
        "$.deployment_id",
    ),
    ("pong without latest", protocol.pong(None), "$"),
    ("pong with a bad timestamp", broken(protocol.pong({}), ["timestamp"], "soon"), "$.timestamp"),
    ("pong with a negative seq", protocol.pong({"D1": -1}), "$.latest.D1"),
    ("a snapshot with a bad status", broken(good_snapshot(), ["data", "status"], "done"), "$.data.status"),
    ("a snapshot without attempt", broken(good_snapshot(), ["data", "attempt"]), "$.data"),
    ("a snapshot leaking its ordering keys", broken(good_snapshot(), ["data", "_keys"], {}), "$.data"),
    (
        "a snapshot with a bad stack status",
        broken(good_snapshot(), ["data", "stacks", stack_name(good_snapshot()), "status"], "succeeded"),
        f"$.data.stacks.{stack_name(good_snapshot())}.status",
    ),
    (
        "a snapshot with 51 recent logs",
        broken(
            good_snapshot(),
            ["data", "recent_logs"],
            [
                {"level": "info", "message": "m", "stack_name": None, "seq": n, "timestamp": None}
                for n in range(1, 52)
            ],
        ),
        "$.data.recent_logs",
    ),
    (
        "deployments with a bad status",
        protocol.deployments([{**state.summary("D1", state.initial()), "status": "x"}]),
        "$.deployments[0].status",
    ),
    ("an unknown message type", {"type": "hello"}, "$.type"),
    ("a message without a type", {"hello": "world"}, "$.type"),
]


@pytest.mark.parametrize(("label", "message", "path"), BROKEN, ids=[label for label, _, _ in BROKEN])
def test_server_messages_that_break_the_contract_are_rejected(
    label: str, message: dict[str, Any], path: str
) -> None:
    """Each is refused, and the error names where."""
    with pytest.raises(MessageValidationError) as refused:
        asyncapi.validate_server_message(message)

    assert refused.value.path == path, f"{label}: {refused.value}"
    assert "docs/asyncapi.yaml" in str(refused.value)


def test_a_frame_is_validated_message_by_message() -> None:
    """server_messages splits on newlines and checks each line."""
    good = protocol.pack_frames(
        [protocol.encode(protocol.subscribed("D1", 1, 1)), protocol.encode(event(seq=1))], max_bytes=1 << 17
    )
    assert [m["type"] for m in asyncapi.server_messages(good[0])] == ["subscribed", "stack.deployed"]

    bad = good[0] + b"\n" + protocol.encode(broken(event(seq=2), ["seq"]))
    with pytest.raises(MessageValidationError, match="'seq' is a required property"):
        asyncapi.server_messages(bad)


def test_an_event_named_like_the_snapshot_is_not_an_event_message() -> None:
    """docs/asyncapi.yaml reserves deployment.snapshot for the server's own message."""
    with pytest.raises(MessageValidationError, match=r"'deployment\.snapshot' does not match"):
        asyncapi.validate_server_message(event("deployment.snapshot", {}))


def test_the_broadcaster_refuses_an_event_named_like_the_snapshot() -> None:
    """A producer's deployment.snapshot would reach clients looking like the server's snapshot."""
    with pytest.raises(InvalidEventError):
        parse_event({"detail-type": "deployment.snapshot", "id": "x", "detail": {"deployment_id": "D1"}})
