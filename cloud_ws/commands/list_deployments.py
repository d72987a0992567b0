"""``cloud-ws list``: the recent deployments the caller may watch, newest first, printed once.

One ``list_deployments`` request over a WebSocket connection (the same
connection, token and outputs as ``cloud-ws monitor``:
:mod:`cloud_ws.connection`); the table shows each
deployment's status, attempt, layer, environment and the age of its latest
event. ``--json`` prints the server's ``deployments`` objects as one JSON
array instead.

Exit codes: 0 once printed; 2 for a refused token, an unreachable endpoint,
a refused request or bad arguments; 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from cloud_ws.connection import add_connection_arguments, build_client, explain_refusal, given_token
from contract.outputs import OutputsError

if TYPE_CHECKING:
    from cloud_ws_client import CloudWebSocketClient

DEFAULT_LIMIT = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cloud-ws list``."""
    add_connection_arguments(parser)
    parser.add_argument(
        "--json", action="store_true", dest="as_json", help="print the deployments as one JSON array"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"at most this many, 1 to 200 (default: {DEFAULT_LIMIT})",
    )


def run(args: argparse.Namespace) -> int:
    """Print the deployments once; returns the exit code."""
    from cloud_ws_client import CloudWsError  # noqa: PLC0415

    try:
        client = build_client(args)
        rows = asyncio.run(fetch(client, args.limit))
    except KeyboardInterrupt:
        return 130
    except (OutputsError, CloudWsError, ValueError, OSError) as exc:
        message = explain_refusal(exc, given_token(args))
        print(f"cloud-ws list: {' '.join(message.split())}", file=sys.stderr)
        return 2
    if args.as_json:
        print(json.dumps(rows, ensure_ascii=False), flush=True)
    else:
        print_table(rows, sys.stdout)
    return 0


async def fetch(client: CloudWebSocketClient, limit: int) -> list[dict[str, Any]]:
    """Connect, ask once, disconnect.

    Raises:
        CloudWsError: The token was refused, the endpoint unreachable, or the request refused.
    """
    await client.connect()
    try:
        return await client.list_deployments(limit)
    finally:
        await client.disconnect()


COLUMNS = ("DEPLOYMENT", "STATUS", "ATTEMPT", "LAYER", "ENVIRONMENT", "UPDATED")


def print_table(rows: list[dict[str, Any]], out: TextIO, now: datetime | None = None) -> None:
    """The deployments as aligned columns (a line saying so when there are none)."""
    if not rows:
        print("no deployments yet", file=out)
        return
    now = now or datetime.now(UTC)
    table = [COLUMNS, *(row_cells(row, now) for row in rows)]
    widths = [max(len(cells[index]) for cells in table) for index in range(len(COLUMNS))]
    for cells in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip(), file=out
        )


def row_cells(row: Mapping[str, Any], now: datetime) -> tuple[str, ...]:
    """One deployment's cells."""
    layer, total = row.get("current_layer"), row.get("total_layers")
    return (
        str(row.get("deployment_id", "")),
        str(row.get("status") or "pending"),
        str(row.get("attempt") or 0),
        f"{layer if layer is not None else '-'}/{total if total is not None else '?'}",
        str(row.get("environment") or "-"),
        age(row.get("updated_at"), now),
    )


def age(timestamp: Any, now: datetime) -> str:
    """How long ago ``timestamp`` was, in the largest whole unit (``"-"`` when unknown)."""
    from cloud_ws_client.state import parse_timestamp  # noqa: PLC0415

    when = parse_timestamp(timestamp if isinstance(timestamp, str) else None)
    if when is None:
        return "-"
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"
