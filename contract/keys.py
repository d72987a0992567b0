"""Where each kind of row lives in the events table, and why it lives there.

The events table (``spec.EVENTS``: hash ``deploymentId`` S, range ``seq`` N)
holds more than the history. Every row kind but the history gets a hash key
of its own, derived from the deployment id with ``#`` (which a deployment id
can never contain, so none collides with a real deployment): DynamoDB limits
each partition key value to about 1,000 write units a second, and the
history of a busy deployment needs that partition to itself.

| row | ``deploymentId`` | ``seq`` | written |
|---|---|---|---|
| history | ``D`` | its last ``seq`` | a run of consecutive events, in the sequencing transaction |
| counter | ``D`` | 0 | once per transaction; small (under 1 KB) and never expires |
| checkpoint | ``D#state`` | 0 | the folded state, every few hundred events and when a drain ends |
| drain lease | ``D#lease`` | 0 | who stores the deployment's events now, and a count of waiting work |
| inbox | ``D#in#0`` … ``D#in#3`` | a hash of the event's identity | events waiting to be stored |
| notified | ``D#notified`` | the attempt | once per attempt, when its outcome is notified |

A history row holds the consecutive events one transaction stored (``firstSeq`` … its
``seq``, their wire messages in ``messages``), up to :data:`HISTORY_ROW_EVENTS` events and
about :data:`HISTORY_ROW_BYTES` of them: a deployment's history partition takes about 1,000
write units a second and a transaction pays 2 per KB *of each item*, rounded up, so one row
per event (a log line is a few hundred bytes) paid for a KB it did not use. Keyed by its last
``seq``, the rows holding ``seq`` > S are exactly those with a key > S. Rows of an older
version hold one event (``message``, ``seq``); readers take both.

The deployment list's index key (``listKey``) is spread over
:data:`LIST_SHARDS` values by a hash of the deployment id, so the index's
writes are not all on one partition.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

#: Values of the list index's hash key (each an index partition of its own). Every sequencing
#: transaction rewrites its deployment's counter, and with it the counter's index row: 1,000
#: deployments at 10 events/s each made about 6,800 such writes a second in the cloud model, and
#: with 8 shards one shard peaked at 633 WCU/s and throttled 8 transactions (the model's bucket
#: holds 0.1 s of a partition's 1,000 WCU/s). Readers query every shard, so raising this number
#: keeps every row listed: a row under an old shard moves to its new one with its next write.
LIST_SHARDS = 16

#: Hash keys an inbox is spread over: rows hold a batch each (up to 10 events), so a burst
#: of 1,000 events a second is about 200 row writes a second (put, then delete), and several
#: partition key values keep a larger one under a partition's 1,000 writes a second.
INBOX_SHARDS = 4

#: Most events one history row holds: as many as one transaction stores (DynamoDB's 100 items a
#: transaction, two per event and the counter). Readers of ``seq`` S.. T query row keys up to
#: T + HISTORY_ROW_EVENTS - 1: the last row they need may end that far past T.
HISTORY_ROW_EVENTS = 49

#: About how many bytes of messages one history row holds (an event larger than this gets a row
#: of its own): well under DynamoDB's 400 KB item, so a row is never refused for its size, and
#: large enough that rounding each row up to a whole KB costs next to nothing.
HISTORY_ROW_BYTES = 64 * 1024

_COUNTER_SEQ = {"N": "0"}


def _key(hash_key: str, seq: int = 0) -> dict[str, Any]:
    return {"deploymentId": {"S": hash_key}, "seq": {"N": str(seq)}}


def counter(deployment_id: str) -> dict[str, Any]:
    """The counter row's key."""
    return _key(deployment_id)


def checkpoint(deployment_id: str) -> dict[str, Any]:
    """The checkpoint row's key."""
    return _key(f"{deployment_id}#state")


def lease(deployment_id: str) -> dict[str, Any]:
    """The drain lease row's key."""
    return _key(f"{deployment_id}#lease")


def notified(deployment_id: str, attempt: int) -> dict[str, Any]:
    """The marker row of an attempt whose outcome was notified (put only if absent: exactly once)."""
    return _key(f"{deployment_id}#notified", attempt)


def inbox_partition(deployment_id: str, shard: int) -> str:
    """One of the deployment's inbox hash keys."""
    return f"{deployment_id}#in#{shard}"


def inbox(deployment_id: str, row: str) -> dict[str, Any]:
    """The key of one inbox row (``row``: any name unique to it; the shard follows from its hash)."""
    digest = hashlib.blake2b(row.encode("utf-8"), digest_size=8).digest()
    number = int.from_bytes(digest, "big")
    # DynamoDB numbers keep 38 digits, but a 53-bit value also survives any JSON round trip.
    return _key(inbox_partition(deployment_id, number % INBOX_SHARDS), number >> 11)


def list_key(shard: int) -> str:
    """The list index's hash key value of one shard."""
    return f"deployments#{shard}"


def list_shard(deployment_id: str) -> int:
    """The list shard a deployment's counter is indexed under (stable across containers and runs)."""
    return zlib.crc32(deployment_id.encode("utf-8")) % LIST_SHARDS
