"""CPU time of the processes a benchmark drives, read from ``/proc`` around a measurement.

Wall-clock rates on a 2-core machine say little about *why* a path is slow:
the stack, the embedded backend, the producer and the clients all share the
cores. What each process spent per event says which one to make cheaper, and
the sum says what the cores allow at best (``cores / cpu_per_event``).

Linux only (``/proc/<pid>/stat``); elsewhere every reading is ``None`` and the
benchmark prints nothing about CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds process ``pid`` has used (all its threads); None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: fields are counted after its closing parenthesis.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (empty when unknown)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def command(pid: int) -> str:
    """A process's command line, space-separated ('' when unknown)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return ""


@dataclass
class CpuMeter:
    """CPU seconds per named process between :meth:`start` and :meth:`stop`.

    ``roles`` maps a name to a pid; a process that has ended by :meth:`stop`
    is left out rather than guessed.
    """

    roles: dict[str, int]

    def __post_init__(self) -> None:
        self._before: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def start(self) -> None:
        """Read every role's CPU time now."""
        self._before = {
            name: cpu for name, pid in self.roles.items() if (cpu := process_cpu(pid)) is not None
        }

    def stop(self) -> dict[str, float]:
        """CPU seconds each role spent since :meth:`start`."""
        self.spent = {}
        for name, before in self._before.items():
            after = process_cpu(self.roles[name])
            if after is not None:
                self.spent[name] = after - before
        return self.spent

    def per_event(self, events: int) -> str:
        """'stack 4.6 ms, backend 4.3 ms, … = 9.4 ms of CPU per event: N cores allow R events/s'."""
        if not self.spent or events <= 0:
            return ""
        total = sum(self.spent.values())
        parts = ", ".join(f"{name} {seconds / events * 1000:.2f}" for name, seconds in self.spent.items())
        cores = os.cpu_count() or 1
        ceiling = cores * events / total if total > 0 else float("inf")
        return (
            f"CPU per event (ms): {parts}; {total / events * 1000:.2f} in all, "
            f"so {cores} cores allow at most {ceiling:,.0f} events/s"
        )
