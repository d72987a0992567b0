"""What the store's parts share: one client, the table names, the clock, the retry waits, item helpers.

The parts (connections, subscriptions, event log) each hold the same
:class:`TableAccess` instead of copies of its fields, so swapping the client
on it (``Store._db = ...``, as a test that records requests does) reaches every
part at once, as it did when the store was one class.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from contract import spec
from contract.backoff import Backoff
from server.config import TableNames

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

Item = dict[str, "AttributeValueTypeDef"]

#: The attribute DynamoDB's TTL sweeper reads; readers treat a passed one as absent.
TTL = spec.TTL_ATTRIBUTE

#: Errors of a whole request that mean "too fast for this partition": back off, retry later.
THROTTLING_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
#: The same, as a transaction's per-item cancellation reasons.
THROTTLING_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"})
#: Unprocessed items of a batch request that deletes subscriptions or reads counters.
BATCH_BACKOFF = Backoff(base=0.025, cap=1.0)


class TableAccess:
    """The client, table names, clock and retry waits every part of the store uses."""

    def __init__(
        self,
        client: DynamoDBClient,
        tables: TableNames,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        rng: random.Random | None,
    ) -> None:
        """Hold what the parts share.

        Args:
            client: the DynamoDB client (replaceable: the parts read it at each request).
            tables: the table names.
            clock: the time (epoch seconds) for TTLs and expiry checks.
            sleep: how a retry waits (tests pass a fake, so no real time passes).
            rng: the jitter of the retries' waits (tests pass a seeded one).
        """
        self.client = client
        self.tables = tables
        self.clock = clock
        self.sleep = sleep
        self.rng = rng

    def now(self) -> int:
        """The clock's time in whole epoch seconds."""
        return int(self.clock())

    def wait(self, policy: Backoff, attempt: int) -> None:
        """Wait before retry ``attempt`` (1 for the first) through the sleep the store was given."""
        self.sleep(policy.delay(attempt, self.rng))


class Part:
    """A part of the store: reads the shared :class:`TableAccess` under the names the store used."""

    def __init__(self, access: TableAccess) -> None:
        """Share ``access`` with the other parts of the same store."""
        self._access = access

    @property
    def _db(self) -> DynamoDBClient:
        # Read at each request, never copied: the store's client can be swapped after set-up.
        return self._access.client

    @property
    def _tables(self) -> TableNames:
        return self._access.tables

    def _clock(self) -> float:
        return self._access.clock()

    def _now(self) -> int:
        return self._access.now()

    def _wait(self, policy: Backoff, attempt: int) -> None:
        self._access.wait(policy, attempt)


def string_value(value: str) -> AttributeValueTypeDef:
    """A string attribute value."""
    return {"S": value}


def number_value(value: int) -> AttributeValueTypeDef:
    """A number attribute value."""
    return {"N": str(value)}


def int_of(item: Item, name: str, default: int = 0) -> int:
    """A number attribute as an int (``default`` when absent)."""
    value = item.get(name)
    return int(value["N"]) if value and "N" in value else default


def str_of(item: Item, name: str) -> str | None:
    """A string attribute (None when absent)."""
    value = item.get(name)
    return value["S"] if value and "S" in value else None


def error_code(exc: ClientError) -> str:
    """The error code DynamoDB answered with (empty when it gave none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))
