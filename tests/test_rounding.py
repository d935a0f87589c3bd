"""GPTQ weight rounding (lsnet_deploy.quantize.rounding) and its place in INT8 exports: the
rounded weights are on the backends' int8 grid, the backends keep them as they are, and the
rounding brings the quantized logits closer to PyTorch than nearest rounding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY_SIZE
from test_cli import run_main
from torch import nn

import lsnet_deploy.pipeline.exporting as exporting
from lsnet_deploy import export
from lsnet_deploy.errors import UnsupportedOptionError
from lsnet_deploy.lsnet import LSNet, build_lsnet
from lsnet_deploy.pipeline.images import split_images
from lsnet_deploy.pipeline.plan import plan
from lsnet_deploy.pipeline.request import ExportRequest
from lsnet_deploy.preprocess import Preprocess
from lsnet_deploy.quantize.rounding import QMAX, nearest_int8, round_weights, weight_layers
from lsnet_deploy.reparam import reparameterize
from lsnet_deploy.sidecar import read_sidecar
from lsnet_deploy.synthetic import FAMILIES, init_trained_looking

TINY = "test_lsnet"


def _fused(family: str, seed: int = 0) -> LSNet:
    model = init_trained_looking(build_lsnet(TINY, img_size=TINY_SIZE), seed=seed, family=family)
    reparameterize(model, None)
    return model


def _row_max(w: torch.Tensor) -> torch.Tensor:
    return w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_rounded_weights_sit_on_the_backends_int8_grid(family: str,
                                                       tiny_images: torch.Tensor) -> None:
    """Every conv / linear weight ends on its row's grid ``max|w| / 127 * (-127..127)`` with
    each row's largest weight kept (so a backend computing the scale from the rounded weights
    finds the same grid and its nearest rounding leaves them), and GPTQ chose other roundings
    than nearest where that lowered the layer's output error."""
    model = _fused(family)
    before = {n: m.weight.detach().clone() for n, m in weight_layers(model)}
    report = round_weights(model, tiny_images)
    assert report.layers == len(before) > 20
    moved = total = 0
    for name, layer in weight_layers(model):
        w, w0 = layer.weight.detach(), before[name]
        torch.testing.assert_close(_row_max(w), _row_max(w0), rtol=1e-6, atol=0)
        steps = w / (_row_max(w0) / QMAX)
        torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-3)
        assert float(steps.abs().max()) <= QMAX + 1e-3, name
        torch.testing.assert_close(nearest_int8(w), w, rtol=0, atol=1e-6 * float(w0.abs().max()))
        codes, nearest = torch.round(steps), torch.round(w0 / (_row_max(w0) / QMAX))
        moved += int((codes != nearest).sum())
        total += w.numel()
    assert 0.05 < moved / total < 0.6, moved / total  # GPTQ rounds some weights the other way
    assert report.output_error_rounded < 0.6 * report.output_error_nearest, report


def _weight_only_error(model: nn.Module, quantized: dict[str, torch.Tensor],
                       images: torch.Tensor) -> float:
    """Relative logit error of ``model`` with the given weights (activations in float)."""
    with torch.no_grad():
        ref = model(images)
        saved = {n: m.weight.detach().clone() for n, m in weight_layers(model)}
        for n, m in weight_layers(model):
            m.weight.copy_(quantized[n])
        got = model(images)
        for n, m in weight_layers(model):
            m.weight.copy_(saved[n])
    return float((got - ref).norm() / ref.norm())


@pytest.mark.parametrize("family", FAMILIES)
def test_gptq_brings_int8_weights_closer_to_float_on_held_out_photos(family: str) -> None:
    """Calibrated on some photos, judged on others: the logits with GPTQ's int8 weights are
    closer to the float logits than with nearest-rounded ones (activations left in float)."""
    images = split_images(Preprocess.for_size(TINY_SIZE), calib_size=16, val_size=24,
                          need_calib=True)
    assert images.calib is not None
    model = _fused(family, seed=1)
    nearest = {n: nearest_int8(m.weight.detach()) for n, m in weight_layers(model)}
    rounded = _fused(family, seed=1)
    round_weights(rounded, images.calib)
    gptq = {n: m.weight.detach().clone() for n, m in weight_layers(rounded)}
    e_nearest = _weight_only_error(model, nearest, images.val)
    e_gptq = _weight_only_error(model, gptq, images.val)
    assert e_gptq < 0.9 * e_nearest, (e_gptq, e_nearest)


def _rounds(tmp_path: Path, fmt: str, gptq: bool | None = None, **kw: Any) -> bool:
    [job] = plan(ExportRequest.build("lsnet_t", fmt, weights=None, output_dir=tmp_path,
                                     gptq=gptq, **kw))
    return exporting._rounds(job, gptq)


