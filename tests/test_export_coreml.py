"""The CoreML exporter: ML Program packages (fp16 / fp32 / 8-bit weights / W8A8), image input
with the normalization in the ImageType + stem, classifier outputs, metadata, deployment
targets, and the structural validation that runs on any OS. The numeric checks need macOS and
are skipped elsewhere (the only tests allowed to skip)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import coremltools as ct
import numpy as np
import pytest
import torch

from conftest import OFFICIAL, TINY_SIZE, trained_looking, write_checkpoint
from lsnet_deploy.errors import UnsupportedOptionError, ValidationFailedError
from lsnet_deploy.exporters.coreml import CoremlExporter, fold_std_into_stem, mil_summary
from lsnet_deploy.metadata import read_sidecar
from lsnet_deploy.pipeline import export, validate
from lsnet_deploy.preprocess import IMAGENET_MEAN, IMAGENET_STD
from lsnet_deploy.reparam import reparameterize
from test_cli import run_main

TINY = "test_lsnet"
ON_MACOS = platform.system() == "Darwin"
macos_only = pytest.mark.skipif(not ON_MACOS, reason="Core ML models run only on macOS")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt"), TINY, TINY_SIZE, seed=7)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("coreml out")


def _export(ckpt: Path, out: Path, **kw):  # type: ignore[no-untyped-def]
    return export(TINY, "coreml", weights=ckpt, img_size=TINY_SIZE, output_dir=out, **kw)


def _spec(path: Path):  # type: ignore[no-untyped-def]
    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


def _const(spec, name: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Value of the MIL const op that outputs ``name``."""
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                if op.type == "const" and op.outputs[0].name == name:
                    v = op.attributes["val"].immediateValue.tensor
                    values = list(v.floats.values) or list(v.bytes.values)
                    return np.asarray(values, dtype=np.float64)
    raise KeyError(name)


def test_std_fold_equals_the_normalized_model() -> None:
    model = trained_looking(TINY, img_size=TINY_SIZE, seed=1)
    reparameterize(model, None)
    folded = fold_std_into_stem(model, IMAGENET_STD)
    pixels = torch.randint(0, 256, (2, 3, TINY_SIZE, TINY_SIZE)).float()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model((pixels / 255 - mean) / std)
        got = folded(pixels / 255 - mean)  # what the ImageType (scale 1/255, bias -mean) feeds
    assert expected.abs().max() > 0.1
    assert torch.allclose(got, expected, atol=2e-5), (got - expected).abs().max()


def test_default_export_is_fp16_image_input(tiny_ckpt: Path, out_dir: Path) -> None:
    [art] = _export(tiny_ckpt, out_dir)
    assert art.path.name == f"{TINY}_{TINY_SIZE}_fp16.mlpackage" and art.path.is_dir()
    assert art.precision == "fp16" and art.passed
    val = art.validation
    assert val["mode"] == "structural" and all(val["checks"].values())
    assert "macOS" in val["summary"]
    spec = _spec(art.path)
    assert spec.specificationVersion == 8  # iOS 17
    inp = spec.description.input[0]
    assert inp.name == "image" and inp.type.WhichOneof("Type") == "imageType"
    assert (inp.type.imageType.width, inp.type.imageType.height) == (TINY_SIZE, TINY_SIZE)
    # ImageNet normalization: scale 1/255 and bias -mean in the ImageType, 1/std in the stem
    assert _const(spec, "image__scaled___y_0") == pytest.approx([1 / 255], rel=1e-3)
    assert _const(spec, "image__biased___y_0").reshape(-1) == pytest.approx(
        [-m for m in IMAGENET_MEAN], rel=1e-3)
    summary = mil_summary(spec)
    assert summary["weight_dtypes"] == {"FLOAT16": summary["weight_dtypes"]["FLOAT16"]}
    assert summary["max_rank"] <= 5
    assert [o.name for o in spec.description.output] == ["logits"]  # 10 classes: no labels


def test_metadata(tiny_ckpt: Path, out_dir: Path) -> None:
    path = out_dir / TINY / f"{TINY}_{TINY_SIZE}_fp16.mlpackage"
    if not path.exists():
        _export(tiny_ckpt, out_dir)
    model = ct.models.MLModel(str(path), skip_model_load=True)
    assert "lsnet-deploy" in model.author and "MIT" in model.license
    assert model.version and "LSNet" in model.short_description
    side = read_sidecar(path)
    assert side is not None and side["status"] == "passed"
    native = CoremlExporter().read_metadata(path)
    assert native["variant"] == TINY and json.loads(native["img_size"]) == [TINY_SIZE, TINY_SIZE]
    assert native["value_range"] == "0..255" and native["precision"] == "fp16"
    assert set(side["metadata"]) <= set(native)
    # re-validation from the sidecar: structural here, numeric on macOS
    result = validate(path, weights=tiny_ckpt)
    assert result["passed"]
    if not ON_MACOS:
        assert result["validation"]["mode"] == "structural"


@pytest.mark.parametrize("precision,dtype", [("fp32", "FLOAT32"), ("int8", "INT8")])
def test_weight_precisions(tiny_ckpt: Path, out_dir: Path, precision: str, dtype: str) -> None:
    [art] = _export(tiny_ckpt, out_dir, precision=precision)
    assert art.passed and art.path.name == f"{TINY}_{TINY_SIZE}_{precision}.mlpackage"
    summary = mil_summary(_spec(art.path))
    assert set(summary["weight_dtypes"]) == {dtype}  # every conv / linear weight
    if precision == "int8":
        assert summary["op_histogram"].get("quantize", 0) == 0  # activations stay float
        fp16 = out_dir / TINY / f"{TINY}_{TINY_SIZE}_fp16.mlpackage"
        if fp16.exists():
            assert art.size_bytes < 0.75 * sum(p.stat().st_size for p in fp16.rglob("*")
                                               if p.is_file())


