"""Write each client's protocol constants from conformance/protocol.json and state.json's limits.

The server, the Python client and the TypeScript client share a handful of
protocol constants (error codes, statuses, limits, the subprotocol...). They are
written down once, in ``conformance/protocol.json``, which
``tests/test_client/test_contract.py`` holds equal to the server's modules, and
the state's limits (the caps every implementation applies to a deployment's
state) in ``conformance/state.json``'s ``limits``, which
``tests/test_conformance/test_state_vectors.py`` holds equal to the server's
``contract/state.py``; this script turns both into a constants module for each
client (a limit is a constant named like its key, upper-cased):

- ``client/python/cloud_ws_client/_protocol_generated.py``
- ``client/javascript/src/protocol.generated.ts``

Both are checked in, so neither client needs a build step; after editing the
JSON, run ``python tools/gen_protocol.py`` (``--check`` only reports stale
files). ``tests/test_conformance/test_generated_protocol.py`` fails while a
generated file differs from what this script writes. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "conformance" / "protocol.json"
#: The second source: its ``limits`` object only (the rest are the state's test vectors).
STATE_SOURCE = ROOT / "conformance" / "state.json"
PYTHON_TARGET = ROOT / "client" / "python" / "cloud_ws_client" / "_protocol_generated.py"
TYPESCRIPT_TARGET = ROOT / "client" / "javascript" / "src" / "protocol.generated.ts"

#: What each key means: the comment above its constant in both generated files.
DESCRIPTIONS: dict[str, str] = {
    "subprotocol": "Subprotocol offered beside the token, and echoed back by the server.",
    "token_subprotocol_prefix": "Prefix of the subprotocol entry that carries the token (bearer.<jwt>).",
    "deployment_id_pattern": "What a deployment id must look like (the server refuses any other).",
    "max_request_id_chars": "Longest request id the server accepts and echoes.",
    "default_list_limit": "The server's default limit of list_deployments.",
    "max_list_limit": "The largest limit of list_deployments the server accepts.",
    "message_separator": "Separates the messages of one server frame.",
    "deployment_statuses": "Every status of deployment.status.",
    "terminal_statuses": "Statuses of deployment.status after which nothing more happens.",
    "log_levels": "The levels of log.created, lowest first.",
    "error_codes": "Every error.code the server sends; a newer server's unknown code still parses.",
    "reconnect_error_codes": "Error codes after which only a new connection (with a fresh token) helps.",
    "refused_subscription_codes": "Refusals of a subscribe that asking again cannot change: it is dropped.",
    "recent_logs": "How many of the attempt's latest log lines a deployment's state keeps.",
    "log_message_chars": "Longest log message kept in recent_logs, in bytes of its JSON encoding.",
    "stack_status": "The stack status each stack event type sets.",
    # conformance/state.json's limits (recent_logs is protocol.json's too, so it is described above).
    "log_message_bytes": "Largest log message kept in recent_logs, in bytes of its JSON encoding.",
    "error_message_bytes": "Largest error_message (a stack's, the attempt's), in bytes of its JSON encoding.",
    "stack_name_bytes": "Largest stack name, in bytes of its JSON encoding.",
    "environment_bytes": "Largest environment, in bytes of its JSON encoding.",
    "level_bytes": "Largest log level, in bytes of its JSON encoding.",
    "timestamp_bytes": "Largest timestamp kept, in bytes of its JSON encoding.",
    "max_stacks": "Stacks an attempt keeps; events about further ones are counted in dropped_stack_events.",
    "max_log_levels": "Distinct levels log_counts keeps besides OTHER_LEVEL, which counts the rest.",
    "other_level": "The log_counts key that counts the lines of every level beyond MAX_LOG_LEVELS.",
    "max_integer": "Largest integer every implementation reads exactly (2^53 - 1, JavaScript's safe max).",
    "snapshot_bytes": "API Gateway's limit on one message, which a snapshot always fits in.",
}

#: Lists whose order means nothing: a frozenset in Python (a tuple for the others).
UNORDERED = frozenset(
    {
        "deployment_statuses",
        "terminal_statuses",
        "error_codes",
        "reconnect_error_codes",
        "refused_subscription_codes",
    }
)


def load_limits(path: Path = STATE_SOURCE) -> dict[str, Any]:
    """The state's limits: the ``limits`` object of ``conformance/state.json``, in its order."""
    limits = json.loads(path.read_text(encoding="utf-8"))["limits"]
    if not isinstance(limits, dict):
        raise TypeError(f"{path.name}: limits must be an object")
    return dict(limits)


