"""The floor plan's import rules, checked on every file's imports.

The server side is three packages, inner first (:data:`LAYERS`):

- ``contract/``: what every part of the project shares (the wire protocol, the spec of routes
  and tables, the outputs file, the environment variables, events, the state fold...). It
  imports the standard library only.
- ``server/``: the insides (the store, the drain lease and inbox, the fan-out, the poster...).
  It imports the contract, never the entry points: no arrow runs back up.
- ``handlers/``: the Lambda entry points, one module per function of ``contract.spec``, and
  nothing else.

The plugin, the Pulumi component, the CLI and the client build on the contract only, so the
insides can change without touching them. The emulator and the benchmarks host or measure the
Lambdas, so each names, below, the few insides it may use and why. No production package and
no benchmark imports ``tests``: the tests' helpers change for the tests' sake.

The check is static (``ast``): an import made at run time by name (emulator/lambdas.py loads
each route's module with ``importlib`` from ``contract.spec``) is not seen, which is why the
entry points the emulator runs are listed anyway.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from contract import spec

ROOT = Path(__file__).resolve().parents[2]

#: The directories checked (each a "package" of the rules below), relative to the repository.
PACKAGES = ("plugin", "pulumi_component", "emulator", "cloud_ws", "client/python", "bench")

#: The top-level packages of the server side, inner first: each may import those before it.
LAYERS = ("contract", "server", "handlers")

#: The Lambda entry points, from the spec: one module per function.
ENTRY_POINTS = frozenset(function.module for function in spec.FUNCTIONS)


def _exceptions(reason: str, modules: frozenset[str]) -> dict[str, str]:
    return dict.fromkeys(modules, reason)


#: Insides a package may import beyond the contract, module → why.
EXCEPTIONS: Mapping[str, Mapping[str, str]] = {
    "plugin": {},
    "pulumi_component": {},
    "cloud_ws": {},
    "emulator": {
        **_exceptions(
            "the emulator hosts the Lambdas: it invokes each function's handler as Lambda does",
            ENTRY_POINTS,
        ),
        "runtime": "hosting the Lambdas in process means owning their per-container state: the stack "
        "resets it as a fresh container would, and the local GraphQL API reads the same store and "
        "configuration through it, as AppSync's resolvers read the same tables",
        "cognito": "the local AppSync API verifies Cognito tokens as AppSync does on AWS, with the "
        "verifier $connect uses, so both accept exactly the same tokens",
    },
    "bench": {
        **_exceptions("the benchmarks run the functions they measure", ENTRY_POINTS),
        "management": "measured: @connections posting and its retry policy",
        "poster": "measured: the lean poster against boto3's post_to_connection",
        "fanout": "measured: the fan-out across workers",
        "store": "measured: the cloud model runs the real Store on a metered DynamoDB",
        "appsync": "measured: the cloud model runs the real AppSync publisher, its mutations timed",
        "config": "the cloud model builds the handlers' configuration for its containers",
        "runtime": "the benchmarks host the Lambdas as the emulator does (reset or subclass the runtime)",
    },
}

#: The client is its own distribution (client/python/pyproject.toml depends on websockets only):
#: the server side is not installed beside it, so it may import nothing of it, not even the contract.
NO_HANDLERS = frozenset({"client/python"})


@dataclass(frozen=True)
class Violation:
    """One import a package may not make."""

    path: Path
    line: int
    module: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.module}: {self.why}"


#: A string that is nothing but a dotted path into the tests: a module run as ``python -m``.
_TESTS_MODULE = re.compile(r"tests(\.[A-Za-z_]\w*)+")


def imports(tree: ast.AST) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names) of every absolute import, wherever it sits (functions and
    ``TYPE_CHECKING`` blocks included); ``from server import x`` counts as module ``server.x``.

    A string constant naming a module of the tests counts too: a benchmark that runs
    ``python -m tests.support...`` in a subprocess depends on the tests as much as an import."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _TESTS_MODULE.fullmatch(node.value):
                yield node.lineno, node.value, ()
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module in LAYERS:
                for alias in node.names:
                    yield node.lineno, f"{node.module}.{alias.name}", ()
            else:
                yield node.lineno, node.module, tuple(alias.name for alias in node.names)


def verdict(package: str, module: str, names: tuple[str, ...]) -> str | None:
    """Why ``package`` may not import ``names`` from ``module``; None when it may."""
    top, _, rest = module.partition(".")
    if top == "tests":
        return "the tests' helpers are for the tests (move what is shared out of tests/)"
    if top not in LAYERS:
        return None
    if package in NO_HANDLERS:
        return "the client is a separate distribution without the server side"
    if top == "contract":
        return None
    inner = rest.partition(".")[0]
    if inner in EXCEPTIONS.get(package, {}):
        return None
    return f"{top}.{inner or '(package)'} is not contract and {package} has no exception for it"


def layer_verdict(layer: str, module: str) -> str | None:
    """Why ``layer`` (one of :data:`LAYERS`) may not import ``module``; None when it may."""
    top = module.partition(".")[0]
    if top == "__future__" or top == layer:
        return None
    if top in LAYERS:
        if LAYERS.index(top) < LAYERS.index(layer):
            return None
        return f"{layer}/ may not import {top}/ (no arrow runs back up)"
    if top in ("tests", "plugin", "pulumi_component", "emulator", "cloud_ws", "cloud_ws_client", "bench"):
        return f"{layer}/ is bundled into the Lambdas and may not import {top}"
    if layer == "contract" and top not in sys.stdlib_module_names:
        return "the contract imports the standard library only"
    return None


def layer_violations(root: Path) -> list[Violation]:
    """Every import of :data:`LAYERS` that breaks :func:`layer_verdict`."""
    found: list[Violation] = []
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, module, _ in sorted(imports(tree)):
                why = layer_verdict(layer, module)
                if why is not None:
                    found.append(Violation(path.relative_to(root), line, module, why))
    return found


def violations(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[Violation]:
    """Every forbidden import in the ``.py`` files of ``packages`` under ``root``."""
    found: list[Violation] = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if any(part in {".venv", "node_modules", "build"} for part in path.parts):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            # ast.walk goes breadth first: sort so a file's violations read top to bottom.
            for line, module, names in sorted(imports(tree)):
                why = verdict(package, module, names)
                if why is not None:
                    found.append(Violation(path.relative_to(root), line, module, why))
    return found


def test_packages_import_only_the_contract_and_never_tests() -> None:
    found = violations(ROOT)
    assert not found, "forbidden imports:\n" + "\n".join(map(str, found))


def test_the_contract_imports_the_standard_library_only_and_no_arrow_runs_back_up() -> None:
    found = layer_violations(ROOT)
    assert not found, "forbidden imports:\n" + "\n".join(map(str, found))


def test_handlers_holds_the_entry_points_and_nothing_else() -> None:
    modules = {p.stem for p in (ROOT / "handlers").glob("*.py")} - {"__init__"}
    folders = {p.name for p in (ROOT / "handlers").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert modules == ENTRY_POINTS
    assert folders == set()


def test_every_package_has_its_rules_and_every_exception_names_a_real_module() -> None:
    modules = {
        p.stem if p.is_file() else p.name
        for layer in ("server", "handlers")
        for p in (ROOT / layer).iterdir()
        if (p.suffix == ".py" or p.is_dir()) and p.name != "__pycache__"
    }
    assert set(EXCEPTIONS) | NO_HANDLERS == set(PACKAGES)
    assert {m for exceptions in EXCEPTIONS.values() for m in exceptions} <= modules


def test_a_forbidden_import_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "sender.py").write_text(
        "from contract import protocol\n"
        "from server.delivery import Delivery\n"
        "from server.appsync import AppSyncPublisher\n"
        "from tests.support.events import envelope\n"
        'ARGV = ["python", "-m", "tests.support.management_standin"]\n',
        encoding="utf-8",
    )
    (tmp_path / "client" / "python").mkdir(parents=True)
    (tmp_path / "client" / "python" / "client.py").write_text(
        "def f() -> None:\n    import contract.protocol\n", encoding="utf-8"
    )
    (tmp_path / "emulator").mkdir()
    (tmp_path / "emulator" / "lambdas.py").write_text(
        "from handlers import connect\nfrom server.runtime import Runtime\nfrom server.store import Store\n",
        encoding="utf-8",
    )

    found = [str(v) for v in violations(tmp_path, ("plugin", "client/python", "emulator"))]

    assert found == [
        "plugin/sender.py:2: imports server.delivery: server.delivery is not contract "
        "and plugin has no exception for it",
        "plugin/sender.py:3: imports server.appsync: server.appsync is not contract "
        "and plugin has no exception for it",
        "plugin/sender.py:4: imports tests.support.events: the tests' helpers are for the tests "
        "(move what is shared out of tests/)",
        "plugin/sender.py:5: imports tests.support.management_standin: the tests' helpers are for "
        "the tests (move what is shared out of tests/)",
        "client/python/client.py:2: imports contract.protocol: the client is a separate distribution "
        "without the server side",
        "emulator/lambdas.py:3: imports server.store: server.store is not contract "
        "and emulator has no exception for it",
    ]


def test_a_layer_importing_outward_or_a_third_party_contract_is_reported(tmp_path: Path) -> None:
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    (tmp_path / "contract" / "spec.py").write_text(
        "import json\nimport boto3\nfrom server.store import Store\n", encoding="utf-8"
    )
    (tmp_path / "server" / "fanout.py").write_text(
        "import botocore\nfrom contract import spec\n"
        "from handlers import broadcaster\nimport plugin.sender\n",
        encoding="utf-8",
    )
    (tmp_path / "handlers" / "connect.py").write_text(
        "from contract import protocol\nfrom server.store import Store\n", encoding="utf-8"
    )

    found = [str(v) for v in layer_violations(tmp_path)]

    assert found == [
        "contract/spec.py:2: imports boto3: the contract imports the standard library only",
        "contract/spec.py:3: imports server.store: contract/ may not import server/ (no arrow runs back up)",
        "server/fanout.py:3: imports handlers.broadcaster: server/ may not import handlers/ "
        "(no arrow runs back up)",
        "server/fanout.py:4: imports plugin.sender: server/ is bundled into the Lambdas "
        "and may not import plugin",
    ]
