"""The parts of an @connections post: endpoint paths, SigV4 signing, kept-alive HTTP connections.

boto3's ``post_to_connection`` costs 0.6-1 ms of CPU per post here, most of it in
botocore's generic request pipeline (parameter validation, serialization,
event hooks, the signer deriving its key again for every request). A post is
always the same shape, so this module does only what that shape needs:

- the request path and its SigV4 canonical form are computed once per connection;
- the SigV4 signature follows botocore's ``SigV4Auth`` byte for byte (a test
  compares the two) but reuses the derived signing key, which only changes
  with the date, the secret key, the region and the service;
- credentials come from botocore's resolver (environment, container role,
  profile) and are refreshed by it when they expire;
- HTTP is the standard library's ``http.client`` on kept-alive connections:
  it adds nothing to the Lambda archive (which bundles only pure-Python
  libraries, for arm64) and costs less CPU per request than urllib3 here.

Only :func:`default_credentials` imports botocore (its session, which the
container's boto3 has loaded already for DynamoDB), when the API is first
built: importing this module costs the standard library alone.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import select
import ssl
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from botocore.credentials import ReadOnlyCredentials

SERVICE = "execute-api"
"""The SigV4 service name of API Gateway's execute and @connections APIs."""

_ALGORITHM = "AWS4-HMAC-SHA256"
#: Errors a post can end with short of an HTTP answer: refused, reset, timed out, malformed reply.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (OSError, http.client.HTTPException)
#: Errors that, on a reused connection, mean the server had closed it before our request
#: (an idle keep-alive timeout): the post never reached it and goes again on a new connection.
STALE_CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    http.client.RemoteDisconnected,
    BrokenPipeError,
    ConnectionResetError,
)


class CredentialSource(Protocol):
    """What the signer needs from botocore's ``Credentials`` (static or refreshable)."""

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        """A consistent (access key, secret key, token) triple, refreshed first if it is about to expire."""
        ...


class MissingCredentialsError(RuntimeError):
    """botocore found no AWS credentials to sign posts with."""


def default_credentials() -> CredentialSource:
    """The credentials botocore resolves for this process, refreshable ones included.

    Raises:
        MissingCredentialsError: no provider in botocore's chain has credentials.
    """
    import botocore.session  # noqa: PLC0415 - loaded on first use (the container's boto3 has it)

    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise MissingCredentialsError("no AWS credentials found to sign @connections posts with")
    return credentials


@dataclass(frozen=True)
class ConnectionPath:
    """Where one connection's posts go: the request path and its SigV4 canonical form."""

    request: str
    """Path sent on the request line: ``/{stage}/@connections/{percent-encoded id}``."""
    canonical: str
    """The same path as SigV4 canonicalises it for every service but S3 (encoded once more)."""


@dataclass(frozen=True)
class Endpoint:
    """An @connections endpoint, ``https://{api}.execute-api.{region}.amazonaws.com/{stage}``."""

    scheme: str
    hostname: str
    port: int
    host_header: str
    """``Host`` as botocore signs it: lower case, the port only when it is not the scheme's default."""
    base_path: str
    """The stage path, without a trailing slash."""

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Parse an endpoint URL (``http`` for the local stack, ``https`` on AWS).

        Raises:
            ValueError: not an http(s) URL with a host.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the management endpoint must be an http(s) URL, got {url!r}")
        default_port = 443 if parts.scheme == "https" else 80
        port = parts.port or default_port
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        host_header = host if port == default_port else f"{host}:{port}"
        return cls(parts.scheme, parts.hostname, port, host_header, parts.path.rstrip("/"))

    def path_for(self, connection_id: str) -> ConnectionPath:
        """The paths of posts to ``connection_id`` (encoded as botocore encodes a URI label)."""
        request = f"{self.base_path}/@connections/{quote(connection_id, safe='-_.~')}"
        return ConnectionPath(request, quote(_remove_dot_segments(request), safe="/~"))

    def new_connection(self, timeout: float) -> Connection:
        """An unopened connection to the endpoint (it opens on its first request)."""
        if self.scheme == "https":
            return TLSConnection(self.hostname, self.port, timeout=timeout, context=_tls_context())
        return Connection(self.hostname, self.port, timeout=timeout)


