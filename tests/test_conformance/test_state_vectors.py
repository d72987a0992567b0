"""The broadcaster's reducer against the shared state vectors (conformance/state.json), and its bounds.

The same file is run by the Python client's tests and the TypeScript test
runner: one set of rules, every implementation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contract import protocol, state

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "conformance" / "state.json").read_text("utf-8"))
CASES: list[dict[str, Any]] = VECTORS["cases"]
LIMITS: dict[str, Any] = VECTORS["limits"]
DEPLOYMENT_FIELDS = (
    "status",
    "attempt",
    "current_layer",
    "total_layers",
    "started_at",
    "updated_at",
    "environment",
    "error_message",
    "duration_seconds",
)


def _in_seq_order(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events sorted by seq, duplicates kept (the reducer must ignore them itself)."""
    return sorted(events, key=lambda event: event["seq"])


def _event(
    seq: int, kind: str, data: dict[str, Any], timestamp: str | None = "2026-12-02T10:00:00.000Z"
) -> Any:
    message: dict[str, Any] = {"type": kind, "deployment_id": "D1", "seq": seq, "data": data}
    if timestamp is not None:
        message["timestamp"] = timestamp
    return message


def _snapshot_bytes(deployment_id: str, seq: int, data: dict[str, Any], request_id: str | None = None) -> int:
    """The size of the ``deployment.snapshot`` message as the server sends it."""
    return len(protocol.encode(protocol.snapshot(deployment_id, seq, data, request_id)))


