"""The clients' generated protocol modules are what tools/gen_protocol.py makes of conformance/protocol.json.

Both clients take their protocol constants from checked-in files generated
from the shared JSON (no build step); this test regenerates them in memory and
fails while either is stale, so editing the JSON without running the generator
(or editing a generated file by hand) cannot go unnoticed. The JSON itself is
held to the server's modules by tests/test_client/test_contract.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

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


def test_the_generated_python_constants_are_the_json() -> None:
    """The Python module, imported, holds the JSON's values (sets as sets, order kept for the rest)."""
    shared = json.loads((ROOT / "conformance" / "protocol.json").read_text(encoding="utf-8"))
    shared.pop("note")
    assert shared, "the JSON names constants"
    for key, value in shared.items():
        constant = getattr(generated, key.upper())
        if key in GEN.UNORDERED:
            assert constant == frozenset(value), key
        elif isinstance(value, list):
            assert constant == tuple(value), key
        else:
            assert constant == value, key


def test_a_key_without_a_description_is_refused(tmp_path: Path) -> None:
    """A new key needs its description (the generated comment) before it is generated."""
    source = tmp_path / "protocol.json"
    source.write_text(json.dumps({"note": "n", "subprotocol": "x", "brand_new": 1}), encoding="utf-8")
    with pytest.raises(ValueError, match="brand_new"):
        GEN.load(source)
