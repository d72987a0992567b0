"""cloud-ws orchestrator plugin: lifecycle hooks that emit deployment events to EventBridge.

Build it from a stack's outputs, call hooks while deploying, close it at the end::

    from plugin import OrchestratorPlugin

    with OrchestratorPlugin.from_outputs(environment="dev") as plugin:
        plugin.deployment_started("D1BRV40", total_layers=4)
        ...

Hooks return at once and never raise; a background thread batches, sends and
retries. See docs/plugin.md for the guarantees.
"""

from plugin.automation import AutomationAdapter
from plugin.envelope import FRAME_DATA_BUDGET, Envelope, EnvelopeError, build_envelope
from plugin.hooks import LOG_LEVELS, LifecycleHooks
from plugin.orchestrator import OrchestratorPlugin
from plugin.sender import DeliveryOptions, DeliveryStats

__all__ = [
    "FRAME_DATA_BUDGET",
    "LOG_LEVELS",
    "AutomationAdapter",
    "DeliveryOptions",
    "DeliveryStats",
    "Envelope",
    "EnvelopeError",
    "LifecycleHooks",
    "OrchestratorPlugin",
    "build_envelope",
]
