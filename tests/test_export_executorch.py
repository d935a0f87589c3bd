"""The ExecuTorch exporter: fp32 .pte validated against PyTorch, the embedded metadata method,
an independent run in executorch.runtime, re-validation, benchmarking; INT8 with image input
(slow: each XNNPACK lowering of the tiny model takes ~40 s on two cores)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_SIZE, write_checkpoint
from reference_lsnet import load_reference
from test_sidecar_schema import check_sidecar

from lsnet_deploy.errors import BenchmarkError, UnsupportedOptionError
from lsnet_deploy.exporters.executorch import (
    METADATA_METHOD,
    ExecutorchExporter,
    _quantizer,
)
from lsnet_deploy.exporters.ranks import max_rank, rank_histogram
from lsnet_deploy.metadata import from_native, read_sidecar
from lsnet_deploy.paths import calibration_dir
from lsnet_deploy.pipeline import export, validate
from lsnet_deploy.preprocess import Preprocess, load_image

TINY = "test_lsnet"


def _env(mp: pytest.MonkeyPatch, home: Path) -> None:
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("LSNET_DEPLOY_HOME", str(home))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt"), TINY, img_size=TINY_SIZE, seed=21)


@pytest.fixture(scope="module")
def fp32_art(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:  # type: ignore[type-arg]
    """One fp32 export shared by the fast tests (the lowering is the slow part)."""
    out = tmp_path_factory.mktemp("out dir")
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, tmp_path_factory.mktemp("home"))
        [art] = export(TINY, "executorch", weights=tiny_ckpt, img_size=TINY_SIZE,
                       output_dir=out)
        yield art


def _photo_batch() -> tuple[np.ndarray, torch.Tensor]:
    """One photo as uint8 ``(1, 3, H, W)`` pixels and as normalized float ``(1, 3, H, W)``."""
    pre = Preprocess.for_size(TINY_SIZE)
    pixels = pre.to_uint8(load_image(calibration_dir() / "skimage_chelsea.png"))
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None]), pre.normalize(pixels)[None]


def _reference_logits(ckpt: Path, x: torch.Tensor) -> np.ndarray:
    model = load_reference(TINY, torch.load(ckpt, weights_only=True)["model"])
    with torch.no_grad():
        return model(x).numpy()


def test_fp32_export_validates_and_writes_a_sidecar(fp32_art) -> None:  # type: ignore[no-untyped-def]
    art = fp32_art
    assert art.path.name == f"{TINY}_{TINY_SIZE}_fp32.pte"
    assert art.passed and art.validation["max_abs_diff"] <= 1e-3
    assert sorted(p.name for p in art.path.parent.iterdir()) == [art.path.name,
                                                                 art.path.name + ".json"]
    info = art.export_info
    assert info["backend"] == "XNNPACK" and info["delegated_subgraphs"] >= 1
    assert isinstance(info["non_delegated_ops"], dict) and info["executorch"]
    check_sidecar(art.path, "executorch", {}, "float32", TINY_SIZE)


def test_metadata_is_embedded_as_a_constant_method(fp32_art) -> None:  # type: ignore[no-untyped-def]
    from executorch.runtime import Runtime

    exp = ExecutorchExporter()
    native = from_native(exp.read_metadata(fp32_art.path))
    side = read_sidecar(fp32_art.path)
    assert side is not None and side["status"] == "passed"
    for meta in (native, side["metadata"]):
        assert meta["variant"] == TINY and meta["precision"] == "fp32"
        assert meta["img_size"] == [TINY_SIZE, TINY_SIZE] and meta["layout"] == "NCHW"
        assert "executorch" in meta["tool_versions"]
    assert exp.precision_of(fp32_art.path) == "fp32"
    program = Runtime.get().load_program(str(fp32_art.path))
    [text] = program.load_method(METADATA_METHOD).execute([])
    assert json.loads(text) == native  # one JSON object of the decoded values


def test_the_pte_runs_in_the_executorch_runtime_like_pytorch(fp32_art, tiny_ckpt: Path) -> None:  # type: ignore[no-untyped-def]
    from executorch.runtime import Runtime

    _, x = _photo_batch()
    method = Runtime.get().load_program(str(fp32_art.path)).load_method("forward")
    [got] = method.execute([x.contiguous()])
    assert got.shape == (1, 10)
    assert np.abs(got.numpy() - _reference_logits(tiny_ckpt, x)).max() <= 1e-3


def test_validate_reruns_from_the_sidecar(fp32_art) -> None:  # type: ignore[no-untyped-def]
    again = validate(fp32_art.path)
    assert again["passed"]
    assert again["validation"]["max_abs_diff"] == pytest.approx(
        fp32_art.validation["max_abs_diff"], abs=1e-6)


def test_benchmark_session(fp32_art) -> None:  # type: ignore[no-untyped-def]
    from lsnet_deploy.bench.runtimes import artifact_targets, open_session

    [target] = artifact_targets(fp32_art.path)
    assert target.runtime == "executorch" and target.precision == "fp32"
    session = open_session(target, threads=1, batch=None)
    try:
        assert session.input_shape == [1, 3, TINY_SIZE, TINY_SIZE] and session.batch == 1
        assert session.first_ms is not None and session.load_ms is not None
        session.run()
    finally:
        session.close()
    with pytest.raises(BenchmarkError, match="static batch of 1"):
        ExecutorchExporter().bench_session(fp32_art.path, threads=None, batch=4)


def test_options_it_does_not_support_are_refused(tiny_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedOptionError):
        export(TINY, "executorch", weights=tiny_ckpt, img_size=TINY_SIZE, output_dir=tmp_path,
               precision="fp16")
    with pytest.raises(UnsupportedOptionError):
        export(TINY, "executorch", weights=tiny_ckpt, img_size=TINY_SIZE, output_dir=tmp_path,
               dynamic_batch=True)


class _Slices(torch.nn.Module):
    """A conv whose output is sliced along channels and the halves multiplied (both quantized
    ops, so each slice output is observed): the pattern of SKA's tap slices."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[:, :4] * y[:, 4:]


