"""The Lambda archive is self-sufficient: unpacked alone beside boto3, every handler imports and
``$connect`` serves a real Cognito token against moto."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from packaging.markers import default_environment
from packaging.requirements import Requirement

from contract import spec
from pulumi_component import archive
from pulumi_component.archive import BUNDLED, ArchiveError, build_archive
from tests.support.apigw import websocket_event
from tests.support.cognito import sign_in
from tests.test_component.conftest import ROOT

REGION = "us-east-1"

#: What the Lambda Python runtime provides beside our code: boto3 and everything it needs.
RUNTIME_ROOTS = ("boto3",)

#: Runs in the fresh interpreter: argv = [bundle, runtime]; stdin = the scenario; stdout = the findings.
CHILD = r"""
import importlib, json, sys
bundle, runtime = sys.argv[1], sys.argv[2]
sys.path[:0] = [bundle, runtime]
scenario = json.load(sys.stdin)

from contract import spec
modules = ["handlers." + r.module for r in spec.FUNCTIONS] + ["server.cognito"]
for name in modules:
    importlib.import_module(name)

from handlers import connect
replies = [connect.handler(event) for event in scenario["events"]]

import jose.backends
print(json.dumps({
    "imported": modules,
    "replies": replies,
    "rsa_backend": jose.backends.RSAKey.__module__,
    "files": {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())},
}))
"""


def _requirement_closure(roots: tuple[str, ...], environment: dict[str, str]) -> set[str]:
    """Distributions the roots need: non-optional requirements, markers evaluated for ``environment``."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({**environment, "extra": ""}):
                pending.append(requirement.name)
    return seen


def _lambda_environment(python: str) -> dict[str, str]:
    environment: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    return {
        **environment,
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "aarch64",
        "platform_python_implementation": "CPython",
        "implementation_name": "cpython",
        "os_name": "posix",
    }


def _link_runtime(destination: Path) -> None:
    """Symlink boto3 and its dependency closure (as Lambda's runtime provides them) into ``destination``."""
    destination.mkdir()
    for name in _requirement_closure(RUNTIME_ROOTS, _lambda_environment("3.13")):
        dist = metadata.distribution(name)
        tops = {
            Path(str(f)).parts[0]
            for f in dist.files or ()
            if not str(f).startswith("..") and ".dist-info" not in str(f) and "__pycache__" not in str(f)
        }
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (destination / top).exists():
                (destination / top).symlink_to(source)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _client(service: str, endpoint: str) -> Any:
    client: Any = boto3.client
    return client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_archive_runs_alone_beside_boto3(tmp_path: Path, moto_endpoint: str) -> None:
    # Given: the archive unpacked into an empty folder, and a folder with only boto3 and its dependencies.
    built = build_archive(tmp_path / "build")
    bundle = tmp_path / "task"
    bundle.mkdir()
    with zipfile.ZipFile(built.path) as zipped:
        zipped.extractall(bundle)
    runtime = tmp_path / "runtime"
    _link_runtime(runtime)
    # ... moto with the spec's tables and a user pool that mints real RS256 tokens.
    ddb = _client("dynamodb", moto_endpoint)
    prefix = f"bundle-{uuid.uuid4().hex[:8]}"
    tables = {}
    for table in spec.TABLES:
        ddb.create_table(**table.create_table_kwargs(f"{prefix}-{table.role}"))
        tables[table.env_var] = f"{prefix}-{table.role}"
    idp = _client("cognito-idp", moto_endpoint)
    pool_id = idp.create_user_pool(PoolName=prefix)["UserPool"]["Id"]
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id, ClientName="cli", ExplicitAuthFlows=["ADMIN_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    token = sign_in(idp, pool_id, client_id, "alice")["IdToken"]

    env = {
        **tables,
        "COGNITO_USER_POOL_ID": pool_id,
        "COGNITO_CLIENT_IDS": client_id,
        # moto serves the pool's JWKS here; on AWS the handler derives it from the issuer.
        "COGNITO_JWKS_URL": f"{moto_endpoint}/{pool_id}/.well-known/jwks.json",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "PATH": os.environ.get("PATH", ""),
    }
    scenario = {
        "events": [
            websocket_event("$connect", "good-conn=", query={"token": token}),
            websocket_event("$connect", "bad-conn=", query={"token": token[:-4] + "AAAA"}),
        ]
    }

    # When: a fresh interpreter (no site-packages, PYTHONPATH or cwd) imports and invokes the handlers.
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", CHILD, str(bundle), str(runtime)],
        input=json.dumps(scenario),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    # Then: every handler imported and $connect accepted the real token, refused the forged one ...
    assert done.returncode == 0, done.stderr
    findings = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(findings["imported"]) >= {f"handlers.{r.module}" for r in spec.ROUTES}
    assert [r["statusCode"] for r in findings["replies"]] == [200, 401]
    assert findings["rsa_backend"] == "jose.backends.rsa_backend"  # pure-Python keys: no cryptography
    # ... every module came from the bundle, the boto3 folder or the standard library, nothing else ...
    stdlib = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
    allowed = (str(bundle), str(runtime), *stdlib)
    strays = {n: f for n, f in findings["files"].items() if f and not f.startswith(allowed)}
    assert strays == {}
    loaded_from = {n.split(".")[0]: f for n, f in findings["files"].items() if f}
    for top in (
        "contract",
        "server",
        "handlers",
        "jose",
        "rsa",
        "ecdsa",
        "pyasn1",
        "requests",
        "idna",
        "certifi",
    ):
        assert loaded_from[top].startswith(str(bundle)), top
    for top in ("boto3", "urllib3", "six"):  # the runtime's own copies, compiled, shared with botocore
        assert loaded_from[top].startswith(str(runtime)), top
    assert not {"cryptography", "moto", "pulumi"} & loaded_from.keys()
    # ... and the connection row is in DynamoDB, the forged one stored nothing.
    rows = ddb.scan(TableName=tables[spec.CONNECTIONS.env_var])["Items"]
    assert [row["connectionId"]["S"] for row in rows] == ["good-conn="]


def test_archive_is_deterministic_and_holds_only_sources(tmp_path: Path) -> None:
    first = build_archive(tmp_path / "a")
    second = build_archive(tmp_path / "b")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256
    assert first.path.name == f"cloud-ws-lambda-{first.sha256[:16]}.zip"
    assert build_archive(tmp_path / "a").path == first.path  # reused, not rewritten
    with zipfile.ZipFile(first.path) as zipped:
        infos = zipped.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o644}
    assert not [n for n in names if n.endswith((".pyc", ".so", ".pyd")) or "__pycache__" in n]
    tops = {n.split("/")[0].removesuffix(".py") for n in names}
    assert not tops & archive.FORBIDDEN_TOP_LEVEL
    for package in archive.SOURCE_PACKAGES:
        sources = sorted(
            f"{package}/{p.relative_to(ROOT / package).as_posix()}" for p in (ROOT / package).rglob("*.py")
        )
        assert sources, f"no sources found for {package}"
        assert [n for n in names if n.startswith(f"{package}/")] == sources
    # charset-normalizer's compiled speed-ups are dropped; its pure-Python modules stay.
    assert "charset_normalizer/md.py" in names
    assert "charset_normalizer/cd.py" in names


