"""DynamoDB access: connections, subscriptions, event history and event identities.

Every table layout comes from ``contract.spec``. Items are written with the
low-level client (no boto3 resource layer: it is slower to import and turns
numbers into Decimals); event messages are stored as their exact wire JSON so a
replay sends byte-for-byte what the live broadcast sent.

Expired rows: DynamoDB's TTL sweeper can lag by days, so every reader here
treats an item whose ``ttl`` has passed as absent.

The work is split by job: :mod:`server.store.connections` (connection rows,
the sweeper's expiring list, the frame allowance), :mod:`server.store.subscriptions`
(subscription rows and each connection's count of them) and
:mod:`server.store.event_log` (counters, history, checkpoints, the deployments
list); :mod:`server.store.base` holds what the three share. :class:`Store`
is the one object the handlers use: it holds the three parts and answers for
them, and every name this module exported before the split is still here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from contract.events import DeploymentEvent, SequencedEvent
from server.config import TableNames
from server.store.base import THROTTLING_CODES, THROTTLING_REASONS, Item, TableAccess
from server.store.connections import ConnectionRecord, Connections
from server.store.event_log import (
    MAX_PRODUCERS_BYTES,
    Counter,
    DeploymentRow,
    EventLog,
    SequenceResult,
    SequencingError,
    ThrottledError,
)
from server.store.subscriptions import Subscriber, SubscriberPage, Subscriptions

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from contract import state

__all__ = [
    "MAX_PRODUCERS_BYTES",
    "THROTTLING_CODES",
    "THROTTLING_REASONS",
    "ConnectionRecord",
    "Connections",
    "Counter",
    "DeploymentRow",
    "EventLog",
    "Item",
    "SequenceResult",
    "SequencingError",
    "Store",
    "Subscriber",
    "SubscriberPage",
    "Subscriptions",
    "ThrottledError",
]


class Store:
    """All DynamoDB reads and writes of cloud-ws: the connections, subscriptions and event log parts.

    Each method answers for the part that does the work (``connections``,
    ``subscriptions``, ``event_log``), so callers keep one object while each job
    lives in a module of its own.
    """

    #: The frame limiter's one attribute on a connection row (:meth:`take_frame_allowance`).
    FRAME_ALLOWANCE_ATTRIBUTE = Connections.FRAME_ALLOWANCE_ATTRIBUTE

    def __init__(
        self,
        client: DynamoDBClient,
        tables: TableNames,
        history_ttl_seconds: int = 72 * 3600,
        clock: Callable[[], float] = time.time,
        max_sequence_attempts: int = 25,
        reuse_counter: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """Set up the store.

        Args:
            clock: the time (epoch seconds) for TTLs and expiry checks.
            sleep: how a retry waits (tests pass a fake, so no real time passes).
            rng: the jitter of the retries' waits (tests pass a seeded one).
            reuse_counter: start each batch from the counter this container wrote last (checked by
                the transaction's condition) instead of reading it; False reads it every time.
        """
        self._access = TableAccess(client, tables, clock, sleep, rng)
        self.subscriptions = Subscriptions(self._access)
        """Subscription rows and each connection's count of them."""
        self.connections = Connections(self._access, self.subscriptions)
        """Connection rows (a removed connection takes its subscriptions with it)."""
        self.event_log = EventLog(
            self._access,
            history_ttl_seconds,
            max_sequence_attempts,
            reuse_counter,
            # Every counter read sequencing makes goes through this object's ``counter``, as when the
            # store was one class: whoever replaces ``store.counter`` (the race tests do) governs them.
            read_counter=self._read_counter,
        )
        """Counters, history rows, checkpoints, event identities and the deployments list."""

    @property
    def client(self) -> DynamoDBClient:
        """The DynamoDB client this store uses (the inbox shares it)."""
        return self._access.client

    @property
    def _db(self) -> DynamoDBClient:
        return self._access.client

    @_db.setter
    def _db(self, client: DynamoDBClient) -> None:
        # One assignment swaps the client of all three parts (a test records requests this way).
        self._access.client = client

    def _read_counter(self, deployment_id: str) -> Counter:
        return self.counter(deployment_id)

    # -- connections ---------------------------------------------------------------------------

    def put_connection(self, record: ConnectionRecord) -> None:
        """Register a connection (``$connect``): :meth:`Connections.put_connection`."""
        self.connections.put_connection(record)

    def get_connection(self, connection_id: str) -> ConnectionRecord | None:
        """The connection's record, or None when it is unknown or expired."""
        return self.connections.get_connection(connection_id)

    def touch_connection(self, connection_id: str) -> int | None:
        """Record a ping; returns when the connection's token expires, None when it is not registered."""
        return self.connections.touch_connection(connection_id)

    def delete_connection(self, connection_id: str) -> int:
        """Remove a connection and every subscription it holds; returns the subscriptions removed."""
        return self.connections.delete_connection(connection_id)

    def expiring_connections(self, first_minute: int, last_minute: int, until: int) -> list[tuple[str, int]]:
        """Connections whose token expires by ``until``: :meth:`Connections.expiring_connections`."""
        return self.connections.expiring_connections(first_minute, last_minute, until)

    def take_frame_allowance(self, connection_id: str, burst: int, per_second: float) -> float:
        """Count one frame against the connection's rate limit: :meth:`Connections.take_frame_allowance`."""
        return self.connections.take_frame_allowance(connection_id, burst, per_second)

    # -- subscriptions -------------------------------------------------------------------------

    def subscriptions_of(self, connection_id: str) -> list[str]:
        """Deployment ids a connection is subscribed to (via the by-connection index)."""
        return self.subscriptions.subscriptions_of(connection_id)

    def put_subscription(
        self, deployment_id: str, connection: ConnectionRecord, grants: Sequence[str]
    ) -> None:
        """Subscribe a connection to a deployment: :meth:`Subscriptions.put_subscription`."""
        self.subscriptions.put_subscription(deployment_id, connection, grants)

    def reserve_subscription(self, connection_id: str, deployment_id: str, limit: int) -> bool:
        """Count a deployment against the connection's limit: :meth:`Subscriptions.reserve_subscription`."""
        return self.subscriptions.reserve_subscription(connection_id, deployment_id, limit)

    def release_subscription(self, connection_id: str, deployment_id: str) -> None:
        """Take a deployment off the connection's count (unsubscribe)."""
        self.subscriptions.release_subscription(connection_id, deployment_id)

    def delete_subscription(self, deployment_id: str, connection_id: str) -> bool:
        """Unsubscribe; True when a subscription existed."""
        return self.subscriptions.delete_subscription(deployment_id, connection_id)

    def subscriber_pages(
        self, deployment_id: str, page_size: int, project: str | None = None, audience: str | None = None
    ) -> Iterator[SubscriberPage]:
        """A deployment's live subscribers, a page at a time: :meth:`Subscriptions.subscriber_pages`."""
        return self.subscriptions.subscriber_pages(deployment_id, page_size, project, audience)

    def kept_audience(self, deployment_id: str, audience: str) -> frozenset[str] | None:
        """The connections of the subscriber list kept under ``audience``; None when none is kept."""
        kept = self.subscriptions.audience.get(deployment_id, audience)
        return None if kept is None else frozenset(m.connection_id for m in kept)

    # -- event history -------------------------------------------------------------------------

    def last_seq(self, deployment_id: str) -> int:
        """The highest ``seq`` handed out for a deployment (0 before its first event)."""
        return self.event_log.last_seq(deployment_id)

    def counter(self, deployment_id: str) -> Counter:
        """The deployment's counter item: its last ``seq``, its head and its producers' cursors."""
        return self.event_log.counter(deployment_id)

    def counter_hint(self, deployment_id: str) -> Counter:
        """The counter this container wrote last for the deployment, else read (a checked guess)."""
        return self.event_log.counter_hint(deployment_id)

    def refreshed_counter(self, deployment_id: str) -> Counter:
        """The counter read now (strongly consistent), remembered as this container's hint."""
        return self.event_log.refreshed_counter(deployment_id)

    def advance_state(self, deployment_id: str, stored: Sequence[SequencedEvent]) -> None:
        """Fold just-stored events into the container's cached state when they follow it directly."""
        self.event_log.advance_state(deployment_id, stored)

    def checkpoint(self, deployment_id: str) -> tuple[int, state.StoredState]:
        """The latest checkpoint of the deployment's folded state: its ``seq`` and the state then."""
        return self.event_log.checkpoint(deployment_id)

    def put_checkpoint(
        self, deployment_id: str, seq: int, folded: state.StoredState, project: str | None = None
    ) -> bool:
        """Store the state folded through ``seq`` unless a later checkpoint is there; True if stored."""
        return self.event_log.put_checkpoint(deployment_id, seq, folded, project)

    def folded(self, deployment_id: str, seq: int) -> state.StoredState:
        """The deployment's state folded through ``seq``: :meth:`EventLog.folded`."""
        return self.event_log.folded(deployment_id, seq)

    def snapshot(self, deployment_id: str) -> tuple[int, state.StoredState]:
        """The deployment's last ``seq`` and its state folded through it: :meth:`EventLog.snapshot`."""
        return self.event_log.snapshot(deployment_id)

    def deployments(self, page_size: int = 100, max_pages: int = 10) -> Iterator[DeploymentRow]:
        """Deployments by their latest event, newest first: :meth:`EventLog.deployments`."""
        return self.event_log.deployments(page_size, max_pages)

    def last_seqs(self, deployment_ids: list[str]) -> dict[str, int]:
        """The highest ``seq`` of each deployment (0 when nothing was reported)."""
        return self.event_log.last_seqs(deployment_ids)

    def events_between(self, deployment_id: str, first: int, last: int) -> Iterator[str]:
        """Stored messages with ``first <= seq <= last``, in ``seq`` order."""
        return self.event_log.events_between(deployment_id, first, last)

    def append_events(
        self,
        deployment_id: str,
        events: Sequence[DeploymentEvent],
        *,
        sent_up_to: int | None = None,
    ) -> SequenceResult:
        """Give a deployment's events the next ``seq`` range and store each exactly once.

        See :meth:`EventLog.append_events` for how each round and each cancellation is handled.

        Raises:
            SequencingError: the counter kept moving or conflicting for ``max_sequence_attempts`` rounds.
            ThrottledError: DynamoDB throttled the transaction.
        """
        return self.event_log.append_events(deployment_id, events, sent_up_to=sent_up_to)

    def messages(self, deployment_id: str, seqs: Sequence[int]) -> list[str]:
        """The stored wire messages of these events, in ``seq`` order (expired ones are left out)."""
        return self.event_log.messages(deployment_id, seqs)
