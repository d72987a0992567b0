"""Lambda's Invoke API for the local stack, so handlers that invoke functions work unchanged.

The broadcaster hands large fan-outs and retries to asynchronous invocations
of itself through boto3's ``lambda`` client; the local stack points that client
here (``AWS_ENDPOINT_URL_LAMBDA``) and runs the invocation on its own Lambda
runtime. ``Event`` invocations answer 202 at once and run in the background
(as Lambda queues them); ``RequestResponse`` ones answer with the result.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from contract.log import get_logger
from emulator.lambdas import LambdaRuntime

log = get_logger("emulator.lambda_api")


def _error(status: int, error_type: str, message: str) -> Response:
    """An error as Lambda's REST-JSON protocol sends it, so botocore raises the modelled exception."""
    return JSONResponse(
        {"Type": "User", "message": message}, status_code=status, headers={"x-amzn-ErrorType": error_type}
    )


class LambdaApi:
    """``POST /2015-03-31/functions/{name}/invocations`` over the local Lambda runtime."""

    def __init__(self, lambdas: LambdaRuntime) -> None:
        self._lambdas = lambdas
        self._background: set[asyncio.Task[None]] = set()

    async def _run_in_background(self, function: str, payload: Any) -> None:
        try:
            await self._lambdas.invoke(function, payload)
        except Exception:  # Lambda would retry it twice and then send it to the on-failure destination
            log.exception("asynchronous invocation failed", extra={"function": function})

    async def invoke(self, request: Request) -> Response:
        """Run the named function with the request body as its event."""
        name = request.path_params["function"].rsplit(":", 1)[-1]  # a name or an ARN
        if not self._lambdas.has(name):
            return _error(404, "ResourceNotFoundException", f"Function not found: {name}")
        try:
            payload = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error(400, "InvalidRequestContentException", "Could not parse request body into json")
        kind = request.headers.get("x-amz-invocation-type", "RequestResponse")
        if kind == "DryRun":
            return Response(status_code=204)
        if kind == "Event":
            task = asyncio.create_task(self._run_in_background(name, payload))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return Response(status_code=202)
        try:
            result = await self._lambdas.invoke(name, payload)
        except Exception as exc:
            log.exception("invocation failed", extra={"function": name})
            return JSONResponse(
                {"errorMessage": str(exc), "errorType": type(exc).__name__},
                headers={"X-Amz-Function-Error": "Unhandled"},
            )
        return JSONResponse(result)

    def routes(self) -> list[BaseRoute]:
        """The Invoke route (the only part of Lambda's API the handlers use)."""
        return [Route("/2015-03-31/functions/{function}/invocations", self.invoke, methods=["POST"])]
