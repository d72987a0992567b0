"""``cloud-ws demo [DEPLOYMENT_ID]``: play a realistic deployment through the plugin.

Four layers of three stacks each; stacks of a layer deploy side by side and
their events interleave; resources, progress and log lines (one warning)
stream in, and ``database-rds`` in layer 3 fails with "Subnet not found", so
the deployment ends ``failed`` without starting layer 4. Paced so a person can
watch it in the dashboard or with ``cloud-ws monitor`` (20 to 35 s, by the
schedule :func:`script` draws for the id; :func:`playing_time_range`);
``--speed`` plays it faster.

Cut short — Ctrl-C, or the reader of its output gone (``cloud-ws demo | head
-3``) — it reports the stacks under way and the deployment ``cancelled``
before it exits, so no watcher is left with a deployment that deploys for
ever.

The script is written in simulated time (a stack takes minutes, as a real one
does) and played :data:`SIMULATED_PER_SECOND` times faster. Every duration the
demo reports — the ``duration_seconds`` of stacks and of the deployment, and
the times it prints — is measured while it plays, so it matches the events'
own timestamps and what a watcher sees elapse; no simulated figure is
presented as a real one.

Exit codes: 0 when every event was delivered, 1 when some were not, 2 for bad
arguments or outputs, 130 after Ctrl-C, 141 (as for SIGPIPE) when its output
was closed.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TextIO

from cloud_ws.connection import add_outputs_argument
from contract.authorization import PROJECT_PATTERN, is_valid_project
from contract.outputs import DASHBOARD_URL, PLUGIN_NEEDS, OutputsError, load_outputs
from contract.protocol import DEPLOYMENT_ID_PATTERN, is_valid_deployment_id

if TYPE_CHECKING:
    from plugin.hooks import LifecycleHooks

#: Simulated seconds played per real second at ``--speed 1``.
SIMULATED_PER_SECOND = 30.0


@dataclass(frozen=True)
class DemoStack:
    """A stack of the demo deployment."""

    name: str
    resource_types: tuple[str, ...]
    resource_count: int
    failure: str | None = None
    warning: str | None = None


LAYERS: tuple[tuple[str, tuple[DemoStack, ...]], ...] = (
    (
        "network",
        (
            DemoStack(
                "vpc", ("aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/routeTable:RouteTable"), 15
            ),
            DemoStack("dns", ("aws:route53/zone:Zone", "aws:route53/record:Record"), 6),
            DemoStack(
                "transit-gateway",
                (
                    "aws:ec2transitgateway/transitGateway:TransitGateway",
                    "aws:ec2transitgateway/vpcAttachment:VpcAttachment",
                ),
                5,
            ),
        ),
    ),
    (
        "security",
        (
            DemoStack("iam-roles", ("aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy"), 22),
            DemoStack("kms-keys", ("aws:kms/key:Key", "aws:kms/alias:Alias"), 4),
            DemoStack(
                "security-groups",
                (
                    "aws:ec2/securityGroup:SecurityGroup",
                    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                ),
                12,
                warning="ingress rule web-https allows 0.0.0.0/0 on port 443",
            ),
        ),
    ),
    (
        "data",
        (
            DemoStack(
                "database-rds",
                (
                    "aws:rds/subnetGroup:SubnetGroup",
                    "aws:rds/parameterGroup:ParameterGroup",
                    "aws:rds/instance:Instance",
                ),
                9,
                failure="creating RDS DB Instance (orders): InvalidSubnet: Subnet not found: subnet-0b7d41",
            ),
            DemoStack(
                "cache-redis",
                ("aws:elasticache/subnetGroup:SubnetGroup", "aws:elasticache/cluster:Cluster"),
                5,
            ),
            DemoStack("object-storage", ("aws:s3/bucketV2:BucketV2", "aws:s3/bucketPolicy:BucketPolicy"), 8),
        ),
    ),
    (
        "application",
        (
            DemoStack("api-service", ("aws:ecs/service:Service", "aws:lb/targetGroup:TargetGroup"), 18),
            DemoStack("worker-service", ("aws:ecs/service:Service", "aws:sqs/queue:Queue"), 11),
            DemoStack(
                "frontend-cdn", ("aws:cloudfront/distribution:Distribution", "aws:s3/bucketV2:BucketV2"), 7
            ),
        ),
    ),
)


@dataclass(order=True)
class Step:
    """One hook call at a simulated time."""

    at: float
    order: int
    line: str = field(compare=False)
    """What the demo prints when it plays the step."""
    hook: str = field(compare=False)
    """Name of the :class:`~plugin.hooks.LifecycleHooks` method to call."""
    args: tuple[Any, ...] = field(compare=False, default=())
    kwargs: dict[str, Any] = field(compare=False, default_factory=dict)

    def call(self, hooks: LifecycleHooks) -> object:
        """Call the hook on ``hooks``."""
        return getattr(hooks, self.hook)(*self.args, **self.kwargs)


class _Script:
    """Collects the steps of the demo in simulated time."""

    def __init__(self, deployment_id: str) -> None:
        self.deployment_id = deployment_id
        self.steps: list[Step] = []

    def at(self, when: float, line: str, hook: str, *args: Any, **kwargs: Any) -> None:
        self.steps.append(Step(when, len(self.steps), line, hook, (self.deployment_id, *args), kwargs))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cloud-ws demo``."""
    parser.add_argument(
        "deployment_id", nargs="?", metavar="DEPLOYMENT_ID", help="deployment id (default: a new demo-xxxxxx)"
    )
    add_outputs_argument(parser)
    low, high = playing_time_range()
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help=f"playback speed; 1 takes {low}-{high} s, depending on the id (default: 1)",
    )
    parser.add_argument("--environment", default="dev", help="environment named in the events (default: dev)")
    parser.add_argument(
        "--project",
        default=None,
        help="the project the deployment belongs to (default: default); the stack's access policy "
        "decides which groups may watch it",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for delivery at the end",
    )


