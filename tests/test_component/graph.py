"""The resource graph the program registers under mocks, as canonical JSON.

A refactoring of the component's arguments must not change what gets deployed;
rendering the graph before and after and diffing the files proves it::

    python -m tests.test_component.graph /tmp/graph-before   # before the change
    python -m tests.test_component.graph /tmp/graph-after    # after it
    diff -r /tmp/graph-before /tmp/graph-after

Each resource is its type, name, parent, dependencies and inputs (the mocks'
outputs are derived from the inputs, so they add nothing), sorted by URN: the
program registers from callbacks, so the registration order varies from run to
run. The stack's exports close the file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pulumi

from tests.test_component.conftest import Deployment, deploy, stack_config

#: The configurations the graph is rendered for: the checked-in stacks, no configuration at all, and
#: AppSync off (the one flag that removes a whole subtree of resources).
CONFIGURATIONS: Mapping[str, Callable[[], Deployment]] = {
    "dev": lambda: deploy(stack_config("dev"), stack="dev"),
    "prod": lambda: deploy(stack_config("prod"), stack="prod"),
    "bare": lambda: deploy({}, stack="staging"),
    "appsync-off": lambda: deploy({"enableAppSync": False}),
}


def _asset(value: object) -> object:
    """An asset or archive as what it holds (its path names its content hash); its repr is an address."""
    if isinstance(value, pulumi.FileArchive | pulumi.FileAsset):
        return {type(value).__name__: value.path}
    raise TypeError(f"cannot render {value!r}")


def render(deployment: Deployment) -> str:
    """``deployment``'s resources (by URN) and exports as indented, key-sorted JSON."""
    graph: dict[str, Any] = {
        "resources": [
            {
                "type": resource.type,
                "name": resource.name,
                "parent": resource.parent,
                # Dependencies gathered from a set of inputs: their order says nothing.
                "dependencies": sorted(resource.dependencies),
                "inputs": resource.inputs,
            }
            for _, resource in sorted(deployment.resources.items())
        ],
        "exports": deployment.exports,
    }
    return json.dumps(graph, indent=2, sort_keys=True, default=_asset) + "\n"


def main(argv: list[str]) -> None:
    """Write ``<configuration>.json`` for every configuration into the folder ``argv[0]``."""
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    for name, run in CONFIGURATIONS.items():
        (folder / f"{name}.json").write_text(render(run()))


if __name__ == "__main__":
    main(sys.argv[1:])