def test_gptq_is_on_where_activations_are_int16(tmp_path: Path) -> None:
    """By default GPTQ rounds the weights of int16-activation exports only (ONNX
    ``--int8-int16`` groups, ``auto`` or ``all``; TFLite 16x8), not 8-bit ones (there it
    moved the worst photo's cosine both ways); ``--gptq`` turns it on for 8-bit ONNX, TFLite and
    ExecuTorch, ``--no-gptq`` off; Core ML W8A8 (another weight grid) and non-INT8 exports
    refuse ``--gptq`` in one line."""
    int8 = {"precision": "int8"}
    assert _rounds(tmp_path, "onnx", int8_int16=["all"], **int8)
    assert _rounds(tmp_path, "onnx", int8_int16=["residual"], **int8)
    assert _rounds(tmp_path, "onnx", int8_int16=["auto"], **int8)
    assert _rounds(tmp_path, "tflite", int8_int16=["all"], **int8)
    for fmt in ("onnx", "tflite", "executorch"):
        assert not _rounds(tmp_path, fmt, **int8)
        assert _rounds(tmp_path, fmt, gptq=True, **int8)
    assert not _rounds(tmp_path, "onnx", gptq=False, int8_int16=["all"], **int8)
    assert not _rounds(tmp_path, "coreml", precision="w8a8")
    with pytest.raises(UnsupportedOptionError, match="not coreml .its W8A8 uses another"):
        _rounds(tmp_path, "coreml", gptq=True, precision="w8a8")
    for fmt, precision in (("onnx", "fp32"), ("coreml", "int8")):  # Core ML int8: weight-only
        with pytest.raises(UnsupportedOptionError, match="calibrated INT8 exports: add --int8"):
            _rounds(tmp_path, fmt, gptq=True, precision=precision)
    with pytest.raises(UnsupportedOptionError, match="peers are exported as the backends"):
        plan(ExportRequest.build("mobilenetv3_large", "onnx", weights="random", gptq=True,
                                 precision="int8", output_dir=tmp_path))


