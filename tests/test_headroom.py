"""int16 activation ranges widened beyond the calibrated ones (``quantize/headroom.py``): the
rule itself, the ``--int16-headroom`` factor's checks, that ONNX Runtime's int16
(``--int8-int16``) keeps a photo beyond the calibration range up to the factor times it, and
that LiteRT's 16x8 export writes its file with the widened ranges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from lsnet_deploy.errors import UnsupportedOptionError
from lsnet_deploy.quantize.headroom import INT16_HEADROOM, check_headroom, resolve_headroom, widen
from lsnet_deploy.quantize.onnx_int8 import Int8Config, activation_ranges, quantize_int8
from lsnet_deploy.quantize.tflite_16x8 import with_headroom


def test_widen_pushes_each_side_away_from_zero() -> None:
    assert INT16_HEADROOM == 1.5
    lo, hi = widen(np.array([-1.0, 0.0, 0.5, -3.0]), np.array([2.0, 4.0, 1.0, -1.0]), 2.0)
    assert lo.tolist() == [-2.0, 0.0, 0.5, -6.0]  # a ReLU's 0 and a positive minimum stay
    assert hi.tolist() == [4.0, 8.0, 2.0, -1.0]  # a negative maximum stays
    assert lo.dtype == hi.dtype == np.float32
    assert widen(-1.0, 1.0, 4.0) == (-4.0, 4.0)
    assert widen(-1.0, 2.0) == (-1.5, 3.0)  # the default factor


def test_the_factor_is_checked() -> None:
    assert resolve_headroom(None) == INT16_HEADROOM and resolve_headroom(1) == 1.0
    assert resolve_headroom(64) == 64.0
    for bad in (0.5, 0.0, -2.0, 65.0, float("nan"), float("inf")):
        with pytest.raises(UnsupportedOptionError, match="give 1 .* to 64"):
            resolve_headroom(bad)
    with pytest.raises(UnsupportedOptionError, match="--int16-headroom 0.5"):  # API callers
        quantize_int8(Path("unused.onnx"), Path("unused-q.onnx"), {}, "x", [],
                      Int8Config(int16=("all",), int16_headroom=0.5))
    check_headroom(None, None)
    check_headroom(1.5, ("all",))
    with pytest.raises(UnsupportedOptionError, match="add --int8-int16"):
        check_headroom(1.5, None)
    with pytest.raises(UnsupportedOptionError, match="--int16-headroom 100"):
        check_headroom(100.0, ("residual",))


def test_tflite_ranges_keep_their_other_fields_and_dtypes() -> None:
    ranges = {"t": {"min": np.array([-1.0], np.float32), "max": np.array([2.0], np.float32),
                    "zero_point": 7}}
    [(name, qsv)] = with_headroom(ranges).items()
    assert name == "t" and qsv["zero_point"] == 7
    assert qsv["min"].tolist() == [-1.5] and qsv["max"].tolist() == [3.0]
    assert qsv["min"].dtype == np.float32 and ranges["t"]["max"].tolist() == [2.0]  # a copy


def _conv_graph(path: Path) -> None:
    """y = conv1x1(x), every output channel 3 * (x0 + x1): (1, 2, 4, 4) -> (1, 2, 4, 4)."""
    w = numpy_helper.from_array(np.full((2, 2, 1, 1), 3.0, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


@pytest.mark.parametrize("factor", [None, 2.0, 1.2, 1.0])
def test_an_input_beyond_the_calibration_range_is_kept_up_to_the_factor(
        tmp_path: Path, factor: float | None) -> None:
    """The int16 output is clipped at the factor times the calibrated maximum: the photo's
    5.4 (1.8 times it) is kept at x2 and clipped at x1, x1.2 and the default x1.5."""
    pre, out = tmp_path / "pre.onnx", tmp_path / "q.onnx"
    _conv_graph(pre)
    rng = np.random.default_rng(0)
    calib = [rng.uniform(-1, 1, (1, 2, 4, 4)).astype(np.float32) for _ in range(8)]
    for x in calib:
        x[:, 1] = 0  # calibration photos never use the second channel: |y| <= 3
    ranges = activation_ranges(pre, "x", calib)
    lo, hi = ranges["y"]
    assert -3 <= lo < -2.5 and 2.5 < hi <= 3
    config = Int8Config(int16=("all",)) if factor is None else Int8Config(
        int16=("all",), int16_headroom=factor)
    info = quantize_int8(pre, out, {"conv": "ffn"}, "x", calib, config)
    used = INT16_HEADROOM if factor is None else factor
    assert info["int16_headroom"] == used
    proto = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    [q] = [n for n in proto.graph.node
           if n.op_type == "QuantizeLinear" and n.input[2] == "y_zero_point"]
    assert inits[q.input[2]].dtype == np.int16
    wlo, whi = widen(lo, hi, used)
    assert float(inits[q.input[1]]) == pytest.approx((whi - wlo) / 65535, rel=1e-3)
    # a photo that does (its input inside the calibrated input range): y = 5.4, 1.8 times
    # the calibrated maximum
    x = np.stack([np.ones((4, 4)), np.full((4, 4), 0.8)])[None].astype(np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": x})[0]
    assert np.allclose(y, min(5.4, used * hi), rtol=1e-2)


def test_the_16x8_export_writes_the_widened_ranges(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """``quantize_16x8`` hands ai-edge-quantizer the calibrated ranges widened, not as they
    are (the library calls are stubbed: what is checked is what reaches the writer)."""
    import lsnet_deploy.quantize.tflite_16x8 as q16

    calibrated = {"a": {"min": np.array([-1.0], np.float32), "max": np.array([3.0], np.float32)},
                  "b": {"min": np.array([0.0], np.float32), "max": np.array([0.5], np.float32)}}
    written: dict[str, dict[str, np.ndarray]] = {}
    monkeypatch.setattr(q16, "calibrate_16x8", lambda *_a, **_k: calibrated)
    monkeypatch.setattr(q16, "write_16x8", lambda _f, ranges, _o: written.update(ranges))
    info = q16.quantize_16x8(tmp_path / "f.tflite", tmp_path / "o.tflite", [], threads=1)
    assert info["int16_headroom"] == INT16_HEADROOM
    assert written["a"]["min"].tolist() == [-1.5] and written["a"]["max"].tolist() == [4.5]
    assert written["b"]["min"].tolist() == [0.0] and written["b"]["max"].tolist() == [0.75]
    info = q16.quantize_16x8(tmp_path / "f.tflite", tmp_path / "o.tflite", [], threads=1,
                             headroom=2.0)  # --int16-headroom 2
    assert info["int16_headroom"] == 2.0
    assert written["a"]["min"].tolist() == [-2.0] and written["a"]["max"].tolist() == [6.0]
    with pytest.raises(UnsupportedOptionError, match="--int16-headroom 70"):
        q16.quantize_16x8(tmp_path / "f.tflite", tmp_path / "o.tflite", [], threads=1,
                          headroom=70.0)
