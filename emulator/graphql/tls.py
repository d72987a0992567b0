"""``python -m emulator.graphql.tls``: a TLS front for `cloud-ws local`, for clients that insist on ``wss://``.

Amplify v6 builds its real-time URL from the GraphQL endpoint: for any endpoint
that is not an ``*.appsync-api.*.amazonaws.com`` one it appends ``/realtime``
and forces ``wss://``. Against ``http://127.0.0.1:PORT/graphql`` it would dial
``wss://127.0.0.1:PORT/graphql/realtime``, a TLS handshake the plain local port
cannot answer. This front terminates TLS on its own port with a self-signed
certificate for ``127.0.0.1`` and ``localhost`` and relays the bytes to the
local stack, so ``https://127.0.0.1:TLS_PORT/graphql`` serves Amplify's queries
and its ``…/graphql/realtime`` subscriptions alike.

Clients must trust the certificate it writes (Node: ``NODE_EXTRA_CA_CERTS``;
a browser: import it, or use a certificate of your own with ``--cert/--key``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from contract.outputs import GRAPHQL_URL, OutputsError, load_outputs

DEFAULT_PORT = 8443
CERT_VALID_DAYS = 30


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """``(cert, key)`` PEM files for 127.0.0.1 and localhost, created unless a valid pair is there."""
    from cryptography import x509  # noqa: PLC0415 - only this tool needs it
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    now = datetime.datetime.now(datetime.UTC)
    if cert_path.is_file() and key_path.is_file():
        existing = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if existing.not_valid_after_utc > now + datetime.timedelta(days=1):
            return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloud-ws local")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        # A CA certificate for itself, so it can be trusted as a root (NODE_EXTRA_CA_CERTS).
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.close()


class TlsFront:
    """Accepts TLS on ``listen`` and relays each connection's bytes to ``target``."""

    def __init__(self, target: tuple[str, int], cert: Path, key: Path) -> None:
        self.target = target
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> int:
        """Start listening; the bound port (``port`` 0 picks a free one)."""
        self._server = await asyncio.start_server(self._relay, host, port, ssl=self.context)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))

    async def stop(self) -> None:
        """Stop accepting and close the listener."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the front in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m emulator.graphql.tls", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--outputs", type=Path, default=None, help="the local stack's outputs file")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TLS port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--cert-dir", type=Path, default=Path(".cloud-ws") / "tls", help="where the cert is kept"
    )
    parser.add_argument("--cert", type=Path, help="use this certificate (PEM) instead of a self-signed one")
    parser.add_argument("--key", type=Path, help="the --cert's private key (PEM)")
    args = parser.parse_args(argv)
    try:
        outputs = load_outputs(args.outputs, needs=(GRAPHQL_URL,))
    except OutputsError as exc:
        print(f"cloud-ws tls: {exc}", file=sys.stderr)
        return 2
    target = urlsplit(outputs[GRAPHQL_URL])
    if not target.hostname or not target.port:
        print("cloud-ws tls: the outputs have no local graphql_url", file=sys.stderr)
        return 2
    cert, key = (args.cert, args.key) if args.cert and args.key else self_signed_certificate(args.cert_dir)

    async def serve() -> None:
        front = TlsFront((target.hostname or "127.0.0.1", target.port or 0), cert, key)
        port = await front.start(port=args.port)
        print(
            f"TLS front for {target.hostname}:{target.port}\n"
            f"  GraphQL (Amplify endpoint)  https://127.0.0.1:{port}/graphql\n"
            f"  real-time                   wss://127.0.0.1:{port}/graphql/realtime\n"
            f"  certificate                 {cert.resolve()}  (Node: NODE_EXTRA_CA_CERTS={cert.resolve()})",
            flush=True,
        )
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
