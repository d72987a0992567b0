"""The @connections Management API stand-in under the tests' import path.

The code lives in :mod:`emulator.management_standin`, outside the tests, so the benchmarks
run the same stand-in (in process, or as ``python -m emulator.management_standin``) without
importing the tests' helpers."""

from __future__ import annotations

from emulator.management_standin import ManagementStandIn, main

__all__ = ["ManagementStandIn", "main"]

if __name__ == "__main__":
    # Kept so `python -m tests.support.management_standin` serves as it did before the move.
    main()
