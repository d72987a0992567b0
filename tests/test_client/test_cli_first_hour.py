"""The CLI in a person's first hour: `--version`, `demo` cut short (a closed pipe, Ctrl-C), the
demo's help against its own schedule, and the messages for a refused token, against the
local stack where a deployment is involved."""

from __future__ import annotations

import base64
import json
import random
import re
import signal
import subprocess
import time
from datetime import UTC, datetime

import pytest

from cloud_ws import cli
from cloud_ws.commands import demo, monitor
from tests.support.local_stack import CLI, ROOT, LocalStackProcess, cloud_ws, finish
from tests.test_client.conftest import deployment

pytestmark = pytest.mark.slow


def snapshot(stack: LocalStackProcess, deployment_id: str) -> dict[str, object]:
    """The deployment's snapshot data, from `cloud-ws monitor --json --until-complete` (which ends
    at once on an ended deployment)."""
    code, out, err = finish(
        cloud_ws("monitor", deployment_id, "--outputs", str(stack.outputs_path), "--json", "--until-complete")
    )
    assert code in (0, 1), err
    data: dict[str, object] = json.loads(out.splitlines()[1])["data"]
    return data


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert re.fullmatch(r"cloud-ws \S+\n", capsys.readouterr().out)


def test_demo_into_a_closed_pipe_cancels_without_a_traceback(stack: LocalStackProcess) -> None:
    """`cloud-ws demo | head -3`: the reader is gone after three lines; the demo says nothing more,
    reports the running stacks and the deployment cancelled, and exits as a SIGPIPE'd command does."""
    dep = deployment()
    process = subprocess.Popen(
        [*CLI, "demo", dep, "--outputs", str(stack.outputs_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(3)]  # what `head -3` reads
    while ": started" not in lines[-1]:  # until a stack is under way, so one is cancelled too
        lines.append(process.stdout.readline())
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 141
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
    data = snapshot(stack, dep)
    assert data["status"] == "cancelled"
    stacks = data["stacks"]
    assert isinstance(stacks, dict)
    assert "cancelled" in {fields["status"] for fields in stacks.values()}
    assert "deploying" not in {fields["status"] for fields in stacks.values()}


def test_ctrl_c_on_demo_exits_130_and_reports_cancelled(stack: LocalStackProcess) -> None:
    dep = deployment()
    process = cloud_ws("demo", dep, "--outputs", str(stack.outputs_path))
    assert process.stdout is not None
    while ": started" not in process.stdout.readline():
        pass
    process.send_signal(signal.SIGINT)
    code, _, err = finish(process)
    assert code == 130, err
    assert "Traceback" not in err
    assert "interrupted: deployment marked cancelled" in err
    assert snapshot(stack, dep)["status"] == "cancelled"


def test_the_demos_help_says_how_long_its_schedule_plays(capsys: pytest.CaptureFixture[str]) -> None:
    """The help's range holds every id's schedule, and the demo's first line is its own schedule."""
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "about 40 s" not in help_text
    found = re.search(r"1 takes (\d+)-(\d+) s", help_text)
    assert found is not None
    low, high = int(found[1]), int(found[2])
    rng = random.Random(7)
    for _ in range(100):
        dep = f"demo-{rng.randrange(16**6):06x}"
        seconds = demo.script(dep, random.Random(dep))[-1].at / demo.SIMULATED_PER_SECOND
        assert low <= seconds <= high, dep


def test_the_demo_says_how_long_it_will_play(stack: LocalStackProcess) -> None:
    dep = deployment()
    code, out, err = finish(cloud_ws("demo", dep, "--outputs", str(stack.outputs_path), "--speed", "2"))
    assert code == 0, err
    expected = demo.script(dep, random.Random(dep))[-1].at / demo.SIMULATED_PER_SECOND / 2
    assert f"plays for about {round(expected)} s." in out.splitlines()[0]
    # The last step's own time stamp is the schedule's end (it sleeps until each step is due).
    last = float(out.splitlines()[-2].split("s", 1)[0])
    assert last >= expected - 0.05


def jwt(claims: dict[str, object]) -> str:
    """An unsigned token with these claims (the server refuses it; the CLI only reads it)."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part(claims)}.c2lnbmF0dXJl"


def test_an_expired_and_a_garbage_token_get_different_advice(stack: LocalStackProcess) -> None:
    """The server answers 401 for both; the CLI reads the token to say which and what to do."""
    url = stack.outputs["websocket_url"]
    expired = jwt({"exp": int(time.time()) - 3600, "token_use": "id"})
    code, _, err = finish(cloud_ws("monitor", "D1", "--url", url, "--token", expired, "--until-complete"))
    assert code == 2
    assert "refused the token (HTTP 401)" in err
    assert "the token expired at" in err
    assert "`cloud-ws token`" in err
    assert len(err.strip().splitlines()) == 1

    code, _, err = finish(cloud_ws("list", "--url", url, "--token", "eyJhbGciOi-garbage"))
    assert code == 2
    assert "this is not a JWT" in err
    assert "expired" not in err


def test_diagnose_token_cases() -> None:
    now = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    expired = jwt({"exp": int(now.timestamp()) - 90})
    assert monitor.diagnose_token(expired, now).startswith(
        "the token expired at 2026-12-02 09:58 UTC (1m 30s ago)"
    )
    assert "not a JWT" in monitor.diagnose_token("a.b", now)
    assert "not a JWT" in monitor.diagnose_token("a.!!!.c", now)
    assert "access token" in monitor.diagnose_token(jwt({"exp": 2**40, "token_use": "access"}), now)
    assert "has not expired" in monitor.diagnose_token(jwt({"exp": 2**40}), now)
