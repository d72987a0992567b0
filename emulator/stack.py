"""``cloud-ws local``: the whole stack in one process, no AWS account needed.

Start-up order: check the outputs file can be written and the ports are free
(a clear message beats a traceback), start the embedded AWS backend and
provision it, point the handlers' configuration at it, start the WebSocket
server, and write the outputs file only once everything answers. Shut-down
reverses it and removes the outputs file, so no consumer is pointed at a dead
stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from contract import environment as names
from contract import notifications as notify
from contract import outputs as contract
from contract import spec
from emulator.backend import (
    DEV_PASSWORD,
    DEV_USERNAME,
    BackendInfo,
    MotoBackend,
    client,
    ensure_user,
    id_token,
)
from emulator.events import DEFAULT_CONCURRENCY, EventSourceMapping
from emulator.faults import Faults, ShuffleFault, shuffle_refusal
from emulator.gateway import Gateway, GatewaySettings, RefusedHandshakeFilter
from emulator.graphql import GraphQLApi, GraphQLSettings, graphql_routes
from emulator.lambda_api import LambdaApi
from emulator.lambdas import LambdaRuntime
from emulator.notifications import Dispatcher, Provisioned
from emulator.notifications import provision as provision_notifications
from server.runtime import reset_runtime

#: Where the dashboard's built files are looked for (first that exists wins).
DASHBOARD_DIRS = (
    Path(__file__).resolve().parent / "static",
    Path(__file__).resolve().parents[1] / "client" / "javascript" / "dashboard" / "dist",
)


class LocalStackError(Exception):
    """The local stack cannot start; the message says why and what to do."""


@dataclass
class LocalSettings:
    """Options of ``cloud-ws local``."""

    host: str = "127.0.0.1"
    port: int = 8080
    aws_port: int | None = None
    """Port of the embedded AWS endpoint; default ``port + 1`` (ephemeral when ``port`` is 0)."""
    stage: str = "local"
    region: str = "us-east-1"
    outputs: Path = contract.DEFAULT_PATH
    event_source: str = spec.DEFAULT_EVENT_SOURCE
    idle_timeout_seconds: float = spec.API_GATEWAY_LIMITS.idle_timeout_seconds
    max_connection_seconds: float = spec.API_GATEWAY_LIMITS.max_connection_seconds
    lambda_concurrency: int = 32
    delivery_concurrency: int = DEFAULT_CONCURRENCY
    """Batches the delivery mapping invokes at once, as AWS's mapping does (it starts at 5)."""
    shuffle_max_delay_ms: float = 0
    """The shuffle fault at start-up: each delivery invocation first waits a random 0..N ms (0: off)."""
    log_level: str = "WARNING"
    token_lifetime_seconds: int | None = None
    """Local only: ID and access tokens the embedded Cognito mints live this long (None: an hour,
    as moto mints them; Cognito's own minimum is 5 minutes). For watching a connection outlive its
    token: the sweeper closes it, the clients refresh theirs."""
    sweep_interval_seconds: float = spec.SWEEP.local_interval_seconds
    """How often the token sweeper runs (the cloud runs it every minute, waiting for what comes due)."""
    notifications: notify.Targets | None = None
    """Where each attempt's outcome goes (the embedded SNS, real webhooks); None: no notifications."""
    access: dict[str, list[str]] | None = None
    """The access policy (Cognito group -> project patterns); None: every user sees every project."""


#: The shortest ``--token-lifetime``: the clients refresh a token 60 s (or a third of its
#: lifetime, when that is less) before it expires, and must get to use it first.
MIN_TOKEN_LIFETIME_SECONDS = 10


def outputs_for(settings: LocalSettings, port: int, backend: BackendInfo) -> dict[str, Any]:
    """The outputs contract (docs/design.md), for this local stack."""
    base = f"{settings.host}:{port}"
    return {
        contract.WEBSOCKET_URL: f"ws://{base}/{settings.stage}",
        contract.MANAGEMENT_ENDPOINT: f"http://{base}/{settings.stage}",
        contract.EVENT_BUS_NAME: backend.event_bus_name,
        contract.EVENT_SOURCE: backend.event_source,
        contract.REGION: backend.region,
        contract.USER_POOL_ID: backend.user_pool_id,
        contract.USER_POOL_CLIENT_ID: backend.user_pool_client_id,
        contract.CONNECTIONS_TABLE_NAME: backend.tables[spec.CONNECTIONS.env_var],
        contract.AWS_ENDPOINT_URL: backend.endpoint,
        contract.DASHBOARD_URL: f"http://{base}/",
        contract.STAGE: settings.stage,
        contract.DEV_USERNAME: DEV_USERNAME,
        contract.GRAPHQL_URL: f"http://{base}/graphql",
        contract.GRAPHQL_REALTIME_URL: f"ws://{base}/graphql/realtime",
    }


