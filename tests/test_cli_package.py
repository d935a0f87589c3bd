"""The CLI package: no import cycle, leaves that never import the root, choices derived from
the registries, the hidden ``--test-model`` option, and the logic moved out of the commands
(fast: no model is exported)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from test_cli import run_main

import lsnet_deploy
from lsnet_deploy.api import list_variants
from lsnet_deploy.bench.ending import run_ending
from lsnet_deploy.bench.merge import merge_into
from lsnet_deploy.bench.output import write_report_folder
from lsnet_deploy.bench.schema import BenchReport, BenchResult, load_report
from lsnet_deploy.cli import EXIT_CODES, app
from lsnet_deploy.cli import _common as common
from lsnet_deploy.errors import BenchmarkError, DeviceError, UnsupportedOptionError
from lsnet_deploy.exporters import format_names
from lsnet_deploy.exporters.coreml import COMPUTE_UNITS
from lsnet_deploy.pipeline import sensitivity_formats

PACKAGE = Path(lsnet_deploy.__file__).parent
CLI = PACKAGE / "cli"
ROOT_MODULES = {"lsnet_deploy.cli", "lsnet_deploy.cli.app", "lsnet_deploy.cli.__main__"}
LEAVES = sorted(p for p in CLI.glob("*.py")
                if f"lsnet_deploy.cli.{p.stem}" not in ROOT_MODULES and p.stem != "__init__")
MODULES = ["lsnet_deploy.cli", "lsnet_deploy.cli.app",
           *(f"lsnet_deploy.cli.{p.stem}" for p in LEAVES)]
HOSTING = [["info"], ["predict"], ["export"], ["quant-report"], ["bench", "host"]]
"""The commands with the hidden --test-model option."""


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules a file of the CLI package imports (``from X import y``
    counts ``X`` and, where ``X.y`` is a module of the package, ``X.y``)."""
    names: set[str] = set()
    package = "lsnet_deploy.cli"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            for alias in node.names:
                sub = PACKAGE.parent / Path(*f"{module}.{alias.name}".split("."))
                if sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file():
                    names.add(f"{module}.{alias.name}")
    return names


# -- structure ------------------------------------------------------------------------------------

def test_leaves_import_only_the_common_module() -> None:
    assert {p.stem for p in LEAVES} >= {"_common", "models", "export", "bench", "report"}
    for path in LEAVES:
        cli_imports = {m for m in _imported_modules(path) if m.startswith("lsnet_deploy.cli")}
        allowed = set() if path.stem == "_common" else {"lsnet_deploy.cli._common"}
        assert cli_imports <= allowed, f"{path.name} imports {sorted(cli_imports - allowed)}"


def test_the_version_never_comes_from_the_package_root() -> None:
    for path in CLI.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and "__version__" in {a.name for a in node.names}:
                assert node.module and node.module.endswith("_version"), path.name


