"""The CLI: commands, JSON output, and one-line errors with exit codes (no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lsnet_deploy.cli import EXIT_CODES, main
from lsnet_deploy.errors import CheckpointError, WeightsUnavailableError
from lsnet_deploy.labels import imagenet_classes
from lsnet_deploy.paths import calibration_dir

CHELSEA = str(calibration_dir() / "skimage_chelsea.png")


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = 0
    try:
        main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_models_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["models", "--json"], capsys)
    assert code == 0
    rows = {r["variant"]: r for r in json.loads(out)["variants"]}
    assert len(rows) == 6
    assert rows["lsnet_t"]["params_fused_m"] == pytest.approx(11.37, abs=0.01)
    assert rows["lsnet_b"]["paper_gmacs"] == 1.3 and rows["lsnet_b"]["cached"] is None
    assert rows["lsnet_s_distill"]["paper_top1"] == 79.0


def test_info_random_weights_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["info", "--model", "lsnet_t", "--weights", "random", "--json"],
                              capsys)
    assert code == 0
    info = json.loads(out)
    assert info["weights"]["kind"] == "random" and "RANDOM" in info["weights"]["label"]
    assert info["reparam_check"]["max_abs_diff"] <= 1e-4
    assert info["reparam_check"]["top1_agreement"] == 1.0
    assert info["attention_grid"] == [4, 4]
    assert info["input_spec"]["input_shape"] == [1, 3, 224, 224]
    assert "RANDOM" in err  # labelled on stderr too


def test_info_human_output_labels_random(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["info", "--weights", "random", "--max-images", "2"], capsys)
    assert code == 0 and "RANDOM" in out and "fused vs unfused" in out


def test_predict_with_a_checkpoint(make_checkpoint, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    ckpt = make_checkpoint("lsnet_t")
    code, out, _ = run_main(["predict", "--model", "lsnet_t", "--weights", str(ckpt), CHELSEA,
                             "--json"], capsys)
    assert code == 0
    res = json.loads(out)
    top = res["predictions"][0]["top"]
    assert len(top) == 5 and res["weights"]["kind"] == "file"
    names = imagenet_classes()
    assert all(names[t["index"]] == t["name"] for t in top)
    # the same numbers as the Python API on the same checkpoint
    from lsnet_deploy import create_model, predict

    api = predict(create_model("lsnet_t", ckpt, reparameterize=True), [CHELSEA])[0].top
    assert [t["index"] for t in top] == [i for i, _, _ in api]
    for t, (_, _, prob) in zip(top, api, strict=True):
        assert t["prob"] == pytest.approx(prob, abs=1e-6)
    probs = [t["prob"] for t in top]
    assert probs == sorted(probs, reverse=True) and probs[-1] > 0


def test_errors_are_one_line_with_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["info", "--weights", str(tmp_path / "missing.pth")], capsys)
    assert code == EXIT_CODES[CheckpointError]
    assert err.strip().startswith("error:") and "not found" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and out == ""
    code, _, err = run_main(["predict", "--model", "lsnet_t", CHELSEA], capsys)  # offline official
    assert code == EXIT_CODES[WeightsUnavailableError] and "--weights random" in err
    code, _, err = run_main(["predict", "--weights", "random", str(tmp_path / "nope.jpg")], capsys)
    assert code == 3 and "image not found" in err
    code, _, err = run_main(["info", "--model", "lsnet_xl"], capsys)
    assert code == 2 and "lsnet_xl" in err


def test_paths_with_brackets_are_printed_verbatim(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Rich markup must not eat parts of paths or messages."""
    code, _, err = run_main(["info", "--weights", str(tmp_path / "model[v2].pth")], capsys)
    assert code == 4 and "model[v2].pth" in err
    code, _, err = run_main(["info", "--weights", "/tmp/a[/b].pth"], capsys)
    assert code == 4 and "/tmp/a[/b].pth" in err and "Traceback" not in err


def test_unexpected_errors_are_one_line(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import lsnet_deploy.api as api

    def boom(*_: object, **__: object) -> None:
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(api, "create_model", boom)
    code, _, err = run_main(["info", "--weights", "random"], capsys)
    assert code == 1 and "internal error: ZeroDivisionError: simulated bug" in err
    assert len(err.strip().splitlines()) == 1


def test_console_script_end_to_end(tmp_path: Path) -> None:
    """The installed entry point: success and a failure without traceback."""
    exe = Path(sys.executable).parent / "lsnet-deploy"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LSNET_DEPLOY_HOME": str(tmp_path)}
    ok = subprocess.run([str(exe), "--version"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and ok.stdout.startswith("lsnet-deploy ")
    bad = tmp_path / "bad.pth"
    bad.write_text("nope")
    res = subprocess.run([str(exe), "info", "--weights", str(bad)], capture_output=True,
                         text=True, env=env)
    assert res.returncode == 4
    assert "Traceback" not in res.stderr and "not a PyTorch checkpoint" in res.stderr
    debug = subprocess.run([str(exe), "info", "--weights", str(bad)], capture_output=True,
                           text=True, env={**env, "LSNET_DEPLOY_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_tables_degrade_to_markdown_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    """Not a terminal: every row on one line, names never broken across lines."""
    code, out, _ = run_main(["models"], capsys)
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| lsnet_")]
    assert [r.split("|")[1].strip() for r in rows] == [
        "lsnet_t", "lsnet_t_distill", "lsnet_s", "lsnet_s_distill", "lsnet_b", "lsnet_b_distill"]
    assert "| variant | params M | fused M | GMACs |" in out


def test_help_is_plain_and_fast_to_read(capsys: pytest.CaptureFixture[str]) -> None:
    """Plain help (no box drawing, no <bool> on flags), choices whole, the default bench
    command's flags pointed to."""
    code, out, _ = run_main(["quant-report", "--help"], capsys)
    assert code == 0 and "<bool>" not in out and "╭" not in out
    assert "lsnet_s_distill" in out and "--calib-size" in out and "onnx|tflite" in out
    code, out, _ = run_main(["bench", "--help"], capsys)
    assert code == 0 and "bench host --help" in out