def handler_environment(settings: LocalSettings, port: int, backend: BackendInfo) -> dict[str, str]:
    """What the Pulumi component would set on the functions, pointed at the local stack."""
    return {
        **backend.tables,
        names.AWS_ENDPOINT_URL: backend.endpoint,
        names.AWS_ACCESS_KEY_ID: "local",
        names.AWS_SECRET_ACCESS_KEY: "local",
        names.AWS_REGION: backend.region,
        names.AWS_DEFAULT_REGION: backend.region,
        names.COGNITO_USER_POOL_ID: backend.user_pool_id,
        names.COGNITO_ISSUER: backend.issuer,
        names.COGNITO_JWKS_URL: backend.jwks_url,
        names.COGNITO_CLIENT_IDS: backend.user_pool_client_id,
        names.MANAGEMENT_ENDPOINT: f"http://{settings.host}:{port}/{settings.stage}",
        # The broadcaster hands large fan-outs and retries to invocations of itself,
        # through boto3's Lambda client: the stack serves Lambda's Invoke API.
        names.AWS_ENDPOINT_URL_LAMBDA: f"http://{settings.host}:{port}",
        names.FANOUT_FUNCTION_NAME: spec.BROADCASTER.function,
        names.DELIVERY_QUEUE_URL: backend.queue_url,
        names.DEAD_LETTER_QUEUE_URL: backend.dead_letter_queue_url,
        names.LOG_LEVEL: settings.log_level,
        names.APPSYNC_GRAPHQL_URL: f"http://{settings.host}:{port}/graphql",
        **(
            {names.ACCESS_POLICY: json.dumps(settings.access, sort_keys=True)}
            if settings.access is not None
            else {}
        ),
    }


def _check_settings(settings: LocalSettings) -> None:
    if settings.delivery_concurrency < 1:
        raise LocalStackError("the delivery concurrency must be at least 1")
    refusal = shuffle_refusal(settings.shuffle_max_delay_ms)
    if refusal is not None:
        raise LocalStackError(f"the shuffle fault: {refusal}")
    lifetime = settings.token_lifetime_seconds
    if lifetime is not None and lifetime < MIN_TOKEN_LIFETIME_SECONDS:
        raise LocalStackError(f"the token lifetime must be at least {MIN_TOKEN_LIFETIME_SECONDS} seconds")


