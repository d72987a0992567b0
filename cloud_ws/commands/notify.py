"""``cloud-ws notify test``: send a sample attempt outcome to whatever notifications are configured.

The sample goes where real outcomes go: onto the stack's notifications bus
(``notification_bus_name`` in the outputs), whose rules hand it to the SNS
topic and to every webhook whose project and outcome filters match it; against
``cloud-ws local`` the embedded SNS and the webhooks posted for real. It is
marked a sample (``[sample]``, deployment ``cloud-ws-notify-test``).

Exit codes: 0 once the bus accepted it, 1 when it did not, 2 for bad
arguments or outputs without a notifications bus (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cloud_ws.connection import add_outputs_argument
from contract import notifications as notify
from contract import outputs as contract

#: What the command reads from the outputs.
NEEDS = (contract.NOTIFICATION_BUS_NAME, contract.REGION)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cloud-ws notify``."""
    parser.add_argument("action", choices=["test"], help="test: send a sample outcome to what is configured")
    add_outputs_argument(parser)
    parser.add_argument(
        "--project", default=notify.DEFAULT_PROJECT, help="the sample's project (filters match on it)"
    )
    parser.add_argument(
        "--outcome", default="failed", choices=notify.OUTCOMES, help="the sample's outcome (default: failed)"
    )
    parser.add_argument(
        "--dashboard-url", default=None, metavar="URL", help="the dashboard the sample links to"
    )


def run(args: argparse.Namespace, client: Any = None) -> int:
    """Put the sample on the notifications bus; returns the exit code."""
    try:
        outputs = contract.load_outputs(args.outputs, needs=NEEDS)
    except contract.OutputsError as exc:
        if contract.NOTIFICATION_BUS_NAME in str(exc):
            return _fail(f"{exc}: the stack has no notifications configured (docs/notifications.md)", 2)
        return _fail(str(exc), 2)
    dashboard = args.dashboard_url or outputs.get(contract.DASHBOARD_URL)
    sample = notify.sample_outcome(dashboard, project=args.project, outcome=args.outcome)
    bus = str(outputs[contract.NOTIFICATION_BUS_NAME])
    events = client or _events_client(outputs)
    try:
        reply = events.put_events(Entries=[sample.entry(bus)])
    except Exception as exc:  # noqa: BLE001 - one line for any failure: credentials, network, bus
        return _fail(f"could not put the sample on {bus}: {exc}", 1)
    if reply.get("FailedEntryCount"):
        return _fail(f"{bus} refused the sample: {reply.get('Entries')}", 1)
    topic = outputs.get(contract.NOTIFICATION_TOPIC_ARN)
    print(f"sent a sample {args.outcome} outcome of project {args.project} to {bus}")
    print(f"  {sample.summary}")
    if topic:
        print(f"  the topic {topic} and every webhook whose filters match it get it")
    else:
        print("  every webhook whose filters match it gets it")
    return 0


def _events_client(outputs: dict[str, Any]) -> Any:
    from plugin.orchestrator import events_client  # noqa: PLC0415 - boto3 only when sending
    from plugin.sender import DeliveryOptions  # noqa: PLC0415

    endpoint = outputs.get(contract.AWS_ENDPOINT_URL)
    return events_client(
        region=str(outputs[contract.REGION]),
        endpoint_url=str(endpoint) if endpoint else None,
        options=DeliveryOptions(),
    )


def _fail(message: str, code: int) -> int:
    print(f"cloud-ws notify: {message}", file=sys.stderr)
    return code
