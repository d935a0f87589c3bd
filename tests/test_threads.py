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


def test_an_export_refuses_a_bad_budget_before_any_work(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    from lsnet_deploy.pipeline import export

    monkeypatch.setenv(ENV, "0")
    with pytest.raises(UnsupportedOptionError, match="positive number of threads"):
        export("test_lsnet", "onnx", weights="random", img_size=128, output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_executorch_pool_takes_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from executorch.extension.pybindings import portable_lib

    from lsnet_deploy.exporters.executorch import _set_threads

    before = portable_lib._threadpool_get_thread_count()
    try:
        monkeypatch.setenv(ENV, "1")
        _set_threads(2)
        assert portable_lib._threadpool_get_thread_count() == 2  # named: kept
        _set_threads(None)
        assert portable_lib._threadpool_get_thread_count() == 1  # the budget
    finally:
        _set_threads(before)
