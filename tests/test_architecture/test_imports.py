"""What the other packages may import from ``handlers/``, checked on every file's imports.

``handlers/`` is two things: the Lambda entry points with their insides (the store, the
fan-out, the poster...), and the contract every part of the project shares with them (the
wire protocol, the spec of routes and tables, the outputs file, the environment variables...).
The plugin, the Pulumi component, the CLI and the client build on the contract only, so the
insides can change without touching them. The emulator and the benchmarks host or measure the
Lambdas, so each names, below, the few insides it may use and why. No production package and
no benchmark imports ``tests``: the tests' helpers change for the tests' sake.

The check is static (``ast``): an import made at run time by name (emulator/lambdas.py loads
each route's module with ``importlib`` from ``handlers.spec``) is not seen, which is why the
entry points the emulator runs are listed anyway.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from handlers import spec

ROOT = Path(__file__).resolve().parents[2]

#: The directories checked (each a "package" of the rules below), relative to the repository.
PACKAGES = ("plugin", "pulumi_component", "emulator", "cloud_ws", "client/python", "bench")

#: The contract: modules of ``handlers`` any package but the client may import, with why each
#: is contract rather than insides. ``None`` allows the whole module; a set allows only those
#: names, imported as ``from handlers.<module> import <name>``.
CONTRACT: Mapping[str, frozenset[str] | None] = {
    # The wire protocol (frames, messages, statuses, deployment ids): docs/protocol.md.
    "protocol": None,
    # Routes, tables, event pattern: what the cloud and the local stack both build.
    "spec": None,
    # The outputs file a stack writes and its one reader.
    "outputs": None,
    # The handlers' environment variable names, shared by their reader and their writers.
    "environment": None,
    # Deployment events as parsed and sequenced: the shapes every channel receives.
    "events": None,
    # The fold of events into a deployment's state (what deployment.snapshot carries).
    "state": None,
    # The one retry-wait rule of every retry loop (the plugin's sender retries too).
    "backoff": None,
    # Structured JSON logging, one format for every process.
    "log": None,
    # Where each kind of row lives in the events table: the table layout, not its access code.
    "keys": None,
    # Projects and the access policy's format (who may watch which deployment).
    "authorization": None,
    # Notification targets' format, the outcome event and its EventBridge pattern.
    "notify": None,
    # The publisher is insides, but the GraphQL schema's path and its query limits are the
    # GraphQL API's contract (the AppSync component and the local API serve that schema).
    "appsync": frozenset({"SCHEMA_PATH", "DEFAULT_EVENTS_LIMIT", "MAX_EVENTS_LIMIT"}),
}

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
        "config": "the cloud model builds the handlers' configuration for its containers",
        "runtime": "the benchmarks host the Lambdas as the emulator does (reset or subclass the runtime)",
    },
}

#: The client is its own distribution (client/python/pyproject.toml depends on websockets only):
#: ``handlers`` is not installed beside it, so it may import nothing from it, not even the contract.
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
    ``TYPE_CHECKING`` blocks included); ``from handlers import x`` counts as module ``handlers.x``.

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
            if node.module == "handlers":
                for alias in node.names:
                    yield node.lineno, f"handlers.{alias.name}", ()
            else:
                yield node.lineno, node.module, tuple(alias.name for alias in node.names)


def verdict(package: str, module: str, names: tuple[str, ...]) -> str | None:
    """Why ``package`` may not import ``names`` from ``module``; None when it may."""
    top, _, rest = module.partition(".")
    if top == "tests":
        return "the tests' helpers are for the tests (move what is shared out of tests/)"
    if top != "handlers":
        return None
    if package in NO_HANDLERS:
        return "the client is a separate distribution without handlers/"
    inner = rest.partition(".")[0]
    if inner in EXCEPTIONS.get(package, {}):
        return None
    if inner in CONTRACT:
        allowed = CONTRACT[inner]
        if allowed is None or (names and set(names) <= allowed):
            return None
        return f"only {', '.join(sorted(allowed))} of handlers.{inner} are contract"
    return f"handlers.{inner or '(package)'} is not contract and {package} has no exception for it"


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


def test_packages_import_only_the_contract_of_handlers_and_never_tests() -> None:
    found = violations(ROOT)
    assert not found, "forbidden imports:\n" + "\n".join(map(str, found))


def test_every_package_has_its_rules_and_every_exception_names_a_real_module() -> None:
    handlers = ROOT / "handlers"
    modules = {p.stem for p in handlers.glob("*.py")} | {p.name for p in handlers.iterdir() if p.is_dir()}
    assert set(EXCEPTIONS) | NO_HANDLERS == set(PACKAGES)
    assert set(CONTRACT) <= modules
    assert {m for exceptions in EXCEPTIONS.values() for m in exceptions} <= modules


def test_a_forbidden_import_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "sender.py").write_text(
        "from handlers import protocol\n"
        "from handlers.delivery import Delivery\n"
        "from handlers.appsync import SCHEMA_PATH, AppSyncPublisher\n"
        "from tests.support.events import envelope\n"
        'ARGV = ["python", "-m", "tests.support.management_standin"]\n',
        encoding="utf-8",
    )
    (tmp_path / "client" / "python").mkdir(parents=True)
    (tmp_path / "client" / "python" / "client.py").write_text(
        "def f() -> None:\n    import handlers.protocol\n", encoding="utf-8"
    )
    (tmp_path / "emulator").mkdir()
    (tmp_path / "emulator" / "lambdas.py").write_text(
        "from handlers import connect, runtime\nfrom handlers.store import Store\n", encoding="utf-8"
    )

    found = [str(v) for v in violations(tmp_path, ("plugin", "client/python", "emulator"))]

    assert found == [
        "plugin/sender.py:2: imports handlers.delivery: handlers.delivery is not contract "
        "and plugin has no exception for it",
        "plugin/sender.py:3: imports handlers.appsync: only DEFAULT_EVENTS_LIMIT, MAX_EVENTS_LIMIT, "
        "SCHEMA_PATH of handlers.appsync are contract",
        "plugin/sender.py:4: imports tests.support.events: the tests' helpers are for the tests "
        "(move what is shared out of tests/)",
        "plugin/sender.py:5: imports tests.support.management_standin: the tests' helpers are for "
        "the tests (move what is shared out of tests/)",
        "client/python/client.py:2: imports handlers.protocol: the client is a separate distribution "
        "without handlers/",
        "emulator/lambdas.py:2: imports handlers.store: handlers.store is not contract "
        "and emulator has no exception for it",
    ]
