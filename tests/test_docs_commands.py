"""The README's commands and snippets work as written (issue 17, "docs made true and kept true").

Fast tier: every ```bash block of README.md and of the docs maintained with it (:data:`DOCS`)
splits into commands; every ``lsnet-deploy`` command among them names a real subcommand and
real options with valid values (parsed by the CLI's own parser, which is what ``--help``
lists); every install command pins torch with the constraints file; every ```python block
compiles; every fence says its language (synopses that are not commands are ```text).

Slow tier: every ```bash block of README.md that runs ``lsnet-deploy`` is run command by
command, in order, with the venv's console script, and each must exit 0; every ```python block
runs in a fresh interpreter and must exit 0. Each block runs in its own temporary folder laid
out like the checkout's root (``calibration/`` linked in), offline, with a temporary
``LSNET_DEPLOY_HOME``. What the test changes in a command, and only that (:func:`runnable`):

- ``lsnet-deploy`` / ``.venv/bin/lsnet-deploy`` becomes this venv's console script;
- ``--weights random`` is added where the command would load the official checkpoint (no
  ``--weights``): this machine is offline;
- the default output folder is named explicitly, relative to the temporary folder
  (``--output-dir export``, ``--output-dir export/bench/readme-N``, ``report export/bench``),
  because in a source checkout that default is the checkout's own ``export/`` whatever the
  working directory.

Install commands (``python3 -m venv``, ``pip install``) are not re-run, and the test command
(the README's second block) is this suite itself.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

README = REPO / "README.md"
DOCS = [README, REPO / "export" / "README.md",
        *(REPO / "docs" / n for n in ("android.md", "apps.md", "int8.md", "ios.md",
                                      "reparameterization.md"))]
"""The Markdown files whose commands this module keeps true (the other docs have owners of
their own and tests of their own)."""

CONSOLE_SCRIPT = Path(sys.executable).parent / "lsnet-deploy"
OPERATORS = {"&&", "||", ";", "|", "&"}
TIMEOUT_S = 30 * 60
"""Per command: the slowest README commands (the bench, the ONNX INT8 search) took under 4
minutes each on the shared 2-core machine; this only stops a hang."""

FENCE = re.compile(r"^( *)```(\S*)[^\n]*\n(.*?)^\1```", flags=re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced code block: its file, its index among the file's blocks of its language,
    its language and its text (dedented)."""

    path: Path
    index: int
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.lang}{self.index}"


def blocks(path: Path, lang: str | None = None) -> list[Block]:
    """The fenced blocks of ``path`` (of one language if ``lang``), in order."""
    found: list[Block] = []
    counts: dict[str, int] = {}
    for m in FENCE.finditer(path.read_text()):
        indent, language, body = m.groups()
        text = "\n".join(line[len(indent):] for line in body.splitlines())
        n = counts.get(language, 0)
        counts[language] = n + 1
        if lang is None or language == lang:
            found.append(Block(path, n, language, text))
    return found


def commands(script: str) -> list[list[str]]:
    """The simple commands of a shell snippet (continuation lines joined, comments dropped,
    split at ``&&``, ``||``, ``;``, ``|`` and newlines), each as its words."""
    out: list[list[str]] = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in OPERATORS:
                if current:
                    out.append(current)
                current = []
            else:
                current.append(token)
        if current:
            out.append(current)
    return out


def is_lsnet_deploy(argv: list[str]) -> bool:
    return Path(argv[0]).name == "lsnet-deploy"


def is_install(argv: list[str]) -> bool:
    """``python3 -m venv DIR`` or ``.../pip install ...``."""
    return (argv[1:3] == ["-m", "venv"]) or (Path(argv[0]).name == "pip" and argv[1] == "install")


def is_test_run(argv: list[str]) -> bool:
    return argv[1:3] == ["-m", "pytest"]


@cache
def _cli() -> Any:
    import typer

    from lsnet_deploy.cli.app import app

    return typer.main.get_command(app)


def parse(argv: list[str]) -> tuple[tuple[str, ...], Any]:
    """Parse an ``lsnet-deploy`` command with the CLI's own parser: ``(command path, click
    context of the leaf command)``. Raises click's usage errors for an unknown command,
    option or value."""
    group, args, path = _cli(), argv[1:], ()
    while hasattr(group, "commands"):
        while args and args[0] in ("--verbose", "-v"):
            args = args[1:]
        if args and args[0] in group.commands:
            name, args = args[0], args[1:]
        elif path == ("bench",):  # 'bench' without a subcommand is 'bench host'
            name = "host"
        else:
            raise AssertionError(f"{shlex.join(argv)}: no such command {args[:1]}")
        group, path = group.commands[name], (*path, name)
    return path, group.make_context(" ".join(path), list(args))


