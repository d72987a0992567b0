"""``list_deployments``: recent deployments the caller may watch, newest first.

Only deployments whose project one of the caller's groups is granted are
listed (``contract.authorization``); the others are left out, not marked.

Each deployment's counter item carries a summary of its state (status,
attempt, layer, environment, time of its latest event), indexed by that time
under one of a few shard keys (``contract.keys``: no single index partition
takes every deployment's writes); a Query per shard, newest first, merged,
gives the list without reading any deployment's events.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from contract import protocol
from contract.authorization import DEFAULT_PROJECT, granted, grants_of
from server.messages import Request, live_connection, message_handler

ACTION = "list_deployments"


def act(request: Request) -> Iterator[bytes]:
    """Validate ``limit``, check who asks, answer ``deployments``."""
    runtime = request.runtime
    config, store = runtime.config, runtime.store
    limit = protocol.validate_limit(request.frame.body.get("limit"), ACTION)
    connection = live_connection(request, ACTION)
    grants = grants_of(connection.groups, config.access, config.subscribe_groups)
    rows: list[dict[str, Any]] = []
    if not grants:  # nothing would pass: no need to read the list
        yield protocol.encode(protocol.deployments(rows, request.request_id))
        return
    for row in store.deployments(page_size=min(100, limit * 2)):
        if granted(grants, str(row.summary.get("project") or DEFAULT_PROJECT)):
            rows.append(row.summary)
        if len(rows) >= limit:
            break
    yield protocol.encode(protocol.deployments(rows, request.request_id))


handler = message_handler(ACTION, act)
