"""The GraphQL API's contract: its one schema and the limits of its ``deploymentEvents`` query.

Both servers of the schema read these: the AppSync API the component builds
(``pulumi_component/appsync.py`` and its resolvers) and ``cloud-ws local``'s
GraphQL API (``emulator/graphql``); the broadcaster's publisher sends the
schema's mutations.
"""

from __future__ import annotations

from pathlib import Path

#: The one schema source: the AppSync API and `cloud-ws local` both read it.
SCHEMA_PATH = Path(__file__).with_name("schema.graphql")

#: ``deploymentEvents`` page size when ``limit`` is omitted, and the largest ``limit``.
DEFAULT_EVENTS_LIMIT = 100
MAX_EVENTS_LIMIT = 1000
