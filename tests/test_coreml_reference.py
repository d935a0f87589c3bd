"""The Core ML reference executor on whole packages: reading an ``.mlpackage`` (manifest, spec,
weight blobs), running it like ``MLModel.predict`` (ImageType pixels in their colour order,
classifier outputs), its fidelity against PyTorch, and packages tampered after export, each
of which must fail validation with a message that says what is wrong.

The per-op kernels are tested in ``test_coreml_reference_ops.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY_SIZE, write_checkpoint
from PIL import Image

from lsnet_deploy.errors import ValidationFailedError
from lsnet_deploy.exporters.coreml import CoremlExporter
from lsnet_deploy.mil import (
    MilProgramError,
    ReferenceModel,
    UnsupportedMilOpError,
    read_package,
    supported_ops,
)
from lsnet_deploy.pipeline import export, validate
from lsnet_deploy.preprocess import IMAGENET_MEAN, IMAGENET_STD

TINY = "test_lsnet"
SPEC_FILE = Path("Data/com.apple.CoreML/model.mlmodel")
WEIGHTS = Path("Data/com.apple.CoreML/weights/weight.bin")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt"), TINY, TINY_SIZE, seed=11)


@pytest.fixture(scope="module")
def package(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app-ready package: fp16, RGB ImageType input, a classifier with 10 labels."""
    [art] = export(TINY, "coreml", weights=ckpt, img_size=TINY_SIZE, classifier=True,
                   output_dir=tmp_path_factory.mktemp("packages"))
    assert art.passed, art.validation["summary"]
    return art.path


def _pixels(images: torch.Tensor) -> list[Image.Image]:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return [Image.fromarray(((x * std + mean) * 255).round().clamp(0, 255).byte()
                            .permute(1, 2, 0).numpy(), "RGB") for x in images]


def _tampered(package: Path, folder: Path, edit: Any) -> Path:
    """A copy of ``package`` (no sidecar: validation reads the embedded metadata) whose spec
    ``edit(spec)`` changed in place."""
    copy = folder / package.name
    shutil.copytree(package, copy)
    spec = read_package(copy).spec
    edit(spec)
    (copy / SPEC_FILE).write_bytes(spec.SerializeToString())
    return copy


def _ops(spec: Any) -> list[Any]:
    return next(iter(spec.mlProgram.functions["main"].block_specializations.values())).operations


def _const_feeding(spec: Any, op_type: str, param: str, nth: int = 0) -> Any:
    """The ``const`` op that gives the ``nth`` ``op_type`` op its ``param``."""
    ops = _ops(spec)
    users = [op for op in ops if op.type == op_type and param in op.inputs]
    name = users[nth].inputs[param].arguments[0].name
    [const] = [op for op in ops if op.type == "const" and op.outputs[0].name == name]
    return const


def test_package_reads_and_runs_like_predict(package: Path, tiny_images: torch.Tensor) -> None:
    model = ReferenceModel(package)
    assert set(model.program.op_histogram()) <= set(supported_ops())
    [image] = _pixels(tiny_images[:1])
    out = model.predict({"image": image})
    probs = out["classLabel_probs"]
    assert list(probs) == [f"class_{i}" for i in range(10)]
    assert out["classLabel"] == max(probs, key=probs.get)
    assert sum(probs.values()) == pytest.approx(1.0, abs=2e-3)  # fp16 softmax
    with pytest.raises(MilProgramError, match="64x64 image, the model takes 128x128"):
        model.predict({"image": image.resize((64, 64))})


def test_validation_record_names_the_executor(package: Path, ckpt: Path) -> None:
    result = validate(package, weights=ckpt)
    val = result["validation"]
    assert result["passed"] and val["mean_cosine"] >= 0.999 and val["top1_agreement"] == 1.0
    facts = CoremlExporter().validation_facts()
    assert facts["mode"] in ("reference-executor", "coreml")
    if facts["mode"] == "reference-executor":
        assert val["mode"] == "reference-executor" and val["executor"] == facts["executor"]


def test_changed_imagetype_bias_fails(package: Path, ckpt: Path, tmp_path: Path) -> None:
    def edit(spec: Any) -> None:  # the ImageType's bias is the program's first add
        bias = _const_feeding(spec, "add", "y", 0)
        assert bias.outputs[0].name.startswith("image__biased__")
        values = bias.attributes["val"].immediateValue.tensor.floats.values
        assert list(values) == pytest.approx([-m for m in IMAGENET_MEAN])
        values[0] += 0.25  # red: -0.485 -> -0.235

    result = validate(_tampered(package, tmp_path, edit), weights=ckpt)
    assert not result["passed"]
    assert "FAIL" in result["validation"]["summary"] and result["validation"]["mean_cosine"] < 0.999


def test_swapped_channel_order_fails(package: Path, ckpt: Path, tmp_path: Path) -> None:
    from coremltools.proto import FeatureTypes_pb2

    def edit(spec: Any) -> None:
        spec.description.input[0].type.imageType.colorSpace = (
            FeatureTypes_pb2.ImageFeatureType.ColorSpace.Value("BGR"))

    result = validate(_tampered(package, tmp_path, edit), weights=ckpt)
    assert not result["passed"] and result["validation"]["mean_cosine"] < 0.999


