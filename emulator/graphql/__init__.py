"""The local GraphQL API of `cloud-ws local`: AppSync's HTTP and real-time endpoints, emulated."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from emulator.graphql.api import GraphQLApi, GraphQLSettings
from emulator.graphql.realtime import RealtimeEndpoint

__all__ = ["GraphQLApi", "GraphQLSettings", "graphql_routes"]


def graphql_routes(api: GraphQLApi) -> list[BaseRoute]:
    """``POST /graphql``, the ``/graphql/realtime`` WebSocket and a control route, for the local app."""

    async def subscriptions(_: Request) -> Response:
        # Beside the fault-injection API: lets tests check a refused start registered nothing.
        return JSONResponse({"subscriptions": api.pubsub.count()})

    return [
        Route("/graphql", api.http_endpoint, methods=["POST"]),
        WebSocketRoute("/graphql/realtime", RealtimeEndpoint(api).serve),
        Route("/_cloud-ws/graphql/subscriptions", subscriptions, methods=["GET"]),
    ]
