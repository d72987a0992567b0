"""The broadcaster's reducer against the shared state vectors (conformance/state.json).

The same file is run by the Python client's tests and the TypeScript test
runner: one set of rules, every implementation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from handlers import state

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "conformance" / "state.json").read_text("utf-8"))
CASES: list[dict[str, Any]] = VECTORS["cases"]


def _as_sequenced(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the broadcaster folds: each seq once, in seq order (it hands out the seqs)."""
    by_seq: dict[int, dict[str, Any]] = {}
    for event in events:
        by_seq.setdefault(event["seq"], event)
    return [by_seq[seq] for seq in sorted(by_seq)]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_reducer_folds_each_vector_to_its_snapshot(case: dict[str, Any]) -> None:
    """Folding the vector's events gives exactly the expected snapshot data."""
    folded = state.fold(state.initial(), _as_sequenced(case["events"]))

    assert state.public(folded) == case["expect"]["data"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_folding_in_several_batches_gives_the_same_snapshot(case: dict[str, Any]) -> None:
    """The stored state round-trips: folding batch by batch through JSON equals folding at once."""
    events = _as_sequenced(case["events"])
    stored = state.dumps(state.initial())
    for start in range(0, len(events), 3):
        stored = state.dumps(state.fold(state.loads(stored), events[start : start + 3]))

    assert state.public(state.loads(stored)) == case["expect"]["data"]


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
    ):
        assert rule in names, rule
