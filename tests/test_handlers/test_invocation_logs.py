"""Every log line of an invocation names it: Lambda's and API Gateway's request ids, connection, function."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from contract.log import get_logger, inject_lambda_context, invocation
from emulator.lambdas import LambdaContext
from handlers import broadcaster, disconnect
from server.runtime import lambda_entry
from tests.support.logs import recorded


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """The records of ``cloud_ws`` loggers."""
    with recorded() as captured:
        yield captured


def _event(connection_id: str, request_id: str) -> dict[str, Any]:
    return {
        "requestContext": {
            "connectionId": connection_id,
            "requestId": request_id,
            "routeKey": "$disconnect",
            "eventType": "DISCONNECT",
            "disconnectStatusCode": 1000,
        }
    }


@dataclass
class _Store:
    deleted: list[str] = field(default_factory=list)

    def delete_connection(self, connection_id: str) -> int:
        self.deleted.append(connection_id)
        return 0


def test_a_route_handler_logs_both_request_ids_and_the_function(
    records: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _Store()
    monkeypatch.setattr(disconnect, "get_runtime", lambda: SimpleNamespace(store=store))
    context = LambdaContext("disconnect", aws_request_id="lambda-request-1")

    assert disconnect.handler(_event("C1", "Fp3n2GqVIAMFZzw="), context) == {"statusCode": 200}

    (record,) = [r for r in records if r.getMessage() == "disconnected"]
    assert record.function_request_id == "lambda-request-1"  # type: ignore[attr-defined]
    assert record.apigw_request_id == "Fp3n2GqVIAMFZzw="  # type: ignore[attr-defined]
    assert record.connection_id == "C1"  # type: ignore[attr-defined]
    assert record.function_name == "disconnect"  # type: ignore[attr-defined]
    assert isinstance(record.cold_start, bool)  # type: ignore[attr-defined]


def test_two_invocations_do_not_leak_ids_into_each_other(records: list[logging.LogRecord]) -> None:
    """Each invocation's lines carry its own ids; a line logged between invocations carries none."""
    log = get_logger("test.invocations")

    @lambda_entry("$default")
    def handler(event: Any, context: Any = None) -> Any:
        log.info("serving")
        if event.get("fail"):
            raise RuntimeError("boom")
        return {"statusCode": 200}

    handler(_event("C1", "apigw-1"), LambdaContext("default", aws_request_id="lambda-1"))
    handler({**_event("C2", "apigw-2"), "fail": True}, LambdaContext("default", aws_request_id="lambda-2"))
    log.info("between invocations")

    ids = [
        (r.getMessage(), getattr(r, "function_request_id", None), getattr(r, "apigw_request_id", None))
        for r in records
    ]
    assert ids == [
        ("serving", "lambda-1", "apigw-1"),
        ("serving", "lambda-2", "apigw-2"),
        ("handler failed", "lambda-2", "apigw-2"),
        ("between invocations", None, None),
    ]
    failed = next(r for r in records if r.getMessage() == "handler failed")
    assert (failed.connection_id, failed.route) == ("C2", "$default")  # type: ignore[attr-defined]


def test_a_field_the_call_passes_wins(records: list[logging.LogRecord]) -> None:
    log = get_logger("test.invocations")

    @inject_lambda_context
    def handler(event: Any, context: Any = None) -> None:
        log.info("about another connection", extra={"connection_id": "OTHER"})

    handler(_event("C1", "apigw-1"), LambdaContext("default", aws_request_id="lambda-1"))

    (record,) = records
    assert record.connection_id == "OTHER"  # type: ignore[attr-defined]
    assert record.function_request_id == "lambda-1"  # type: ignore[attr-defined]


def test_concurrent_invocations_in_threads_keep_their_own_ids(records: list[logging.LogRecord]) -> None:
    """The local stack serves invocations from a thread pool: ids are per thread, per invocation."""
    log = get_logger("test.invocations")
    barrier = threading.Barrier(2)

    @lambda_entry("$default")
    def handler(event: Any, context: Any = None) -> Any:
        barrier.wait(5)  # both invocations are in flight before either logs
        log.info("serving")
        return {"statusCode": 200}

    threads = [
        threading.Thread(
            target=handler, args=(_event(f"C{n}", f"apigw-{n}"), LambdaContext("d", aws_request_id=f"l-{n}"))
        )
        for n in (1, 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)

    pairs = {(getattr(r, "function_request_id", None), getattr(r, "apigw_request_id", None)) for r in records}
    assert pairs == {("l-1", "apigw-1"), ("l-2", "apigw-2")}


def test_the_broadcaster_entry_names_its_invocation(
    records: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    def single(runtime: Any, event: Any) -> dict[str, Any]:
        get_logger("test").info("one event")
        return {}

    monkeypatch.setattr(broadcaster, "get_runtime", lambda: None)
    monkeypatch.setattr(broadcaster, "_single", single)

    broadcaster.handler({"detail": {}}, LambdaContext("broadcaster", aws_request_id="lambda-b"))

    (record,) = records
    assert record.function_request_id == "lambda-b"  # type: ignore[attr-defined]
    assert record.function_name == "broadcaster"  # type: ignore[attr-defined]
    assert not hasattr(record, "apigw_request_id")


def test_the_emulator_gives_each_invocation_its_own_request_id() -> None:
    assert LambdaContext("f").aws_request_id != LambdaContext("f").aws_request_id


def test_fan_out_handoff_threads_log_with_the_invocation_ids(records: list[logging.LogRecord]) -> None:
    """The thread that hands shares to other invocations, and its dispatches, keep the ids."""
    from server.fanout import FanOutSummary, FanOutTask, _Handoff

    def dispatch(task: FanOutTask) -> None:
        get_logger("test").info("handed", extra={"share": task.connection_ids[0]})

    with invocation({}, LambdaContext("broadcaster", aws_request_id="lambda-h")):
        handoff = _Handoff(dispatch, "D1", (1,), [b"{}"], iter([("c1",), ("c2",)]), FanOutSummary())
    handoff.start()  # after the block: the thread's ids come from where it was made, not started
    handoff.join()

    assert sorted(r.share for r in records) == ["c1", "c2"]  # type: ignore[attr-defined]
    assert {r.function_request_id for r in records} == {"lambda-h"}  # type: ignore[attr-defined]
