"""cloud-ws's reusable Pulumi component: ``WebSocketMonitoring``.

Import it into any Python stack::

    from pulumi_component import WebSocketMonitoring

    monitoring = WebSocketMonitoring("monitoring", {"user_pool_id": ..., "user_pool_client_id": ...})

Other languages use it through the component provider in this folder
(``PulumiPlugin.yaml``; see docs/deploying.md).
"""

from pulumi_component.websocket_monitoring import (
    PACKAGE,
    SUPPORTED_RUNTIMES,
    TYPE_TOKEN,
    VERSION,
    WebSocketMonitoring,
    WebSocketMonitoringArgs,
    WebSocketMonitoringArgsError,
    validate_args,
)

__all__ = [
    "PACKAGE",
    "SUPPORTED_RUNTIMES",
    "TYPE_TOKEN",
    "VERSION",
    "WebSocketMonitoring",
    "WebSocketMonitoringArgs",
    "WebSocketMonitoringArgsError",
    "validate_args",
]
