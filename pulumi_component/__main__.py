"""Host ``WebSocketMonitoring`` for TypeScript, Go, YAML, ... stacks (``pulumi package add``).

Pulumi runs this folder as a plugin (``python <this folder> <engine address>``,
see ``PulumiPlugin.yaml``); the schema is inferred from the component's type
annotations (checked in as ``docs/component-schema.json``).
"""

import sys
from pathlib import Path

# The component bundles ../handlers: run from the repository root, not from this folder.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from pulumi.provider.experimental import component_provider_host  # noqa: E402

from pulumi_component import PACKAGE, VERSION, WebSocketMonitoring  # noqa: E402

if __name__ == "__main__":
    component_provider_host([WebSocketMonitoring], name=PACKAGE, version=VERSION)
