"""Amplify v6 (JavaScript, unchanged) against the local GraphQL API, through the TLS front it needs.

Runs when ``tests/test_graphql/amplify`` is installed (``npm ci`` there: Amplify and ``ws``, 97
packages, kept out of the project's own JavaScript package); skipped otherwise, saying so.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from emulator.graphql.tls import TlsFront, self_signed_certificate
from plugin import OrchestratorPlugin
from tests.support.cognito import PASSWORD
from tests.test_graphql.conftest import GraphQLStack

pytestmark = pytest.mark.slow

AMPLIFY = Path(__file__).resolve().parent / "amplify"


def emit(outputs: dict[str, object], deployment_id: str) -> None:
    """Three log lines through the plugin."""
    with OrchestratorPlugin.from_outputs(outputs) as plugin:
        for line in range(3):
            plugin.log(deployment_id, f"line {line}")
        assert plugin.flush(30)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.skipif(
    not (AMPLIFY / "node_modules" / "aws-amplify").is_dir(),
    reason="Amplify is not installed: run `npm ci` in tests/test_graphql/amplify",
)
async def test_amplify_v6_subscribes_and_queries_through_the_tls_front(
    graphql_stack: GraphQLStack, deployment_id: str, tmp_path: Path
) -> None:
    """Amplify signs in to the embedded Cognito, subscribes over wss://…/graphql/realtime, gets seq 1..3."""
    username = graphql_stack.user()
    cert, key = self_signed_certificate(tmp_path)
    target = urlsplit(graphql_stack.url)
    front = TlsFront((target.hostname or "", target.port or 0), cert, key)
    port = await front.start(port=0)
    env = {
        **os.environ,
        "OUTPUTS": str(graphql_stack.stack.outputs_path),
        "ENDPOINT": f"https://127.0.0.1:{port}/graphql",
        "DEPLOYMENT_ID": deployment_id,
        "USERNAME": username,
        "PASSWORD": PASSWORD,
        "NODE_EXTRA_CA_CERTS": str(cert),
    }
    before = graphql_stack.subscriptions()
    node = await asyncio.create_subprocess_exec(
        "node",
        "check.mjs",
        cwd=AMPLIFY,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert node.stdout is not None
        first = await asyncio.wait_for(node.stdout.readline(), 30)
        assert first.strip() == b'{"subscribed":true}', first
        await graphql_stack.wait_subscriptions(before + 1)  # the server registered Amplify's start
        await asyncio.to_thread(emit, graphql_stack.outputs, deployment_id)
        rest, errors = await asyncio.wait_for(node.communicate(), 30)
        assert node.returncode == 0, errors.decode()
        last = rest.decode().strip().splitlines()[-1]
        result = json.loads(last)
        # Concurrent batches may be published in either order: Amplify apps order by seq.
        assert sorted(result["received"]) == [1, 2, 3], errors.decode()
        assert result["history"] == [2, 3]
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
        await front.stop()