def test_swapped_labels_fail_with_a_clear_message(package: Path, ckpt: Path,
                                                  tmp_path: Path) -> None:
    def edit(spec: Any) -> None:
        [classify] = [op for op in _ops(spec) if op.type == "classify"]
        labels = classify.inputs["classes"].arguments[0].value.immediateValue.list.values
        first, second = (v.immediateValue.tensor.strings.values for v in labels[3:5])
        first[0], second[0] = second[0], first[0]

    with pytest.raises(ValidationFailedError, match="label 3 is 'class_4', expected 'class_3'"):
        validate(_tampered(package, tmp_path, edit), weights=ckpt)


def test_corrupted_weight_fails(package: Path, ckpt: Path, tmp_path: Path) -> None:
    """Bytes of the largest weight blob overwritten (its metadata intact)."""
    copy = tmp_path / package.name
    shutil.copytree(package, copy)
    blobs = [op.attributes["val"] for op in _ops(read_package(copy).spec) if op.type == "const"
             and op.attributes["val"].WhichOneof("value") == "blobFileValue"]
    offset = max(blobs, key=lambda v: np.prod([d.constant.size for d in
                                                v.type.tensorType.dimensions])).blobFileValue.offset
    data = bytearray((copy / WEIGHTS).read_bytes())
    start = int.from_bytes(data[offset + 16 : offset + 24], "little")  # the data offset
    data[start : start + 512] = bytes(range(256)) * 2
    (copy / WEIGHTS).write_bytes(bytes(data))
    result = validate(copy, weights=ckpt)
    assert not result["passed"] and "FAIL" in result["validation"]["summary"]


def test_corrupted_blob_metadata_is_named(package: Path, tmp_path: Path) -> None:
    copy = tmp_path / package.name
    shutil.copytree(package, copy)
    data = bytearray((copy / WEIGHTS).read_bytes())
    data[64:68] = b"\0\0\0\0"  # the first blob's sentinel
    (copy / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(MilProgramError, match="offset 64: bad metadata sentinel"):
        ReferenceModel(copy)
    (copy / WEIGHTS).unlink()
    with pytest.raises(MilProgramError, match="weight.bin is missing"):
        ReferenceModel(copy)


def test_changed_conv_padding_fails(package: Path, ckpt: Path, tmp_path: Path) -> None:
    """A depthwise 3x3 conv padded [0, 2, 0, 2] instead of [1, 1, 1, 1]: same shapes, shifted
    features."""
    def edit(spec: Any) -> None:
        convs = [op for op in _ops(spec) if op.type == "conv" and "pad" in op.inputs]
        for i, op in enumerate(convs):
            pad = _const_feeding(spec, "conv", "pad", i)
            values = pad.attributes["val"].immediateValue.tensor.ints.values
            if list(values) == [1, 1, 1, 1]:
                values[:] = [0, 2, 0, 2]

    result = validate(_tampered(package, tmp_path, edit), weights=ckpt)
    assert not result["passed"] and result["validation"]["mean_cosine"] < 0.99


def test_changed_stride_is_named(package: Path, tmp_path: Path) -> None:
    def edit(spec: Any) -> None:
        strides = _const_feeding(spec, "conv", "strides", 0)
        strides.attributes["val"].immediateValue.tensor.ints.values[:] = [1, 1]

    copy = _tampered(package, tmp_path, edit)
    model = ReferenceModel(copy)
    [image] = _pixels(torch.zeros(1, 3, TINY_SIZE, TINY_SIZE))
    with pytest.raises(MilProgramError, match=r"\(conv\): output .* computed shape \[1, 4, 128, "
                                              r"128\], the program declares fp16\[1, 4, 64, 64\]"):
        model.predict({"image": image})


def test_an_unknown_op_in_a_package_is_named(package: Path, tmp_path: Path) -> None:
    def edit(spec: Any) -> None:
        next(op for op in _ops(spec) if op.type == "sigmoid").type = "hard_swish_v9"

    with pytest.raises(UnsupportedMilOpError, match="'hard_swish_v9'"):
        ReferenceModel(_tampered(package, tmp_path, edit))


def test_fp32_program_matches_pytorch(ckpt: Path, tmp_path: Path,
                                      tiny_images: torch.Tensor) -> None:
    """fp32 compute, tensor input: the executor is PyTorch's float32 up to op order."""
    from lsnet_deploy.api import create_model

    [art] = export(TINY, "coreml", weights=ckpt, img_size=TINY_SIZE, precision="fp32",
                   image_input=False, output_dir=tmp_path)
    model = ReferenceModel(art.path)
    reference = create_model(TINY, ckpt, img_size=TINY_SIZE)
    with torch.no_grad():
        expected = reference(tiny_images).numpy()
    got = np.stack([model.predict({"image": x[None].numpy()})["logits"].reshape(-1)
                    for x in tiny_images])
    assert np.abs(got - expected).max() <= 1e-4
