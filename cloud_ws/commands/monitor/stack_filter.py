"""``cloud-ws monitor --stack NAME``: a view in front of another that shows only one stack's part."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from cloud_ws.commands.monitor.live import LiveView
from cloud_ws.commands.monitor.resources import ResourceBoard
from cloud_ws.commands.monitor.views import PlainView

if TYPE_CHECKING:
    from cloud_ws.commands.monitor.views import View
    from cloud_ws_client import DeploymentState, Message
    from cloud_ws_client.messages import DeploymentSnapshot


class StackFilter:
    """Shows another view only one stack's part of the deployment.

    Events about other stacks, and log lines of other stacks (or of none),
    are not shown; the deployment's own status still is, and so is what the
    view draws from the state (header, progress), with only that stack's row
    and log lines. The stack's resources are folded here (:class:`ResourceBoard`)
    and handed to the views that draw them.
    """

    def __init__(self, view: View, stack_name: str) -> None:
        self.view = view
        self.stack_name = stack_name
        self.resources = ResourceBoard()
        self._attempt: int | None = None
        if isinstance(view, LiveView | PlainView):
            view.resources = self.resources

    def start(self, state: DeploymentState) -> None:
        """Start the view on the filtered state."""
        self.view.start(self._state(state))

    def show(self, message: Message, state: DeploymentState) -> None:
        """Pass the message on if it is about the stack (or the deployment itself)."""
        from cloud_ws_client import DeploymentSnapshot, Event, HistoryReset  # noqa: PLC0415

        # A new attempt deploys the stack afresh; a history that went back is another history.
        new_attempt = self._attempt is not None and state.attempt != self._attempt
        if isinstance(message, HistoryReset) or new_attempt:
            self.resources.clear()
        self._attempt = state.attempt
        if isinstance(message, DeploymentSnapshot):
            message = self._snapshot(message)
        elif (
            isinstance(message, Event)
            and message.type != "deployment.status"
            and message.data.get("stack_name") != self.stack_name
        ):
            return
        if isinstance(message, Event) and message.type == "stack.progress":
            self.resources.apply(message.data, message.timestamp)
        self.view.show(message, self._state(state))

    def stop(self, state: DeploymentState) -> None:
        """Stop the view."""
        self.view.stop(self._state(state))

    def hint(self, text: str) -> None:
        """Pass the hint on."""
        self.view.hint(text)

    def _state(self, state: DeploymentState) -> DeploymentState:
        """A copy of the state with only the stack and its log lines (the views only read it)."""
        from dataclasses import replace  # noqa: PLC0415

        return replace(
            state,
            stacks={name: stack for name, stack in state.stacks.items() if name == self.stack_name},
            recent_logs=[line for line in state.recent_logs if line.stack_name == self.stack_name],
        )

    def _snapshot(self, snapshot: DeploymentSnapshot) -> DeploymentSnapshot:
        from cloud_ws_client import parse_message  # noqa: PLC0415

        raw = dict(snapshot.raw)
        data = dict(raw.get("data") or {})
        stacks = data.get("stacks") or {}
        data["stacks"] = {name: value for name, value in stacks.items() if name == self.stack_name}
        logs = data.get("recent_logs") or []
        data["recent_logs"] = [
            line for line in logs if isinstance(line, dict) and line.get("stack_name") == self.stack_name
        ]
        filtered = parse_message(json.dumps({**raw, "data": data}))
        return filtered if isinstance(filtered, type(snapshot)) else snapshot