# -- the vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_reducer_folds_each_vector_to_its_snapshot(case: dict[str, Any]) -> None:
    """Folding the vector's events in seq order (duplicates included) gives exactly the expected snapshot."""
    folded = state.fold(state.initial(), _in_seq_order(case["events"]))

    assert state.public(folded) == case["expect"]["data"]
    assert folded["seq"] == case["expect"]["seq"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_folding_in_several_batches_gives_the_same_snapshot(case: dict[str, Any]) -> None:
    """The stored state round-trips: folding batch by batch through JSON equals folding at once,
    and a batch folded twice (a redelivery) changes nothing."""
    events = _in_seq_order(case["events"])
    stored = state.dumps(state.initial())
    for start in range(0, len(events), 3):
        batch = events[start : start + 3]
        stored = state.dumps(state.fold(state.fold(state.loads(stored), batch), batch))

    assert state.public(state.loads(stored)) == case["expect"]["data"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_head_folds_to_the_same_deployment_fields(case: dict[str, Any]) -> None:
    """Folding the rest of the events into head(s) gives the deployment-level fields folding s gives."""
    events = _in_seq_order(case["events"])
    for split in range(len(events) + 1):
        whole = state.fold(state.initial(), events[:split])
        small = state.head(whole)
        assert (small["stacks"], small["log_counts"], small["recent_logs"]) == ({}, {}, [])
        from_head = state.fold(state.loads(state.dumps(small)), events[split:])
        expected = case["expect"]["data"]
        assert {f: from_head[f] for f in DEPLOYMENT_FIELDS} == {f: expected[f] for f in DEPLOYMENT_FIELDS}, (
            split
        )


def test_the_vectors_cover_every_rule() -> None:
    """Each rule the module documents has at least one vector (names are the index)."""
    names = " ".join(c["name"] for c in CASES)
    for rule in (
        "re-run",
        "late progress",
        "out of order",
        "unknown event types",
        "recent_logs",
        "without a timestamp",
        "same millisecond",
        "2099",
        "status ranks",
        "limits: an attempt keeps",
        "limits: log_counts",
        "limits: texts",
        "limits: numbers",
        "the attempt's outcome",
        "limits: the attempt's error_message",
    ):
        assert rule in names, rule


def test_the_limits_in_the_vectors_are_the_reducers() -> None:
    """conformance/state.json's limits (what the clients are held to) are the numbers the reducer applies."""
    assert LIMITS == {
        "recent_logs": state.RECENT_LOGS,
        "log_message_bytes": state.LOG_MESSAGE_CHARS,
        "error_message_bytes": state.ERROR_MESSAGE_BYTES,
        "stack_name_bytes": state.STACK_NAME_BYTES,
        "environment_bytes": state.ENVIRONMENT_BYTES,
        "level_bytes": state.LEVEL_BYTES,
        "timestamp_bytes": state.TIMESTAMP_BYTES,
        "max_stacks": state.MAX_STACKS,
        "max_log_levels": state.MAX_LOG_LEVELS,
        "other_level": state.OTHER_LEVEL,
        "max_integer": state.MAX_SAFE_INTEGER,
        "snapshot_bytes": state.SNAPSHOT_BYTES,
    }


# -- order by seq alone --------------------------------------------------------------------


def test_a_duplicate_seq_is_ignored_even_with_other_content() -> None:
    """An event at or below the last folded seq changes nothing, whatever it says."""
    folded = state.fold(state.initial(), [_event(1, "deployment.status", {"status": "deploying"})])
    again = state.fold(
        folded,
        [_event(1, "deployment.status", {"status": "failed"}), _event(0, "log.created", {"message": "x"})],
    )

    assert again == folded
    assert (again["status"], again["seq"], again["recent_logs"]) == ("deploying", 1, [])


def test_a_producer_clock_in_2099_does_not_pin_the_dates() -> None:
    """updated_at is the latest event's timestamp, even when an earlier one claimed a later time."""
    folded = state.fold(
        state.initial(),
        [
            _event(1, "deployment.status", {"status": "deploying"}, "2099-01-01T00:00:00Z"),
            _event(2, "log.created", {"message": "a"}, "2026-12-02T10:00:01Z"),
        ],
    )

    assert (folded["started_at"], folded["updated_at"]) == ("2099-01-01T00:00:00Z", "2026-12-02T10:00:01Z")


# -- the stored form -----------------------------------------------------------------------


def test_an_old_stored_state_with_keys_is_read_without_them() -> None:
    """A state stored when fields were ordered by [time, seq] keys loads, keys dropped, lines in seq order."""
    old = {
        "status": "deploying",
        "attempt": 1,
        "current_layer": 2,
        "total_layers": 3,
        "started_at": "2026-12-02T10:00:00Z",
        "updated_at": "2026-12-02T10:00:09Z",
        "environment": "dev",
        "stacks": {
            "network": {"status": "deployed", "layer": 1, "error_message": None, "_keys": {"status": [1, 2]}}
        },
        "log_counts": {"info": 2},
        "recent_logs": [
            {
                "level": "info",
                "message": "b",
                "stack_name": None,
                "seq": 5,
                "timestamp": "2026-12-02T10:00:01Z",
            },
            {
                "level": "info",
                "message": "a",
                "stack_name": None,
                "seq": 4,
                "timestamp": "2026-12-02T10:00:02Z",
            },
        ],
        "_keys": {"status": [1764669600000, 3], "attempt": [1764669600000, 1]},
    }

    loaded = state.loads(json.dumps(old))

    assert "_keys" not in loaded
    assert "_keys" not in loaded["stacks"]["network"]
    assert [line["seq"] for line in loaded["recent_logs"]] == [4, 5]
    assert state.public(loaded)["stacks"]["network"] == {
        "status": "deployed",
        "layer": 1,
        "environment": None,
        "resource_count": None,
        "duration_seconds": None,
        "error_message": None,
    }
    assert (loaded["status"], loaded["attempt"], loaded["seq"], loaded["dropped_stack_events"]) == (
        "deploying",
        1,
        0,
        0,
    )
    # Folding on from it works as from any state.
    after = state.fold(loaded, [_event(6, "deployment.status", {"status": "succeeded"})])
    assert (after["status"], after["seq"]) == ("succeeded", 6)


def test_an_old_oversized_stored_state_is_brought_within_the_limits() -> None:
    """A state stored before the limits (too many stacks, long texts) loads within them."""
    old = {
        "status": "failed",
        "attempt": 1,
        "stacks": {f"s{i}": {"status": "failed", "error_message": "e" * 100_000} for i in range(200)},
        "log_counts": {f"level{i}": 1 for i in range(20)},
        "recent_logs": [{"level": "info", "message": "m" * 5_000, "seq": i} for i in range(1, 80)],
        "_keys": {},
    }

    loaded = state.loads(json.dumps(old))

    assert len(loaded["stacks"]) == state.MAX_STACKS
    assert loaded["dropped_stack_events"] == 200 - state.MAX_STACKS
    assert len(loaded["log_counts"]) == state.MAX_LOG_LEVELS + 1
    assert sum(loaded["log_counts"].values()) == 20
    assert [line["seq"] for line in loaded["recent_logs"]] == list(range(30, 80))
    assert _snapshot_bytes("D1", 79, state.public(loaded)) < state.SNAPSHOT_BYTES


@pytest.mark.parametrize("stored", [None, "", "not json", "[]", '{"status": "failed"}'])
def test_an_unreadable_stored_state_is_the_initial_one(stored: str | None) -> None:
    assert state.loads(stored) == state.initial()


# -- bounded -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abc", 3, "abc"),
        ("abcd", 3, "abc"),
        ('a"b', 3, 'a"'),  # a quote takes 2 bytes
        ("\n\t\\", 6, "\n\t\\"),
        ("\x01\x01", 11, "\x01"),  # a control character takes 6
        ("é€😀", 8, "é€"),  # 2, 3, then 4 would make 9
        ("é€😀", 9, "é€😀"),
        ("\ud800x", 4, "\ufffdx"),  # a lone surrogate becomes U+FFFD (3 bytes)
    ],
)
def test_cut_measures_bytes_of_json(text: str, limit: int, expected: str) -> None:
    """cut keeps the longest prefix whose compact JSON, in UTF-8 and without quotes, fits the limit."""
    kept = state.cut(text, limit)

    assert kept == expected
    assert len(json.dumps(kept, ensure_ascii=False).encode("utf-8")) - 2 <= limit


