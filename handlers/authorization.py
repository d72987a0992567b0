"""Who may watch which deployment.

The default policy lets any authenticated user of the pool subscribe to any
deployment. Setting ``SUBSCRIBE_GROUPS`` restricts subscriptions to members of
at least one of those Cognito groups (``cognito:groups`` in the token, stored
with the connection at ``$connect``).
"""

from __future__ import annotations

from handlers.config import Config
from handlers.store import ConnectionRecord


def may_subscribe(connection: ConnectionRecord, deployment_id: str, config: Config) -> bool:
    """True when the connection's user may receive ``deployment_id``'s events."""
    del deployment_id  # the policy is per user today; the id is here for per-deployment rules
    if not config.subscribe_groups:
        return True
    return not config.subscribe_groups.isdisjoint(connection.groups)