class Connection(http.client.HTTPConnection):
    """``http.client``'s connection, writing each request's head and body in one write.

    ``http.client`` writes them separately: for a post of a few hundred bytes
    that is twice the system calls and TCP segments (about 15 µs more CPU per
    post here).
    """

    _held: list[bytes] | None = None

    def send(self, data: Any) -> None:
        """Write ``data``, or hold it back while :meth:`send_request` gathers a request."""
        if self._held is not None and isinstance(data, bytes):
            self._held.append(data)
            return
        super().send(data)

    def send_request(self, body: bytes) -> None:
        """End the request begun with ``putrequest``/``putheader`` and write it, body included, at once."""
        self._held = []
        try:
            self.endheaders(body)
            data = b"".join(self._held)
        finally:
            self._held = None
        super().send(data)


class TLSConnection(Connection, http.client.HTTPSConnection):
    """:class:`Connection` over TLS (API Gateway's endpoints are https only)."""


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal and empty segments dropped, as botocore's ``normalize_url_path``."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if kept:
                kept.pop()
        else:
            kept.append(segment)
    normalized = "/" + "/".join(kept)
    return normalized + "/" if path.endswith("/") and normalized != "/" else normalized


_tls_lock = threading.Lock()
_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    # One context per process: building one loads the CA bundle (milliseconds).
    global _tls  # noqa: PLW0603 - a per-process cache
    with _tls_lock:
        if _tls is None:
            _tls = ssl.create_default_context()
        return _tls


