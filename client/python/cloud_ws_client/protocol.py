"""The client side of the cloud-ws protocol, without I/O (sans-I/O).

:class:`ClientProtocol` knows which deployments are subscribed and where each
stream stands; it turns API calls into frames to send and received frames into
messages to deliver, in order and without duplicates. The connection code in
:mod:`cloud_ws_client.client` only moves frames and keeps time, so everything
here is tested without sockets.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from cloud_ws_client.messages import Event, MalformedMessage, Message, Subscribed, parse_message
from cloud_ws_client.sequence import DeploymentSequence

log = logging.getLogger("cloud_ws_client")

#: The server's rule for deployment ids, checked before a frame is sent.
DEPLOYMENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_DEPLOYMENT_ID_RE = re.compile(DEPLOYMENT_ID_PATTERN)

#: Error codes after which only a new connection helps (docs/protocol.md, Errors).
RECONNECT_ERROR_CODES = frozenset({"token_expired", "unknown_connection"})


def frame(action: str, **fields: Any) -> str:
    """One client frame: ``{"action": ..., **fields}`` as compact JSON (``None`` fields left out)."""
    body = {"action": action, **{key: value for key, value in fields.items() if value is not None}}
    return json.dumps(body, separators=(",", ":"))


PING_FRAME = frame("ping")


def check_deployment_id(deployment_id: str) -> str:
    """Return ``deployment_id`` if the server would accept it.

    Raises:
        ValueError: It does not match :data:`DEPLOYMENT_ID_PATTERN`.
    """
    if not isinstance(deployment_id, str) or not _DEPLOYMENT_ID_RE.fullmatch(deployment_id):
        raise ValueError(f"deployment_id must match {DEPLOYMENT_ID_PATTERN}, got {deployment_id!r:.80}")
    return deployment_id


class ClientProtocol:
    """Subscriptions, per-deployment ordering and gap repair.

    Args:
        gap_timeout: Seconds a gap in ``seq`` may last without progress before
            the deployment is resubscribed with ``since``.
        max_buffer: Most out-of-order events held per deployment.
    """

    def __init__(self, *, gap_timeout: float = 1.0, max_buffer: int = 10_000) -> None:
        self.gap_timeout = gap_timeout
        self.max_buffer = max_buffer
        self.repairs = 0
        """Resubscribes sent to fill a gap."""
        self.malformed = 0
        """Frames that could not be parsed (logged and skipped)."""
        self._streams: dict[str, DeploymentSequence] = {}

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The subscribed deployment ids, in subscription order."""
        return tuple(self._streams)

    @property
    def duplicates(self) -> int:
        """Events dropped as duplicates, over every deployment."""
        return sum(stream.duplicates for stream in self._streams.values())

    def position(self, deployment_id: str) -> int | None:
        """The last ``seq`` delivered in order for a deployment (``None`` if not known yet)."""
        stream = self._streams.get(deployment_id)
        return None if stream is None else stream.last_seq

    def subscribe(self, deployment_id: str, since: int | None = None) -> str:
        """Start (or refresh) a subscription; returns the frame to send.

        Args:
            deployment_id: The deployment to watch.
            since: Deliver stored events after this ``seq`` first (``0`` = the
                whole history); ``None`` = live events only. Ignored when the
                deployment is already subscribed: its stream keeps its
                position, and the frame asks for anything after it.

        Raises:
            ValueError: The deployment id or ``since`` would be refused.
        """
        check_deployment_id(deployment_id)
        if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
            raise ValueError(f"since must be a non-negative integer, got {since!r:.80}")
        stream = self._streams.get(deployment_id)
        if stream is None:
            stream = self._streams[deployment_id] = DeploymentSequence(since, self.max_buffer)
        return frame("subscribe", deployment_id=deployment_id, since=stream.last_seq)

    def unsubscribe(self, deployment_id: str) -> str:
        """Stop a subscription (its position is forgotten); returns the frame to send."""
        check_deployment_id(deployment_id)
        self._streams.pop(deployment_id, None)
        return frame("unsubscribe", deployment_id=deployment_id)

    def resubscribe_frames(self) -> list[str]:
        """Frames that restore every subscription on a new connection, each from its last ``seq``."""
        return [
            frame("subscribe", deployment_id=deployment_id, since=stream.last_seq)
            for deployment_id, stream in self._streams.items()
        ]

    def receive(self, text: str | bytes, now: float) -> list[Message]:
        """Take one received frame; returns the messages to deliver, in order.

        Events of subscribed deployments come out in ``seq`` order without
        duplicates (possibly several at once, when one fills a gap); events of
        other deployments are dropped; everything else passes through.
        """
        try:
            message = parse_message(text)
        except MalformedMessage as exc:
            self.malformed += 1
            log.warning("cloud-ws: skipped a malformed frame: %s", exc)
            return []
        if isinstance(message, Event):
            stream = self._streams.get(message.deployment_id)
            return [] if stream is None else list(stream.accept(message, now))
        if isinstance(message, Subscribed):
            stream = self._streams.get(message.deployment_id)
            if stream is not None:
                return [message, *stream.acknowledge(message.seq, now)]
        return [message]

    def repair(self, now: float) -> tuple[list[str], list[Message]]:
        """Gap repair due at ``now``: the resubscribe frames to send and any events now deliverable."""
        frames: list[str] = []
        released: list[Message] = []
        for deployment_id, stream in self._streams.items():
            if stream.repair_due(now, self.gap_timeout):
                since, events = stream.begin_repair(now)
                released.extend(events)
                self.repairs += 1
                log.info("cloud-ws: gap in %s after seq %s; asking again", deployment_id, since)
                frames.append(frame("subscribe", deployment_id=deployment_id, since=since))
        return frames, released

    def next_repair_at(self) -> float | None:
        """The earliest time a gap repair becomes due, or ``None`` without a gap."""
        deadlines = [
            deadline
            for stream in self._streams.values()
            if (deadline := stream.repair_deadline(self.gap_timeout)) is not None
        ]
        return min(deadlines, default=None)
