"""The local stand-in for the AppSync GraphQL API: queries, publish mutations, subscriptions.

What it reproduces, because the stock AppSync clients (gql, Amplify) and our
publisher depend on it:

- ``POST /graphql`` with ``Authorization: <Cognito JWT>`` (verified as ``$connect``
  verifies it) or an IAM SigV4 signature (service ``appsync``, the local stack's
  credentials); refused credentials answer 401/403 with AppSync's ``errorType``.
- AppSync's authorization rule: a field's ``@aws_*`` directives decide who may
  resolve it, else its type's, else only the default mode (Cognito). So users
  cannot call the ``@aws_iam`` publish mutations, and IAM cannot query.
- The same per-deployment authorization as the WebSocket API
  (``contract.authorization``: the caller's groups must grant the deployment's
  project) on queries and subscriptions; a subscription to a deployment nobody
  has reported on gets only events whose ``project`` its grants cover.
- NONE-data-source publish mutations: the result is the arguments; every
  subscription the mutation triggers (``@aws_subscribe``) whose arguments equal
  the result's fields receives it, restricted to the fields the mutation
  selected, then shaped by the subscriber's own selection.
- ``deploymentEvents`` reads the history table (``Store.events_between``): the
  first ``limit`` events after ``since``, ascending.
- ``deployment`` answers the deployment's snapshot: the state the broadcaster
  folds into its counter row, the same data the WebSocket API's
  ``deployment.snapshot`` carries, with ``deployment_id`` and ``seq`` (the last
  event folded in, from which ``deploymentEvents(since:)`` resumes).

Errors carry AppSync's ``errorType`` beside graphql-core's ``message``,
``locations`` and ``path``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLResolveInfo,
    InlineFragmentNode,
    OperationType,
    SelectionSetNode,
    get_operation_ast,
    parse,
    validate,
)
from graphql import execute as graphql_execute
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contract import protocol, state
from contract.authorization import DEFAULT_PROJECT, granted, grants_of
from contract.graphql import DEFAULT_EVENTS_LIMIT, MAX_EVENTS_LIMIT
from contract.log import get_logger
from emulator.graphql.auth import Authenticator, AuthError, Caller, SignedRequest
from emulator.graphql.schema import COGNITO, AppSyncSchema, load_schema
from server.runtime import Runtime, get_runtime

log = get_logger("emulator.graphql")

#: What resolvers receive; ``info.context`` is the operation's :class:`Context`.
Info: TypeAlias = "GraphQLResolveInfo[Context]"

#: Events one subscription may have waiting to be sent before later ones are dropped.
MAX_PENDING_EVENTS = 10_000
#: Parsed and validated operations kept (clients send the same few documents over and over).
PREPARED_CACHE_SIZE = 256


@dataclass(frozen=True)
class GraphQLSettings:
    """How the local GraphQL API authenticates and keeps connections alive."""

    region: str = "us-east-1"
    access_key_id: str = "local"
    """IAM key the publish mutations must be signed with (the local stack's credentials)."""
    secret_access_key: str = "local"
    keep_alive_seconds: float = 60.0
    """Interval of the realtime ``ka`` messages (AppSync sends one about every minute)."""
    connection_timeout_ms: int = 300_000
    """``connection_ack.payload.connectionTimeoutMs``: how long clients wait for a ``ka``."""
    max_subscriptions_per_connection: int = 100


def graphql_error(message: str, error_type: str) -> GraphQLError:
    """A resolver error carrying AppSync's ``errorType``."""
    return GraphQLError(message, extensions={"errorType": error_type})


def unauthorized(info: Info) -> GraphQLError:
    """AppSync's refusal of one field."""
    return graphql_error(
        f"Not Authorized to access {info.field_name} on type {info.parent_type.name}", "Unauthorized"
    )


def format_error(error: GraphQLError, default_type: str = "ExecutionError") -> dict[str, Any]:
    """One error as AppSync sends it: graphql-core's fields plus ``errorType``."""
    formatted: dict[str, Any] = dict(cast(Mapping[str, Any], error.formatted))
    extensions = dict(formatted.pop("extensions", None) or {})
    formatted["errorType"] = extensions.pop("errorType", default_type)
    if extensions:
        formatted["extensions"] = extensions
    return formatted


def format_result(result: ExecutionResult) -> dict[str, Any]:
    """An execution result as the response body (``data`` always present, ``errors`` when any)."""
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [format_error(error) for error in result.errors]
    return body


def error_body(error_type: str, message: str) -> dict[str, Any]:
    """A request-level refusal (no execution took place)."""
    return {"errors": [{"errorType": error_type, "message": message}]}


def _pending_queue() -> asyncio.Queue[dict[str, Any]]:
    return asyncio.Queue(maxsize=MAX_PENDING_EVENTS)


@dataclass(eq=False)
class Listener:
    """One active subscription field: its filter and the queue its events wait in."""

    field_name: str
    filters: dict[str, Any]
    grants: tuple[str, ...] | None = None
    """Project patterns the subscriber's groups grant; None: no project filter (IAM callers)."""
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=_pending_queue)
    dropped: int = 0
    """Events not queued because the subscriber fell :data:`MAX_PENDING_EVENTS` behind."""

    def matches(self, payload: Mapping[str, Any], project: str | None = None) -> bool:
        """AppSync's argument filter (every argument given equals the published field of that name),
        and the subscription filter the cloud resolver sets: the published ``project`` is granted."""
        if self.grants is not None and not granted(self.grants, project or DEFAULT_PROJECT):
            return False
        return all(name in payload and payload[name] == value for name, value in self.filters.items())

    async def stream(self) -> AsyncIterator[dict[str, Any]]:
        """The source event stream graphql-core maps through the subscriber's selection."""
        while True:
            yield {self.field_name: await self.queue.get()}