class Signer:
    """SigV4 for @connections posts, reusing the derived signing key.

    Signs exactly what botocore's ``SigV4Auth`` signs for the same request
    (``host``, ``x-amz-date`` and, with temporary credentials,
    ``x-amz-security-token``; the SHA-256 of the body), so API Gateway sees no
    difference. Thread-safe: the cached key is replaced as one tuple.
    """

    def __init__(self, credentials: CredentialSource, region: str, service: str = SERVICE) -> None:
        self._credentials = credentials
        self._region = region
        self._service = service
        self._scope_tail = f"{region}/{service}/aws4_request"
        self._key: tuple[str, str, bytes] = ("", "", b"")
        """(secret key, date, derived key) of the last signature."""
        self._stamp: tuple[int, str] = (-1, "")
        """(epoch second, x-amz-date) of the last signature: formatting the time costs more than signing."""

    def _signing_key(self, secret_key: str, date: str) -> bytes:
        cached_secret, cached_date, key = self._key
        if cached_secret == secret_key and cached_date == date:
            return key
        key = hmac.digest(f"AWS4{secret_key}".encode(), date.encode(), "sha256")
        for part in (self._region, self._service, "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        self._key = (secret_key, date, key)
        return key

    def _amz_date(self, now: float | None) -> str:
        second = int(time.time() if now is None else now)
        cached_second, stamp = self._stamp
        if cached_second != second:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            self._stamp = (second, stamp)
        return stamp

    def headers(
        self, method: str, host: str, canonical_path: str, body: bytes, now: float | None = None
    ) -> list[tuple[str, str]]:
        """The SigV4 headers of one request with no query string.

        Args:
            method: HTTP method, upper case.
            host: the ``Host`` header sent (and signed).
            canonical_path: the request path in SigV4 canonical form (see :class:`ConnectionPath`).
            body: the exact request body.
            now: seconds since the epoch to sign at; the current time by default.

        Returns:
            ``X-Amz-Date``, ``X-Amz-Security-Token`` (temporary credentials only) and
            ``Authorization``, in that order.

        Raises:
            MissingCredentialsError: the credentials have no access key or secret key.
        """
        credentials = self._credentials.get_frozen_credentials()
        access_key, secret_key, token = credentials.access_key, credentials.secret_key, credentials.token
        if not access_key or not secret_key:
            raise MissingCredentialsError("the AWS credentials have no access key or secret key")
        amz_date = self._amz_date(now)
        date = amz_date[:8]
        if token:
            signed = "host;x-amz-date;x-amz-security-token"
            canonical_headers = f"host:{host}\nx-amz-date:{amz_date}\nx-amz-security-token:{token}\n"
        else:
            signed = "host;x-amz-date"
            canonical_headers = f"host:{host}\nx-amz-date:{amz_date}\n"
        canonical_request = (
            f"{method}\n{canonical_path}\n\n{canonical_headers}\n{signed}\n{hashlib.sha256(body).hexdigest()}"
        )
        scope = f"{date}/{self._scope_tail}"
        string_to_sign = (
            f"{_ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
        )
        signature = hmac.new(
            self._signing_key(secret_key, date), string_to_sign.encode(), "sha256"
        ).hexdigest()
        authorization = (
            f"{_ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
        if token:
            return [
                ("X-Amz-Date", amz_date),
                ("X-Amz-Security-Token", token),
                ("Authorization", authorization),
            ]
        return [("X-Amz-Date", amz_date), ("Authorization", authorization)]


@dataclass(frozen=True)
class Reply:
    """What the endpoint answered to one post."""

    status: int
    error_type: str | None
    """``x-amzn-ErrorType`` (``GoneException``, ``LimitExceededException``...), for logs."""


class Poster:
    """Signed POSTs to one endpoint over a pool of kept-alive connections.

    :meth:`send` and :meth:`receive` are separate so that one thread can keep
    many posts in flight (see ``server.management``); :meth:`take` and
    :meth:`give` are thread-safe, a connection is used by one caller at a time.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        signer: Signer,
        *,
        timeout: float = 3.0,
        max_idle: int = 64,
    ) -> None:
        """Set up the pool; connections open when first used.

        Args:
            endpoint: where posts go.
            signer: signs each request.
            timeout: seconds a connect, or one blocking read or write, may take.
            max_idle: connections kept open between uses.
        """
        self.endpoint = endpoint
        self._signer = signer
        self._timeout = timeout
        self._max_idle = max_idle
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def take(self) -> Connection:
        """An idle connection that is still open, else a new (unopened) one."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self.endpoint.new_connection(self._timeout)
            if not _dropped(conn):
                return conn
            conn.close()

    def give(self, conn: Connection) -> None:
        """Hand a connection back once its last response was read (closed ones are dropped)."""
        if conn.sock is None:
            return
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def open_all(self, conns: Iterable[Connection]) -> dict[int, Exception]:
        """Open the unopened connections of ``conns`` concurrently.

        A fan-out starts with many connections at once; opening them one after
        the other would cost a TLS handshake each before the first posts go out.

        Returns:
            The error of each connection that failed to open, keyed by ``id(conn)``.
        """
        closed = [conn for conn in conns if conn.sock is None]
        if len(closed) <= 1:
            return {}  # the first request opens it, no thread needed
        errors: dict[int, Exception] = {}

        def open_one(conn: Connection) -> None:
            try:
                conn.connect()
            except TRANSPORT_ERRORS as exc:
                conn.close()
                errors[id(conn)] = exc

        with ThreadPoolExecutor(min(len(closed), 16), thread_name_prefix="connect") as pool:
            list(pool.map(open_one, closed))
        return errors

    def send(self, conn: Connection, path: ConnectionPath, body: bytes) -> None:
        """Sign and write one POST (opening the connection if needed); its reply is read by :meth:`receive`.

        Raises:
            OSError: the connection failed.
            http.client.HTTPException: the connection is not ready for a request.
            MissingCredentialsError: the credentials are incomplete.
        """
        endpoint = self.endpoint
        headers = self._signer.headers("POST", endpoint.host_header, path.canonical, body)
        conn.putrequest("POST", path.request, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", endpoint.host_header)
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.send_request(body)

    def receive(self, conn: Connection, timeout: float | None = None) -> Reply:
        """Read the reply to the request :meth:`send` wrote; the connection is then ready for the next.

        Args:
            conn: the connection the request went on.
            timeout: seconds to wait for the reply; the connection's timeout by default
                (a caller that waited for the socket to become readable needs no more).

        Raises:
            OSError: the connection failed or timed out.
            http.client.HTTPException: the reply was not valid HTTP (or the server closed first).
        """
        if timeout is not None and conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            response = conn.getresponse()
            response.read()  # the body (an error message) is neither needed nor logged
        finally:
            if timeout is not None and conn.sock is not None:
                conn.sock.settimeout(self._timeout)
        return Reply(response.status, response.getheader("x-amzn-ErrorType"))

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _dropped(conn: Connection) -> bool:
    """Whether an idle connection was closed by the server (readable while idle means EOF)."""
    sock = conn.sock
    if sock is None:
        return False  # never opened: it opens on its first request
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
