"""What the handlers posted to a connection, read as clients read it: posts split into messages."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Stack


def posts(stack: Stack, connection_id: str) -> list[bytes]:
    """Every post a connection received, as sent (one or more ``\\n``-separated messages each)."""
    return list(stack.mgmt.received.get(connection_id, []))


def replies(stack: Stack, connection_id: str) -> list[dict[str, Any]]:
    """Every message a connection received, in order, each post split on ``\\n``."""
    return [json.loads(line) for post in posts(stack, connection_id) for line in post.split(b"\n") if line]
