"""The outputs file: the one contract between a stack (cloud or local) and its consumers.

``pulumi stack output --json`` and ``cloud-ws local`` produce the same keys
(see docs/design.md); the plugin, the clients and the CLI are built from them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(".cloud-ws") / "outputs.json"
ENV_VAR = "CLOUD_WS_OUTPUTS"

#: Keys every stack exports.
REQUIRED_KEYS = frozenset(
    {
        "websocket_url",
        "management_endpoint",
        "event_bus_name",
        "event_source",
        "region",
        "user_pool_id",
        "user_pool_client_id",
        "connections_table_name",
    }
)


class OutputsError(Exception):
    """The outputs file is missing, unreadable or incomplete; the message says which."""


def default_path() -> Path:
    """``$CLOUD_WS_OUTPUTS``, else ``.cloud-ws/outputs.json`` in the working directory."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


def load_outputs(source: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read outputs from a mapping, a JSON file path, or the default path.

    Raises:
        OutputsError: with a one-line message naming the file and the problem.
    """
    if isinstance(source, Mapping):
        outputs = dict(source)
        where = "outputs"
    else:
        path = Path(source) if source is not None else default_path()
        where = str(path)
        try:
            outputs = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise OutputsError(
                f"no outputs file at {path}: start `cloud-ws local` (or `make run`), "
                "or write `pulumi stack output --json` there, or pass --outputs"
            ) from None
        except (OSError, ValueError) as exc:
            raise OutputsError(f"cannot read outputs file {path}: {exc}") from None
        if not isinstance(outputs, dict):
            raise OutputsError(f"outputs file {path} must hold a JSON object")
    missing = sorted(REQUIRED_KEYS - outputs.keys())
    if missing:
        raise OutputsError(f"{where} lacks {', '.join(missing)}")
    return outputs
