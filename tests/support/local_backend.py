"""A plausible ``BackendInfo`` of the local stack, for tests of what is derived from it (no backend runs)."""

from __future__ import annotations

from contract import spec
from emulator.backend import BackendInfo

SAMPLE_BACKEND = BackendInfo(
    endpoint="http://127.0.0.1:8081",
    region="us-east-1",
    tables={table.env_var: f"cloud-ws-local-{table.role}" for table in spec.TABLES},
    user_pool_id="us-east-1_local",
    user_pool_client_id="local-client",
    event_bus_name="cloud-ws-local-bus",
    event_source=spec.DEFAULT_EVENT_SOURCE,
    rule_name="cloud-ws-local-rule",
    queue_url="http://127.0.0.1:8081/000000000000/delivery",
    queue_arn="arn:aws:sqs:us-east-1:000000000000:delivery",
    dead_letter_queue_url="http://127.0.0.1:8081/000000000000/delivery-dlq",
)