def run(args: argparse.Namespace) -> int:
    """Play the demo deployment; returns the exit code."""
    deployment_id = args.deployment_id or f"demo-{secrets.token_hex(3)}"
    if not is_valid_deployment_id(deployment_id):
        return _fail(f"DEPLOYMENT_ID must match {DEPLOYMENT_ID_PATTERN}", 2)
    if not args.speed > 0:
        return _fail("--speed must be a positive number", 2)
    if args.project is not None and not is_valid_project(args.project):
        return _fail(f"--project must match {PROJECT_PATTERN}, not {args.project!r}", 2)
    try:
        # The plugin's keys, checked before it is imported: building the CLI parser must not pull in boto3.
        outputs = load_outputs(args.outputs, needs=PLUGIN_NEEDS)
    except OutputsError as exc:
        return _fail(str(exc), 2)
    from plugin import OrchestratorPlugin  # noqa: PLC0415

    plugin = OrchestratorPlugin.from_outputs(outputs, environment=args.environment, project=args.project)
    out = sys.stdout
    steps = script(deployment_id, random.Random(deployment_id))
    running: dict[str, int | None] = {}
    cut_short: int | None = None
    try:
        seconds = steps[-1].at / (SIMULATED_PER_SECOND * args.speed)
        print(
            f"Deployment {deployment_id}: {len(LAYERS)} layers, one stack will fail;"
            f" plays for {_about(seconds)}.",
            file=out,
        )
        print(f"Watch it:  cloud-ws monitor {deployment_id}", file=out)
        if outputs.get(DASHBOARD_URL):
            print(f"Dashboard: {outputs[DASHBOARD_URL]}", file=out, flush=True)
        play(steps, plugin, speed=args.speed, out=out, running=running)
    except KeyboardInterrupt:
        cut_short = 130
        _cancel(plugin, deployment_id, running, "demo interrupted")
        print("interrupted: deployment marked cancelled", file=sys.stderr)
    except BrokenPipeError:
        cut_short = 141
        # Whoever read the output is gone: nothing more goes to it, not even at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _cancel(plugin, deployment_id, running, "demo output closed")
    try:
        plugin.close(args.timeout)
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for delivery
        plugin.close(0)
        return 130
    if cut_short is not None:
        return cut_short
    stats = plugin.stats
    if stats.undelivered or stats.queued or stats.in_flight or stats.refused:
        reason = stats.last_error or "delivery timed out"
        return _fail(f"{stats.accepted - stats.sent} of {stats.accepted} events not delivered: {reason}", 1)
    packed = f" ({stats.packed_entries} packed entries)" if stats.packed_entries else ""
    print(f"{stats.sent} events delivered in {stats.put_calls} PutEvents calls{packed}.", file=out)
    return 0


def _cancel(hooks: LifecycleHooks, deployment_id: str, running: dict[str, int | None], reason: str) -> None:
    """The stacks under way and the deployment end ``cancelled``: the demo stops here."""
    for name, layer in running.items():
        data = {"stack_name": name, "environment": hooks.environment, "layer": layer}
        hooks.emit("stack.cancelled", deployment_id, {k: v for k, v in data.items() if v is not None})
    hooks.deployment_completed(deployment_id, "cancelled", error_message=reason)


