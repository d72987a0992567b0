"""Lambda archive benchmarks (issue: Pulumi component).

1. The code archive every function runs from: zipped size, unzipped size,
   entries, and what each part weighs.
2. Cold import of each handler module, measured with ``python -X importtime``
   in a fresh interpreter whose path is only the unpacked archive plus boto3
   (as on Lambda), against ``import boto3`` alone. Two cases:
   - *no bytecode*: the archive as deployed. Lambda's ``/var/task`` is read-only
     and the archive ships no ``.pyc``, so every cold start compiles our modules;
   - *bytecode*: the same with ``__pycache__`` present, i.e. what shipping
     compiled files for the exact runtime version would save.
   ``server.cognito`` (python-jose) and ``requests`` are imported lazily by
   ``$connect`` on its first token and first JWKS fetch; they are shown apart.
   "boto3, archive on the path" checks that the archive shadows nothing boto3
   imports (it must equal boto3 alone).

Prints figures and ratios (median of ``BENCH_REPEAT`` runs, default 7).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from packaging.requirements import Requirement

from contract import spec
from pulumi_component.archive import build_archive

REPEAT = int(os.environ.get("BENCH_REPEAT", "7"))

#: Distributions of boto3's closure on Lambda (the runtime provides them; never bundled).
RUNTIME_ROOT = "boto3"


def runtime_distributions() -> set[str]:
    seen: set[str] = set()
    pending = [RUNTIME_ROOT]
    while pending:
        name = pending.pop()
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return seen


def link_runtime(destination: Path) -> None:
    destination.mkdir()
    for name in runtime_distributions():
        dist = metadata.distribution(name)
        for file in dist.files or ():
            text = str(file)
            if text.startswith("..") or ".dist-info" in text:
                continue
            top = Path(text).parts[0]
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (destination / top).exists():
                (destination / top).symlink_to(source)


def importtime_us(code: str, path: list[str], write_bytecode: bool, startup: set[str]) -> int:
    """Total cumulative import time (µs) of the top-level imports ``code`` triggers."""
    flags = ["-I", "-S", "-X", "importtime"] + ([] if write_bytecode else ["-B"])
    prelude = f"import sys; sys.path[:0] = {path!r}; "
    done = subprocess.run(
        [sys.executable, *flags, "-c", prelude + code], capture_output=True, text=True, check=True
    )
    total = 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, raw_name = line.removeprefix("import time:").split("|")
        name = raw_name.strip()
        depth = len(raw_name) - len(raw_name.lstrip()) - 1  # two spaces per nesting level
        if depth == 0 and name not in startup:  # a root of what `code` imported
            total += int(cumulative)
    return total


def startup_modules() -> set[str]:
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-X", "importtime", "-c", "pass"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")
    }


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="cloud-ws-bench-"))
    try:
        built = build_archive(work / "build")
        bundle = work / "task"
        with zipfile.ZipFile(built.path) as zipped:
            infos = zipped.infolist()
            zipped.extractall(bundle)
        unzipped = sum(i.file_size for i in infos)
        weights: dict[str, int] = {}
        for info in infos:
            top = info.filename.split("/")[0].removesuffix(".py")
            top = top.split("-")[0] if top.endswith(".dist-info") else top
            weights[top] = weights.get(top, 0) + info.compress_size
        print("== Lambda archive")
        print(f"zipped {built.size / 1024:.0f} KiB, unzipped {unzipped / 1024:.0f} KiB, {len(infos)} files")
        for top, size in sorted(weights.items(), key=lambda kv: -kv[1])[:12]:
            print(f"  {top:<22} {size / 1024:7.1f} KiB zipped")

        runtime = work / "runtime"
        link_runtime(runtime)
        path = [str(bundle), str(runtime)]
        compiled = work / "task-bytecode"
        shutil.copytree(bundle, compiled)
        startup = startup_modules()
        cases = [("boto3 alone", "import boto3"), ("boto3, archive on the path", "import boto3")]
        cases += [
            (f"handlers.{r.module}", f"import handlers.{r.module}") for r in (*spec.ROUTES, spec.BROADCASTER)
        ]
        cases += [
            ("+ server.cognito (jose)", "import handlers.connect, server.cognito"),
            ("+ requests (JWKS fetch)", "import handlers.connect, server.cognito, requests"),
        ]
        # Warm the bytecode copy once (as a runtime-matched .pyc would be).
        subprocess.run(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                f"import sys; sys.path[:0] = {[str(compiled), str(runtime)]!r}; "
                + "; ".join(code for _, code in cases),
            ],
            check=True,
        )
        # Round-robin, so a busy moment on the machine costs every case alike.
        runs: dict[tuple[str, bool], list[int]] = {}
        for _ in range(REPEAT):
            for label, code in cases:
                for bytecode, where in ((False, path), (True, [str(compiled), str(runtime)])):
                    if label == "boto3 alone":
                        where = [str(runtime)]  # the runtime's own boto3, nothing of ours
                    runs.setdefault((label, bytecode), []).append(
                        importtime_us(code, where, bytecode, startup)
                    )
        median = {key: statistics.median(values) / 1000 for key, values in runs.items()}
        best = {key: min(values) / 1000 for key, values in runs.items()}
        print(f"\n== Cold import in a fresh interpreter (python -X importtime), ms: median (min) of {REPEAT}")
        print(f"{'module':<28} {'no bytecode':>16} {'x boto3':>8} {'bytecode':>16} {'x boto3':>8}")
        for label, _ in cases:
            cells = []
            for bytecode in (False, True):
                key = (label, bytecode)
                ratio = median[key] / median[("boto3 alone", bytecode)]
                cells.append(f"{median[key]:8.1f} ({best[key]:5.1f}) {ratio:8.2f}")
            print(f"{label:<28} {cells[0]} {cells[1]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