class PubSub:
    """Who listens to which subscription field."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[Listener]] = {}

    def add(self, listener: Listener) -> None:
        """Start delivering to ``listener``."""
        self._listeners.setdefault(listener.field_name, set()).add(listener)

    def remove(self, listener: Listener) -> None:
        """Stop delivering to ``listener`` (idempotent)."""
        self._listeners.get(listener.field_name, set()).discard(listener)

    def publish(self, field_name: str, payload: dict[str, Any], project: str | None = None) -> int:
        """Queue ``payload`` for every matching listener of ``field_name``; how many got it."""
        delivered = 0
        for listener in self._listeners.get(field_name, ()):
            if not listener.matches(payload, project):
                continue
            try:
                listener.queue.put_nowait(payload)
            except asyncio.QueueFull:
                # A subscriber that stopped reading must not grow the server without bound;
                # like any lost event, the gap is filled with deploymentEvents.
                listener.dropped += 1
                if listener.dropped == 1:
                    log.warning("graphql subscriber fell behind; dropping", extra={"field": field_name})
                continue
            delivered += 1
        return delivered

    def count(self) -> int:
        """Active subscriptions (for tests and benchmarks)."""
        return sum(len(listeners) for listeners in self._listeners.values())


@dataclass
class Context:
    """What every resolver of one operation sees."""

    caller: Caller
    listeners: list[Listener] = field(default_factory=list)
    """Subscriptions this operation registered (removed when it stops)."""


def _selected_fields(selection_set: SelectionSetNode | None, info: Info) -> set[str]:
    """Field names selected under a field, through fragments (the mutation's result shape)."""
    names: set[str] = set()
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            names |= _selected_fields(selection.selection_set, info)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = info.fragments.get(selection.name.value)
            names |= _selected_fields(fragment.selection_set if fragment else None, info)
    return names


def _event_fields(message: str) -> dict[str, Any]:
    """A stored wire message as a ``DeploymentEvent``."""
    event = json.loads(message)
    return {
        "deployment_id": event.get("deployment_id"),
        "seq": event.get("seq"),
        "type": event.get("type"),
        "event_id": event.get("event_id"),
        "timestamp": event.get("timestamp"),
        "data": event.get("data", {}),
    }


class _ModeMiddleware:
    """Checks every field's authorization mode (graphql-core takes plain functions or objects with
    ``resolve`` as middleware, and silently ignores a bound method)."""

    def __init__(self, api: GraphQLApi) -> None:
        self._api = api

    def resolve(self, next_: Callable[..., Any], root: Any, info: Info, **args: Any) -> Any:
        self._api.check_mode(info.context.caller, info)
        return next_(root, info, **args)


class GraphQLApi:
    """The executable API: authentication, authorization, resolvers and the subscription registry."""

    def __init__(
        self,
        settings: GraphQLSettings | None = None,
        runtime: Callable[[], Runtime] = get_runtime,
        schema: AppSyncSchema | None = None,
    ) -> None:
        self.settings = settings or GraphQLSettings()
        self.schema = schema or load_schema()
        self.pubsub = PubSub()
        self._runtime = runtime
        self._authenticator: Authenticator | None = None
        self._prepared: dict[
            tuple[Any, Any, frozenset[OperationType]], DocumentNode | list[dict[str, Any]]
        ] = {}
        self._attach_resolvers()

    # -- wiring --------------------------------------------------------------------------------

    def _attach_resolvers(self) -> None:
        schema = self.schema.schema
        assert schema.query_type is not None
        assert schema.mutation_type is not None
        assert schema.subscription_type is not None
        schema.query_type.fields["deploymentEvents"].resolve = self._deployment_events
        schema.query_type.fields["deployment"].resolve = self._deployment
        for name in schema.mutation_type.fields:
            schema.mutation_type.fields[name].resolve = self._publish
        for name in schema.subscription_type.fields:
            schema.subscription_type.fields[name].subscribe = self._subscribe

    @property
    def authenticator(self) -> Authenticator:
        """Built on first use: the handlers' runtime (and its verifier) exists once the stack runs."""
        if self._authenticator is None:
            s = self.settings
            self._authenticator = Authenticator(
                self._runtime().verifier, s.region, s.access_key_id, s.secret_access_key
            )
        return self._authenticator

    # -- authorization -------------------------------------------------------------------------

    def check_mode(self, caller: Caller, info: Info) -> None:
        """Refuse a field the caller's authorization mode may not resolve (the ``@aws_*`` directives)."""
        if info.field_name.startswith("__"):
            return
        field_def = info.parent_type.fields[info.field_name]
        if caller.mode not in self.schema.allowed_modes(info.parent_type, field_def):
            raise unauthorized(info)

    def authorize_deployment(self, caller: Caller, deployment_id: Any, info: Info) -> tuple[str, ...]:
        """The caller's grants, if the id is well-formed and they may watch it (as ``subscribe`` decides)."""
        if not protocol.is_valid_deployment_id(deployment_id):
            raise graphql_error(
                f"deployment_id must match {protocol.DEPLOYMENT_ID_PATTERN}", "ValidationError"
            )
        identity = caller.identity
        if caller.mode != COGNITO or identity is None:
            raise unauthorized(info)
        runtime = self._runtime()
        grants = grants_of(identity.groups, runtime.config.access, runtime.config.subscribe_groups)
        if runtime.config.subscribe_groups and not grants:
            raise unauthorized(info)
        known = runtime.store.counter(str(deployment_id))
        if known.last_seq and not granted(grants, known.project or DEFAULT_PROJECT):
            raise unauthorized(info)
        return grants

    # -- resolvers -----------------------------------------------------------------------------

    async def _deployment_events(
        self,
        _root: Any,
        info: Info,
        deployment_id: str,
        since: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        self.check_mode(info.context.caller, info)
        self.authorize_deployment(info.context.caller, deployment_id, info)
        since = 0 if since is None else since
        limit = DEFAULT_EVENTS_LIMIT if limit is None else limit
        if since < 0:
            raise graphql_error("since must not be negative", "ValidationError")
        if not 1 <= limit <= MAX_EVENTS_LIMIT:
            raise graphql_error(f"limit must be between 1 and {MAX_EVENTS_LIMIT}", "ValidationError")
        store = self._runtime().store
        # seq has no gaps, so the first `limit` events after `since` are seq since+1 .. since+limit.
        messages = await asyncio.get_running_loop().run_in_executor(
            None, lambda: list(store.events_between(deployment_id, since + 1, since + limit))
        )
        return [_event_fields(message) for message in messages]

    async def _deployment(self, _root: Any, info: Info, deployment_id: str) -> dict[str, Any]:
        self.check_mode(info.context.caller, info)
        self.authorize_deployment(info.context.caller, deployment_id, info)
        store = self._runtime().store
        # As the cloud resolver does: the latest checkpoint and the seq it reaches.
        upto, folded = await asyncio.get_running_loop().run_in_executor(None, store.checkpoint, deployment_id)
        return {**state.public(folded), "deployment_id": deployment_id, "seq": upto}

    def _publish(self, _root: Any, info: Info, **args: Any) -> dict[str, Any]:
        self.check_mode(info.context.caller, info)  # not only in the middleware: this one publishes
        # A NONE data source: the result is the arguments. Subscribers get only what
        # the mutation selected, as AppSync forwards the mutation's response.
        selected = _selected_fields(info.field_nodes[0].selection_set, info)
        payload = {name: value for name, value in args.items() if name in selected}
        for subscription_field in self.schema.triggers.get(info.field_name, ()):
            self.pubsub.publish(subscription_field, payload, args.get("project"))
        return args

    def _subscribe(self, _root: Any, info: Info, **args: Any) -> AsyncIterator[dict[str, Any]]:
        context: Context = info.context
        self.check_mode(context.caller, info)
        grants = None
        if "deployment_id" in args:
            grants = self.authorize_deployment(context.caller, args["deployment_id"], info)
        listener = Listener(
            info.field_name, {name: value for name, value in args.items() if value is not None}, grants
        )
        self.pubsub.add(listener)
        context.listeners.append(listener)
        return listener.stream()

    # -- operations ----------------------------------------------------------------------------

    def prepare(
        self, query: Any, operation_name: Any, allowed: frozenset[OperationType]
    ) -> DocumentNode | list[dict[str, Any]]:
        """Parse and validate with graphql-core; the document, or the errors to send back.

        Results are kept per (query, operation, kinds): the publisher sends the same two
        mutations for every event, and parsing plus validating costs more than executing.
        """
        key = (query, operation_name, allowed) if isinstance(query, str) else None
        if key is not None and key in self._prepared:
            return self._prepared[key]
        prepared = self._prepare(query, operation_name, allowed)
        if key is not None:
            if len(self._prepared) >= PREPARED_CACHE_SIZE:
                self._prepared.pop(next(iter(self._prepared)))  # oldest first: dicts keep insertion order
            self._prepared[key] = prepared
        return prepared

    def _prepare(
        self, query: Any, operation_name: Any, allowed: frozenset[OperationType]
    ) -> DocumentNode | list[dict[str, Any]]:
        if not isinstance(query, str) or not query.strip():
            return [
                {"errorType": "MalformedHttpRequestException", "message": "query must be a non-empty string"}
            ]
        if operation_name is not None and not isinstance(operation_name, str):
            return [
                {"errorType": "MalformedHttpRequestException", "message": "operationName must be a string"}
            ]
        try:
            document = parse(query)
        except GraphQLError as exc:
            return [format_error(exc, "InvalidSyntax")]
        errors = validate(self.schema.schema, document)
        if errors:
            return [format_error(error, "ValidationError") for error in errors]
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return [{"errorType": "ValidationError", "message": "operationName does not name one operation"}]
        if operation.operation not in allowed:
            kind = operation.operation.value
            return [
                {"errorType": "UnsupportedOperation", "message": f"{kind} operations are not supported here"}
            ]
        return document

    async def execute(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        """Run one query or mutation request body for ``caller``; the response body."""
        variables = body.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return error_body("MalformedHttpRequestException", "variables must be a JSON object")
        prepared = self.prepare(
            body.get("query"),
            body.get("operationName"),
            frozenset({OperationType.QUERY, OperationType.MUTATION}),
        )
        if not isinstance(prepared, DocumentNode):
            return {"data": None, "errors": prepared}
        result = graphql_execute(
            self.schema.schema,
            prepared,
            context_value=Context(caller),
            variable_values=variables,
            operation_name=body.get("operationName"),
            middleware=[_ModeMiddleware(self)],
        )
        if inspect.isawaitable(result):  # the query resolvers are async (DynamoDB off the loop)
            result = await result
        assert isinstance(result, ExecutionResult)
        return format_result(result)

    async def http_endpoint(self, request: Request) -> Response:
        """``POST /graphql``: authenticate, then execute a query or a publish mutation."""
        raw = await request.body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        signed = SignedRequest("POST", request.url.path, request.url.query, headers, raw)
        try:
            caller = await self.authenticator.authenticate(signed)
        except AuthError as exc:
            log.info("graphql request refused", extra={"error_type": exc.error_type, "reason": exc.message})
            return JSONResponse(error_body(exc.error_type, exc.message), status_code=exc.status)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JSONResponse(
                error_body("MalformedHttpRequestException", "the body must be a JSON object"), status_code=400
            )
        return JSONResponse(await self.execute(caller, body))