@functools.cache
def playing_time_range(samples: int = 20) -> tuple[int, int]:
    """How long the demo plays at speed 1, lowest to highest over ids, to the 5 s outside."""
    times = [
        script(f"demo-{index:06x}", random.Random(f"demo-{index:06x}"))[-1].at / SIMULATED_PER_SECOND
        for index in range(samples)
    ]
    return int(min(times) // 5 * 5), int(-(-max(times) // 5) * 5)


def _about(seconds: float) -> str:
    return f"about {round(seconds)} s" if seconds >= 1 else "under a second"


def script(deployment_id: str, rng: random.Random) -> list[Step]:
    """The demo's hook calls in simulated time (seconds from the start), in play order."""
    plan = _Script(deployment_id)
    total = len(LAYERS)
    stacks = sum(len(layer_stacks) for _, layer_stacks in LAYERS)
    plan.at(0.0, "deployment started", "deployment_started", total_layers=total)
    plan.at(1.0, "log: plan", "log", f"Deploying {stacks} stacks in {total} layers")
    now = 5.0
    for number, (layer_name, layer_stacks) in enumerate(LAYERS, start=1):
        plan.at(
            now,
            f"layer {number}/{total}: {layer_name}",
            "deployment_status",
            "deploying",
            current_layer=number,
            total_layers=total,
        )
        now = 5.0 + max(
            _stack(plan, stack, number, now + rng.uniform(0.5, 4.0), rng) for stack in layer_stacks
        )
        failed = [stack.name for stack in layer_stacks if stack.failure]
        if failed:
            message = f"stack {failed[0]} failed in layer {number}; {_skipped(number, total)}"
            plan.at(now, "log: giving up", "log", message, level="error")
            plan.at(
                now + 1.0,
                "deployment failed",
                "deployment_completed",
                "failed",
                error_message=message,
                duration_seconds=round(now),
            )
            break
    else:
        plan.at(now, "deployment succeeded", "deployment_completed", "succeeded", duration_seconds=round(now))
    return sorted(plan.steps)


def _skipped(failed_layer: int, total: int) -> str:
    if failed_layer == total:
        return "it was the last layer"
    if failed_layer + 1 == total:
        return f"layer {total} not deployed"
    return f"layers {failed_layer + 1}-{total} not deployed"


def _stack(plan: _Script, stack: DemoStack, layer: int, start: float, rng: random.Random) -> float:
    """Schedule one stack's events; returns when it ends."""
    name = stack.name
    plan.at(start, f"  {name}: started", "stack_started", name, layer=layer)
    duration = rng.uniform(60.0, 330.0)
    count = stack.resource_count
    # A failing stack stops after about 60% of its resources, as a real one would.
    stop_at = max(1, int(count * 0.6)) if stack.failure else count
    step = duration / (count + 1)
    for index in range(1, stop_at + 1):
        when = start + index * step + rng.uniform(-step / 3, step / 3)
        resource_type = stack.resource_types[(index - 1) % len(stack.resource_types)]
        message = f"created {resource_type} {name}-{resource_type.rsplit(':', 1)[-1].lower()}-{index}"
        plan.at(when, f"  {name}: {message}", "log", message, stack_name=name)
        if index % 3 == 0 or index == count:
            plan.at(
                when + 0.01,
                f"  {name}: {index}/{count} resources",
                "stack_progress",
                name,
                resources_done=index,
                resources_in_progress=1,
                layer=layer,
            )
        if stack.warning and index == count // 2:
            plan.at(when + 0.02, f"  {name}: warning", "log", stack.warning, level="warning", stack_name=name)
    if stack.failure is not None:
        end = start + (stop_at + 1) * step
        plan.at(end - 0.5, f"  {name}: error", "log", stack.failure, level="error", stack_name=name)
        plan.at(
            end,
            f"  {name}: FAILED: {stack.failure}",
            "stack_failed",
            name,
            stack.failure,
            duration_seconds=round(end - start),
            layer=layer,
        )
        return end
    plan.at(
        start + duration,
        f"  {name}: deployed ({count} resources)",
        "stack_deployed",
        name,
        duration_seconds=round(duration),
        resource_count=count,
        layer=layer,
    )
    return start + duration


def play(
    steps: list[Step],
    hooks: LifecycleHooks,
    *,
    speed: float,
    out: TextIO,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    running: dict[str, int | None] | None = None,
) -> None:
    """Call each step's hook at its simulated time, scaled by ``speed``; print a line per step.

    The durations the steps report are replaced by the ones measured here
    (from the stack's, or the deployment's, start), so they are real.
    ``running`` is kept up to date with the stacks started and not yet ended
    (name → layer), for whoever has to cancel them when playing stops early.
    """
    started = clock()
    began: dict[str | None, float] = {}
    """When each stack (by name), and the deployment (``None``), started, on ``clock``."""
    for step in steps:
        due = started + step.at / (SIMULATED_PER_SECOND * speed)
        delay = due - clock()
        if delay > 0:
            sleep(delay)
        now = clock()
        line = step.line
        subject = _subject(step)
        if step.hook in ("deployment_started", "stack_started"):
            began[subject] = now
        elif "duration_seconds" in step.kwargs and subject in began:
            measured = round(now - began[subject], 1)
            step = replace(step, kwargs={**step.kwargs, "duration_seconds": measured})
            line += f" after {measured:.1f}s"
        step.call(hooks)
        if running is not None and subject is not None:
            if step.hook == "stack_started":
                running[subject] = step.kwargs.get("layer")
            elif step.hook in ("stack_deployed", "stack_failed"):
                running.pop(subject, None)
        print(f"{now - started:6.1f}s  {line}", file=out, flush=True)


def _subject(step: Step) -> str | None:
    """The stack a step is about (its name), or ``None`` for the deployment itself."""
    return str(step.args[1]) if step.hook.startswith("stack_") and len(step.args) > 1 else None


def _fail(message: str, code: int) -> int:
    print(f"cloud-ws demo: {' '.join(message.split())}", file=sys.stderr)
    return code
