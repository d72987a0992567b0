"""The lean @connections poster: outcomes, retries, fan-out order and bounds, SigV4 as botocore signs."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from server import poster
from server.management import FanOutResult, ManagementApi, PostOutcome, RetryPolicy
from server.poster import Endpoint, Signer
from server.runtime import get_runtime, reset_runtime
from tests.support.logs import recorded
from tests.support.management_standin import ManagementStandIn
from tests.support.moto_stack import Stack

REGION = "us-east-1"
CREDENTIALS = Credentials(
    "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token/with+chars="
)
#: Retries in milliseconds, so the tests that exhaust them stay fast.
FAST = RetryPolicy(max_attempts=3, base_seconds=0.001, throttled_base_seconds=0.001, cap_seconds=0.005)


@pytest.fixture
def api(standin: ManagementStandIn) -> Iterator[ManagementApi]:
    """A poster to the stand-in: four connections at a time, three attempts per post."""
    management = ManagementApi(standin.endpoint, REGION, concurrency=4, retry=FAST, credentials=CREDENTIALS)
    yield management
    management.close()


@pytest.fixture
def warnings() -> Iterator[list[logging.LogRecord]]:
    """Records the management logger writes."""
    with recorded("cloud_ws.management") as records:
        yield records


def _posts_to(standin: ManagementStandIn, connection_id: str) -> int:
    return sum(1 for _, c in standin.requests if c == connection_id)


# -- one post ----------------------------------------------------------------------------------------


def test_a_post_is_delivered_to_the_encoded_connection_id(
    api: ManagementApi, standin: ManagementStandIn
) -> None:
    """An id with ``=`` and ``/`` reaches the stand-in intact; no retries."""
    assert api.post("L0SM9/cOFvHcCIhw=", b'{"type":"pong"}') == (PostOutcome.DELIVERED, 0)

    assert standin.messages("L0SM9/cOFvHcCIhw=") == [{"type": "pong"}]


def test_a_gone_connection_is_not_retried(api: ManagementApi, standin: ManagementStandIn) -> None:
    """410 is GONE at once, one request only."""
    standin.gone.add("dead")

    assert api.post("dead", b"{}") == (PostOutcome.GONE, 0)
    assert _posts_to(standin, "dead") == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttled_or_failing_post_is_retried_and_delivered(
    api: ManagementApi, standin: ManagementStandIn, status: int
) -> None:
    """One 429/5xx, then success: delivered after one retry."""
    standin.failures_for["c1"] = [status]

    assert api.post("c1", b"{}") == (PostOutcome.DELIVERED, 1)
    assert _posts_to(standin, "c1") == 2


def test_a_refused_connection_is_retried_then_failed(warnings: list[logging.LogRecord]) -> None:
    """Nothing listening: every attempt is made, then FAILED with the error logged by type."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    api = ManagementApi(
        f"http://127.0.0.1:{port}/test", REGION, concurrency=2, retry=FAST, credentials=CREDENTIALS
    )

    assert api.post("c1", b"{}") == (PostOutcome.FAILED, FAST.max_attempts - 1)
    (record,) = warnings
    assert record.__dict__["error"] == "ConnectionRefusedError"