def test_w8a8(tiny_ckpt: Path, out_dir: Path) -> None:
    [art] = _export(tiny_ckpt, out_dir, precision="w8a8", min_cosine=0.95)
    assert art.passed and art.path.name == f"{TINY}_{TINY_SIZE}_w8a8.mlpackage"
    summary = mil_summary(_spec(art.path))
    assert set(summary["weight_dtypes"]) == {"INT8"}
    assert summary["op_histogram"]["quantize"] > 0 and summary["op_histogram"]["dequantize"] > 0
    fake = art.validation["fake_quant_fidelity"]
    assert 0.95 <= fake["mean_cosine"] < 0.99999  # measured, and really quantized
    assert art.validation["checks"]["w8a8_fake_quant_fidelity"]
    info = art.export_info["w8a8"]
    assert "LinearQuantizer" in info["method"] and "macOS" in info["linear_quantize_activations"]


def test_w8a8_gate_fails_loudly(tiny_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailedError, match="--int8 .8-bit weights"):
        _export(tiny_ckpt, tmp_path, precision="w8a8", min_cosine=0.99999)
    [kept] = (tmp_path / TINY).glob("*.mlpackage")
    side = read_sidecar(kept)
    assert side is not None and side["status"] == "failed"


def test_tensor_input_classifier_and_targets(tiny_ckpt: Path, out_dir: Path) -> None:
    [art] = _export(tiny_ckpt, out_dir, image_input=False, classifier=True, ios=16)
    assert art.path.name == f"{TINY}_{TINY_SIZE}_fp16_tensor_cls_ios16.mlpackage" and art.passed
    spec = _spec(art.path)
    assert spec.specificationVersion == 7
    inp = spec.description.input[0]
    assert inp.type.WhichOneof("Type") == "multiArrayType"
    assert list(inp.type.multiArrayType.shape) == [1, 3, TINY_SIZE, TINY_SIZE]
    assert spec.description.predictedFeatureName == "classLabel"
    assert {o.name for o in spec.description.output} == {"classLabel", "classLabel_probs"}
    assert mil_summary(spec)["class_labels"] == 10
    [art18] = _export(tiny_ckpt, out_dir, ios=18)
    assert _spec(art18.path).specificationVersion == 9 and art18.passed


def test_unsupported_coreml_options(tiny_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedOptionError, match="does not support --dynamic-batch"):
        _export(tiny_ckpt, tmp_path, dynamic_batch=True)
    with pytest.raises(UnsupportedOptionError, match="does not support --int8-exclude"):
        _export(tiny_ckpt, tmp_path, precision="int8", int8_exclude=["ska"])
    with pytest.raises(UnsupportedOptionError, match="--io"):
        _export(tiny_ckpt, tmp_path, precision="int8", io="uint8")
    with pytest.raises(UnsupportedOptionError, match="--classifier applies to CoreML"):
        export(TINY, "onnx", weights=tiny_ckpt, img_size=TINY_SIZE, output_dir=tmp_path,
               classifier=True)
    with pytest.raises(UnsupportedOptionError, match="--ios applies to CoreML"):
        export(TINY, "tflite", weights=tiny_ckpt, img_size=TINY_SIZE, output_dir=tmp_path,
               ios=16)
    assert not (tmp_path / TINY).exists() or not any((tmp_path / TINY).iterdir())


def test_cli_coreml_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["export", "--weights", "random", "--format", "coreml", "--fp16",
                             "--w8a8"], capsys)
    assert code == 2 and "--fp16 and --w8a8 are exclusive" in err
    code, _, err = run_main(["export", "--weights", "random", "--format", "coreml",
                             "--ios", "15"], capsys)
    assert code == 2


@macos_only
def test_numeric_validation_on_macos(tiny_ckpt: Path, out_dir: Path) -> None:
    [art] = _export(tiny_ckpt, out_dir, precision="fp32", force=True)
    assert art.validation["mode"] != "structural" and art.validation["max_abs_diff"] <= 1e-3
    for units in ("CPU_ONLY", "ALL"):
        result = validate(art.path, weights=tiny_ckpt, compute_units=units)
        assert result["passed"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", OFFICIAL)
def test_every_variant_converts_and_passes_structural_checks(
        variant: str, make_checkpoint, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ckpt = make_checkpoint(variant, seed=3)
    precisions = ["fp16", "int8", "w8a8"]
    for precision in precisions:
        kw = {"calib_size": 4, "min_cosine": 0.0} if precision == "w8a8" else {}
        [art] = export(variant, "coreml", weights=ckpt, output_dir=tmp_path,
                       precision=precision, **kw)
        assert art.passed, art.validation["summary"]
        checks = art.validation["checks"]
        assert all(checks.values()), checks
        spec = _spec(art.path)
        assert spec.specificationVersion == 8
        # 1000-class models are classifiers with the ImageNet labels, image input by default
        assert spec.description.predictedFeatureName == "classLabel"
        summary = mil_summary(spec)
        assert summary["class_labels"] == 1000 and summary["max_rank"] <= 5
        assert spec.description.input[0].type.WhichOneof("Type") == "imageType"
