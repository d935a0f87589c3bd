"""``LSNET_DEPLOY_THREADS``: the thread budget of validation and calibration (lsnet_deploy/
threads.py), read by the ONNX Runtime and LiteRT loaders and by the CLI for PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lsnet_deploy.errors import UnsupportedOptionError
from lsnet_deploy.exporters.onnx import _load
from lsnet_deploy.threads import ENV, apply_to_torch, default_threads
from test_cli import run_main


@pytest.mark.parametrize(("raw", "want"), [("", None), (" 3 ", 3), ("1", 1)])
def test_budget_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, raw: str,
                                             want: int | None) -> None:
    monkeypatch.setenv(ENV, raw)
    assert default_threads() == want


@pytest.mark.parametrize("raw", ["0", "-2", "two", "1.5"])
def test_a_bad_budget_is_a_typed_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(ENV, raw)
    with pytest.raises(UnsupportedOptionError, match="positive number of threads"):
        default_threads()


def test_cli_prints_a_bad_budget_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(ENV, "many")
    code, _, err = run_main(["models"], capsys)
    assert code == 2 and "LSNET_DEPLOY_THREADS='many'" in err and "Traceback" not in err


def test_torch_and_onnx_runtime_take_the_budget(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(ENV, "1")
        torch.set_num_threads(2)
        assert apply_to_torch() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    path = tmp_path / "m.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(path), dynamo=False)
    monkeypatch.setenv(ENV, "3")
    assert _load(path, None).get_session_options().intra_op_num_threads == 3
    assert _load(path, 2).get_session_options().intra_op_num_threads == 2  # named: kept
    monkeypatch.delenv(ENV)
    assert _load(path, None).get_session_options().intra_op_num_threads == 0  # ORT's default