def _check_outputs_writable(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_name(path.name + ".probe")
        probe.write_text("{}", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise LocalStackError(f"cannot write the outputs file {path}: {exc.strerror or exc}") from None


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LocalStackError(
            f"port {port} on {host} is not available ({exc.strerror or exc}); choose another with --port"
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


class LocalStack:
    """The assembled local stack."""

    def __init__(self, settings: LocalSettings, announce: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.outputs: dict[str, Any] = {}
        self._announce = announce or (lambda text: print(text, flush=True))
        self._backend = MotoBackend(settings.host, 0, settings.region, settings.token_lifetime_seconds)
        self._info: BackendInfo | None = None

    def _dev_token(self, username: str) -> str:
        assert self._info is not None
        idp = client("cognito-idp", self._info.endpoint, self._info.region)
        ensure_user(idp, self._info.user_pool_id, username)
        return id_token(idp, self._info.user_pool_client_id, username)

    def _extra_routes(self) -> list[BaseRoute]:
        async def outputs(_: Request) -> Response:
            return JSONResponse(self.outputs)

        async def token(request: Request) -> Response:
            username = request.query_params.get("username", DEV_USERNAME)
            value = await asyncio.get_running_loop().run_in_executor(None, self._dev_token, username)
            return JSONResponse({"token": value, "username": username}, headers={"Cache-Control": "no-store"})

        async def home(request: Request) -> Response:
            query = request.url.query  # keep ?deployment=... for the dashboard
            return RedirectResponse("/dashboard/" + (f"?{query}" if query else ""))

        routes: list[BaseRoute] = [
            Route("/_cloud-ws/outputs", outputs, methods=["GET"]),
            Route("/_cloud-ws/token", token, methods=["GET"]),
            # AppSync's stand-in: the same handlers' runtime, tables and user pool.
            *graphql_routes(GraphQLApi(GraphQLSettings(region=self.settings.region))),
        ]

        async def not_built(_: Request) -> Response:
            return HTMLResponse(
                "<h1>cloud-ws local</h1><p>The dashboard is not built: it needs Node.js 20+ and npm "
                "(<code>make js-build</code>, or <code>make run</code> builds it). "
                "The WebSocket API, the @connections API and the outputs "
                '(<a href="/_cloud-ws/outputs">/_cloud-ws/outputs</a>) work without it.</p>',
                status_code=503,
            )

        routes.append(Route("/", home))
        dashboard = next((d for d in DASHBOARD_DIRS if (d / "index.html").is_file()), None)
        if dashboard is not None:
            routes.append(Mount("/dashboard", StaticFiles(directory=dashboard, html=True)))
        else:
            routes.append(Route("/dashboard/", not_built))
        return routes

    def _notifications(self, info: BackendInfo, port: int) -> Provisioned | None:
        """The notifications bus, topic and rules when configured; the broadcaster told of them."""
        targets = self.settings.notifications
        if targets is None or not targets.any:
            return None
        provisioned = provision_notifications(
            client("events", info.endpoint, info.region),
            client("sqs", info.endpoint, info.region),
            client("sns", info.endpoint, info.region),
            f"cloud-ws-{self.settings.stage}",
            targets,
        )
        os.environ[names.NOTIFY_EVENT_BUS_NAME] = provisioned.bus_name
        os.environ[names.NOTIFY_DASHBOARD_URL] = (
            targets.dashboard_url or f"http://{self.settings.host}:{port}/"
        )
        return provisioned

    async def serve(self) -> None:
        """Run until SIGINT/SIGTERM."""
        import uvicorn  # noqa: PLC0415 - heavy; only the local stack needs it

        settings = self.settings
        _check_settings(settings)
        _check_outputs_writable(settings.outputs)
        sock = _bind(settings.host, settings.port)
        port = sock.getsockname()[1]
        aws_port = settings.aws_port if settings.aws_port is not None else (port + 1 if settings.port else 0)
        self._backend.port = aws_port
        try:
            endpoint = self._backend.start()
        except OSError:
            sock.close()
            raise LocalStackError(
                f"port {aws_port} for the embedded AWS endpoint is not available; "
                "choose another with --aws-port"
            ) from None
        lambdas: LambdaRuntime | None = None
        pump: EventSourceMapping | None = None
        dispatcher: Dispatcher | None = None
        try:
            self._info = info = self._backend.provision(endpoint, settings.stage, settings.event_source)
            os.environ.update(handler_environment(settings, port, info))
            notifications = self._notifications(info, port)
            if notifications is not None:
                dispatcher = Dispatcher(
                    client("sqs", endpoint, info.region), client("sns", endpoint, info.region), notifications
                )
                dispatcher.start()
            logging.getLogger("cloud_ws").setLevel(settings.log_level)
            logging.getLogger("uvicorn.error").addFilter(RefusedHandshakeFilter())
            reset_runtime()
            lambdas = LambdaRuntime(settings.lambda_concurrency)
            faults = Faults(shuffle=ShuffleFault(settings.shuffle_max_delay_ms))
            gateway = Gateway(
                GatewaySettings(
                    stage=settings.stage,
                    domain_name=f"{settings.host}:{port}",
                    idle_timeout_seconds=settings.idle_timeout_seconds,
                    max_connection_seconds=settings.max_connection_seconds,
                ),
                lambdas,
                extra_routes=[*LambdaApi(lambdas).routes(), *self._extra_routes()],
                faults=faults,
            )
            pump = EventSourceMapping(
                client("sqs", endpoint, info.region),
                info.queue_url,
                info.queue_arn,
                info.region,
                lambda event: lambdas.invoke_sync(spec.BROADCASTER.function, event) if lambdas else None,
                concurrency=settings.delivery_concurrency,
                shuffle=faults.shuffle,
            )
            limits = spec.API_GATEWAY_LIMITS
            config = uvicorn.Config(
                gateway.app(),
                ws="websockets-sansio",
                # websockets takes (max message, max frame): API Gateway's 128 KB and 32 KB.
                ws_max_size=(limits.message_bytes, limits.frame_bytes),  # type: ignore[arg-type]
                ws_ping_interval=None,  # API Gateway never pings clients; it only answers their pings
                ws_per_message_deflate=False,  # API Gateway does not negotiate compression
                log_level="warning",
                access_log=False,
                lifespan="on",
                # The backend's state dies with the stack: pending $disconnect calls for
                # thousands of just-closed connections are not worth waiting for.
                timeout_graceful_shutdown=3,
            )
            server = uvicorn.Server(config)
            pump.start()
            sweeping = asyncio.create_task(_sweep_tokens(lambdas, settings.sweep_interval_seconds))
            self.outputs = outputs_for(settings, port, info)
            if notifications is not None:
                self.outputs[contract.NOTIFICATION_BUS_NAME] = notifications.bus_name
                if notifications.topic_arn is not None:
                    self.outputs[contract.NOTIFICATION_TOPIC_ARN] = notifications.topic_arn
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not serving.done():
                await asyncio.sleep(0.02)
            if server.started:
                _write_atomically(settings.outputs, self.outputs)
                self._announce(_banner(self.outputs, settings.outputs))
            try:
                await serving
            finally:
                sweeping.cancel()
        finally:
            if pump is not None:
                pump.stop()
            if dispatcher is not None:
                dispatcher.stop()
            if lambdas is not None:
                lambdas.shutdown()
            self._backend.stop()
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                settings.outputs.unlink()


async def _sweep_tokens(lambdas: LambdaRuntime, interval: float) -> None:
    """Run the token sweeper every ``interval`` seconds, as the cloud's schedule runs it every minute.

    With no horizon: each run closes what is due now, so a connection is closed
    within ``interval`` (plus the verifier's leeway) of its token's ``exp``.
    """
    task = {spec.SWEEP_TASK_KEY: {"horizon_seconds": 0}}
    while True:
        await asyncio.sleep(interval)
        try:
            await lambdas.invoke(spec.SWEEPER.function, task)
        except Exception:
            logging.getLogger("cloud_ws.emulator").exception("the token sweeper failed")


def _banner(outputs: dict[str, Any], path: Path) -> str:
    command = _command()
    lines = [
        "cloud-ws local is running",
        f"  WebSocket API     {outputs['websocket_url']}",
        f"  @connections API  {outputs['management_endpoint']}",
        f"  GraphQL API       {outputs['graphql_url']}  (real-time: {outputs['graphql_realtime_url']})",
        f"  AWS endpoint      {outputs['aws_endpoint_url']}  (DynamoDB, Cognito, EventBridge)",
        f"  dashboard         {outputs['dashboard_url']}",
        f"  outputs           {path}",
        f"  dev user          {DEV_USERNAME} / {DEV_PASSWORD}   ({command} token prints a fresh ID token)",
        "",
        "Next, in another terminal:",
        f"  {command} monitor D1BRV40      # watch a deployment live",
        f"  {command} demo D1BRV40         # and in a third: play one (a stack fails in layer 3)",
        f"  {command} list                 # recent deployments",
        f"  open {outputs['dashboard_url']} in a browser for the dashboard",
        "Ctrl-C stops the stack. A restart keeps nothing: every start is a new user pool, empty tables",
        f"and no history (a running `{command} monitor` signs in again and starts afresh).",
    ]
    return "\n".join(lines)


def _command() -> str:
    """How to run ``cloud-ws`` from here: its name when it is on PATH, else the path it was started from."""
    started = Path(sys.argv[0])
    if started.name == "cloud-ws" and shutil.which("cloud-ws") != str(started.resolve()):
        try:
            return str(started.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(started.resolve())
    return "cloud-ws"


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the event loop carries every post and frame of the stack."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(settings: LocalSettings) -> int:
    """Run the local stack in the foreground; the process exit code."""
    stack = LocalStack(settings)
    # uvicorn handles the first SIGINT/SIGTERM (graceful stop) and re-raises it
    # afterwards; these handlers make that re-raise harmless so our own clean-up
    # runs, and let a second signal during clean-up end the process at once.
    stopping = {"count": 0}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping["count"] += 1
        if stopping["count"] > 2:
            os._exit(128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(stack.serve())
    except LocalStackError as exc:
        print(f"cloud-ws local: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