def test_a_single_post_on_a_connection_closed_just_before_use_is_resent(
    standin: ManagementStandIn, api: ManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """post() too resends at once, without a retry, when its kept-alive connection was closed."""
    api.post("c0", b"{}")
    standin.drop_connections()
    monkeypatch.setattr(poster, "_dropped", lambda conn: False)

    assert api.post("c1", b"{}") == (PostOutcome.DELIVERED, 0)
    assert _posts_to(standin, "c1") == 1


@pytest.mark.parametrize(
    ("endpoint", "concurrency", "message"),
    [
        ("ftp://example.com/prod", 4, "http"),
        ("https:///prod", 4, "http"),
        ("https://abc.execute-api.us-east-1.amazonaws.com/prod", 0, "concurrency"),
    ],
)
def test_a_bad_endpoint_or_concurrency_is_refused_up_front(
    endpoint: str, concurrency: int, message: str
) -> None:
    """Misconfiguration fails when the API is built, naming what is wrong."""
    with pytest.raises(ValueError, match=message):
        ManagementApi(endpoint, REGION, concurrency=concurrency, credentials=CREDENTIALS)


# -- fan-out -----------------------------------------------------------------------------------------


def test_fan_out_delivers_every_frame_in_order(standin: ManagementStandIn, api: ManagementApi) -> None:
    """Three frames to six connections: each gets all three, in order, one post each."""
    standin.delay_seconds = 0.005
    ids = [f"c{i}" for i in range(6)]
    frames = [f'{{"n":{n}}}'.encode() for n in range(3)]

    result = api.fan_out(ids, frames)

    assert result == FanOutResult(delivered=6, posts=18)
    for connection_id in ids:
        assert standin.messages(connection_id) == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_gone_connection_goes_to_on_gone_and_the_rest_are_delivered(
    standin: ManagementStandIn, api: ManagementApi
) -> None:
    """A 410 calls on_gone once, is never retried, and its later frames are not sent."""
    standin.gone.add("c2")
    cleaned: list[str] = []

    result = api.fan_out([f"c{i}" for i in range(5)], [b"{}", b"{}"], on_gone=cleaned.append)

    assert (result.delivered, result.gone, result.failed, result.retries) == (4, ["c2"], [], 0)
    assert cleaned == ["c2"]
    assert _posts_to(standin, "c2") == 1


def test_a_failing_cleanup_is_logged_and_the_fan_out_completes(
    standin: ManagementStandIn, api: ManagementApi, warnings: list[logging.LogRecord]
) -> None:
    """on_gone raising does not lose the other connections' deliveries."""
    standin.gone.add("c0")

    def broken_cleanup(connection_id: str) -> None:
        raise RuntimeError("table unavailable")

    result = api.fan_out(["c0", "c1"], [b"{}"], on_gone=broken_cleanup)

    assert (result.delivered, result.gone) == (1, ["c0"])
    assert [r.getMessage() for r in warnings] == ["cleanup of a gone connection failed"]


def test_throttled_post_in_a_fan_out_is_retried(standin: ManagementStandIn, api: ManagementApi) -> None:
    """A 429 then success counts one retry and two posts for that connection."""
    standin.failures_for["c1"] = [429]

    result = api.fan_out(["c0", "c1", "c2"], [b"{}"])

    assert (result.delivered, result.retries, result.posts) == (3, 1, 4)
    assert len(standin.received["c1"]) == 1


def test_5xx_until_attempts_run_out_fails_that_connection_only(
    standin: ManagementStandIn, api: ManagementApi, warnings: list[logging.LogRecord]
) -> None:
    """Three 5xx answers exhaust three attempts; the others are delivered; one structured log line."""
    standin.failures_for["c1"] = [500, 503, 500]

    result = api.fan_out(["c0", "c1", "c2"], [b'{"secret":"body"}'])

    assert (result.delivered, result.failed, result.retries) == (2, ["c1"], 2)
    assert _posts_to(standin, "c1") == 3
    (record,) = warnings
    assert (record.__dict__["connection_id"], record.__dict__["status"]) == ("c1", 500)
    assert record.__dict__["error_type"] == "InternalServerErrorException"
    assert "secret" not in str(record.__dict__)


@pytest.mark.parametrize("status", [400, 403, 413])
def test_other_client_errors_fail_without_retry(
    standin: ManagementStandIn, api: ManagementApi, warnings: list[logging.LogRecord], status: int
) -> None:
    """400/403/413: FAILED after one request, logged with the status, never with the body or key."""
    standin.failures_for["c0"] = [status]

    result = api.fan_out(["c0"], [b'{"secret":"body"}'])

    assert (result.failed, result.retries, result.posts) == (["c0"], 0, 1)
    (record,) = warnings
    assert record.__dict__["status"] == status
    logged = str(record.__dict__)
    assert "secret" not in logged
    assert CREDENTIALS.secret_key not in logged


def test_a_failing_frame_stops_that_connection(standin: ManagementStandIn, api: ManagementApi) -> None:
    """The second of three frames fails: that connection gets only the first; others get all three."""
    standin.failures_for["c0"] = [200, 400]
    frames = [b'{"n":0}', b'{"n":1}', b'{"n":2}']

    result = api.fan_out(["c0", "c1"], frames)

    assert (result.delivered, result.failed) == (1, ["c0"])
    assert standin.messages("c0") == [{"n": 0}]
    assert standin.messages("c1") == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_fan_out_is_concurrent_and_bounded(standin: ManagementStandIn) -> None:
    """With a slow endpoint posts overlap, never more than ``concurrency`` at once."""
    standin.delay_seconds = 0.05
    api = ManagementApi(standin.endpoint, REGION, concurrency=4, retry=FAST, credentials=CREDENTIALS)

    result = api.fan_out([f"c{i}" for i in range(12)], [b"{}"])

    assert result.delivered == 12
    assert 2 <= standin.max_in_flight <= 4


def test_connection_ids_are_read_as_room_frees_up(standin: ManagementStandIn, api: ManagementApi) -> None:
    """The k-th id is read only when a connection is done and frees one of the four places."""
    done_when_read: list[int] = []

    def ids() -> Iterator[str]:
        for i in range(12):
            done_when_read.append(standin.total_posts())
            yield f"c{i}"

    result = api.fan_out(ids(), [b"{}"])

    assert result.delivered == 12
    # k ids were read before the k-th, at most three of them still in flight.
    assert all(done >= k - 3 for k, done in enumerate(done_when_read))


def test_an_unreachable_endpoint_fails_every_connection(warnings: list[logging.LogRecord]) -> None:
    """Nothing listening, one attempt each: every connection is read, posted once and failed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    once = RetryPolicy(max_attempts=1)
    api = ManagementApi(
        f"http://127.0.0.1:{port}/test", REGION, concurrency=4, retry=once, credentials=CREDENTIALS
    )

    result = api.fan_out([f"c{i}" for i in range(6)], [b"{}"])

    assert (result.failed, result.posts, result.retries) == ([f"c{i}" for i in range(6)], 6, 0)
    assert len(warnings) == 6


def test_an_error_reading_ids_is_raised_after_the_posts_in_flight_are_abandoned(
    standin: ManagementStandIn, api: ManagementApi
) -> None:
    """A failing subscriber page raises out of the fan-out; the poster keeps working afterwards."""

    def ids() -> Iterator[str]:
        yield "c0"
        yield "c1"
        raise RuntimeError("subscriber query failed")

    with pytest.raises(RuntimeError, match="subscriber query failed"):
        api.fan_out(ids(), [b"{}"])

    assert api.fan_out(["c2", "c3"], [b"{}"]).delivered == 2


def test_no_frames_reads_no_ids(api: ManagementApi) -> None:
    """Nothing to send: the subscriber pages are not read."""

    reads: list[str] = []

    def ids() -> Iterator[str]:
        reads.append("read")
        yield "c0"

    assert api.fan_out(ids(), []) == FanOutResult()
    assert reads == []


def test_a_lone_frame_is_one_frame(standin: ManagementStandIn, api: ManagementApi) -> None:
    """``bytes`` given as ``frames`` is posted whole, not byte by byte."""
    result = api.fan_out(["c0"], b'{"n":1}')  # type: ignore[arg-type]

    assert (result.delivered, standin.messages("c0")) == (1, [{"n": 1}])


def test_a_reply_that_never_comes_times_out_and_is_retried(standin: ManagementStandIn) -> None:
    """Past the read timeout the post is abandoned and retried; with no reply ever, FAILED."""
    standin.delay_seconds = 1.0
    retry = RetryPolicy(max_attempts=2, base_seconds=0.001, cap_seconds=0.001)
    api = ManagementApi(
        standin.endpoint, REGION, concurrency=2, retry=retry, credentials=CREDENTIALS, read_timeout=0.1
    )

    result = api.fan_out(["slow"], [b"{}"])

    assert (result.failed, result.retries, result.posts) == (["slow"], 1, 2)


def test_kept_alive_connections_closed_by_the_server_are_not_reused(
    standin: ManagementStandIn, api: ManagementApi
) -> None:
    """After the server closes idle connections, the next fan-out opens new ones: no retries."""
    api.fan_out([f"c{i}" for i in range(4)], [b"{}"])
    assert standin.drop_connections() == 4

    result = api.fan_out([f"d{i}" for i in range(4)], [b"{}"])

    assert (result.delivered, result.retries, result.posts) == (4, 0, 4)


def test_a_connection_closed_just_before_use_is_resent_without_a_retry(
    standin: ManagementStandIn, api: ManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closed between the pool's check and the request: the post goes again at once on a new connection."""
    assert api.post("c0", b"{}") == (PostOutcome.DELIVERED, 0)
    standin.drop_connections()
    # The close lands after the pool looked: the check sees an open connection.
    monkeypatch.setattr(poster, "_dropped", lambda conn: False)

    result = api.fan_out(["c1"], [b"{}"])

    assert (result.delivered, result.retries, result.posts) == (1, 0, 2)
    assert standin.messages("c1") == [{}]
    assert api.post("c2", b"{}") == (PostOutcome.DELIVERED, 0)


# -- TLS -------------------------------------------------------------------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "management stand-in")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ManagementStandIn, Path]]:
    """A signature-checking stand-in over https (self-signed); yields it and its certificate."""
    cert, key = _self_signed(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    monkeypatch.setattr(poster, "_tls", None)  # each test builds the client context afresh
    with ManagementStandIn(credentials=CREDENTIALS, region=REGION, tls=server).running() as standin:
        yield standin, cert


def test_posts_over_tls_are_delivered_and_signed(
    tls_standin: tuple[ManagementStandIn, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over https (a trusted certificate): a fan-out and a single post arrive, every signature verifies."""
    standin, cert = tls_standin
    monkeypatch.setattr(poster, "_tls", ssl.create_default_context(cafile=str(cert)))
    api = ManagementApi(standin.endpoint, REGION, concurrency=3, retry=FAST, credentials=CREDENTIALS)

    result = api.fan_out([f"c{i}" for i in range(5)], [b'{"n":0}', b'{"n":1}'])

    assert (result.delivered, result.posts) == (5, 10)
    assert api.post("c9", b'{"n":9}') == (PostOutcome.DELIVERED, 0)
    assert standin.messages("c4") == [{"n": 0}, {"n": 1}]
    assert standin.bad_signatures == 0


def test_an_untrusted_certificate_is_refused(tls_standin: tuple[ManagementStandIn, Path]) -> None:
    """The default context verifies the server: a self-signed certificate fails every attempt."""
    standin, _ = tls_standin
    api = ManagementApi(standin.endpoint, REGION, concurrency=2, retry=FAST, credentials=CREDENTIALS)

    result = api.fan_out(["c0"], [b"{}"])

    assert (result.failed, result.posts) == (["c0"], FAST.max_attempts)
    assert standin.requests == []


# -- signing -----------------------------------------------------------------------------------------


def _botocore_headers(credentials: ReadOnlyCredentials, url: str, body: bytes, at: datetime.datetime) -> Any:
    request = AWSRequest(method="POST", url=url, data=body)
    auth = SigV4Auth(credentials, "execute-api", REGION)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("botocore.auth.get_current_datetime", lambda: at)
        auth.add_auth(request)
    return request.headers


@pytest.mark.parametrize("token", ["session-token/with+chars=", None])
@pytest.mark.parametrize(
    "endpoint",
    [
        "https://abc123.execute-api.eu-west-1.amazonaws.com/prod",
        "https://ABC123.execute-api.eu-west-1.amazonaws.com:443/prod/",
        "http://127.0.0.1:8080/local",
    ],
)
def test_signature_equals_botocores(endpoint: str, token: str | None) -> None:
    """Same request, date and credentials (with and without a session token): the same headers."""
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    at = datetime.datetime(2026, 12, 2, 7, 5, 9, tzinfo=datetime.UTC)
    parsed = Endpoint.parse(endpoint)
    path = parsed.path_for("L0SM9/cOFvHcCIhw=")
    body = b'{"type":"log.created","data":{"message":"caf\xc3\xa9"}}'

    ours = dict(
        Signer(credentials, REGION).headers("POST", parsed.host_header, path.canonical, body, at.timestamp())
    )
    theirs = _botocore_headers(
        credentials.get_frozen_credentials(), f"{endpoint}{path.request[len(parsed.base_path) :]}", body, at
    )

    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Amz-Date"] == theirs["X-Amz-Date"] == "20261202T070509Z"
    assert ours.get("X-Amz-Security-Token") == theirs.get("X-Amz-Security-Token") == token


class _Rotating:
    """Credentials that change between calls, as refreshed role credentials do."""

    def __init__(self) -> None:
        self.current = ReadOnlyCredentials("AKIDONE", "first-secret", "t1")

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        return self.current


def test_the_cached_signing_key_follows_rotated_credentials_and_dates() -> None:
    """A new secret or a new day derives a new key: each signature still equals botocore's."""
    source = _Rotating()
    signer = Signer(source, REGION)
    parsed = Endpoint.parse("https://abc123.execute-api.us-east-1.amazonaws.com/prod")
    path = parsed.path_for("c1")
    url = f"https://{parsed.host_header}{path.request}"
    day = datetime.datetime(2026, 12, 2, 23, 59, 59, tzinfo=datetime.UTC)

    for at, credentials in [
        (day, source.current),
        (day, ReadOnlyCredentials("AKIDTWO", "second-secret", "t2")),
        (day + datetime.timedelta(seconds=2), ReadOnlyCredentials("AKIDTWO", "second-secret", "t2")),
    ]:
        source.current = credentials
        ours = dict(signer.headers("POST", parsed.host_header, path.canonical, b"{}", at.timestamp()))
        assert ours["Authorization"] == _botocore_headers(credentials, url, b"{}", at)["Authorization"]


def test_the_stand_in_accepts_every_signed_post_and_refuses_a_wrong_key() -> None:
    """Checked server-side with botocore: every post of a fan-out verifies; another secret gets 403."""
    with ManagementStandIn(credentials=CREDENTIALS, region=REGION).running() as checked:
        api = ManagementApi(checked.endpoint, REGION, concurrency=3, retry=FAST, credentials=CREDENTIALS)
        result = api.fan_out([f"c{i}=" for i in range(6)], [b'{"n":0}', b'{"n":1}'])
        assert (result.delivered, checked.bad_signatures) == (6, 0)
        assert all("x-amz-security-token" in h for h in checked.headers)

        forged = Credentials(CREDENTIALS.access_key, "not-the-secret", CREDENTIALS.token)
        wrong = ManagementApi(checked.endpoint, REGION, concurrency=3, retry=FAST, credentials=forged)
        assert wrong.post("c0=", b"{}") == (PostOutcome.FAILED, 0)
        assert checked.bad_signatures == 1


def test_no_credentials_anywhere_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No environment keys, no files, no instance metadata: building the API says why it cannot sign."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)

    with pytest.raises(poster.MissingCredentialsError, match="no AWS credentials"):
        ManagementApi("https://abc.execute-api.us-east-1.amazonaws.com/prod", REGION, concurrency=4)


def test_credentials_without_a_secret_are_refused_when_signing() -> None:
    """An access key alone cannot sign: the error says so instead of posting unsigned."""
    signer = Signer(Credentials("AKIDONLY", ""), REGION)

    with pytest.raises(poster.MissingCredentialsError, match="secret key"):
        signer.headers("POST", "example.com", "/prod/%40connections/c1", b"{}")


def test_default_credentials_come_from_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment's keys and session token, through botocore's resolver."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token")

    frozen = poster.default_credentials().get_frozen_credentials()

    assert (frozen.access_key, frozen.secret_key, frozen.token) == ("AKIDENV", "env-secret", "env-token")


def test_concurrent_single_posts_share_the_pool(standin: ManagementStandIn, api: ManagementApi) -> None:
    """post() from many threads at once (route handlers): every one delivered."""
    outcomes: list[tuple[PostOutcome, int]] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        outcome = api.post(f"c{i}", b"{}")
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes == [(PostOutcome.DELIVERED, 0)] * 16
    assert standin.total_posts() == 16


# -- the container's runtime -------------------------------------------------------------------------


def test_the_runtime_builds_one_api_per_endpoint_from_the_config(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BROADCAST_CONCURRENCY bounds the fan-out, POST_MAX_ATTEMPTS the attempts; the API is kept."""
    monkeypatch.setenv("BROADCAST_CONCURRENCY", "3")
    reset_runtime()
    runtime = get_runtime()
    api = runtime.management(stack.mgmt.endpoint)
    stack.mgmt.delay_seconds = 0.02
    stack.mgmt.failures_for["c0"] = [500, 500, 500]  # POST_MAX_ATTEMPTS=3 in the fixture

    result = api.fan_out([f"c{i}" for i in range(9)], [b"{}"])

    assert (result.delivered, result.failed, result.posts) == (8, ["c0"], 11)
    assert stack.mgmt.max_in_flight <= 3
    assert runtime.management(stack.mgmt.endpoint) is api
    assert runtime.management(f"{stack.mgmt.endpoint}/other") is not api
