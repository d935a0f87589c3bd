"""Issue 16, the command line: bounded work (absurd input sizes refused before anything is
built), every option check before the work, stdout that carries only our output, and the
start-up and debug switches. Companions: tests/test_hardening_inputs.py (checkpoints, images),
tests/test_hardening_results.py (sidecars, result files), tests/test_faults.py (publishing
under faults and signals)."""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import run_main

import lsnet_deploy.api
from lsnet_deploy.errors import UnsupportedOptionError
from lsnet_deploy.limits import IMG_SIZE_ENV, MAX_IMG_SIDE, check_img_size
from lsnet_deploy.lsnet import build_lsnet

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a model fails loudly: a refusal seen with this fixture came before any work."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built before the options were checked")

    monkeypatch.setattr(lsnet_deploy.api, "create_model", refuse)


def test_img_size_is_bounded_before_anything_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    check_img_size((MAX_IMG_SIDE, 224))
    with pytest.raises(UnsupportedOptionError, match=f"set {IMG_SIZE_ENV}=4096 to allow it"):
        check_img_size((4096, 4096))
    with pytest.raises(UnsupportedOptionError, match="at least 32 pixels"):
        check_img_size((16, 224))
    with pytest.raises(UnsupportedOptionError, match="largest side allowed is 1024"):
        build_lsnet("lsnet_t", img_size=(224, 2048))  # the model itself refuses it too
    monkeypatch.setenv(IMG_SIZE_ENV, "4096")
    check_img_size((4096, 4096))  # the explicit override
    monkeypatch.setenv(IMG_SIZE_ENV, "lots")
    with pytest.raises(UnsupportedOptionError, match="is not an integer"):
        check_img_size((224, 224))


@pytest.mark.parametrize(("argv", "needle"), [
    (["--img-size", "4096"], "largest side allowed is 1024"),
    (["--int8", "--min-cosine", "2"], "--min-cosine must be a mean cosine in [0, 1]"),
    (["--int8", "--min-cosine", "nan"], "--min-cosine must be a mean cosine in [0, 1]"),
    (["--int8", "--min-photo-cosine", "1.5"], "--min-photo-cosine must be a cosine in [0, 1]"),
    (["--fp32", "--min-photo-cosine", "0.9"], "--min-photo-cosine gates reduced precision"),
    (["--min-photo-cosine", "0.9"], "--min-photo-cosine gates reduced precision (add --int8"),
    (["--format", "tflite", "--int8", "--int8-exclude", "bogus"],
     "unknown op group(s) bogus for tflite INT8"),
    (["--opset", "17"], "the dynamo exporter needs opset >= 18"),
    (["--int8", "--int16-headroom", "1.5"], "--int16-headroom widens the ranges of int16"),
    (["--int8", "--int8-int16", "all", "--int16-headroom", "0.5"],
     "--int16-headroom 0.5: give 1"),
    (["--format", "tflite", "--int8", "--int8-int16", "all", "--int16-headroom", "inf"],
     "--int16-headroom inf: give 1"),
    (["--format", "coreml", "--int16-headroom", "1.5"],
     "--int16-headroom applies to ONNX and TFLite, not coreml"),
])
def test_export_refusals_come_before_the_model(argv: list[str], needle: str, tmp_path: Path,
                                               no_model: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["export", "--weights", "random", "--output-dir", str(tmp_path),
                               *argv], capsys)
    assert code == 2 and needle in err and "Traceback" not in err and out == ""
    assert list(tmp_path.iterdir()) == []  # not even an empty variant folder


def test_debug_switch_is_off_for_zero(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LSNET_DEPLOY_DEBUG", "0")
    code, _, err = run_main(["export", "--weights", "random", "--img-size", "4096",
                             "--output-dir", str(tmp_path)], capsys)
    assert code == 2 and err.startswith("error:") and "Traceback" not in err
    monkeypatch.setenv("LSNET_DEPLOY_DEBUG", "1")
    with pytest.raises(UnsupportedOptionError):  # the traceback, for debugging
        run_main(["export", "--weights", "random", "--img-size", "4096",
                  "--output-dir", str(tmp_path)], capsys)


def test_ctrl_c_while_the_command_line_loads_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lsnet_deploy import _console

    real_import = builtins.__import__

    def interrupted(name: str, *args: object, **kwargs: object) -> object:
        if name == "cli.app" or name.endswith("lsnet_deploy.cli.app"):
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as ei:
        _console.main()
    assert ei.value.code == 130 and capsys.readouterr().err == "interrupted\n"


def test_json_stdout_is_only_the_json_object(tmp_path: Path) -> None:
    """A TFLite fp16 export (whose quantizer prints its model sizes on stdout) with --json:
    stdout parses as one JSON object, the third-party prints went to stderr."""
    cmd = [sys.executable, "-m", "lsnet_deploy.cli", "export", "--test-model", "test_lsnet",
           "--img-size", "96", "--weights", "random", "--format", "tflite", "--fp16",
           "--output-dir", str(tmp_path), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    [art] = json.loads(proc.stdout)["artifacts"]
    assert art["passed"] and art["path"].endswith("test_lsnet_96_fp16.tflite")
