"""`cloud-ws emit` checks a known type's data against docs/asyncapi.yaml's schemas: the copies
in cloud_ws/event_schemas.py are the document's, the checker agrees with a JSON Schema
validator on them, and a refused `--data` is exit code 2 with a sentence, nothing sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from cloud_ws import cli, event_schemas
from tests.support import asyncapi
from tests.test_plugin.conftest import Bus


def resolved(name: str) -> dict[str, Any]:
    """A schema of docs/asyncapi.yaml with its references resolved, descriptions left out."""
    schemas = asyncapi.load_document()["components"]["schemas"]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(schemas[node["$ref"].rsplit("/", 1)[-1]])
            return {key: walk(value) for key, value in node.items() if key != "description"}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    result: dict[str, Any] = walk(schemas[name])
    return result


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (event_schemas.DEPLOYMENT_STATUS, "DeploymentStatusData"),
        (event_schemas.STACK, "StackData"),
        (event_schemas.LOG, "LogData"),
    ],
)
def test_the_copied_schemas_are_the_documents(ours: dict[str, Any], theirs: str) -> None:
    assert ours == resolved(theirs)


#: A valid ``resources`` entry of ``stack.progress``.
STEP = {"name": "m", "type": "t", "operation": "x", "status": "done"}

SAMPLES: list[tuple[str, Any]] = [
    ("deployment.status", {"status": "deploying", "current_layer": 2, "total_layers": 4}),
    ("deployment.status", {"status": "bogus"}),
    ("deployment.status", {"current_layer": -1}),
    ("deployment.status", {"current_layer": 1.5}),
    ("deployment.status", {"duration_seconds": 2.5, "error_message": "x"}),
    ("deployment.status", {"environment": ""}),
    ("stack.failed", {"stack_name": "db", "error_message": "Subnet not found", "layer": 3}),
    ("stack.deployed", {"stack_name": "x" * 257}),
    ("stack.progress", {"layer": 1}),
    ("stack.started", {"stack_name": "db", "truncated": False}),
    (
        "stack.progress",
        {
            "stack_name": "app",
            "resources": [
                {"name": "main", "type": "aws:ec2/vpc:Vpc", "operation": "create", "status": "done"},
                {"name": "db", "type": "t", "operation": "update", "status": "done", "duration_seconds": 1},
            ],
        },
    ),
    ("stack.progress", {"stack_name": "app", "resources": {"name": "main"}}),
    ("stack.progress", {"stack_name": "app", "resources": [{"name": "main", "type": "t", "operation": "x"}]}),
    (
        "stack.progress",
        {"stack_name": "app", "resources": [{"name": "m", "type": "t", "operation": "x", "status": "new"}]},
    ),
    (
        "stack.progress",
        {"stack_name": "a", "resources": [{**STEP, "name": "m" * 129}]},
    ),
    (
        "stack.progress",
        {"stack_name": "a", "resources": [STEP] * 101},
    ),
    ("log.created", {"message": "hello", "level": "warning"}),
    ("log.created", {"message": 3}),
    ("log.created", {"level": "info"}),
]


@pytest.mark.parametrize(("event_type", "data"), SAMPLES)
def test_the_checker_agrees_with_a_json_schema_validator(event_type: str, data: Any) -> None:
    known = event_schemas.schema_for(event_type)
    assert known is not None
    valid = Draft7Validator(known[0]).is_valid(data)
    assert (event_schemas.check_data(event_type, data) is None) == valid


def test_other_types_are_not_checked() -> None:
    assert event_schemas.check_data("approval.requested", {}) is None


@pytest.fixture
def outputs_file(bus: Bus, tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(bus.outputs), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (
            ["deployment.status", "D1", "--data", '{"status": "bogus"}'],
            "data.status must be one of pending, deploying, succeeded, failed, cancelled, not 'bogus'",
        ),
        (["deployment.status", "D1", "--data", "{}"], "deployment.status needs data, e.g. --data '{"),
        (["deployment.status", "D1"], "deployment.status needs data"),
        (["log.created", "D1", "--data", '{"level": "info"}'], "data.message is required"),
        (
            ["stack.deployed", "D1", "--data", '{"stack_name": "db", "layer": -2}'],
            "data.layer must be at least 0",
        ),
    ],
)
def test_emit_refuses_data_a_known_type_cannot_carry(
    bus: Bus, outputs_file: Path, capsys: pytest.CaptureFixture[str], argv: list[str], complaint: str
) -> None:
    """Exit code 2, one line that says what is wrong and shows a good example; nothing is sent."""
    assert cli.main(["emit", *argv, "--outputs", str(outputs_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("cloud-ws emit: ")
    assert complaint in err
    assert bus.everything() == []
