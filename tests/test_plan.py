"""Planning is pure: options checked, defaults filled in and artifacts named in milliseconds,
before any model is built."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lsnet_deploy.errors import OutputError, UnknownVariantError, UnsupportedOptionError
from lsnet_deploy.exporters import format_names
from lsnet_deploy.exporters.coreml import CoremlOptions
from lsnet_deploy.exporters.onnx import OnnxOptions
from lsnet_deploy.exporters.tflite import TfliteOptions
from lsnet_deploy.metadata import sidecar_path
from lsnet_deploy.pipeline import ExportRequest, plan


def _plan(tmp_path: Path, model: str = "lsnet_t", fmt: str = "onnx", **kw: object) -> list:
    return plan(ExportRequest.build(model, fmt, weights=None, output_dir=tmp_path, **kw))


def test_defaults_per_format_and_names(tmp_path: Path) -> None:
    jobs = {j.format: j for j in _plan(tmp_path, fmt="all")}
    assert tuple(jobs) == format_names()
    assert jobs["onnx"].dest == tmp_path / "lsnet_t" / "lsnet_t_224_fp32.onnx"
    assert jobs["tflite"].spec.layout == "NHWC" and jobs["onnx"].spec.layout == "NCHW"
    coreml = jobs["coreml"]
    assert coreml.spec.value_range == "0..255" and coreml.spec.dtype == "uint8"
    assert coreml.spec.output_names == ("classLabel", "classLabel_probs")
    assert coreml.dest.name == "lsnet_t_224_fp32.mlpackage"
    assert jobs["executorch"].dest.name == "lsnet_t_224_fp32.pte"
    [only] = _plan(tmp_path, fmt="coreml")
    assert only.options.precision == "fp16"  # a single format takes its own default


def test_format_options_are_typed_and_owned(tmp_path: Path) -> None:
    [job] = _plan(tmp_path, fmt="tflite", precision="int8", io="uint8")
    assert job.options.format == TfliteOptions(io="uint8")
    assert job.dest.name == "lsnet_t_224_int8_io-uint8.tflite"
    assert job.calibrate and not job.needs_reference
    [job] = _plan(tmp_path, fmt="coreml", ios=16, classifier=False)
    assert job.options.format == CoremlOptions(ios=16, classifier=False)
    assert job.dest.name == "lsnet_t_224_fp16_logits_ios16.mlpackage"
    assert job.spec.output_names == ("logits",)
    [job] = _plan(tmp_path, opset=19)
    assert job.options.format == OnnxOptions(opset=19)
    with pytest.raises(UnsupportedOptionError, match="--opset applies to ONNX, not tflite"):
        _plan(tmp_path, fmt="tflite", opset=19)
    with pytest.raises(UnsupportedOptionError, match="--ios applies to CoreML, not onnx"):
        _plan(tmp_path, fmt="all", ios=16)
    with pytest.raises(UnsupportedOptionError, match="--ios 15: supported 16, 17, 18"):
        _plan(tmp_path, fmt="coreml", ios=15)
    with pytest.raises(UnsupportedOptionError, match="tflite INT8 export supports --io"):
        _plan(tmp_path, fmt="tflite", precision="int8", io="int16")
    [job] = _plan(tmp_path, precision="int8", io="float32")  # float at the edge is ONNX's own
    assert job.dest.name == "lsnet_t_224_int8.onnx"


def test_int8_search_and_w8a8_need_the_reference(tmp_path: Path) -> None:
    [job] = _plan(tmp_path, precision="int8", int8_exclude=["auto", "ska"])
    assert job.options.int8_auto and job.options.int8_exclude == ("ska",)
    assert job.needs_reference and job.options.min_cosine == 0.98
    assert job.dest.name == "lsnet_t_224_int8mix.onnx"
    [job] = _plan(tmp_path, fmt="coreml", precision="w8a8", min_cosine=0.95)
    assert job.needs_reference and job.calibrate and job.options.min_cosine == 0.95
    [job] = _plan(tmp_path, fmt="coreml", precision="int8")
    assert not job.calibrate  # 8-bit weights need no images


def test_refusals_happen_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(UnknownVariantError, match="unknown variant 'lsnet_x'"):
        _plan(tmp_path, model="lsnet_x")
    with pytest.raises(UnsupportedOptionError, match="unknown format 'caffe'"):
        _plan(tmp_path, fmt="caffe")
    with pytest.raises(UnsupportedOptionError, match="--calib-method 'mse'"):
        _plan(tmp_path, precision="int8", calib_method="mse")
    [job] = _plan(tmp_path)
    job.dest.parent.mkdir(parents=True)
    sidecar_path(job.dest).write_text("{}")  # a sidecar alone also blocks
    with pytest.raises(OutputError, match="already exists; pass --force"):
        _plan(tmp_path)
    # --force replaces only lsnet-deploy's own files: a sidecar naming the artifact
    with pytest.raises(OutputError, match="not an lsnet-deploy artifact"):
        _plan(tmp_path, force=True)
    sidecar_path(job.dest).write_text(json.dumps({"artifact": job.dest.name}))
    assert _plan(tmp_path, force=True)[0].dest == job.dest


def test_planning_all_formats_takes_milliseconds(tmp_path: Path) -> None:
    _plan(tmp_path, fmt="all")  # imports the exporter modules once
    start = time.perf_counter()
    for _ in range(20):
        _plan(tmp_path, fmt="all", precision="int8" if _ % 2 else "fp32")
    assert (time.perf_counter() - start) / 20 < 0.05


def test_request_build_rejects_unknown_keywords() -> None:
    with pytest.raises(TypeError):
        ExportRequest.build("lsnet_t", "onnx", opsett=18)


def test_imagenet_artifacts_get_a_labels_file_next_to_them(tmp_path: Path) -> None:
    """A 1000-class model's artifact, in every format, is published with
    ``<artifact>.labels.txt`` (checked like the artifact when planning); the tiny 10-class
    model's has none."""
    for job in _plan(tmp_path, fmt="all"):
        assert job.labels_file == f"{job.dest.name}.labels.txt"
        assert job.labels_file in job.companions
        assert job.dest.parent / job.labels_file in job.outputs
    [tiny] = plan(ExportRequest.build("test_lsnet", "onnx", img_size=96, output_dir=tmp_path))
    assert tiny.labels_file is None and tiny.companions == ()


@pytest.mark.parametrize(("fmt", "precision"), [("coreml", "w8a8"), ("executorch", "int8"),
                                                ("tflite", "int8")])
def test_calib_method_is_refused_where_it_is_not_honoured(tmp_path: Path, fmt: str,
                                                           precision: str) -> None:
    """Only ONNX Runtime's calibration takes --calib-method percentile; the others calibrate
    with their own observers and refuse it before any work (Core ML W8A8 ignored it once)."""
    with pytest.raises(UnsupportedOptionError, match="--calib-method.*applies to ONNX only"):
        _plan(tmp_path, fmt=fmt, precision=precision, calib_method="percentile")
    [onnx] = _plan(tmp_path, fmt="onnx", precision="int8", calib_method="percentile")
    assert onnx.calibrate