def load(path: Path = SOURCE, state_path: Path = STATE_SOURCE) -> dict[str, Any]:
    """The shared constants: the protocol's, without the file's ``note``, then the state's limits.

    Every key must have a description. A limit named like a protocol constant
    (``recent_logs``) must have its value, and is written once.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    data.pop("note", None)
    for key, value in load_limits(state_path).items():
        if key in data and data[key] != value:
            raise ValueError(
                f"{key} is {data[key]!r} in {path.name} but {value!r} in {state_path.name}'s limits"
            )
        data.setdefault(key, value)
    unknown = sorted(set(data) - set(DESCRIPTIONS))
    if unknown:
        raise ValueError(
            f"describe the new keys of {path.name} or {state_path.name}'s limits in DESCRIPTIONS: "
            f"{', '.join(unknown)}"
        )
    return dict(data)


def _string(value: str) -> str:
    """A double-quoted literal valid in both Python and TypeScript (JSON escapes)."""
    return json.dumps(value)


def _header(comment: str) -> list[str]:
    source = SOURCE.relative_to(ROOT).as_posix()
    state = STATE_SOURCE.relative_to(ROOT).as_posix()
    script = Path(__file__).resolve().relative_to(ROOT).as_posix()
    return [
        f"{comment} Generated by {script} from {source} and {state}'s",
        f"{comment} limits: do not edit by hand.",
        f"{comment} Change the JSON, then run `python {script}`; a stale copy fails",
        f"{comment} tests/test_conformance/test_generated_protocol.py.",
    ]


def _python_value(key: str, value: Any) -> tuple[str, str]:
    """The annotation and the (ruff-formatted) expression of one constant."""
    if isinstance(value, bool):
        raise TypeError(f"{key}: booleans are not supported")
    if isinstance(value, str):
        return "str", _string(value)
    if isinstance(value, int):
        return "int", str(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = "".join(f"        {_string(item)},\n" for item in value)
        if key in UNORDERED:
            return "frozenset[str]", "frozenset(\n    {\n" + items + "    }\n)"
        return "tuple[str, ...]", "(\n" + items.replace("        ", "    ") + ")"
    if isinstance(value, dict) and all(isinstance(item, str) for item in value.values()):
        items = "".join(f"    {_string(k)}: {_string(v)},\n" for k, v in value.items())
        return "dict[str, str]", "{\n" + items + "}"
    raise TypeError(f"{key}: unsupported value {value!r:.80}")


def render_python(constants: Mapping[str, Any]) -> str:
    """The Python client's constants module."""
    lines = [
        '"""The protocol constants the client shares with the server and the TypeScript client.',
        "",
        "Generated by tools/gen_protocol.py from conformance/protocol.json and conformance/state.json's",
        "limits: do not edit by hand.",
        "Change the JSON, then run `python tools/gen_protocol.py`; a stale copy fails",
        "tests/test_conformance/test_generated_protocol.py.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final",
    ]
    for key, value in constants.items():
        annotation, expression = _python_value(key, value)
        lines += ["", f"#: {DESCRIPTIONS[key]}", f"{key.upper()}: Final[{annotation}] = {expression}"]
    return "\n".join(lines) + "\n"


def _typescript_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        raise TypeError(f"{key}: booleans are not supported")
    if key == "deployment_id_pattern" and isinstance(value, str):
        return f"new RegExp({_string(value)})"
    if isinstance(value, str | int):
        return _string(value) if isinstance(value, str) else str(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "[\n" + "".join(f"  {_string(item)},\n" for item in value) + "] as const"
    if isinstance(value, dict) and all(isinstance(item, str) for item in value.values()):
        items = "".join(f"  {_string(k)}: {_string(v)},\n" for k, v in value.items())
        return "{\n" + items + "} as const"
    raise TypeError(f"{key}: unsupported value {value!r:.80}")


def render_typescript(constants: Mapping[str, Any]) -> str:
    """The TypeScript client's constants module (re-exported selectively by protocol.ts)."""
    lines = _header("//")
    for key, value in constants.items():
        lines += [
            "",
            f"/** {DESCRIPTIONS[key]} */",
            f"export const {key.upper()} = {_typescript_value(key, value)};",
        ]
    return "\n".join(lines) + "\n"


#: Each generated file and how it is written.
TARGETS: dict[Path, Callable[[Mapping[str, Any]], str]] = {
    PYTHON_TARGET: render_python,
    TYPESCRIPT_TARGET: render_typescript,
}


def stale(constants: Mapping[str, Any] | None = None) -> list[Path]:
    """The generated files whose content differs from what the source gives."""
    constants = load() if constants is None else constants
    return [
        path
        for path, render in TARGETS.items()
        if not path.exists() or path.read_text(encoding="utf-8") != render(constants)
    ]


def main(argv: list[str] | None = None) -> int:
    """Write the generated files (or, with ``--check``, report the stale ones)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    args = parser.parse_args(argv)
    constants = load()
    outdated = stale(constants)
    for path in outdated:
        if args.check:
            print(f"stale: {path.relative_to(ROOT)}", file=sys.stderr)
        else:
            path.write_text(TARGETS[path](constants), encoding="utf-8", newline="\n")
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if args.check and outdated else 0


if __name__ == "__main__":
    sys.exit(main())
