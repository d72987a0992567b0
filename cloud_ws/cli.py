"""``cloud-ws``: one command, one subcommand per job (see docs/design.md, Commands).

Each subcommand is one :class:`Command` entry in :data:`COMMANDS`, naming its
module under ``cloud_ws.commands``; the module is imported only when the parser
is built or the command runs, and its heavy dependencies only inside its
``run``, so ``cloud-ws emit`` never pays for the local stack's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Command:
    """One subcommand of ``cloud-ws``: adding a command is one entry in :data:`COMMANDS`.

    Args:
        name: What follows ``cloud-ws`` on the command line.
        help: One line, shown in ``cloud-ws --help`` and as the subcommand's description.
        module: The module under ``cloud_ws.commands`` exposing ``add_arguments(parser)``
            and ``run(args) -> int``.
    """

    name: str
    help: str
    module: str

    def load(self) -> ModuleType:
        """The command's module (imported on first use: its dependencies are its own)."""
        return importlib.import_module(f"cloud_ws.commands.{self.module}")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's options to its subparser."""
        self.load().add_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        """Run the command; returns the process exit code."""
        code: int = self.load().run(args)
        return code


#: Every subcommand, in the order ``cloud-ws --help`` lists them.
COMMANDS: tuple[Command, ...] = (
    Command(
        "local",
        "run the whole stack on this machine (no AWS account needed; a restart keeps nothing)",
        "local",
    ),
    Command("token", "print a fresh Cognito ID token (the local dev user by default)", "token"),
    Command("emit", "emit one event through the plugin", "emit"),
    Command("demo", "play a demo deployment", "demo"),
    Command("monitor", "watch a deployment live (--json, --until-complete for CI)", "monitor"),
    Command(
        "list", "recent deployments you may watch, newest first (--json for scripts)", "list_deployments"
    ),
    Command(
        "pulumi",
        "run pulumi (cloud-ws pulumi -- up ...) and report its update as a deployment",
        "pulumi_wrapper",
    ),
    Command(
        "notify",
        "notifications: `notify test` sends a sample outcome to the topic and webhooks configured",
        "notify",
    ),
)


def command(name: str) -> Command:
    """The subcommand called ``name``.

    Raises:
        KeyError: No subcommand has that name.
    """
    for entry in COMMANDS:
        if entry.name == name:
            return entry
    raise KeyError(name)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand's options."""
    parser = argparse.ArgumentParser(prog="cloud-ws", description="Real-time deployment monitoring.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in COMMANDS:
        entry.add_arguments(sub.add_parser(entry.name, help=entry.help, description=entry.help))
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
    return command(args.command).run(args)


if __name__ == "__main__":
    sys.exit(main())
