"""One spelling per environment variable: ``contract.environment`` names every variable the
handlers read, and the writers (the local stack, the tests) set only those."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from contract import environment, spec
from server import config
from server.config import load_config

CONFIG_SOURCE = Path(config.__file__)
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+")


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return self._values.get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.read.add(name)
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _required_only() -> dict[str, str]:
    return {
        **{table.env_var: f"{table.role}-table" for table in spec.TABLES},
        environment.COGNITO_USER_POOL_ID: "eu-west-1_Pool",
        environment.COGNITO_CLIENT_IDS: "client",
    }


def test_every_constant_is_its_own_name() -> None:
    constants = {
        key: value
        for key, value in vars(environment).items()
        if key.isupper() and isinstance(value, str) and key != "TABLES"
    }
    assert constants, "no constants found"
    for key, value in constants.items():
        assert key == value, key
    assert set(constants.values()) | set(environment.TABLES) == environment.NAMES
    assert set(environment.TABLES) == {table.env_var for table in spec.TABLES}


def test_every_name_the_configuration_reads_is_a_constant() -> None:
    # Only the required variables set: every optional one is then looked up too (no short cut taken).
    env = RecordingEnv(_required_only())
    load_config(env)
    assert env.read, "load_config read nothing"
    assert env.read <= environment.NAMES, sorted(env.read - environment.NAMES)
    # Both branches of the issuer: set, COGNITO_USER_POOL_ID is not needed.
    issuer = RecordingEnv({**_required_only(), environment.COGNITO_ISSUER: "https://issuer"})
    load_config(issuer)
    assert issuer.read <= environment.NAMES
    assert {environment.APPSYNC_GRAPHQL_URL, environment.FANOUT_FUNCTION_NAME} <= env.read


def test_the_configuration_spells_no_name_itself() -> None:
    """server/config.py names variables only through contract.environment (or the spec's tables)."""
    tree = ast.parse(CONFIG_SOURCE.read_text(encoding="utf-8"))
    literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _ENV_NAME.fullmatch(node.value)
    ]
    assert literals == []
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "names"
    }
    assert used
    assert used <= environment.NAMES, sorted(used - environment.NAMES)


def test_the_local_stack_sets_only_names_of_the_contract() -> None:
    from emulator.stack import LocalSettings, handler_environment
    from tests.support.local_backend import SAMPLE_BACKEND as backend

    variables = handler_environment(LocalSettings(), 8080, backend)
    assert set(variables) <= environment.NAMES, sorted(set(variables) - environment.NAMES)
    # And the handlers accept exactly that environment.
    loaded = load_config(variables)
    assert loaded.appsync_graphql_url == "http://127.0.0.1:8080/graphql"
    assert loaded.fanout_function == spec.BROADCASTER.function
