"""The watch loop of ``cloud-ws monitor``: subscribe, start from the snapshot, fold, show, exit code.

It knows nothing of how messages are drawn: it hands every message and the
state folded so far to a :class:`~cloud_ws.commands.monitor.views.View`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from cloud_ws.connection import explain_refusal

if TYPE_CHECKING:
    from cloud_ws.commands.monitor.views import View
    from cloud_ws_client import CloudWebSocketClient, DeploymentState

#: Refusals of our ``subscribe`` that waiting cannot fix.
FATAL_SUBSCRIBE_ERRORS = frozenset(
    {"forbidden", "invalid_deployment_id", "invalid_since", "too_many_subscriptions"}
)
#: After this long with nothing reported on the deployment, the monitor says how to check the id.
HINT_SECONDS = 30.0


async def watch(
    client: CloudWebSocketClient,
    deployment_id: str,
    view: View,
    *,
    until_complete: bool,
    token: str | None = None,
    hint_after: float | None = HINT_SECONDS,
) -> int:
    """Connect, start from the snapshot, follow the deployment, show every message; return the exit code.

    ``token`` (the one given, if any) lets a refused handshake say whether it
    expired or is no token at all; after ``hint_after`` seconds with nothing
    reported on the deployment, the view is given a hint to check the id.
    """
    from cloud_ws_client import (  # noqa: PLC0415
        CloudWsError,
        DeploymentSnapshot,
        DeploymentState,
        ErrorMessage,
        Event,
        HistoryReset,
    )

    state = DeploymentState(deployment_id)
    # The attempt whose end --until-complete waits for, known from the first snapshot.
    target: int | None = None
    started = False
    try:
        # Live events only: the snapshot that follows the acknowledgement stands for the history.
        await client.subscribe(deployment_id)
        await client.connect()
    except (CloudWsError, ValueError) as exc:
        return fail(explain_refusal(exc, token))
    view.start(state)
    error: str | None = None
    hint = None if hint_after is None else asyncio.create_task(_hint_later(view, state, hint_after))
    try:
        async for message in client.messages():
            if isinstance(message, HistoryReset) and message.deployment_id == deployment_id:
                # The server's history went back (a restarted local stack, a reused id): what was
                # folded belongs to a history that is gone. Start again from the snapshot that
                # follows, and wait for the end of the attempt it shows (or of the next one).
                state = DeploymentState(deployment_id)
                started, target = False, None
            if isinstance(message, DeploymentSnapshot):
                if not started and message.deployment_id == deployment_id:
                    started = True
                    # The starting point. A later snapshot (after a gap repair) is only shown:
                    # the replay that follows it brings the events themselves, and folding
                    # them keeps each field's exact order key and shows the terminal event.
                    state.apply_snapshot(message)
                    target = following_attempt(state)
            elif isinstance(message, Event):
                state.apply(message)
                if target is None:  # a server that sends no snapshot: the running attempt
                    target = max(state.attempt, 1)
            view.show(message, state)
            if (
                isinstance(message, ErrorMessage)
                and message.action == "subscribe"
                and message.code in FATAL_SUBSCRIBE_ERRORS
                # Errors name the deployment they refuse; one without a name is ours too,
                # as this client subscribes to nothing else.
                and message.deployment_id in (None, deployment_id)
            ):
                error = f"{message.code}: {message.message}"
                break
            if until_complete and target is not None and state.is_complete and state.attempt >= target:
                break
    except CloudWsError as exc:  # a reconnect refused (401/403) or impossible
        error = explain_refusal(exc, token)
    finally:
        if hint is not None:
            hint.cancel()
        view.stop(state)
        await client.disconnect()
    if error is not None:
        return fail(error)
    return 0 if state.succeeded else 1


async def _hint_later(view: View, state: DeploymentState, after: float) -> None:
    """Once ``after`` seconds have passed with nothing reported on the deployment, hint at the id."""
    await asyncio.sleep(after)
    if state.attempt == 0 and state.events == 0:
        view.hint(
            f"no events yet for {state.deployment_id}; check the id with `cloud-ws list` (still waiting)"
        )


def following_attempt(state: DeploymentState) -> int:
    """The attempt ``--until-complete`` ends with, seen from the snapshot the monitor started from.

    The running attempt, or the one that ended (the monitor then exits at
    once); attempt 1 when nothing was reported yet.
    """
    return max(state.attempt, 1)


def fail(message: str) -> int:
    """Say why the monitor stops, in one line on stderr; returns its exit code, 2."""
    print(f"cloud-ws monitor: {' '.join(message.split())}", file=sys.stderr)
    return 2
