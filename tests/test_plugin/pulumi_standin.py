"""The stand-in ``pulumi`` for ``cloud-ws pulumi`` under the tests' import path.

The code lives in :mod:`emulator.pulumi_standin`, outside the tests, so
bench/bench_pulumi_wrapper.py runs the same stand-in without importing the tests' helpers."""

from __future__ import annotations

from emulator.pulumi_standin import (
    PROJECT,
    SCENARIO_ENV,
    STANDIN,
    install,
    interrupted_events,
    path_with,
    scenario,
    update_events,
    urn,
)

__all__ = [
    "PROJECT",
    "SCENARIO_ENV",
    "STANDIN",
    "install",
    "interrupted_events",
    "path_with",
    "scenario",
    "update_events",
    "urn",
]