def test_int8_slices_keep_their_input_quantization() -> None:
    """XNNPACK's quantized slice needs equal input and output quantization parameters, else
    the program builds but does not load (executorch 1.4's XNNPACKQuantizer gives a slice its
    own observer); the exporter's quantizer shares them, and the program loads and runs."""
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from lsnet_deploy.exporters.executorch import _partitioner

    model, x = _Slices().eval(), torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        prepared = prepare_pt2e(torch.export.export(model, (x,)).module(), _quantizer())
        for _ in range(4):
            prepared(torch.randn(1, 3, 16, 16))
        converted = convert_pt2e(prepared)
    slices = [n for n in converted.graph.nodes if n.target == torch.ops.aten.slice.Tensor]
    assert len(slices) == 2
    for node in slices:
        dq, [q] = node.args[0], list(node.users)
        assert "dequantize" in str(dq.target) and "quantize" in str(q.target)
        assert dq.args[1:3] == q.args[1:3]  # scale, zero point
    with torch.no_grad():
        edge = to_edge_transform_and_lower(torch.export.export(converted, (x,)),
                                           partitioner=[_partitioner(True)])
    data = bytes(edge.to_executorch().buffer)
    program = Runtime.get().load_program(data)  # both must outlive the method
    [got] = program.load_method("forward").execute([x])
    with torch.no_grad():
        expected = model(x)
    assert got.shape == expected.shape
    assert torch.nn.functional.cosine_similarity(got.flatten(), expected.flatten(), 0) > 0.98


@pytest.mark.slow
def test_int8_with_image_input(tiny_ckpt: Path, tmp_path: Path) -> None:
    [art] = export(TINY, "executorch", weights=tiny_ckpt, img_size=TINY_SIZE,
                   output_dir=tmp_path, precision="int8", image_input=True, min_cosine=0.9)
    assert art.path.name == f"{TINY}_{TINY_SIZE}_int8_img.pte"
    assert art.passed and 0.9 <= art.validation["mean_cosine"] <= 1.0
    info = art.export_info["int8"]
    assert "XNNPACKQuantizer" in info["quantizer"] and info["calibration_images"] > 0
    assert ExecutorchExporter().precision_of(art.path) == "int8"
    # the portable form (no GroupNorm op, no rank-5 tensor), as for fp32
    assert "aten.native_group_norm.default" not in art.export_info["non_delegated_ops"]
    # rank <= 4 in the .pte itself (the rank-4 INT8 program used not to load; it runs below)
    ranks = rank_histogram(art.path)
    assert max_rank(art.path) == 4 and ranks is not None and ranks.get("4", 0) > 20, ranks
    check_sidecar(art.path, "executorch", {"precision": "int8", "image_input": True}, "uint8",
                  TINY_SIZE)
    pixels, x = _photo_batch()
    got = ExecutorchExporter().runner(art.path)(pixels)  # uint8 in
    expected = _reference_logits(tiny_ckpt, x)
    cosine = float((got * expected).sum() / np.linalg.norm(got) / np.linalg.norm(expected))
    assert cosine > 0.9
