"""``cloud-ws``: one command, one subcommand per job (see docs/design.md, Commands).

Each subcommand lives in ``cloud_ws.commands.<name>`` and is imported only when
it runs, so ``cloud-ws emit`` never pays for the local stack's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Subcommand name → module under ``cloud_ws.commands`` exposing ``add_arguments`` and ``run``.
COMMANDS: dict[str, str] = {
    "local": "local",
    "token": "token",
    "emit": "emit",
    "demo": "demo",
    "monitor": "monitor",
    "list": "list_deployments",
    "pulumi": "pulumi_wrapper",
    "notify": "notify",
}

HELP: dict[str, str] = {
    "local": "run the whole stack on this machine (no AWS account needed; a restart keeps nothing)",
    "token": "print a fresh Cognito ID token (the local dev user by default)",
    "emit": "emit one event through the plugin",
    "demo": "play a demo deployment",
    "monitor": "watch a deployment live (--json, --until-complete for CI)",
    "list": "recent deployments you may watch, newest first (--json for scripts)",
    "pulumi": "run pulumi (cloud-ws pulumi -- up ...) and report its update as a deployment",
    "notify": "notifications: `notify test` sends a sample outcome to the topic and webhooks configured",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand's options."""
    parser = argparse.ArgumentParser(prog="cloud-ws", description="Real-time deployment monitoring.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        command = importlib.import_module(f"cloud_ws.commands.{module}")
        command.add_arguments(sub.add_parser(name, help=HELP[name], description=HELP[name]))
    return parser


def version() -> str:
    """The installed distribution's version (the source tree's, when run from a checkout)."""
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version("cloud-ws")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cloud-ws`` script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    command = importlib.import_module(f"cloud_ws.commands.{COMMANDS[args.command]}")
    code: int = command.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
