"""Python client for cloud-ws: live deployment events over WebSocket, nothing missed.

```python
from cloud_ws_client import CloudWebSocketClient

async with CloudWebSocketClient.from_outputs(".cloud-ws/outputs.json") as client:
    await client.subscribe("D1BRV40", since=0)
    async for message in client.messages():
        print(message.type, message.raw)
```

After ``subscribed`` the server sends ``deployment.snapshot``, the deployment's
state so far: :meth:`DeploymentState.from_snapshot` starts from it and
:meth:`DeploymentState.apply` folds later events on top, by the rules every
implementation shares (``conformance/state.json``).
:meth:`CloudWebSocketClient.list_deployments` lists the deployments the caller
may watch. See ``docs/client.md`` for snapshots, attempts, reconnects, resume
and keep-alive.
"""

from cloud_ws_client.auth import CognitoPasswordAuth, TokenProvider, TokenSource, token_expiry
from cloud_ws_client.backoff import backoff, process_exception
from cloud_ws_client.client import (
    ClientOptions,
    ClientStats,
    CloudWebSocketClient,
    Handler,
    __version__,
)
from cloud_ws_client.errors import AuthenticationError, CloudWsError, ConnectError, RequestError
from cloud_ws_client.messages import (
    TERMINAL_STATUSES,
    Deployments,
    DeploymentSnapshot,
    DeploymentStatus,
    ErrorMessage,
    Event,
    HistoryReset,
    LogCreated,
    MalformedMessage,
    Message,
    Pong,
    StackEvent,
    Subscribed,
    Unsubscribed,
    parse_message,
    split_frame,
)
from cloud_ws_client.protocol import ClientProtocol, Outgoing
from cloud_ws_client.state import DeploymentState, LogLine, StackState

__all__ = [
    "TERMINAL_STATUSES",
    "AuthenticationError",
    "ClientOptions",
    "ClientProtocol",
    "ClientStats",
    "CloudWebSocketClient",
    "CloudWsError",
    "CognitoPasswordAuth",
    "ConnectError",
    "DeploymentSnapshot",
    "DeploymentState",
    "DeploymentStatus",
    "Deployments",
    "ErrorMessage",
    "Event",
    "Handler",
    "HistoryReset",
    "LogCreated",
    "LogLine",
    "MalformedMessage",
    "Message",
    "Outgoing",
    "Pong",
    "RequestError",
    "StackEvent",
    "StackState",
    "Subscribed",
    "TokenProvider",
    "TokenSource",
    "Unsubscribed",
    "__version__",
    "backoff",
    "parse_message",
    "process_exception",
    "split_frame",
    "token_expiry",
]