def test_cut_agrees_with_the_encoder_for_every_kind_of_character() -> None:
    """The byte count cut uses per character is what json.dumps + UTF-8 make of it."""
    for code in [*range(0x00, 0x100), 0x7FF, 0x800, 0xFFFD, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF]:
        char = chr(code)
        written = len(json.dumps(char, ensure_ascii=False).encode("utf-8")) - 2
        assert len(state.cut(char * 10, written * 10)) == 10, hex(code)
        assert len(state.cut(char * 10, written * 10 - 1)) == 9, hex(code)


def _worst_case_state() -> dict[str, Any]:
    """The largest state the limits allow: every text at its size limit, every number and map at its most.

    A cut text takes at most its limit in bytes of JSON (any characters), so
    a text of exactly that many ASCII bytes is as large as one can be; numbers
    are at their longest (2^53 - 1, a 17-significant-digit float).
    """
    big = state.MAX_SAFE_INTEGER
    longest_float = 2.2250738585072014e-308
    timestamp = "t" * state.TIMESTAMP_BYTES
    return {
        "status": "cancelled",
        "attempt": big,
        "current_layer": big,
        "total_layers": big,
        "started_at": timestamp,
        "updated_at": timestamp,
        "environment": "e" * state.ENVIRONMENT_BYTES,
        "error_message": "x" * state.ERROR_MESSAGE_BYTES,
        "duration_seconds": longest_float,
        "stacks": {
            f"{i:03d}".rjust(state.STACK_NAME_BYTES, "s"): {
                "status": "cancelled",
                "layer": big,
                "environment": "e" * state.ENVIRONMENT_BYTES,
                "resource_count": big,
                "duration_seconds": longest_float,
                "error_message": "x" * state.ERROR_MESSAGE_BYTES,
            }
            for i in range(state.MAX_STACKS)
        },
        "dropped_stack_events": big,
        "log_counts": {
            **{f"{i}".rjust(state.LEVEL_BYTES, "l"): big for i in range(state.MAX_LOG_LEVELS)},
            state.OTHER_LEVEL: big,
        },
        "recent_logs": [
            {
                "level": "l" * state.LEVEL_BYTES,
                "message": "m" * state.LOG_MESSAGE_CHARS,
                "stack_name": "s" * state.STACK_NAME_BYTES,
                "seq": big,
                "timestamp": timestamp,
            }
            for _ in range(state.RECENT_LOGS)
        ],
    }


