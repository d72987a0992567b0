"""The resources of one stack, folded from its ``stack.progress`` events (``cloud-ws monitor --stack``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cloud_ws.text import parse_time

#: Of the resource lines the live view shows, the last finished ones it keeps when many are running.
MIN_FINISHED_LINES = 3
#: The statuses of a ``resources`` entry (docs/asyncapi.yaml ``ResourceStep``).
RESOURCE_STATUSES = frozenset({"running", "done", "failed"})


@dataclass
class Resource:
    """One resource of a stack, as the latest ``resources`` entry about it says."""

    name: str
    type: str
    operation: str
    status: str
    duration_seconds: float | None
    #: When it was first reported running (the event's time), for a running one's clock.
    started_at: datetime | None
    #: Order of its latest change (the last finished ones are the highest).
    changed: int


def resource_entries(data: Mapping[str, Any]) -> list[tuple[str, str, str, str, float | None]]:
    """The well-formed ``resources`` entries of a ``stack.progress``'s data, as
    ``(name, type, operation, status, duration_seconds)``; others are skipped."""
    entries = data.get("resources")
    if not isinstance(entries, list):
        return []
    parsed = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name, status = entry.get("name"), entry.get("status")
        if not isinstance(name, str) or status not in RESOURCE_STATUSES:
            continue
        type_, operation, duration = entry.get("type"), entry.get("operation"), entry.get("duration_seconds")
        parsed.append(
            (
                name,
                type_ if isinstance(type_, str) else "",
                operation if isinstance(operation, str) else "",
                str(status),
                float(duration)
                if isinstance(duration, int | float) and not isinstance(duration, bool) and duration >= 0
                else None,
            )
        )
    return parsed


class ResourceBoard:
    """One stack's resources, folded from its ``stack.progress`` events' ``resources`` entries.

    By type and name, the later entry winning (each entry is a step that
    started or ended since the producer's previous event). The server's fold
    and snapshot do not carry them: a monitor that joined late knows the
    resources of the events it received.
    """

    def __init__(self) -> None:
        self.resources: dict[tuple[str, str], Resource] = {}
        self._changes = 0

    def clear(self) -> None:
        """Forget every resource (a new attempt, a history that went back)."""
        self.resources.clear()

    def apply(self, data: Mapping[str, Any], timestamp: str | None) -> None:
        """Fold one ``stack.progress``'s entries."""
        at = parse_time(timestamp)
        for name, type_, operation, status, duration in resource_entries(data):
            key = (type_, name)
            previous = self.resources.get(key)
            still = previous is not None and previous.status == "running" and previous.operation == operation
            self._changes += 1
            self.resources[key] = Resource(
                name=name,
                type=type_,
                operation=operation,
                status=status,
                duration_seconds=duration,
                started_at=previous.started_at if still and previous else at if status == "running" else None,
                changed=self._changes,
            )

    def counts(self) -> dict[str, int]:
        """How many resources are running, done and failed."""
        counts = dict.fromkeys(("running", "done", "failed"), 0)
        for resource in self.resources.values():
            counts[resource.status] += 1
        return counts

    def lines(self, room: int) -> tuple[list[Resource], int]:
        """At most ``room`` resources to show: the last finished ones (oldest first), then the
        running ones (longest running first); and how many running ones did not fit."""
        if room <= 0:
            return [], sum(1 for r in self.resources.values() if r.status == "running")
        running = [r for r in self.resources.values() if r.status == "running"]
        finished = sorted(
            (r for r in self.resources.values() if r.status != "running"), key=lambda r: r.changed
        )
        keep_finished = min(len(finished), max(room - len(running), min(MIN_FINISHED_LINES, room // 2)))
        shown_running = running[: room - keep_finished]
        shown = (finished[-keep_finished:] if keep_finished else []) + shown_running
        return shown, len(running) - len(shown_running)