def test_bundled_libraries_are_the_closure_of_the_handlers_requirements() -> None:
    """Exactly python-jose + requests and what they need on Lambda beyond boto3's own: nothing
    missing, nothing the runtime already has."""
    for python in ("3.12", "3.13"):
        environment = _lambda_environment(python)
        closure = _requirement_closure(("python-jose", "requests"), environment)
        runtime = _requirement_closure(RUNTIME_ROOTS, environment)
        assert closure - runtime == {name.lower() for name in BUNDLED}, python


def test_bundled_versions_are_the_pinned_ones() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    for name, version in BUNDLED.items():
        assert pins.get(name) == version, name


def test_build_refuses_another_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(archive, "BUNDLED", {**BUNDLED, "requests": "0.0.1"})
    with pytest.raises(
        ArchiveError, match=r"requests 2\.\S+ is installed but the Lambda archive pins 0\.0\.1"
    ):
        build_archive(tmp_path)


def test_build_refuses_a_missing_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(archive, "BUNDLED", {"no-such-distribution": "1.0"})
    with pytest.raises(ArchiveError, match=r"no-such-distribution==1\.0 is not installed"):
        build_archive(tmp_path)


class _FakeDist:
    """A distribution whose files are given (to model compiled-only and forbidden libraries)."""

    version = "1.0"

    def __init__(self, root: Path, files: list[str]) -> None:
        self.root = root
        self.files = [Path(f) for f in files]

    def locate_file(self, path: str) -> Path:
        return self.root / path


@pytest.mark.parametrize(
    ("files", "error"),
    [
        (["fast/__init__.py", "fast/core.cpython-311-x86_64-linux-gnu.so"], "not pure Python"),
        (["boto3/__init__.py"], "must never be in the archive"),
    ],
)
def test_build_refuses_compiled_only_or_forbidden_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, files: list[str], error: str
) -> None:
    monkeypatch.setattr(archive, "BUNDLED", {"fake": "1.0"})
    monkeypatch.setattr(metadata, "distribution", lambda name: _FakeDist(tmp_path, files))
    with pytest.raises(ArchiveError, match=error):
        archive.archive_entries()


def test_source_packages_must_be_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "SOURCE_PACKAGES", ("handlers", "no_such_package_here"))
    with pytest.raises(ArchiveError, match="'no_such_package_here' package is not importable"):
        archive.archive_entries()
