"""What the handlers posted to a connection, read as clients read it: posts split into messages."""

from __future__ import annotations

import json
from typing import Any

from tests.support.moto_stack import Stack


def posts(stack: Stack, connection_id: str) -> list[bytes]:
    """Every post a connection received, as sent (one or more ``\\n``-separated messages each)."""
    return list(stack.mgmt.received.get(connection_id, []))


def replies(stack: Stack, connection_id: str, snapshots: bool = False) -> list[dict[str, Any]]:
    """Every message a connection received, in order, each post split on ``\\n``.

    The ``deployment.snapshot`` that follows every ``subscribed`` is left out
    unless ``snapshots`` (tests/test_handlers/test_snapshot.py checks it).
    """
    messages = [
        json.loads(line) for post in posts(stack, connection_id) for line in post.split(b"\n") if line
    ]
    return [m for m in messages if snapshots or m.get("type") != "deployment.snapshot"]
