"""Per-deployment ordering: duplicates, the reorder buffer and the gap clock (no sockets)."""

from __future__ import annotations

from cloud_ws_client import Event
from cloud_ws_client.sequence import DeploymentSequence


def event(seq: int, deployment_id: str = "D1") -> Event:
    return Event(type="log.created", raw={}, deployment_id=deployment_id, seq=seq)


def seqs(events: list[Event]) -> list[int]:
    return [e.seq for e in events]


def test_in_order_events_flow_and_duplicates_are_dropped() -> None:
    """seq 1, 2, 3 come out as they arrive; a repeated or older seq is dropped and counted."""
    stream = DeploymentSequence(since=0, max_buffer=100)
    assert seqs(stream.accept(event(1), now=0)) == [1]
    assert seqs(stream.accept(event(2), now=0)) == [2]
    assert stream.accept(event(2), now=0) == []
    assert stream.accept(event(1), now=0) == []
    assert seqs(stream.accept(event(3), now=0)) == [3]
    assert stream.duplicates == 2
    assert stream.last_seq == 3
    assert not stream.missing


def test_out_of_order_events_are_held_and_released_in_order() -> None:
    """A replay interleaved with live events: later seqs wait for the earlier ones, none is lost."""
    stream = DeploymentSequence(since=10, max_buffer=100)
    assert stream.accept(event(13), now=1.0) == []
    assert stream.accept(event(12), now=1.5) == []
    assert stream.accept(event(13), now=1.6) == []  # buffered already: a duplicate
    assert stream.buffered == 2
    assert stream.missing
    assert seqs(stream.accept(event(11), now=2.0)) == [11, 12, 13]
    assert stream.buffered == 0
    assert not stream.missing
    assert stream.duplicates == 1


def test_gap_clock_runs_from_the_last_progress() -> None:
    """A repair is due only after gap_timeout without progress; asking again restarts the wait."""
    stream = DeploymentSequence(since=0, max_buffer=100)
    assert stream.repair_deadline(1.0) is None
    stream.accept(event(3), now=10.0)
    assert stream.repair_deadline(1.0) == 11.0
    assert not stream.repair_due(10.9, 1.0)
    stream.accept(event(1), now=10.5)  # progress (1 delivered), 2 still missing
    assert not stream.repair_due(11.2, 1.0)
    assert stream.repair_due(11.5, 1.0)
    since, released = stream.begin_repair(11.5)
    assert since == 1
    assert released == []
    assert not stream.repair_due(12.0, 1.0)
    assert stream.repair_due(12.5, 1.0)
    assert seqs(stream.accept(event(2), now=12.6)) == [2, 3]
    assert stream.repair_deadline(1.0) is None


def test_acknowledgement_reveals_events_not_yet_received() -> None:
    """An ack whose seq is past the last one seen (a capped replay) starts the gap clock."""
    stream = DeploymentSequence(since=0, max_buffer=100)
    assert stream.acknowledge(50, now=1.0) == []
    assert stream.missing
    assert stream.latest_known == 50
    assert stream.repair_due(2.0, 1.0)
    assert stream.begin_repair(2.0) == (0, [])


def test_live_only_subscription_starts_after_the_acknowledged_seq() -> None:
    """Without since, events up to the ack's seq are not wanted; ones that raced ahead are kept."""
    stream = DeploymentSequence(since=None, max_buffer=100)
    assert not stream.missing
    assert stream.accept(event(7), now=0) == []  # arrived before the ack
    assert stream.accept(event(5), now=0) == []
    assert seqs(stream.acknowledge(6, now=0)) == [7]
    assert stream.last_seq == 7
    assert stream.buffered == 0


def test_live_only_subscription_whose_ack_is_lost_adopts_its_first_event() -> None:
    """Events but no ack: the repair starts the stream at the first event held, nothing held is lost."""
    stream = DeploymentSequence(since=None, max_buffer=100)
    stream.accept(event(9), now=0)
    stream.accept(event(8), now=0)
    assert stream.missing
    assert stream.repair_due(1.0, 1.0)
    since, released = stream.begin_repair(1.0)
    assert since == 9
    assert seqs(released) == [8, 9]
    assert not stream.missing


def test_full_buffer_drops_new_events_but_never_the_next_one() -> None:
    """Past max_buffer, later events are dropped (the repair's replay brings them back)."""
    stream = DeploymentSequence(since=0, max_buffer=2)
    stream.accept(event(5), now=0)
    stream.accept(event(4), now=0)
    assert stream.accept(event(6), now=0) == []
    assert stream.buffered == 2
    assert stream.accept(event(3), now=0) == []
    assert stream.buffered == 2
    assert seqs(stream.accept(event(1), now=0)) == [1]
    assert seqs(stream.accept(event(2), now=0)) == [2]
    assert seqs(stream.accept(event(3), now=0)) == [3, 4, 5]
    assert stream.latest_known == 6
    assert stream.missing