OFFICIAL_BY_DEFAULT = {("export",), ("info",), ("predict",), ("quant-report",), ("bench", "host")}
"""Commands that load the official checkpoint when ``--weights`` is not given (``validate``
takes the weights an artifact was exported from, from its sidecar)."""


def runnable(argv: list[str], n: int) -> list[str]:
    """``argv`` as this test runs it (the module docstring lists every change); ``n`` numbers
    the command within its block, for a report folder of its own."""
    path, ctx = parse(argv)
    params = ctx.params
    extra: list[str] = []
    builds_a_model = path != ("bench", "host") or params.get("model")  # bench FILE: no model
    if path in OFFICIAL_BY_DEFAULT and params.get("weights") is None and builds_a_model:
        extra += ["--weights", "random"]
    if path == ("export",) and params.get("output_dir") is None:
        extra += ["--output-dir", "export"]
    elif path in {("bench", "host"), ("bench", "coreml"), ("bench", "android")}:
        if params.get("output_dir") is None:
            extra += ["--output-dir", f"export/bench/readme-{n}"]
    elif path == ("bench", "ios-harness") and params.get("output_dir") is None:
        extra += ["--output-dir", f"export/ios-harness/readme-{n}"]
    elif path == ("bench", "import") and params.get("into") is None:
        raise AssertionError(f"{shlex.join(argv)}: writes a new report folder into the "
                             "checkout's export/bench/; give it --into DIR")
    elif path == ("report",) and not params.get("paths"):
        extra += ["export/bench"]
    return [str(CONSOLE_SCRIPT), *argv[1:], *extra]


def _doc_blocks(lang: str) -> list[Block]:
    return [b for doc in DOCS for b in blocks(doc, lang)]


# -- fast tier -------------------------------------------------------------------------------


def test_every_fence_names_its_language() -> None:
    bare = [f"{doc.relative_to(REPO)}: {b.text.splitlines()[0] if b.text else ''}"
            for doc in DOCS for b in blocks(doc) if not b.lang]
    assert not bare, f"fences without a language (```bash, ```text, ...): {bare}"


@pytest.mark.parametrize("block", _doc_blocks("bash"), ids=lambda b: b.id)
def test_bash_block_is_commands_with_real_options(block: Block) -> None:
    cmds = commands(block.text)
    assert cmds, f"{block.id}: no command"
    for argv in cmds:
        if is_lsnet_deploy(argv):
            parse(argv)  # raises on an unknown command, option or value
        elif is_install(argv) and Path(argv[0]).name == "pip":
            assert "-c" in argv and argv[argv.index("-c") + 1] == "constraints.txt", argv
            assert "torch==2.13.0" in argv, argv


@pytest.mark.parametrize("block", _doc_blocks("python"), ids=lambda b: b.id)
def test_python_block_compiles(block: Block) -> None:
    ast.parse(block.text, filename=block.id)


def _options(command: Any) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}


def test_cli_synopsis_names_real_commands_and_options() -> None:
    """The README's ```text synopsis of the CLI: each entry's command exists and each of its
    --options is one of that command's."""
    entries: list[str] = []
    for block in blocks(README, "text"):
        for line in block.text.splitlines():
            if line.startswith("lsnet-deploy "):
                entries.append(line)
            elif line.startswith(" ") and entries and entries[-1].startswith("lsnet-deploy "):
                entries[-1] += " " + line.strip()
    assert len(entries) >= 10, entries
    for entry in entries:
        words = entry.split()[1:]
        command = _cli()
        while hasattr(command, "commands") and words and words[0] in command.commands:
            command, words = command.commands[words[0]], words[1:]
        if hasattr(command, "commands") and command is not _cli():  # 'bench [--model ...'
            command = command.commands["host"]
        unknown = set(re.findall(r"--[a-z0-9][a-z0-9-]*", entry)) - _options(command)
        assert not unknown, f"README synopsis: {entry.split('[')[0].strip()}: {sorted(unknown)}"


def test_readme_commands_are_runnable_offline() -> None:
    """What the slow tier will run: every README command is a command this module knows how to
    run (or deliberately not re-run), and no command is left without something to run."""
    ran = []
    for block in blocks(README, "bash"):
        for n, argv in enumerate(commands(block.text)):
            if is_lsnet_deploy(argv):
                cmd = runnable(argv, n)
                assert "--weights" in cmd or parse(argv)[0] not in OFFICIAL_BY_DEFAULT
                ran.append(cmd)
            else:
                assert is_install(argv) or is_test_run(argv), (
                    f"{block.id}: {shlex.join(argv)} is neither lsnet-deploy nor an install or "
                    "test command: teach tests/test_docs_commands.py to run it")
    assert ran


