"""The integration suite's one local stack (tests/support/local_stack.py starts and drives it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.local_stack import LocalStackProcess, start_local_stack, stop_local_stack


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackProcess]:
    """One local stack for the whole session (starting one takes a few seconds)."""
    stack = start_local_stack(tmp_path_factory.mktemp("local-stack"))
    yield stack
    assert stop_local_stack(stack) == 0
    assert not stack.outputs_path.exists(), "a stopped stack must not leave its outputs behind"
