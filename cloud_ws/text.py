"""Times and durations as the commands print them (the monitor's views, a refused token's age)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime


def parse_time(timestamp: str | None) -> datetime | None:
    """An ISO timestamp as an aware datetime, or None."""
    # Imported here: building the CLI parser must not pay for the client.
    from cloud_ws_client.state import parse_timestamp  # noqa: PLC0415

    return parse_timestamp(timestamp)


def format_duration(seconds: float | None) -> str:
    """Whole seconds, with minutes past a minute: ``"42s"``, ``"3m 07s"`` (``""`` when unknown)."""
    if seconds is None:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def format_duration_fine(seconds: float | None) -> str:
    """A resource's duration: tenths under 10 s (most steps take a few), else as :func:`format_duration`."""
    if seconds is None:
        return ""
    return f"{seconds:.1f}s" if seconds < 10 else format_duration(seconds)


def format_clock(timestamp: str | None) -> str:
    """``HH:MM:SS`` of an ISO timestamp (as sent), or blanks."""
    return parsed.strftime("%H:%M:%S") if (parsed := parse_time(timestamp)) else "--:--:--"
