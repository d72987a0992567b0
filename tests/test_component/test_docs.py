"""The delivery docs state the numbers the component deploys, and the guides link them."""

from __future__ import annotations

import re
import runpy
from typing import Any

from contract import spec
from pulumi_component.settings import DEFAULTS
from pulumi_component.websocket_monitoring import (
    DEAD_LETTER_RETENTION_SECONDS,
    DELIVERY_RETENTION_SECONDS,
    visibility_timeout,
)
from tests.test_component.conftest import PROGRAM, ROOT

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


def _documented(value: Any) -> str:
    """A default as the configuration tables write it."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{value}`"
    return f"{value:g}"


def test_configuration_tables_state_the_component_defaults() -> None:
    """docs/deploying.md and docs/design.md give each configuration key the default of DEFAULTS."""
    config_keys: dict[str, str] = runpy.run_path(str(PROGRAM), run_name="program")["CONFIG_KEYS"]
    by_key = {key: field for field, key in config_keys.items()}
    for doc in ("deploying.md", "design.md"):
        checked = 0
        for line in (DOCS / doc).read_text().splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if len(cells) != 3:
                continue
            keys = re.findall(r"`(\w+)`", cells[0])
            if not keys or not all(key in by_key for key in keys):
                continue
            defaults = [part.strip() for part in cells[2].split(",")]
            for position, key in enumerate(keys):
                field = by_key[key]
                if field in DEFAULTS:
                    assert defaults[position] == _documented(DEFAULTS[field]), (doc, key, cells[2])
                    checked += 1
        assert checked >= 5, doc
