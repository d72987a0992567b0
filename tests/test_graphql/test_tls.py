"""The optional TLS front: Amplify-style ``https://…/graphql`` and ``wss://…/graphql/realtime``, one port."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from emulator.graphql.tls import TlsFront, self_signed_certificate
from tests.test_graphql.conftest import ON_EVENT, GraphQLStack, RawRealtime, sequenced

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


async def test_tls_front_serves_queries_and_realtime_as_amplify_dials_them(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str, tmp_path: Path
) -> None:
    """Through the front: an HTTPS query, and a wss subscription that receives a published event."""
    cert, key = self_signed_certificate(tmp_path)
    assert self_signed_certificate(tmp_path) == (cert, key)  # a valid pair is reused
    target = urlsplit(graphql_stack.url)
    front = TlsFront((target.hostname or "", target.port or 0), cert, key)
    port = await front.start(port=0)
    try:
        endpoint = f"https://127.0.0.1:{port}/graphql"
        realtime = endpoint.replace("https://", "wss://") + "/realtime"  # what Amplify v6 derives
        reply = await asyncio.to_thread(
            requests.post,
            endpoint,
            json={
                "query": "query($d: ID!) { deployment(deployment_id: $d) }",
                "variables": {"d": deployment_id},
            },
            headers={"Authorization": watcher},
            verify=str(cert),
            timeout=10,
        )
        assert reply.status_code == 200
        assert "pending" in reply.json()["data"]["deployment"]

        trust = ssl.create_default_context(cafile=str(cert))
        client = await RawRealtime.open(
            realtime, ssl=trust, additional_headers={"Authorization": watcher, "host": graphql_stack.host}
        )
        assert (await client.init())["type"] == "connection_ack"
        await client.start("t", ON_EVENT, {"d": deployment_id}, {"Authorization": watcher})
        assert await client.receive() == {"type": "start_ack", "id": "t"}
        await graphql_stack.publish([sequenced(deployment_id, 1)])
        data = await client.receive()
        assert data["payload"]["data"]["onDeploymentEvent"]["seq"] == 1
        await client.close()
    finally:
        await front.stop()


async def test_untrusted_clients_cannot_complete_the_handshake(
    graphql_stack: GraphQLStack, tmp_path: Path
) -> None:
    """The certificate is self-signed: a client that does not trust it is refused by its own TLS check."""
    cert, key = self_signed_certificate(tmp_path)
    target = urlsplit(graphql_stack.url)
    front = TlsFront((target.hostname or "", target.port or 0), cert, key)
    port = await front.start(port=0)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await RawRealtime.open(
                f"wss://127.0.0.1:{port}/graphql/realtime", ssl=ssl.create_default_context()
            )
    finally:
        await front.stop()


def test_tls_command_announces_its_endpoints(graphql_stack: GraphQLStack, tmp_path: Path) -> None:
    """``python -m emulator.graphql.tls`` reads the outputs, writes a certificate, prints the endpoints."""
    command = [
        sys.executable,
        "-m",
        "emulator.graphql.tls",
        "--outputs",
        str(graphql_stack.stack.outputs_path),
    ]
    process = subprocess.Popen(
        [*command, "--port", "0", "--cert-dir", str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert lines[0].startswith(f"TLS front for {urlsplit(graphql_stack.url).netloc}")
    assert "https://127.0.0.1:" in lines[1]
    assert lines[1].rstrip().endswith("/graphql")
    assert lines[2].rstrip().endswith("/graphql/realtime")
    assert (tmp_path / "cert.pem").is_file()
    assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0  # the key is private


def test_tls_command_without_outputs_says_so(tmp_path: Path) -> None:
    """No outputs file: exit 2 and a sentence naming the file."""
    result = subprocess.run(
        [sys.executable, "-m", "emulator.graphql.tls", "--outputs", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "none.json" in result.stderr
