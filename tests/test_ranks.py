"""No tensor of rank > 4 in any exported LSNet graph (phone GPU delegates and NPUs are built
around 4-D tensors): LSNet-T and the tiny test model converted to every format, the ranks
counted in the artifact files themselves. Ranks depend on the block kinds, not on widths or
depths: the tiny model has blocks in every stage, stage 1 included (which T lacks and S and B
have), so T and the tiny model together hold every block kind of T, S and B. ExecuTorch INT8
too: the quantized graph XNNPACK compiles here, the INT8 ``.pte`` of the tiny model in
test_export_executorch.py::test_int8_with_image_input (lowering a real variant in INT8 takes
minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import trained_looking

from lsnet_deploy.exporters import ExportData, ExportOptions, ExportTask, get_exporter
from lsnet_deploy.exporters.base import CalibrationSet
from lsnet_deploy.exporters.executorch import _quantize
from lsnet_deploy.exporters.inputs import example_input, graph_model
from lsnet_deploy.exporters.ranks import max_rank, rank_histogram
from lsnet_deploy.paths import calibration_dir
from lsnet_deploy.portable import max_tensor_rank
from lsnet_deploy.preprocess import Preprocess, load_folder
from lsnet_deploy.reparam import reparameterize
from lsnet_deploy.spec import IOSpec

SIZE = 96  # ranks do not depend on the input size; a small one keeps conversion quick
FORMATS = ("onnx", "tflite", "coreml", "executorch")


@pytest.fixture(scope="module", params=["lsnet_t", "test_lsnet"])  # every block kind
def fused(request: pytest.FixtureRequest) -> torch.nn.Module:
    model = trained_looking(request.param, img_size=SIZE, seed=3)
    reparameterize(model, None)
    model.variant = request.param  # type: ignore[assignment]
    return model


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_tensor_has_rank_at_most_4(fused: torch.nn.Module, fmt: str,
                                         tmp_path: Path) -> None:
    if fmt == "executorch" and fused.variant != "lsnet_t":  # tiny: the lowered graph
        # the .pte keeps only the undelegated tensors; what XNNPACK compiles is the lowered
        # torch.export graph, checked here (and for T below, with the artifact)
        spec = IOSpec(img_size=(SIZE, SIZE))
        assert max_tensor_rank(graph_model(fused, spec), example_input(spec, 1)) == 4
        return
    exp = get_exporter(fmt)
    layout = exp.capabilities.layouts[0]
    spec = IOSpec(img_size=(SIZE, SIZE), layout=layout,  # type: ignore[arg-type]
                  num_classes=fused.num_classes)
    precision = "fp16" if fmt == "coreml" else "fp32"
    out = tmp_path / f"{fused.variant}{exp.suffix}"
    options = ExportOptions(precision=precision, format=exp.options_type())  # type: ignore[arg-type]
    exp.export(fused, spec, out, ExportTask(options, ExportData()))
    ranks = rank_histogram(out)
    assert max_rank(out) <= 4, ranks
    assert ranks is not None and ranks.get("4", 0) > 20, ranks  # the feature maps really are counted
    if fmt == "tflite":  # XNNPACK splits the graph only at the attentions (T: 5 of them)
        from lsnet_deploy.exporters.tflite_xnnpack import xnnpack_partitions

        xnn = xnnpack_partitions(out)
        assert set(xnn["cpu_ops"]) <= {"FULLY_CONNECTED"}, xnn  # LSNet-T was 16 partitions
        assert xnn["partitions"] <= 6, xnn
    if fmt == "executorch":  # the delegate's own tensors are those of the lowered graph
        module = graph_model(fused, spec)
        assert max_tensor_rank(module, example_input(spec, 1)) == 4


def _int8_task() -> ExportTask:
    images = load_folder(calibration_dir(), Preprocess.for_size(SIZE), limit=2).tensors
    return ExportTask(ExportOptions(precision="int8"),
                      ExportData(calibration=CalibrationSet(images, "calibration")))


def _graph_rank(module: torch.nn.Module, example: torch.Tensor) -> int:
    """:func:`max_tensor_rank` of a converted (Q/DQ) module, which refuses ``eval()``."""
    program = torch.export.export(module, (example,))
    vals = [node.meta.get("val") for node in program.graph.nodes]
    flat = [v for val in vals for v in (val if isinstance(val, (list, tuple)) else [val])]
    return max(v.dim() for v in flat if isinstance(v, torch.Tensor))


@pytest.mark.slow
def test_executorch_int8_graph_has_rank_at_most_4(fused: torch.nn.Module) -> None:
    """What XNNPACK compiles for INT8: the quantized portable form (T and tiny)."""
    spec = IOSpec(img_size=(SIZE, SIZE))
    x = example_input(spec, 1)
    module = graph_model(fused, spec, pad_in_conv=False).eval()
    quantized, _ = _quantize(module, spec, x, _int8_task())
    assert _graph_rank(quantized, x) == 4
