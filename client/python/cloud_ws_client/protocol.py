"""The client side of the cloud-ws protocol, without I/O (sans-I/O).

:class:`ClientProtocol` knows which deployments are subscribed and where each
stream stands; it turns API calls into frames to send and received frames into
messages to deliver, in order and without duplicates. The connection code in
:mod:`cloud_ws_client.connections` only moves frames and keeps time, so everything
here is tested without sockets.

Every request carries an ``id`` and every reply echoes it. API Gateway may
run one connection's frames concurrently, so replies are matched by ``id``,
never by the order they come in; a reply whose ``id`` this protocol never
sent (or already matched) answers nothing and changes nothing.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from cloud_ws_client._protocol_generated import DEFAULT_LIST_LIMIT as DEFAULT_LIST_LIMIT
from cloud_ws_client._protocol_generated import DEPLOYMENT_ID_PATTERN as DEPLOYMENT_ID_PATTERN
from cloud_ws_client._protocol_generated import ERROR_CODES as ERROR_CODES
from cloud_ws_client._protocol_generated import MAX_LIST_LIMIT as MAX_LIST_LIMIT
from cloud_ws_client._protocol_generated import RECONNECT_ERROR_CODES as RECONNECT_ERROR_CODES
from cloud_ws_client._protocol_generated import REFUSED_SUBSCRIPTION_CODES as REFUSED_SUBSCRIPTION_CODES
from cloud_ws_client.messages import (
    Deployments,
    DeploymentSnapshot,
    ErrorMessage,
    Event,
    HistoryReset,
    MalformedMessage,
    Message,
    Pong,
    Subscribed,
    Unsubscribed,
    parse_message,
    split_frame,
)
from cloud_ws_client.sequence import DeploymentSequence

log = logging.getLogger("cloud_ws_client")

# The protocol constants are generated from conformance/protocol.json (tools/gen_protocol.py),
# the one source the server is tested against (tests/test_client/test_contract.py): this
# package must not import the server code. Re-exported here under their usual names.
_DEPLOYMENT_ID_RE = re.compile(DEPLOYMENT_ID_PATTERN)

#: Requests awaiting a reply that are remembered; past it the oldest are forgotten (a reply to
#: one of them is then ignored). Replies to requests on a connection that closed never come.
MAX_PENDING_REQUESTS = 4096


def frame(action: str, **fields: Any) -> str:
    """One client frame: ``{"action": ..., **fields}`` as compact JSON (``None`` fields left out)."""
    body = {"action": action, **{key: value for key, value in fields.items() if value is not None}}
    return json.dumps(body, separators=(",", ":"))


PING_FRAME = frame("ping")
"""A ``ping`` without ``id`` (its ``pong`` cannot be matched; :meth:`ClientProtocol.ping` sends ids)."""


@dataclass(frozen=True)
class Outgoing:
    """A frame to send, and the ``id`` its reply will carry."""

    text: str
    request_id: str
    action: str
    deployment_id: str | None = None
    since: int | None = None
    """A ``subscribe``'s ``since``: with its acknowledgement's ``replay``, it shows a capped replay."""


def check_deployment_id(deployment_id: str) -> str:
    """Return ``deployment_id`` if the server would accept it.

    Raises:
        ValueError: It does not match :data:`DEPLOYMENT_ID_PATTERN`.
    """
    if not isinstance(deployment_id, str) or not _DEPLOYMENT_ID_RE.fullmatch(deployment_id):
        raise ValueError(f"deployment_id must match {DEPLOYMENT_ID_PATTERN}, got {deployment_id!r:.80}")
    return deployment_id


class ClientProtocol:
    """Subscriptions, per-deployment ordering, gap repair and request ids.

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
        self.catch_ups = 0
        """Times a ``pong``'s ``latest`` showed a deployment ahead of what was delivered."""
        self.malformed = 0
        """Messages that could not be parsed (logged and skipped)."""
        self.unmatched = 0
        """Replies whose ``id`` answers no request of ours (ignored)."""
        self.history_resets = 0
        """Deployments whose history went backwards (a :class:`HistoryReset` was delivered)."""
        self._streams: dict[str, DeploymentSequence] = {}
        self._pending: OrderedDict[str, Outgoing] = OrderedDict()
        self._last_id = 0

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The subscribed deployment ids, in subscription order."""
        return tuple(self._streams)

    @property
    def duplicates(self) -> int:
        """Events dropped as duplicates, over every deployment."""
        return sum(stream.duplicates for stream in self._streams.values())

    @property
    def pending(self) -> int:
        """Requests sent whose reply has not come yet."""
        return len(self._pending)

    def position(self, deployment_id: str) -> int | None:
        """The last ``seq`` delivered in order for a deployment (``None`` if not known yet)."""
        stream = self._streams.get(deployment_id)
        return None if stream is None else stream.last_seq

    def _request(self, action: str, deployment_id: str | None = None, **fields: Any) -> Outgoing:
        """A request frame with a fresh ``id``, remembered until its reply comes."""
        self._last_id += 1
        request_id = str(self._last_id)
        outgoing = Outgoing(
            frame(action, deployment_id=deployment_id, **fields, id=request_id),
            request_id,
            action,
            deployment_id,
            fields.get("since"),
        )
        self._pending[request_id] = outgoing
        while len(self._pending) > MAX_PENDING_REQUESTS:
            self._pending.popitem(last=False)
        return outgoing

    def subscribe(self, deployment_id: str, since: int | None = None) -> Outgoing:
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
        return self._request("subscribe", deployment_id, since=stream.last_seq)

    def unsubscribe(self, deployment_id: str) -> Outgoing:
        """Stop a subscription (its position is forgotten); returns the frame to send."""
        check_deployment_id(deployment_id)
        self._streams.pop(deployment_id, None)
        return self._request("unsubscribe", deployment_id)

    def list_deployments(self, limit: int = DEFAULT_LIST_LIMIT) -> Outgoing:
        """Ask for the deployments the caller may watch, newest first; the reply is ``deployments``.

        Raises:
            ValueError: ``limit`` is not an integer from 1 to :data:`MAX_LIST_LIMIT`.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}, got {limit!r:.80}")
        return self._request("list_deployments", limit=limit)

    def ping(self) -> Outgoing:
        """A keep-alive ``ping``; its ``pong`` echoes the returned ``request_id``."""
        return self._request("ping")

    def resubscribe_frames(self) -> list[Outgoing]:
        """Frames that restore every subscription on a new connection, each from its last ``seq``."""
        return [
            self._request("subscribe", deployment_id, since=stream.last_seq)
            for deployment_id, stream in self._streams.items()
        ]

    def forget(self, request_ids: list[str] | set[str]) -> None:
        """Stop waiting for replies that can no longer come (their connection closed)."""
        for request_id in request_ids:
            self._pending.pop(request_id, None)

    def receive(self, text: str | bytes, now: float) -> list[Message]:
        """Take one received frame (one or more ``\\n``-separated messages); returns what to deliver.

        Events of subscribed deployments come out in ``seq`` order without
        duplicates (possibly several at once, when one fills a gap); events of
        other deployments are dropped; replies are matched to their request by
        ``id`` (one that answers nothing we sent is dropped, except an error,
        which is still worth seeing); everything else passes through.
        """
        delivered: list[Message] = []
        # Events an acknowledgement released (they raced ahead of it) wait for the snapshot
        # that follows the ack in the same frame: the user gets the snapshot, then every
        # event after it, so a view started from the snapshot never sees an event before it.
        held: list[Message] = []
        held_for: str | None = None
        for line in split_frame(text):
            try:
                message = parse_message(line)
            except MalformedMessage as exc:
                self.malformed += 1
                log.warning("cloud-ws: skipped a malformed frame: %s", exc)
                continue
            awaited = isinstance(message, DeploymentSnapshot) and message.deployment_id == held_for
            if held and not awaited:
                delivered.extend(held)  # no snapshot right after the ack: hand them over first
                held = []
            taken = self._take(message, now)
            released = [item for item in taken if isinstance(item, Event)]
            if isinstance(message, Subscribed) and released:
                delivered.extend(item for item in taken if not isinstance(item, Event))
                held, held_for = list(released), message.deployment_id
                continue
            delivered.extend(taken)
            if awaited:
                delivered.extend(held)
                held = []
        delivered.extend(held)
        return delivered

    def _take(self, message: Message, now: float) -> list[Message]:
        if isinstance(message, Event):
            stream = self._streams.get(message.deployment_id)
            return [] if stream is None else list(stream.accept(message, now))
        if not isinstance(message, Subscribed | Unsubscribed | Pong | ErrorMessage | Deployments):
            return [message]
        request: Outgoing | None = None
        if message.request_id is not None:
            request = self._pending.get(message.request_id)
            if request is not None and _answers(message, request):
                del self._pending[message.request_id]
            else:
                # Not ours, or already answered (a frame sent on two connections during a
                # replacement is answered twice): resolving or applying it could only mislead.
                self.unmatched += 1
                log.debug("cloud-ws: a %s with an unknown id was ignored", message.type)
                return [message] if isinstance(message, ErrorMessage) else []
        # From here on ``message`` answers ``request``, or carries no id (a server that
        # predates ids), in which case it is taken as it comes.
        if isinstance(message, Subscribed):
            stream = self._streams.get(message.deployment_id)
            if stream is not None:
                since = request.since if request is not None else None
                if since is not None and message.seq < since:
                    return [message, self._history_went_back(stream, message, since)]
                return [message, *stream.acknowledge(message.seq, now, since=since, replay=message.replay)]
        elif isinstance(message, Pong):
            self._observe_latest(message, now)
        elif isinstance(message, ErrorMessage):
            self._on_refusal(message, request)
        return [message]

    def _history_went_back(self, stream: DeploymentSequence, ack: Subscribed, since: int) -> HistoryReset:
        """The server answered a ``since`` with a lower ``seq``: start again from its snapshot.

        A history only grows (an event is stored before it is sent), so the
        server's is not the one this stream followed: a restarted local stack
        forgot everything, or the deployment id was reused after its history
        expired. Mixing the two would drop the new history's events as
        duplicates of the old one's; instead the stream starts again at the
        acknowledged ``seq`` (the snapshot that follows stands for what is
        before it) and the user is told, so a view drops what it folded.
        A new history that has already grown past ``since`` cannot be told
        apart by ``seq`` alone.
        """
        self.history_resets += 1
        log.warning(
            "cloud-ws: the history of %s went back (the server is at seq %d, this client had %d): "
            "the stack was restarted or the id reused; starting again from the server's snapshot",
            ack.deployment_id,
            ack.seq,
            since,
        )
        stream.restart(ack.seq)
        return HistoryReset.of(ack.deployment_id, ack.seq, since)

    def _on_refusal(self, error: ErrorMessage, request: Outgoing | None) -> None:
        """Drop a subscription the server refused for good, so no new connection asks again."""
        if request is not None:
            deployment_id = request.deployment_id if request.action == "subscribe" else None
        else:
            deployment_id = error.deployment_id if error.action == "subscribe" else None
        if deployment_id is None or error.code not in REFUSED_SUBSCRIPTION_CODES:
            return
        if self._streams.pop(deployment_id, None) is not None:
            log.warning("cloud-ws: the subscription to %s was refused: %s", deployment_id, error.code)

    def _observe_latest(self, pong: Pong, now: float) -> None:
        for deployment_id, seq in pong.latest.items():
            stream = self._streams.get(deployment_id)
            if stream is None or stream.last_seq is None or seq <= stream.latest_known:
                continue
            if seq > stream.last_seq:
                self.catch_ups += 1
                # Debug only: during a busy deployment most pongs overtake an event or two
                # in flight; the resubscribe, if one is needed, is logged by repair().
                log.debug(
                    "cloud-ws: %s is at seq %d on the server, %d here; catching up",
                    deployment_id,
                    seq,
                    stream.last_seq,
                )
            stream.observe_latest(seq, now)

    def repair(self, now: float) -> tuple[list[Outgoing], list[Message]]:
        """Gap repair due at ``now``: the resubscribe frames to send and any events now deliverable."""
        frames: list[Outgoing] = []
        released: list[Message] = []
        for deployment_id, stream in self._streams.items():
            if stream.repair_due(now, self.gap_timeout):
                since, events = stream.begin_repair(now)
                released.extend(events)
                self.repairs += 1
                log.info("cloud-ws: gap in %s after seq %s; asking again", deployment_id, since)
                frames.append(self._request("subscribe", deployment_id, since=since))
        return frames, released

    def next_repair_at(self) -> float | None:
        """The earliest time a gap repair becomes due, or ``None`` without a gap."""
        deadlines = [
            deadline
            for stream in self._streams.values()
            if (deadline := stream.repair_deadline(self.gap_timeout)) is not None
        ]
        return min(deadlines, default=None)


def _answers(message: Message, request: Outgoing) -> bool:
    """Whether ``message`` is the kind of reply ``request`` gets (an ``id`` match alone could be a fluke)."""
    if isinstance(message, ErrorMessage):
        return True
    if isinstance(message, Pong):
        return request.action == "ping"
    if isinstance(message, Subscribed):
        return request.action == "subscribe" and message.deployment_id == request.deployment_id
    if isinstance(message, Unsubscribed):
        return request.action == "unsubscribe" and message.deployment_id == request.deployment_id
    if isinstance(message, Deployments):
        return request.action == "list_deployments"
    return False
