"""The delivery docs state the numbers the component deploys, and the guides link them."""

from __future__ import annotations

import re

from handlers import spec
from pulumi_component.websocket_monitoring import (
    DEAD_LETTER_RETENTION_SECONDS,
    DELIVERY_RETENTION_SECONDS,
    visibility_timeout,
)
from tests.test_component.conftest import ROOT

DOCS = ROOT / "docs"


def test_deploying_and_operations_link_the_delivery_doc() -> None:
    for guide in ("deploying.md", "operations.md"):
        assert "(delivery.md)" in (DOCS / guide).read_text(), guide


def test_delivery_doc_states_the_spec_numbers() -> None:
    text = re.sub(r"\s+", " ", (DOCS / "delivery.md").read_text())
    delivery = spec.DELIVERY
    assert f"batches of ≤ {delivery.batch_size}" in text
    assert delivery.max_batching_window_seconds == 0
    assert "no batching window" in text
    assert f"`max_receive_count` ({delivery.max_receive_count})" in text
    assert f"`retry_visibility_seconds` ({delivery.retry_visibility_seconds} s)" in text
    assert f"`fanout_page_size` ({delivery.fanout_page_size:,})" in text
    timeout = delivery.function_timeout_seconds
    assert f"{visibility_timeout(timeout)} s for the {timeout} s broadcaster" in text
    assert f"DLQ ({DEAD_LETTER_RETENTION_SECONDS // 86400} days)" in text
    assert f"retention ({DELIVERY_RETENTION_SECONDS // 86400} days)" in text
