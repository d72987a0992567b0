"""Every table of the spec in a DynamoDB the caller holds a client for (moto in process, or
the local backend), named from one prefix.

Used by the benchmarks and re-exported by ``tests.support.moto_stack``, so benchmarks create
the tables without importing the tests' helpers. Unlike
:meth:`emulator.backend.MotoBackend.provision`, which also turns on each table's TTL as the
stack does on AWS, this creates the tables only: that is all the handlers need to run.
"""

from __future__ import annotations

from typing import Any

from contract import spec


def create_tables(client: Any, prefix: str = "cloud-ws-test") -> dict[str, str]:
    """Create every table of the spec; returns env var → table name."""
    names: dict[str, str] = {}
    for table in spec.TABLES:
        name = f"{prefix}-{table.role}"
        client.create_table(**table.create_table_kwargs(name))
        names[table.env_var] = name
    return names