def test_cli_refuses_gptq_for_core_ml_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["export", "--model", "lsnet_t", "--weights", "random", "--format",
                             "coreml", "--w8a8", "--gptq"], capsys)
    err = err.strip()
    assert code == 2 and "--gptq applies to ONNX, TFLite and ExecuTorch INT8" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_quant_report_gives_each_group_with_gptq(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``quant-report --compare-gptq``: each group holding weights quantized alone once more,
    its own layers' weights rounded by GPTQ (the rest float), beside the nearest-rounded
    measurement; the whole model rounded and quantized; the rounding's record."""
    from lsnet_deploy import quant_report

    rep = quant_report(TINY, weights="random-outliers", img_size=96, calib_size=16,
                       val_size=16, compare_gptq=True)
    rounding = rep["weight_rounding"]
    assert rounding["layers"] > 20
    assert rounding["output_error_rounded"] < rounding["output_error_nearest"]
    assert 0.0 < rep["full_int8_cosine_gptq"] <= 1.0
    groups = {g["group"]: g for g in rep["groups"]}
    # groups without weights have nothing to round; the others were measured again
    assert {n for n, g in groups.items() if g["only_cosine_gptq"] is None} >= {
        "residual", "ska", "lkp_groupnorm"}
    held = {n: g for n, g in groups.items() if g["only_cosine_gptq"] is not None}
    assert {"ffn", "stem", "head", "lkp_conv"} <= set(held), groups
    assert all(0.0 < g["only_cosine_gptq"] <= 1.0 for g in held.values()), held
    moved = [n for n, g in held.items() if abs(g["only_cosine_gptq"] - g["only_cosine"]) > 1e-6]
    assert len(moved) >= 2, held
    # the CLI passes the flag and prints the column (the report above stands for the run)
    import lsnet_deploy.cli.export as cli_export

    asked: list[bool] = []
    monkeypatch.setattr(cli_export, "quant_report",
                        lambda *a, **kw: asked.append(kw["compare_gptq"]) or rep)
    code, out, _ = run_main(["quant-report", "--test-model", TINY, "--weights", "random",
                             "--compare-gptq"], capsys)
    assert code == 0 and asked == [True], (code, asked)
    assert f"weights rounded by GPTQ: full INT8 cosine {rep['full_int8_cosine_gptq']:.5f}" in out
    assert "| -" in out or "│ -" in out, out  # a group without weights


def _capture_rounded(monkeypatch: pytest.MonkeyPatch) -> list[nn.Module]:
    """Record each model the export pipeline rounds (after it is rounded)."""
    models: list[nn.Module] = []

    def recording(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
        report = round_weights(model, *args, **kwargs)
        models.append(model)
        return report

    monkeypatch.setattr(exporting, "round_weights", recording)
    return models


def _unmatched(expected: list[np.ndarray], found: list[np.ndarray]) -> list[tuple[int, ...]]:
    """Shapes of the ``expected`` weights with no array in ``found`` holding the same values
    (compared sorted: the formats store convolutions in other layouts)."""
    pool = [np.sort(f.ravel()) for f in found]
    missing = []
    for w in expected:
        v = np.sort(w.ravel())
        tol = 1e-6 * max(float(np.abs(v).max()), 1e-12)
        if not any(p.shape == v.shape and np.abs(p - v).max() <= tol for p in pool):
            missing.append(w.shape)
    return missing


def _onnx_weights(path: Path) -> list[np.ndarray]:
    """The dequantized int8 weight initializers of a QDQ ONNX file."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    out = []
    for node in graph.node:
        q = inits.get(node.input[0])
        if node.op_type != "DequantizeLinear" or q is None or q.dtype != np.int8:
            continue
        scale = inits[node.input[1]].astype(np.float64)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        if scale.size > 1:
            shape[axis] = -1
        out.append((q.astype(np.float64) * scale.reshape(shape)).astype(np.float32))
    return out


def _tflite_weights(path: Path) -> list[np.ndarray]:
    """The dequantized per-channel int8 constant tensors of a ``.tflite`` file."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    out = []
    for t in interp.get_tensor_details():
        qp = t["quantization_parameters"]
        if t["dtype"] != np.int8 or len(qp["scales"]) < 2:
            continue
        try:
            q = interp.get_tensor(t["index"]).astype(np.float64)
        except ValueError:  # not a constant
            continue
        shape = [1] * q.ndim
        shape[qp["quantized_dimension"]] = -1
        out.append((q * qp["scales"].reshape(shape)).astype(np.float32))
    return out


@pytest.mark.slow
def test_onnx_and_tflite_keep_the_rounded_weights_and_gain(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    """Int16 activations leave the int8 weights' rounding as the error that is left: with
    GPTQ, ONNX Runtime's QDQ file and LiteRT's 16x8 file hold exactly the rounded weights
    (their own nearest rounding kept them), the sidecar records the rounding, and the logits
    are closer to PyTorch on the held-out photos than with ``gptq=False``."""
    rounded = _capture_rounded(monkeypatch)
    readers = {"onnx": _onnx_weights, "tflite": _tflite_weights}
    sidecars: dict[tuple[str, bool], dict[str, Any]] = {}
    for fmt, gptq in [(f, g) for f in readers for g in (False, True)]:
        before = len(rounded)
        model = init_trained_looking(build_lsnet(TINY, img_size=TINY_SIZE), seed=7)
        [art] = export(model, fmt, precision="int8", int8_int16=["all"], min_cosine=0.0,
                       gptq=gptq, output_dir=tmp_path / f"{fmt}-{gptq}")
        side = read_sidecar(art.path)
        assert side is not None
        sidecars[(fmt, gptq)] = side
        assert len(rounded) == before + gptq  # rounded once, and only when asked
        if fmt == "tflite":  # LKP's 7x7 stays one conv on the grid GPTQ rounded it to
            assert side["export"]["depthwise_bands"] is not gptq
        if gptq:
            expected = [m.weight.detach().numpy() for _, m in weight_layers(rounded[-1])]
            assert not _unmatched(expected, readers[fmt](art.path)), fmt
            record = side["export"]["preparation"]["weight_rounding"]
            assert record["method"] == "gptq" and record["layers"] == len(expected)
            assert record["output_error_rounded"] < record["output_error_nearest"]
        else:
            assert "preparation" not in side["export"]
    for fmt in readers:
        v0, v1 = sidecars[(fmt, False)]["validation"], sidecars[(fmt, True)]["validation"]
        assert v1["mean_cosine"] > v0["mean_cosine"] and v1["min_cosine"] > v0["min_cosine"], (
            fmt, v0["summary"], v1["summary"])
    # 8-bit with --gptq: the equalized copy is rounded, ONNX Runtime keeps it, both recorded
    model = init_trained_looking(build_lsnet(TINY, img_size=TINY_SIZE), seed=7)
    [art] = export(model, "onnx", precision="int8", min_cosine=0.0, gptq=True,
                   output_dir=tmp_path / "onnx-8bit")
    expected = [m.weight.detach().numpy() for _, m in weight_layers(rounded[-1])]
    assert not _unmatched(expected, _onnx_weights(art.path))
    side = read_sidecar(art.path)
    assert side is not None
    assert {"stream", "pairs", "weight_rounding"} <= set(side["export"]["preparation"])
