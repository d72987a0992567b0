"""The Lambda code archive: our server packages plus the pinned pure-Python libraries they import.

Every function of the stack runs from this one zip. It holds

- the ``contract``, ``server`` and ``handlers`` packages (:data:`SOURCE_PACKAGES`)
  exactly as they are in this checkout (``.py`` files only);
- the libraries the handlers import that the Lambda Python runtime does not
  provide: python-jose (``$connect`` verifies Cognito JWTs with it) and requests
  (the JWKS fetch), with their dependencies, at the versions pinned in
  :data:`BUNDLED`. boto3 and botocore come from the Lambda runtime and are never
  bundled; neither are Pulumi, moto or anything else of the build environment.
  Nor is what the runtime's botocore already brings (urllib3, six): a bundled
  copy would sit before the runtime's on Lambda's path, so botocore itself
  would import it uncompiled from the archive on every cold start (~50 ms).

The libraries are copied from the installed distributions (``importlib.metadata``),
so building needs no network. Compiled extension modules are left out: the
functions run on arm64 and a wheel built here is x86_64. Every library bundled is
pure Python or, like charset-normalizer, ships the ``.py`` source beside its
optional compiled speed-ups; a library without that fallback fails the build.

The zip is deterministic (sorted entries, fixed timestamps and permissions, no
bytecode), so the same checkout and pins give byte-identical archives and
``pulumi up`` sees no code change when nothing changed.

This module imports only the standard library, so benchmarks and tests can
build the archive without loading Pulumi.
"""

import hashlib
import importlib.util
import io
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

#: Distributions bundled beside ``handlers`` → the exact version bundled.
#: The closure of python-jose and requests (their non-optional requirements),
#: minus what the Lambda runtime's boto3 provides; ``constraints.txt`` pins the
#: same versions (a test keeps the two in step).
BUNDLED: Mapping[str, str] = {
    "python-jose": "3.5.0",
    "rsa": "4.9.1",
    "ecdsa": "0.19.2",
    "pyasn1": "0.6.5",
    "requests": "2.34.2",
    "idna": "3.20",
    "certifi": "2026.10.19.post1",
    "charset-normalizer": "3.5.3",
}

#: Top-level names that must never be in the archive: the runtime provides the
#: AWS SDK, and build or test tooling has no business in a function.
FORBIDDEN_TOP_LEVEL = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "pulumi", "pulumi_aws", "moto", "cryptography"}
)

#: Packages whose source is bundled as-is: the contract, the server's insides, the entry points.
SOURCE_PACKAGES = ("contract", "server", "handlers")

_EXTENSION_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold
_FILE_MODE = 0o644 << 16
_KEPT_DIST_INFO = ("METADATA",)  # licences are kept too (see _keep)


class ArchiveError(RuntimeError):
    """The archive cannot be built as pinned: a library is missing, at another version, or not pure Python."""


@dataclass(frozen=True)
class LambdaArchive:
    """A built archive."""

    path: Path
    """Where the zip is (named after its content hash)."""
    sha256: str
    """Hex SHA-256 of the zip bytes."""
    size: int
    """Zipped size in bytes."""
    files: tuple[str, ...]
    """Entries, in archive order."""
    versions: Mapping[str, str]
    """Bundled distribution → version."""


def package_dir(package: str) -> Path:
    """The directory of ``package`` as this process imports it."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ArchiveError(f"the {package!r} package is not importable")
    return Path(next(iter(found.submodule_search_locations)))


def _package_files(package: str, root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        yield f"{package}/{path.relative_to(root).as_posix()}", path


def _keep(relative: PurePosixPath) -> bool:
    """Whether a file a distribution installed belongs in the archive."""
    parts = relative.parts
    if not parts or parts[0] == ".." or "__pycache__" in parts or relative.suffix == ".pyc":
        return False  # scripts outside site-packages, bytecode
    if parts[0].endswith(".dist-info"):
        # Keep who the code is and its licence; drop installer records (machine-specific).
        return relative.name in _KEPT_DIST_INFO or "licen" in relative.as_posix().lower()
    return True


def _distribution_files(name: str, version: str) -> Iterator[tuple[str, Path]]:
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise ArchiveError(
            f"{name}=={version} is not installed; install the handlers' dependencies "
            "(`pip install -c constraints.txt '.[handlers]'`)"
        ) from None
    if dist.version != version:
        raise ArchiveError(
            f"{name} {dist.version} is installed but the Lambda archive pins {version}; "
            "install with `-c constraints.txt`"
        )
    recorded = {PurePosixPath(str(f)) for f in dist.files or ()}
    for relative in sorted(recorded):
        if not _keep(relative):
            continue
        if relative.suffix in _EXTENSION_SUFFIXES or relative.name.endswith(_EXTENSION_SUFFIXES):
            module = relative.name.split(".", 1)[0]
            if relative.with_name(f"{module}.py") not in recorded:
                raise ArchiveError(f"{name} is not pure Python: {relative} has no .py fallback")
            continue  # the pure-Python sibling is bundled instead
        top = relative.parts[0].removesuffix(".py")
        if top in FORBIDDEN_TOP_LEVEL:
            raise ArchiveError(f"{name} would bundle {top!r}, which must never be in the archive")
        yield relative.as_posix(), Path(str(dist.locate_file(str(relative))))


def archive_entries(roots: Mapping[str, Path] | None = None) -> list[tuple[str, Path]]:
    """Every (archive name, source file) pair, sorted by archive name.

    ``roots`` names another directory for some of :data:`SOURCE_PACKAGES` (package → directory).
    """
    entries: dict[str, Path] = {}
    for package in SOURCE_PACKAGES:
        root = (roots or {}).get(package) or package_dir(package)
        entries.update(_package_files(package, root))
    for name, version in BUNDLED.items():
        for archive_name, source in _distribution_files(name, version):
            if archive_name in entries:
                raise ArchiveError(f"{archive_name} is provided twice")
            entries[archive_name] = source
    return sorted(entries.items())


def zip_bytes(entries: list[tuple[str, Path]]) -> bytes:
    """A deterministic zip of ``entries``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, source in entries:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = _FILE_MODE
            info.create_system = 3  # Unix, so the mode above is honoured
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, source.read_bytes())
    return buffer.getvalue()


def default_build_dir() -> Path:
    """Where archives are written: a stable folder under the system temp dir."""
    return Path(tempfile.gettempdir()) / "cloud-ws-build"


def build_archive(build_dir: Path | None = None, roots: Mapping[str, Path] | None = None) -> LambdaArchive:
    """Build the archive (or reuse an identical one) and return where it is.

    The file is named after its content hash and written atomically, so
    concurrent builds (two stacks, two test workers) never see a half-written zip.

    Raises:
        ArchiveError: a bundled library is missing, at another version, or not pure Python.
    """
    entries = archive_entries(roots)
    data = zip_bytes(entries)
    digest = hashlib.sha256(data).hexdigest()
    target_dir = build_dir or default_build_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / f"cloud-ws-lambda-{digest[:16]}.zip"
    if not path.exists() or path.stat().st_size != len(data):
        fd, tmp = tempfile.mkstemp(dir=target_dir, suffix=".zip.tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    return LambdaArchive(
        path=path,
        sha256=digest,
        size=len(data),
        files=tuple(name for name, _ in entries),
        versions=dict(BUNDLED),
    )