def test_the_rewrite_only_fills_in_defaults() -> None:
    argv = ["lsnet-deploy", "export", "--model", "lsnet_t", "--format", "tflite", "--int8"]
    assert runnable(argv, 0)[1:] == [*argv[1:], "--weights", "random", "--output-dir", "export"]
    argv = [".venv/bin/lsnet-deploy", "bench", "--model", "lsnet_t", "--weights", "random"]
    assert runnable(argv, 3)[1:] == [*argv[1:], "--output-dir", "export/bench/readme-3"]
    assert runnable(["lsnet-deploy", "report"], 0)[1:] == ["report", "export/bench"]
    assert runnable(["lsnet-deploy", "validate", "x.onnx"], 0)[1:] == ["validate", "x.onnx"]
    with pytest.raises(Exception, match="--bogus"):
        parse(["lsnet-deploy", "export", "--bogus"])
    with pytest.raises(Exception, match="onnxx"):
        parse(["lsnet-deploy", "export", "--format", "onnxx"])


# -- slow tier: run them -----------------------------------------------------------------------


def _workdir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder laid out like the checkout's root, and the environment to run in it."""
    work = tmp_path / "work dir"  # a space in the path, as users have
    work.mkdir()
    (work / "calibration").symlink_to(REPO / "calibration", target_is_directory=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LSNET_DEPLOY_HOME": str(tmp_path / "home"),
           "PYTHONUNBUFFERED": "1"}
    env.pop("LSNET_DEPLOY_DEBUG", None)
    return work, env


def _run(cmd: list[str], work: Path, env: dict[str, str], what: str) -> None:
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, (
        f"{what}: exit {done.returncode}\n$ {shlex.join(cmd)}\n--- stdout\n{done.stdout[-4000:]}"
        f"\n--- stderr\n{done.stderr[-6000:]}")


def _readme_runs() -> list[Block]:
    return [b for b in blocks(README, "bash")
            if any(is_lsnet_deploy(c) for c in commands(b.text))]


@pytest.mark.slow
@pytest.mark.parametrize("block", _readme_runs(), ids=lambda b: b.id)
def test_readme_bash_block_runs(block: Block, tmp_path: Path) -> None:
    assert CONSOLE_SCRIPT.is_file(), f"no console script at {CONSOLE_SCRIPT}"
    work, env = _workdir(tmp_path)
    for n, argv in enumerate(commands(block.text)):
        if is_lsnet_deploy(argv):
            cmd = runnable(argv, n)
            _run(cmd, work, env, f"{block.id}, command {n}")
            path, ctx = parse(cmd)
            if path == ("bench", "host") and ctx.params.get("model"):
                _check_bench_report(work / ctx.params["output_dir"], ctx.params)


EVERY_HOST_RUNTIME = [("pytorch-unfused", "fp32"), ("pytorch-fused", "fp32"),
                      ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("litert", "fp32"),
                      ("litert", "int8")]


def _check_bench_report(folder: Path, params: dict[str, Any]) -> None:
    """A README ``bench --model`` line (default runtimes) timed every variant in every host
    runtime, fp32 and INT8, at every thread count, and wrote its report folder."""
    assert not (params.get("runtime") or params.get("peer") or params.get("batch")), (
        "a README bench line with --runtime, --peer or --batch: teach _check_bench_report "
        "the rows and shapes it gives")
    data = json.loads((folder / "results.json").read_text())
    threads = [int(t) for t in (params.get("threads") or "1").split(",")]
    models = [str(getattr(m, "value", m)) for m in params["model"]]
    rows = [(r["model"], r["threads"], r["runtime"], r["precision"]) for r in data["results"]]
    assert sorted(rows) == sorted((m, t, *rp) for m in models for t in threads
                                  for rp in EVERY_HOST_RUNTIME), rows
    runs = params.get("runs") or 1
    for r in data["results"]:
        assert r["median_ms"] > 0 and r["runs"] >= runs, r
        nhwc = r["runtime"] == "litert"
        assert r["input_shape"] == ([1, 224, 224, 3] if nhwc else [1, 3, 224, 224]), r
        if not r["runtime"].startswith("pytorch"):  # exported on the fly, then compared
            assert "cosine vs PyTorch" in r["notes"], r
    assert not data["failures"] and not data["interrupted"]
    md = (folder / "results.md").read_text()
    assert sum(md.count(f"| {m} |") for m in models) == len(rows)
    assert (folder / "latency.png").stat().st_size > 5000


@pytest.mark.slow
@pytest.mark.parametrize("block", blocks(README, "python"), ids=lambda b: b.id)
def test_readme_python_block_runs(block: Block, tmp_path: Path) -> None:
    work, env = _workdir(tmp_path)
    script = work / "snippet.py"
    script.write_text(block.text + "\n")
    _run([sys.executable, str(script)], work, env, block.id)
