"""``cloud-ws emit TYPE DEPLOYMENT_ID --data JSON``: send one event through the plugin.

Exit codes: 0 once EventBridge accepted the event (its ``event_id`` is
printed), 1 when it could not be delivered before ``--timeout``, 2 for bad
arguments or outputs (one line on stderr), including ``data`` that a known
type (``deployment.status``, ``stack.*``, ``log.created``) cannot carry by
docs/asyncapi.yaml, or none at all.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from cloud_ws.connection import add_outputs_argument
from cloud_ws.event_schemas import check_data
from contract.authorization import PROJECT_PATTERN, is_valid_project
from contract.outputs import OutputsError
from contract.protocol import DEPLOYMENT_ID_PATTERN, is_valid_deployment_id, is_valid_event_type

#: Errors a retry within seconds cannot fix: a wrong bus, region or credentials.
FINAL_ERRORS = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "NoRegionError",
        "NoCredentialsError",
    }
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cloud-ws emit``."""
    parser.add_argument("type", metavar="TYPE", help="event type, a domain.verb such as deployment.status")
    parser.add_argument("deployment_id", metavar="DEPLOYMENT_ID", help="the deployment the event belongs to")
    parser.add_argument(
        "--data",
        default="{}",
        metavar="JSON",
        help='the event\'s data, a JSON object, e.g. \'{"status": "deploying"}\' (default: {})',
    )
    add_outputs_argument(parser)
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="how long to keep trying (default: 10)"
    )
    parser.add_argument(
        "--project",
        default=None,
        help="the project the deployment belongs to (default: default); the stack's access policy "
        "decides which groups may watch it",
    )


def run(args: argparse.Namespace) -> int:
    """Emit the event; returns the exit code."""
    try:
        data = json.loads(args.data)
    except ValueError as exc:
        return _fail(f"--data is not valid JSON ({exc})", 2)
    if not isinstance(data, dict):
        return _fail('--data must be a JSON object, e.g. \'{"status": "deploying"}\'', 2)
    if not is_valid_event_type(args.type):
        return _fail(f"TYPE must be a domain.verb such as deployment.status, not {args.type!r}", 2)
    if not is_valid_deployment_id(args.deployment_id):
        return _fail(f"DEPLOYMENT_ID must match {DEPLOYMENT_ID_PATTERN}", 2)
    if args.project is not None and not is_valid_project(args.project):
        return _fail(f"--project must match {PROJECT_PATTERN}, not {args.project!r}", 2)
    # Imported here, not at the top: the parser of every command is built on each
    # run, and the plugin pulls in boto3 (~150 ms).
    from plugin import OrchestratorPlugin  # noqa: PLC0415

    try:
        plugin = OrchestratorPlugin.from_outputs(args.outputs, project=args.project)
    except OutputsError as exc:
        return _fail(str(exc), 2)
    # After the outputs: a missing outputs file is the first thing to fix.
    problem = check_data(args.type, data)
    if problem is not None:  # the AsyncAPI document's schema of a known type's data
        plugin.close(0)
        return _fail(problem, 2)
    # The plugin's retry warnings would repeat the one line this command prints.
    logging.getLogger("cloud_ws.plugin").setLevel(logging.ERROR)
    event_id = plugin.emit(args.type, args.deployment_id, data)
    deadline = time.monotonic() + args.timeout
    # The plugin retries an unreachable bus for as long as it is given; a person
    # at a terminal wants to hear at once about a mistake no retry will fix.
    while not plugin.flush(0.05) and time.monotonic() < deadline:
        if plugin.stats.last_error_code in FINAL_ERRORS:
            break
    plugin.close(0)
    stats = plugin.stats
    if event_id is None or stats.sent != 1:
        reason = stats.last_error or f"no answer within {args.timeout:g} s"
        return _fail(f"event not delivered to bus {plugin.event_bus_name}: {reason}", 1)
    print(event_id)
    return 0


def _fail(message: str, code: int) -> int:
    print(f"cloud-ws emit: {' '.join(message.split())}", file=sys.stderr)
    return code
