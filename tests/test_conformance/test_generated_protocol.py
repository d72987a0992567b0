"""The clients' generated protocol modules are what tools/gen_protocol.py makes of the shared JSON.

Both clients take their protocol constants (conformance/protocol.json) and the
state's limits (conformance/state.json's ``limits``) from checked-in files
generated from the JSON (no build step); this test regenerates them in memory
and fails while either is stale, so editing the JSON without running the
generator (or editing a generated file by hand) cannot go unnoticed. The JSON
itself is held to the server's modules by tests/test_client/test_contract.py
(protocol.json) and tests/test_conformance/test_state_vectors.py (the limits).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cloud_ws_client import _protocol_generated as generated

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    """tools/gen_protocol.py, imported from its path (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_protocol", ROOT / "tools" / "gen_protocol.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


@pytest.mark.parametrize("target", sorted(GEN.TARGETS, key=str), ids=lambda path: path.name)
def test_the_generated_file_is_fresh(target: Path) -> None:
    expected = GEN.TARGETS[target](GEN.load())
    assert target.read_text(encoding="utf-8") == expected, (
        f"{target.relative_to(ROOT)} is stale: run `python tools/gen_protocol.py`"
    )


def _limits() -> dict[str, Any]:
    """conformance/state.json's limits, read directly (not through the generator)."""
    limits: dict[str, Any] = json.loads((ROOT / "conformance" / "state.json").read_text(encoding="utf-8"))[
        "limits"
    ]
    return limits


def test_the_generated_python_constants_are_the_json() -> None:
    """The Python module, imported, holds the JSON's values (sets as sets, order kept for the rest)."""
    shared = json.loads((ROOT / "conformance" / "protocol.json").read_text(encoding="utf-8"))
    shared.pop("note")
    assert shared, "the JSON names constants"
    limits = _limits()
    assert limits, "state.json names limits"
    for key, value in [*shared.items(), *limits.items()]:
        constant = getattr(generated, key.upper())
        if key in GEN.UNORDERED:
            assert constant == frozenset(value), key
        elif isinstance(value, list):
            assert constant == tuple(value), key
        else:
            assert constant == value, key


def test_every_limit_is_generated_in_both_clients() -> None:
    """Each of state.json's limits is a constant, named like its key upper-cased, in both generated files."""
    typescript = GEN.TYPESCRIPT_TARGET.read_text(encoding="utf-8")
    for key, value in _limits().items():
        assert getattr(generated, key.upper()) == value, key
        literal = json.dumps(value)
        assert f"export const {key.upper()} = {literal};" in typescript, key


def test_a_key_without_a_description_is_refused(tmp_path: Path) -> None:
    """A new key needs its description (the generated comment) before it is generated."""
    source = tmp_path / "protocol.json"
    source.write_text(json.dumps({"note": "n", "subprotocol": "x", "brand_new": 1}), encoding="utf-8")
    with pytest.raises(ValueError, match="brand_new"):
        GEN.load(source)


def test_a_limit_without_a_description_is_refused(tmp_path: Path) -> None:
    """A new limit in state.json needs its description too."""
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"limits": {"max_stacks": 50, "brand_new_limit": 3}}), encoding="utf-8")
    with pytest.raises(ValueError, match="brand_new_limit"):
        GEN.load(GEN.SOURCE, state)


def test_a_limit_that_contradicts_the_protocol_is_refused(tmp_path: Path) -> None:
    """A limit named like a protocol constant (recent_logs) is written once, so both files must agree."""
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"limits": {"recent_logs": 51}}), encoding="utf-8")
    with pytest.raises(ValueError, match="recent_logs"):
        GEN.load(GEN.SOURCE, state)
