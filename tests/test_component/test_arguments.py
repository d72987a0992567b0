"""The component's arguments are written once (pulumi_component/arguments.py); all else derives from it.

``WebSocketMonitoringArgs`` and ``Settings`` are generated source, the schema
Pulumi infers from them carries the table's docs, and the Pulumi program reads
exactly the table's configuration keys, each as its type says. Regenerate the
classes with ``CLOUD_WS_UPDATE_ARGS=1 pytest tests/test_component/test_arguments.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import runpy
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from pulumi.provider.experimental.component import ComponentProvider

from pulumi_component import PACKAGE, TYPE_TOKEN, VERSION, WebSocketMonitoring, arguments, settings
from pulumi_component.arguments import ARGUMENTS, NO_DEFAULT
from pulumi_component.websocket_monitoring import WebSocketMonitoringArgs
from tests.test_component.conftest import PROGRAM, ROOT

#: The type the schema gives each argument type of the table.
SCHEMA_TYPES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list[str]": "array",
    "dict[str, list[str]]": "object",
    "NotificationsArgs": "#/types/cloud-ws:index:NotificationsArgs",
}


def _camel(name: str) -> str:
    return re.sub(r"_(\w)", lambda m: m.group(1).upper(), name)


def test_generated_code_is_what_the_table_generates() -> None:
    if os.environ.get("CLOUD_WS_UPDATE_ARGS") == "1":
        arguments.regenerate()
    assert arguments.stale() == [], (
        "WebSocketMonitoringArgs / Settings are stale; regenerate them with "
        "CLOUD_WS_UPDATE_ARGS=1 pytest tests/test_component/test_arguments.py"
    )


def test_args_and_settings_are_the_table_in_its_order() -> None:
    names = tuple(a.name for a in ARGUMENTS)
    assert len(set(names)) == len(names)
    assert arguments.ARG_NAMES == settings.ARG_NAMES == names
    assert tuple(WebSocketMonitoringArgs.__annotations__) == names
    assert WebSocketMonitoringArgs.__required_keys__ == {a.name for a in ARGUMENTS if a.required}
    assert tuple(f.name for f in dataclasses.fields(settings.Settings)) == (*names, "webhook_secrets")


def test_defaults_are_the_table_defaults() -> None:
    assert settings.DEFAULTS is arguments.DEFAULTS
    assert dict(arguments.DEFAULTS) == {a.name: a.default for a in ARGUMENTS if a.default is not NO_DEFAULT}
    assert settings.DEFAULT_RUNTIME == arguments.DEFAULTS["runtime"] in settings.SUPPORTED_RUNTIMES
    for argument in ARGUMENTS:
        # One way to state a default; a required argument has none.
        assert argument.default is NO_DEFAULT or argument.default_doc is None, argument.name
        assert not argument.required or argument.default is NO_DEFAULT, argument.name


def test_schema_inputs_are_the_table() -> None:
    """Pulumi infers the schema from the generated class: names, docs, types, plainness all the table's."""
    provider = ComponentProvider([WebSocketMonitoring], PACKAGE, version=VERSION)
    assert provider.schema is not None
    resource = json.loads(provider.schema)["resources"][TYPE_TOKEN]
    inputs: dict[str, Any] = resource["inputProperties"]
    assert set(inputs) == {_camel(a.name) for a in ARGUMENTS}
    assert sorted(resource["requiredInputs"]) == sorted(_camel(a.name) for a in ARGUMENTS if a.required)
    for argument in ARGUMENTS:
        prop = inputs[_camel(argument.name)]
        assert prop["description"] == argument.docstring, argument.name
        assert prop.get("type", prop.get("$ref")) == SCHEMA_TYPES[argument.type], argument.name
        assert prop.get("plain", False) is not argument.output, argument.name


@pytest.fixture
def program() -> dict[str, Any]:
    """``__main__.py``'s globals, loaded without running the stack."""
    return runpy.run_path(str(PROGRAM), run_name="program")


@pytest.fixture
def clean_config() -> Iterator[None]:
    yield
    pulumi.runtime.set_all_config({})


#: A configuration value of each configuration type, as the CLI hands it over, and what it reads as.
SAMPLES: dict[str, tuple[str, Any]] = {
    "string": ("text", "text"),
    "integer": ("7", 7),
    "number": ("2.5", 2.5),
    "boolean": ("true", True),
    "list": ("a, b", ["a", "b"]),
    "object": ('{"k": ["v"]}', {"k": ["v"]}),
}


def test_program_reads_every_table_key_as_its_type(program: dict[str, Any], clean_config: None) -> None:
    assert dict(program["CONFIG_KEYS"]) == {a.name: a.config_key for a in ARGUMENTS if a.config_key}
    pulumi.runtime.set_all_config(
        {
            f"cloud-ws:{key}": SAMPLES[arguments.CONFIG_TYPES[field]][0]
            for field, key in arguments.CONFIG_KEYS.items()
        }
    )
    read = program["read_config"](pulumi.Config("cloud-ws"))
    assert read == {field: SAMPLES[arguments.CONFIG_TYPES[field]][1] for field in arguments.CONFIG_KEYS}
    assert [type(value) for value in read.values()] == [
        type(SAMPLES[arguments.CONFIG_TYPES[field]][1]) for field in arguments.CONFIG_KEYS
    ]


def test_program_warns_about_keys_not_in_the_table(program: dict[str, Any], clean_config: None) -> None:
    pulumi.runtime.set_all_config({"cloud-ws:logLevel": "INFO", "cloud-ws:memorySizeMb": "512"})
    # Not configurable from a stack (the component's argument only): reported as unknown.
    assert program["unknown_keys"]() == ["cloud-ws:memorySizeMb"]


def test_deploying_guide_documents_exactly_the_table_keys() -> None:
    """docs/deploying.md's configuration table has a row for every key, and no key the program ignores."""
    documented: set[str] = set()
    in_table = False
    for line in (ROOT / "docs" / "deploying.md").read_text().splitlines():
        if line.startswith("| key (`pulumi config set cloud-ws:<key>"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table and not line.startswith("|---"):
            documented.update(re.findall(r"`(\w+)`", line.strip("|").split("|")[0]))
    assert documented == set(arguments.CONFIG_KEYS.values())