def test_the_worst_case_snapshot_fits_in_one_message() -> None:
    """The largest snapshot the limits allow, with the longest deployment id, seq and id, is under 128 KB."""
    worst = _worst_case_state()
    assert set(worst) == set(state.public(state.initial()))
    request_id = "\x01" * protocol.MAX_REQUEST_ID_CHARS  # 6 bytes each once escaped

    size = _snapshot_bytes("D" * 64, state.MAX_SAFE_INTEGER, worst, request_id)

    assert size < state.SNAPSHOT_BYTES, size
    # The bound is the arithmetic docs/protocol.md shows, not a lucky margin.
    assert size < 115 * 1024, size


def _hostile_events(error_message: str) -> list[dict[str, Any]]:
    """What a careless producer could send: huge and costly texts, many stacks and levels, long lines."""
    events: list[dict[str, Any]] = []
    costly = '\x01\U0001f600\ud800"' * 50_000
    for i in range(state.MAX_STACKS + 20):
        events.append(
            _event(
                len(events) + 1,
                "stack.failed",
                {
                    "stack_name": f"{i}" + costly,
                    "environment": costly,
                    "error_message": error_message,
                    "layer": i,
                    "resource_count": state.MAX_SAFE_INTEGER,
                    "duration_seconds": 2.2250738585072014e-308,
                },
                timestamp=costly,
            )
        )
    for i in range(200):
        events.append(
            _event(
                len(events) + 1,
                "log.created",
                {"level": f"{i}{costly}", "message": costly, "stack_name": costly, "environment": costly},
                timestamp=costly,
            )
        )
    return events


@pytest.mark.parametrize("stacks", [1, 5])
def test_a_500_kb_error_message_leaves_a_snapshot_under_128_kb(stacks: int) -> None:
    """One stack, or five, failing with a 500 KB error message: the snapshot still fits, the message cut."""
    message = "Subnet not found. " * (500 * 1024 // 18)
    events = [
        _event(
            i + 1,
            "stack.failed",
            {"stack_name": f"stack-{i}", "error_message": message, "environment": "dev", "layer": 1},
        )
        for i in range(stacks)
    ]

    folded = state.fold(state.initial(), events)

    assert len(message) > 500 * 1000
    for i in range(stacks):
        kept = folded["stacks"][f"stack-{i}"]["error_message"]
        assert message.startswith(kept)
        assert len(kept) == state.ERROR_MESSAGE_BYTES
    assert _snapshot_bytes("D1", stacks, state.public(folded)) < state.SNAPSHOT_BYTES


def test_hostile_events_stay_within_the_worst_case() -> None:
    """Whatever the events carry, the folded snapshot is no larger than the worst case the limits allow."""
    folded = state.fold(state.initial(), _hostile_events("\x01" * 600_000))
    data = state.public(folded)

    assert len(data["stacks"]) == state.MAX_STACKS
    assert data["dropped_stack_events"] == 20
    assert len(data["log_counts"]) == state.MAX_LOG_LEVELS + 1
    assert len(data["recent_logs"]) == state.RECENT_LOGS
    assert _snapshot_bytes("D1", folded["seq"], data) <= _snapshot_bytes(
        "D1", folded["seq"], _worst_case_state()
    )
    # And it is stored and sent as valid UTF-8 (the lone surrogates were replaced).
    assert state.loads(state.dumps(folded)) == folded
