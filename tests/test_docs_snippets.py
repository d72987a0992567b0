"""The code blocks of README.md and docs/*.md, run or checked, so they cannot rot.

Every ```python block compiles; each one runs too, as its own program, in a directory
whose ``.cloud-ws/outputs.json`` belongs to a real local stack (as ``make run`` leaves it),
unless the markdown marks it, right before its fence, with ``<!-- not-run: why -->``.
Every ```sh block is valid shell, its ``cloud-ws`` commands are accepted by the CLI's own
parser (a usage line's ``--options`` exist) and its ``make`` targets exist.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_ws.cli import build_parser
from tests.support import events
from tests.support.local_stack import ROOT, LocalStackProcess, start_local_stack, stop_local_stack

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = ("sh", "bash", "shell")
NOT_RUN = re.compile(r"<!--\s*not-run:(?P<reason>.*?)-->")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<language>[\w+-]*)\s*$")
#: The deployment id the docs use throughout.
DEPLOYMENT = "D1BRV40"
#: A block that runs longer than this is stuck (they take a second or two).
BLOCK_TIMEOUT = 60


@dataclass(frozen=True)
class Block:
    """One fenced code block of a document."""

    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    not_run: str | None  # the marker's reason, when the block is marked

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path``, dedented to their fence, with their not-run marker."""
    lines = path.read_text().splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while lines[end].strip() != "```":
            end += 1
        before = next((line for line in reversed(lines[:index]) if line.strip()), "")
        marker = NOT_RUN.search(before)
        blocks.append(
            Block(
                path,
                index + 1,
                opening["language"],
                textwrap.dedent("\n".join(lines[index + 1 : end])) + "\n",
                marker["reason"].strip() if marker else None,
            )
        )
        index = end + 1
    return blocks


BLOCKS = [block for path in DOCUMENTS for block in read_blocks(path)]
PYTHON = [block for block in BLOCKS if block.language == "python"]
SHELL = [block for block in BLOCKS if block.language in SHELLS]


def test_the_docs_have_blocks_of_each_kind_to_check() -> None:
    """Guards the parser above: a change of fence style must not silently check nothing."""
    assert len(PYTHON) >= 8
    assert len(SHELL) >= 15
    runnable = [b for b in PYTHON if b.not_run is None]
    assert len(runnable) >= 4
    assert {b.path.name for b in runnable} >= {"README.md", "client.md"}


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_not_run_marker_gives_a_reason_right_before_a_block(path: Path) -> None:
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if "not-run" not in line:
            continue
        marker = NOT_RUN.search(line)
        assert marker, f"{path.name}:{number}: write it <!-- not-run: why -->"
        assert len(marker["reason"].strip()) >= 10, f"{path.name}:{number}: say why it cannot run"
        following = next((nxt for nxt in lines[number:] if nxt.strip()), "")
        assert FENCE.match(following), f"{path.name}:{number}: the marker must come right before a fence"


@pytest.mark.parametrize("block", PYTHON, ids=str)
def test_python_block_compiles(block: Block) -> None:
    """Even the blocks that do not run (fragments may use top-level ``await``)."""
    compile(block.code, str(block), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


# -- running the python blocks ------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory as ``make run`` leaves it: ``.cloud-ws/outputs.json`` of a running local
    stack, on which deployment D1BRV40 has run (and failed, so a watcher sees it end)."""
    stack: LocalStackProcess = start_local_stack(tmp_path_factory.mktemp("docs-stack"))
    try:
        directory = tmp_path_factory.mktemp("docs-project")
        (directory / ".cloud-ws").mkdir()
        (directory / ".cloud-ws" / "outputs.json").write_text(json.dumps(stack.outputs))
        for type_, data in events.deployment("two layers, the second fails"):  # as README's demo
            stack.put_event(DEPLOYMENT, type_, data)
        yield directory
    finally:
        assert stop_local_stack(stack) == 0


@pytest.mark.slow
@pytest.mark.parametrize("block", PYTHON, ids=str)
def test_python_block_runs(block: Block, project: Path) -> None:
    if block.not_run is not None:
        pytest.skip(f"marked not-run: {block.not_run}")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "CLOUD_WS_"))}
    done = subprocess.run(
        [sys.executable, "-c", block.code],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
    )
    assert done.returncode == 0, f"{block} failed:\n{done.stderr}"


# -- checking the shell blocks ------------------------------------------------------------------

#: Words that end one command of a line and start the next.
OPERATORS = {"|", "||", "&", "&&", ";", "(", ")"}
CLOUD_WS = ("cloud-ws", ".venv/bin/cloud-ws")


def commands(code: str) -> Iterator[list[str]]:
    """The simple commands of a shell block: continuations joined, comments and redirections
    dropped, split at operators (a usage line, with ``[...]``, is one command)."""
    for line in code.replace("\\\n", " ").splitlines():
        if "[" in line:  # a usage line: its `|` separates alternatives, not commands
            yield shlex.split(line, comments=True)
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        redirect = False
        for word in lexer:
            if word in OPERATORS:
                if words:
                    yield words
                words = []
            elif set(word) <= {">", "<"}:
                redirect = True
            elif redirect:
                redirect = False
            else:
                words.append(word)
        if words:
            yield words


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def check_cloud_ws(words: list[str], where: str) -> None:
    """A ``cloud-ws`` command line the CLI accepts, or a usage line whose options exist."""
    parser = build_parser()
    name = words[0]
    commands_ = subcommands(parser)
    assert name in commands_, f"{where}: no `cloud-ws {name}`"
    if any(c in word for word in words for c in "[]|"):  # a usage line
        options = commands_[name]._option_string_actions
        for option in re.findall(r"--[\w-]+", " ".join(words)):
            assert option in options, f"{where}: `cloud-ws {name}` has no {option}"
        return
    try:
        parser.parse_args(words)
    except SystemExit as refused:
        pytest.fail(f"{where}: `cloud-ws {shlex.join(words)}` is refused by the CLI (exit {refused.code})")


@pytest.mark.parametrize("block", SHELL, ids=str)
def test_shell_block_is_valid_and_its_commands_exist(block: Block) -> None:
    syntax = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, f"{block}: {syntax.stderr}"
    for words in commands(block.code):
        while words and re.fullmatch(r"\w+=.*", words[0]):  # VAR=value before the command
            words = words[1:]
        if not words:
            continue
        if words[0] in CLOUD_WS:
            check_cloud_ws(words[1:], str(block))
        elif words[0] == "make":
            targets = [word for word in words[1:] if "=" not in word and not word.startswith("-")]
            assert set(targets) <= make_targets(), f"{block}: no make target {targets}"
