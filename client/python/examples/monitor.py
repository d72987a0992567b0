"""Print a deployment's events as they happen, with the handler API.

Against ``cloud-ws local`` (``make run``) it needs nothing else: the client
signs the local dev user in on every connection. Against a cloud stack, pass
``--token`` (``cloud-ws token`` prints one).

    python client/python/examples/monitor.py DEPLOYMENT_ID [--outputs .cloud-ws/outputs.json]

Exits 0 when the deployment succeeds, 1 when it fails or is cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from cloud_ws_client import (
    CloudWebSocketClient,
    DeploymentStatus,
    ErrorMessage,
    LogCreated,
    Message,
    StackEvent,
)


async def watch(deployment_id: str, outputs: str, token: str | None) -> int:
    """Follow one deployment until it ends; returns the exit code."""
    client = CloudWebSocketClient.from_outputs(outputs, token)
    outcome: list[str] = []

    async def on_status(message: Message) -> None:
        assert isinstance(message, DeploymentStatus)
        layer = f" (layer {message.current_layer}/{message.total_layers})" if message.total_layers else ""
        print(f"#{message.seq} deployment {message.status}{layer}")
        if message.is_terminal:
            outcome.append(message.status or "failed")
            await client.disconnect()  # run() returns once the messages received so far are handled

    def on_stack(message: Message) -> None:
        assert isinstance(message, StackEvent)
        resources = message.resource_count or message.resources_done
        detail = message.error_message or (f"{resources} resources" if resources else "")
        print(f"#{message.seq} stack {message.stack_name} {message.type.split('.')[1]} {detail}".rstrip())

    def on_log(message: Message) -> None:
        assert isinstance(message, LogCreated)
        print(f"#{message.seq} [{message.level}] {message.message}")

    def on_error(message: Message) -> None:
        assert isinstance(message, ErrorMessage)
        print(f"server refused {message.action}: {message.code}: {message.message}")

    client.on("deployment.status", on_status)
    for stack_event in ("stack.started", "stack.progress", "stack.deployed", "stack.failed"):
        client.on(stack_event, on_stack)
    client.on("log.created", on_log)
    client.on("error", on_error)

    await client.subscribe(deployment_id, since=0)  # since=0: the whole history first, then live
    await client.run()
    return 0 if outcome == ["succeeded"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("deployment_id")
    parser.add_argument("--outputs", default=".cloud-ws/outputs.json")
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # reconnects are logged
    return asyncio.run(watch(args.deployment_id, args.outputs, args.token))


if __name__ == "__main__":
    raise SystemExit(main())
