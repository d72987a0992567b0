"""``subscribe``: start receiving a deployment's events, optionally replaying ``seq > since``.

Order matters for "no gap": the subscription is stored *before* the latest
``seq`` is read. An event stored after that read is broadcast after our row
exists, so the broadcaster's (consistent) Query sees us; an event stored before
it is in the replay. The worst case is an event both replayed and broadcast,
which clients drop by ``seq``.

Right after the ack comes ``deployment.snapshot``: the deployment's state
folded through the ack's ``seq`` (the broadcaster checkpoints the folded state
every few hundred events and whenever it goes quiet; the events after the
checkpoint are folded on top here). With ``since``, the
replay follows it; without, only live events do: a newcomer to a long
deployment sees where it stands at once instead of replaying its history.

The ack, the snapshot and the replay go out packed into as few posts as API
Gateway's 128 KB message limit allows (``\n``-separated messages, in that
order): a client catching up on a thousand events costs a handful of posts,
not a thousand.
"""

from __future__ import annotations

from collections.abc import Iterator

from contract import protocol, spec, state
from contract.authorization import DEFAULT_PROJECT, forbidden_message, granted, grants_of
from contract.protocol import ErrorCode, ProtocolError
from server.messages import Request, live_connection, message_handler

ACTION = "subscribe"


def act(request: Request) -> Iterator[bytes]:
    """Validate, authorize, store the subscription; reply ``subscribed`` then the replay."""
    body, runtime = request.frame.body, request.runtime
    config, store = runtime.config, runtime.store
    deployment_id = protocol.validate_deployment_id(body.get("deployment_id"), ACTION)
    since = protocol.validate_since(body.get("since"), ACTION)

    connection = live_connection(request, ACTION)
    grants = grants_of(connection.groups, config.access, config.subscribe_groups)
    if config.subscribe_groups and not grants:
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            f"you are not allowed to watch deployment {deployment_id}: watching is limited to "
            "members of the stack's subscribe groups",
            ACTION,
        )
    # A deployment nobody has reported on yet has no project: the subscription is accepted, and
    # the broadcaster posts its events only if the project they carry is granted (the row says).
    known = store.counter(deployment_id)
    if known.last_seq and not granted(grants, known.project or DEFAULT_PROJECT):
        raise ProtocolError(
            ErrorCode.FORBIDDEN, forbidden_message(deployment_id, known.project or DEFAULT_PROJECT), ACTION
        )
    # Atomic: one connection's frames may run concurrently (API Gateway does), so a count read
    # before the write would let several subscribes past the limit at once.
    if not store.reserve_subscription(
        request.connection_id, deployment_id, config.max_subscriptions_per_connection
    ):
        raise ProtocolError(
            ErrorCode.TOO_MANY_SUBSCRIPTIONS,
            f"a connection may watch at most {config.max_subscriptions_per_connection} deployments; "
            "unsubscribe from one first",
            ACTION,
        )

    store.put_subscription(deployment_id, connection, grants)
    # Read after the subscription is stored: whatever is stored later is broadcast to us.
    last, folded = store.snapshot(deployment_id)
    if last and not known.last_seq:
        # Its first events were stored in between: their project decides, as it would have above.
        project = store.counter(deployment_id).project or DEFAULT_PROJECT
        if not granted(grants, project):
            store.delete_subscription(deployment_id, request.connection_id)
            store.release_subscription(request.connection_id, deployment_id)
            raise ProtocolError(ErrorCode.FORBIDDEN, forbidden_message(deployment_id, project), ACTION)
    replay: list[str] = []
    if since is not None and since < last:
        # Bounded: a client that is further behind sees a gap after the replay and asks again.
        upto = min(last, since + config.replay_limit)
        replay = list(store.events_between(deployment_id, since + 1, upto))
    ack = protocol.encode(protocol.subscribed(deployment_id, last, len(replay), request.request_id))
    snapshot = protocol.encode(
        protocol.snapshot(deployment_id, last, state.public(folded), request.request_id)
    )
    # Stored messages are the exact wire JSON of the live broadcast: compact, no raw newline.
    messages = [ack, snapshot, *(message.encode("utf-8") for message in replay)]
    yield from protocol.pack_frames(messages, max_bytes=spec.API_GATEWAY_LIMITS.message_bytes)


handler = message_handler(ACTION, act)
