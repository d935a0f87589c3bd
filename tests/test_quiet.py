"""Issue 17, a quiet command line: without ``--verbose`` an export's stderr holds only
lsnet-deploy's own lines (the converters' banners, warnings and progress bars are captured),
its stdout only its result; long work reports phases and counted steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lsnet_deploy.progress import Step, counted

REPO = Path(__file__).resolve().parent.parent


def _export(tmp_path: Path, *args: str, verbose: bool = False
            ) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lsnet_deploy.cli", *(["--verbose"] if verbose else []),
           "export", "--test-model", "test_lsnet", "--img-size", "96", "--weights", "random",
           "--output-dir", str(tmp_path), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO,
                          env=dict(os.environ))


def _foreign(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("lsnet-deploy: ")]


@pytest.mark.parametrize("fmt", [
    ["--format", "onnx", "--int8"],
    pytest.param(["--format", "tflite", "--int8"], marks=pytest.mark.slow),
    pytest.param(["--format", "coreml"], marks=pytest.mark.slow),
])
def test_export_stderr_is_only_lsnet_deploy_lines(tmp_path: Path, fmt: list[str]) -> None:
    proc = _export(tmp_path, *fmt)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _foreign(proc.stderr) == []
    assert proc.stderr.splitlines()[-1].startswith("lsnet-deploy: done in ")
    [path, summary] = proc.stdout.splitlines()  # the artifact and its validation, nothing else
    assert path.startswith(str(tmp_path)) and "PASS" in summary


@pytest.mark.slow
def test_verbose_shows_the_converters_output(tmp_path: Path) -> None:
    """The same export as ``test_export_stderr_is_only_lsnet_deploy_lines[fmt2]``, whose
    stderr holds only lsnet-deploy's lines, with ``--verbose``: the converter speaks
    (coremltools' progress bars; Core ML is the quickest of the three exports)."""
    loud = _export(tmp_path / "v", "--format", "coreml", verbose=True)
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert len(_foreign(loud.stderr)) > 0


def test_steps_are_strings_with_their_counts() -> None:
    said: list[str] = []
    assert list(counted(said.append, "INT8 sensitivity", ["stem", "ska"],
                        lambda g: f"group {g}")) == ["stem", "ska"]
    assert said == ["INT8 sensitivity 1/2: group stem", "INT8 sensitivity 2/2: group ska"]
    step = said[1]
    assert isinstance(step, Step) and (step.phase, step.index, step.total, step.item) == (
        "INT8 sensitivity", 2, 2, "group ska")
    assert list(counted(None, "x", [1, 2])) == [1, 2]  # no callback: nothing reported


def test_long_steps_report_progress(tmp_path: Path) -> None:
    """quant-report's groups and the validation's images arrive as counted steps."""
    from lsnet_deploy.pipeline import export, quant_report

    said: list[str] = []
    quant_report("test_lsnet", weights="random", img_size=96, calib_size=8, val_size=8,
                 progress=said.append)
    steps = [s for s in said if isinstance(s, Step) and s.phase == "INT8 sensitivity"]
    assert steps and [s.index for s in steps] == list(range(1, steps[0].total + 1))
    said.clear()
    export("test_lsnet", "onnx", weights="random", img_size=96, output_dir=tmp_path,
           progress=said.append)
    assert any(isinstance(s, Step) and s.phase == "validating" for s in said)
