"""``cloud-ws local``: run the whole stack on this machine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from contract import notifications as notify
from contract.outputs import default_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cloud-ws local``."""
    parser.add_argument("--port", type=int, default=8080, help="WebSocket/HTTP port (0 picks a free one)")
    parser.add_argument(
        "--aws-port", type=int, default=None, help="embedded AWS endpoint port (default: --port + 1)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument(
        "--outputs",
        type=Path,
        default=None,
        help="where to write the outputs file (default: .cloud-ws/outputs.json)",
    )
    parser.add_argument("--stage", default="local", help="stage name in the URLs")
    parser.add_argument(
        "--idle-timeout", type=float, default=600.0, help="seconds before an idle connection closes"
    )
    parser.add_argument(
        "--max-duration", type=float, default=7200.0, help="seconds before any connection closes"
    )
    parser.add_argument(
        "--delivery-concurrency",
        type=int,
        default=None,
        metavar="N",
        help="batches the delivery queue's mapping invokes at once, as AWS's mapping does (default: 5)",
    )
    parser.add_argument(
        "--shuffle-ms",
        type=float,
        default=0.0,
        metavar="N",
        help="start with the shuffle fault on: each delivery invocation first waits a random 0..N ms "
        "(default: 0, off; POST /_cloud-ws/faults/shuffle changes it)",
    )
    parser.add_argument(
        "--notifications",
        default=None,
        metavar="JSON",
        help="where each attempt's outcome goes, as the component's `notifications` argument: a JSON "
        'object or @FILE, e.g. \'{"projects": ["alpha"], "webhooks": [{"url": "http://..."}]}\' '
        "(default: the embedded SNS topic only)",
    )
    parser.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="URL",
        help="POST each attempt's outcome there, Slack-compatible (repeatable; adds to --notifications)",
    )
    parser.add_argument(
        "--no-notifications", action="store_true", help="no notifications bus, topic or webhooks"
    )
    parser.add_argument(
        "--token-lifetime",
        type=int,
        default=None,
        metavar="SECONDS",
        help="local only: the embedded Cognito's ID and access tokens expire this long after issue "
        "(default: an hour; at least 10), to watch connections outlive their tokens",
    )
    parser.add_argument(
        "--access",
        default=None,
        metavar="JSON",
        help="who may watch which projects, as the component's `access` argument: Cognito group -> "
        'project patterns (`*` matches any run of characters), e.g. \'{"team-a": ["alpha"], "sre": ["*"]}\' '
        "or @FILE (default: every signed-in user sees every project)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every handler invocation")


def run(args: argparse.Namespace) -> int:
    """Run in the foreground until Ctrl-C."""
    from emulator.faults import shuffle_refusal  # noqa: PLC0415 - heavy imports only for this command
    from emulator.stack import MIN_TOKEN_LIFETIME_SECONDS, LocalSettings  # noqa: PLC0415
    from emulator.stack import run as run_stack  # noqa: PLC0415

    for name in ("port", "aws_port"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 65535:
            print(f"cloud-ws local: --{name.replace('_', '-')} must be between 0 and 65535", flush=True)
            return 2
    if args.delivery_concurrency is not None and args.delivery_concurrency < 1:
        print("cloud-ws local: --delivery-concurrency must be at least 1", flush=True)
        return 2
    refusal = shuffle_refusal(args.shuffle_ms)
    if refusal is not None:
        print(f"cloud-ws local: --shuffle-ms: {refusal}", flush=True)
        return 2
    try:
        notifications = _notifications(args)
        access = _access(args.access)
    except ValueError as exc:
        print(f"cloud-ws local: {exc}", flush=True)
        return 2
    if args.token_lifetime is not None and args.token_lifetime < MIN_TOKEN_LIFETIME_SECONDS:
        print(f"cloud-ws local: --token-lifetime must be at least {MIN_TOKEN_LIFETIME_SECONDS}", flush=True)
        return 2
    settings = LocalSettings(
        host=args.host,
        port=args.port,
        aws_port=args.aws_port,
        stage=args.stage,
        outputs=args.outputs or default_path(),
        idle_timeout_seconds=args.idle_timeout,
        max_connection_seconds=args.max_duration,
        log_level="INFO" if args.verbose else "WARNING",
        shuffle_max_delay_ms=args.shuffle_ms,
        token_lifetime_seconds=args.token_lifetime,
        notifications=notifications,
        access=access,
    )
    if args.delivery_concurrency is not None:
        settings.delivery_concurrency = args.delivery_concurrency
    return run_stack(settings)


def _access(raw: str | None) -> dict[str, list[str]] | None:
    """``--access``: the policy as the handlers read it (ValueError says what is wrong)."""
    from contract.authorization import AccessPolicy, AccessPolicyError  # noqa: PLC0415

    if raw is None:
        return None
    try:
        text = Path(raw[1:]).read_text(encoding="utf-8") if raw.startswith("@") else raw
    except OSError as exc:
        raise ValueError(f"--access: cannot read {raw[1:]}: {exc.strerror or exc}") from None
    try:
        policy = AccessPolicy.parse(text)
    except AccessPolicyError as exc:
        raise ValueError(f"--access: {str(exc).removeprefix('ACCESS_POLICY').lstrip(': ')}") from None
    return {group: list(patterns) for group, patterns in policy.groups.items()}


def _notifications(args: argparse.Namespace) -> notify.Targets | None:
    """``--notifications`` and ``--webhook`` checked into the targets (ValueError names the field)."""
    if args.no_notifications:
        if args.notifications or args.webhook:
            raise ValueError("--no-notifications cannot be combined with --notifications or --webhook")
        return None
    raw: Any = {}
    if args.notifications:
        text = args.notifications
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"--notifications: cannot read {text[1:]}: {exc.strerror or exc}") from None
        try:
            raw = json.loads(text)
        except ValueError:
            raise ValueError("--notifications must be a JSON object (or @FILE holding one)") from None
    if args.webhook:
        if not isinstance(raw, dict):
            raise ValueError("--notifications must be a JSON object (or @FILE holding one)")
        raw = {**raw, "webhooks": [*raw.get("webhooks", []), *({"url": url} for url in args.webhook)]}
    return notify.parse_targets(raw, local=True)