def test_modules_and_functions_stay_small() -> None:
    for path in [*CLI.glob("*.py"), PACKAGE / "describe.py", PACKAGE / "bench" / "merge.py",
                 PACKAGE / "bench" / "ending.py"]:
        text = path.read_text()
        assert len(text.splitlines()) <= 500, path.name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                assert length <= 80, f"{path.name}: {node.name} has {length} lines"


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """No import cycle: each CLI module imported first (then all the others, in reverse) in
    its own interpreter, and ``python -m lsnet_deploy.cli`` runs."""
    procs = []
    for first in MODULES:
        order = [first, *reversed([m for m in MODULES if m != first])]
        code = f"import importlib\nfor m in {order!r}:\n    importlib.import_module(m)\n"
        procs.append((first, subprocess.Popen([sys.executable, "-c", code],
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True)))
    procs.append(("python -m", subprocess.Popen(
        [sys.executable, "-m", "lsnet_deploy.cli", "--version"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)))
    for name, proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {stderr}"
    assert stdout.startswith("lsnet-deploy ")


def test_the_package_exports_the_entry_points() -> None:
    from lsnet_deploy import cli

    assert set(cli.__all__) == {"EXIT_CODES", "app", "main"}
    assert isinstance(app, typer.Typer) and EXIT_CODES[DeviceError] == 11


# -- choices from the registries ------------------------------------------------------------------

def _values(enum: object) -> list[str]:
    return [m.value for m in enum]  # type: ignore[attr-defined]


def test_enums_match_the_registries() -> None:
    assert _values(common.Variant) == list_variants()
    assert not set(_values(common.Variant)) & set(common.tiny_variants())
    assert "test_lsnet" in common.tiny_variants()
    assert _values(common.Format) == [*format_names(), "all"]
    assert _values(common.SensitivityFormat) == list(sensitivity_formats())
    assert _values(common.ComputeUnits) == list(COMPUTE_UNITS)
    assert all(isinstance(m, str) for m in common.Format)  # str enums: .value == the name


def _params(*path: str) -> dict[str, object]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {p.name: p for p in command.params}  # type: ignore[attr-defined]


def test_quant_report_offers_only_the_sensitivity_formats(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one line per option
    monkeypatch.setenv("TERMINAL_WIDTH", "200")
    code, out, _ = run_main(["quant-report", "--help"], capsys)
    assert code == 0 and f"<{'|'.join(sensitivity_formats())}>" in out
    for fmt in set(format_names()) - set(sensitivity_formats()):
        assert fmt not in out
    code, out, _ = run_main(["export", "--help"], capsys)
    assert code == 0 and f"<{'|'.join([*format_names(), 'all'])}>" in out
    code, _, err = run_main(["quant-report", "--format", "coreml"], capsys)
    assert code == 2 and "coreml" in err


def test_opset_defaults_to_none() -> None:
    assert _params("export")["opset"].default is None  # type: ignore[attr-defined]


# -- --test-model ---------------------------------------------------------------------------------

@pytest.mark.parametrize("command", HOSTING, ids=" ".join)
def test_test_model_is_hidden(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _params(*command)["test_model"].hidden  # type: ignore[attr-defined]
    code, out, _ = run_main([*command, "--help"], capsys)
    assert code == 0 and "--test-model" not in out and "--model" in out


def test_test_model_runs_a_tiny_variant(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["info", "--test-model", "test_lsnet", "--img-size", "128",
                               "--weights", "random", "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["variant"] == "test_lsnet" and info["img_size"] == [128, 128]
    assert info["input_spec"]["num_classes"] == 10


@pytest.mark.parametrize("command", HOSTING, ids=" ".join)
def test_test_model_refuses_official_names(command: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--test-model", "lsnet_t", "--weights", "random"]
    if command == ["predict"]:
        args.append("image.png")
    code, out, err = run_main([*command, *args], capsys)
    assert code == EXIT_CODES[UnsupportedOptionError] and "--test-model" in err
    assert len(err.strip().splitlines()) == 1 and out == ""
    with pytest.raises(UnsupportedOptionError, match="test variant"):
        common.checked_test_model("lsnet_t")


# -- logic moved out of the commands ---------------------------------------------------------------

def _result(precision: str = "fp32", ms: float = 9.0) -> BenchResult:
    return BenchResult("lsnet_t", "litert", precision, 1, 1, ms, device="Pixel 7")


def test_run_ending_lists_the_aborting_error_once(tmp_path: Path) -> None:
    error = DeviceError("benchmark_model failed on the phone")
    report = BenchReport([_result()], {}, failures=[{"model": "lsnet_t", "error": str(error)}])
    report.aborted_by = error
    ending = run_ending(report, tmp_path)
    assert ending.error is error and ending.failures == ()
    assert ending.cut_short == "failure" and ending.kept == 1
    plain = run_ending(BenchReport([_result()], {}, failures=[{"error": "x"}]), tmp_path)
    assert isinstance(plain.error, BenchmarkError) and len(plain.failures) == 1
    assert plain.cut_short is None and "results.md" in str(plain.error)
    stopped = run_ending(BenchReport([_result()], {}, interrupted=True, failures=[{}]), tmp_path)
    assert stopped.interrupted and stopped.error is None and stopped.cut_short == "interruption"
    imported = run_ending(BenchReport([], {}, failures=[{"error": "old"}]), tmp_path, True)
    assert imported.error is None and imported.failures == ()


def test_merge_into_replaces_the_same_configuration(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="not a report folder"):
        merge_into(tmp_path, [_result()])
    folder = write_report_folder(BenchReport([_result(), _result("int8", 4.0)], {"cpu": "X"}),
                                 tmp_path / "r", chart=False)
    merged = merge_into(folder, [_result(ms=8.0)])
    assert [(r.precision, r.median_ms) for r in merged.results] == [("int8", 4.0), ("fp32", 8.0)]
    assert merged.environment == {"cpu": "X"}


def test_android_error_after_results_is_printed_once(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from lsnet_deploy.bench import android

    error = DeviceError("device went away: adb: device offline")

    def cut_short(models: list[Path], options: object, **_: object) -> BenchReport:
        report = BenchReport([_result()], {"cpu": "X"}, failures=[
            {"model": "lsnet_t", "runtime": "litert", "error": str(error)}])
        report.aborted_by = error
        return report

    monkeypatch.setattr(android, "run_android_bench", cut_short)
    out_dir = tmp_path / "partial"
    code, _, err = run_main(["bench", "android", "--tflite", str(tmp_path / "m.tflite"),
                             "-o", str(out_dir)], capsys)
    assert code == EXIT_CODES[DeviceError]
    assert err.count("device went away") == 1 and "failed:" not in err
    assert f"kept 1 result(s) measured before the failure: {out_dir}" in err
    assert load_report(out_dir / "results.json").failures[0]["error"] == str(error)
