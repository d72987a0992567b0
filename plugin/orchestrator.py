"""The plugin object an orchestrator holds: hooks in, EventBridge out.

Build it from the stack's outputs (the local stack's carry ``aws_endpoint_url``)
or from an explicit bus, source, region and endpoint; call hooks from any
thread; ``close()`` it (or use ``with``) when the orchestrator is done.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from contract import outputs as contract
from contract.authorization import PROJECT_PATTERN, is_valid_project
from contract.spec import DEFAULT_EVENT_SOURCE
from plugin.automation import AutomationAdapter
from plugin.envelope import build_envelope
from plugin.hooks import LifecycleHooks, never_raises
from plugin.sender import DeliveryOptions, DeliveryStats, Sender

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

#: Credentials used against a loopback endpoint (the local stack) when the
#: environment has none: the embedded backend accepts any, boto3 insists on some.
LOCAL_CREDENTIALS = ("cloud-ws-local", "cloud-ws-local")


class OrchestratorPlugin(LifecycleHooks):
    """Emits deployment events to EventBridge without ever slowing the deployment.

    Hooks (see :class:`~plugin.hooks.LifecycleHooks`) serialize the event and
    queue it; one background thread batches the queue into PutEvents requests
    and retries them. Use :meth:`from_outputs` to build it from a stack.

    Example::

        with OrchestratorPlugin.from_outputs(".cloud-ws/outputs.json", environment="dev") as plugin:
            plugin.deployment_started("D1BRV40", total_layers=4)
            plugin.stack_deployed("D1BRV40", "network", duration_seconds=300, resource_count=15)
            plugin.deployment_completed("D1BRV40", "succeeded")
    """

    def __init__(
        self,
        event_bus_name: str,
        *,
        source: str = DEFAULT_EVENT_SOURCE,
        region: str | None = None,
        endpoint_url: str | None = None,
        environment: str | None = None,
        project: str | None = None,
        options: DeliveryOptions | None = None,
        client: Any = None,
        autostart: bool = True,
    ) -> None:
        """Create the plugin and start its sender.

        Args:
            event_bus_name: Name or ARN of the EventBridge bus.
            source: EventBridge ``Source``; must be the one the stack's rule matches.
            region: AWS region; boto3's usual lookup when omitted.
            endpoint_url: EventBridge endpoint, e.g. the local stack's ``aws_endpoint_url``.
            environment: Default ``environment`` of stack and log events.
            project: The project every deployment this plugin reports on belongs to
                (``detail.project``; absent: ``default``). The stack's access policy
                grants Cognito groups projects; a deployment's first stored event fixes
                its project, and events claiming another are refused.
            options: Queue bound, batching and retry settings.
            client: A ready EventBridge client (tests, custom sessions); built
                lazily on the sender thread when omitted, so construction stays cheap.
            autostart: Start the sender thread now. With False, events queue
                until :meth:`start`, :meth:`flush` or :meth:`close`.

        Raises:
            ValueError: an empty bus name or source.
        """
        if not isinstance(event_bus_name, str) or not event_bus_name:
            raise ValueError("event_bus_name must be a non-empty string")
        if not isinstance(source, str) or not source:
            raise ValueError("source must be a non-empty string")
        if project is not None and not is_valid_project(project):
            raise ValueError(f"project must match {PROJECT_PATTERN}, got {project!r}")
        self.project = project
        self.event_bus_name = event_bus_name
        self.source = source
        self.region = region
        self.endpoint_url = endpoint_url
        self.environment = environment
        self.options = options or DeliveryOptions()
        factory: Callable[[], Any] = (
            (lambda: client)
            if client is not None
            else (lambda: events_client(region=region, endpoint_url=endpoint_url, options=self.options))
        )
        self._sender = Sender(event_bus_name, source, factory, self.options)
        # One producer per plugin instance: its events are numbered per deployment, so the
        # broadcaster stores them in the order the hooks were called (docs/protocol.md).
        self.producer_id = uuid.uuid4().hex[:16]
        self._numbers: dict[str, int] = {}
        self._numbering = threading.Lock()
        if autostart:
            self._sender.start()

    @classmethod
    def from_outputs(
        cls,
        outputs: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        *,
        environment: str | None = None,
        project: str | None = None,
        options: DeliveryOptions | None = None,
        client: Any = None,
        autostart: bool = True,
    ) -> Self:
        """Build the plugin from a stack's outputs: a mapping, a JSON file, or the default file.

        Uses ``event_bus_name``, ``event_source``, ``region`` (``contract.outputs.PLUGIN_NEEDS``)
        and, when present, ``aws_endpoint_url`` (the local stack).

        Raises:
            contract.outputs.OutputsError: the outputs are missing, unreadable or
                lack one of those keys (the message names the file and the key).
        """
        values = contract.load_outputs(outputs, needs=contract.PLUGIN_NEEDS)
        endpoint = values.get(contract.AWS_ENDPOINT_URL)
        return cls(
            values[contract.EVENT_BUS_NAME],
            source=values[contract.EVENT_SOURCE],
            region=values[contract.REGION],
            endpoint_url=str(endpoint) if endpoint else None,
            environment=environment,
            project=project,
            options=options,
            client=client,
            autostart=autostart,
        )

    @never_raises
    def emit(self, event_type: str, deployment_id: str, data: Mapping[str, Any] | None = None) -> str | None:
        """Queue one event of any ``domain.verb`` type; its ``event_id``, or None if refused or dropped."""
        with self._numbering:  # numbered and queued under one lock: queue order is number order
            number = self._numbers.get(deployment_id, 0) + 1
            envelope = build_envelope(
                event_type, deployment_id, data, producer=(self.producer_id, number), project=self.project
            )
            self._numbers[deployment_id] = number
            accepted, shed = self._sender.offer_quietly(envelope)
        # Logged outside the lock: a logging handler may forward the warning to this plugin's hooks.
        self._sender.report_shed(shed)
        return envelope.event_id if accepted else None

    def refused(self, hook: str, reason: str) -> None:
        """Count and log a hook call that could not make an event."""
        self._sender.count_refused()
        super().refused(hook, reason)

    def automation(
        self,
        deployment_id: str,
        stack_name: str,
        *,
        environment: str | None = None,
        layer: int | None = None,
        progress_interval: float = 1.0,
    ) -> AutomationAdapter:
        """A callback to pass as ``on_event`` to a Pulumi Automation API ``stack.up(...)``."""
        return AutomationAdapter(
            self,
            deployment_id,
            stack_name,
            environment=environment,
            layer=layer,
            progress_interval=progress_interval,
        )

    def start(self) -> None:
        """Start sending (only needed after ``autostart=False``)."""
        self._sender.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every event queued so far is sent (or counted as lost); False on timeout."""
        return self._sender.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Send what is queued until ``timeout`` (default ``options.close_timeout``), then stop.

        Returns True when nothing was left undelivered at the deadline. Hooks
        called afterwards are counted as dropped. Idempotent.
        """
        return self._sender.close(timeout)

    @property
    def stats(self) -> DeliveryStats:
        """What happened to the events so far."""
        return self._sender.stats()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OrchestratorPlugin(event_bus_name={self.event_bus_name!r}, source={self.source!r})"


def events_client(
    *, region: str | None, endpoint_url: str | None, options: DeliveryOptions
) -> EventBridgeClient:
    """An EventBridge client with botocore's retries off: the sender does its own.

    botocore cannot see PutEvents partial failures (they are HTTP 200), and its
    retries would hold a batch for seconds without the sender knowing.
    """
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        user_agent_extra="cloud-ws-plugin",
    )
    key_id = secret = None
    if endpoint_url and _is_loopback(endpoint_url) and not os.environ.get("AWS_ACCESS_KEY_ID"):
        key_id, secret = LOCAL_CREDENTIALS
    # A session per client: boto3's default session is not safe to share across threads.
    session = boto3.session.Session()
    return session.client(
        "events",
        region_name=region,
        endpoint_url=endpoint_url,
        config=config,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
