"""No tensor of rank > 4 in any exported LSNet graph (phone GPU delegates and NPUs are built
around 4-D tensors): LSNet-T and -B (S has no block kind they lack) converted to every format, the ranks counted in the
artifact files themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import trained_looking

from lsnet_deploy.exporters import ExportData, ExportOptions, ExportTask, get_exporter
from lsnet_deploy.exporters.inputs import example_input, graph_model
from lsnet_deploy.exporters.ranks import max_rank, rank_histogram
from lsnet_deploy.portable import max_tensor_rank
from lsnet_deploy.reparam import reparameterize
from lsnet_deploy.spec import IOSpec

SIZE = 96  # ranks do not depend on the input size; a small one keeps conversion quick
FORMATS = ("onnx", "tflite", "coreml", "executorch")


@pytest.fixture(scope="module", params=["lsnet_t", "lsnet_b"])  # S: the blocks of both
def fused(request: pytest.FixtureRequest) -> torch.nn.Module:
    model = trained_looking(request.param, img_size=SIZE, seed=3)
    reparameterize(model, None)
    model.variant = request.param  # type: ignore[assignment]
    return model


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_tensor_has_rank_at_most_4(fused: torch.nn.Module, fmt: str,
                                         tmp_path: Path) -> None:
    if fmt == "executorch" and fused.variant != "lsnet_t":  # B: the lowered graph
        # the .pte keeps only the undelegated tensors; what XNNPACK compiles is the lowered
        # torch.export graph, checked here for S and B (and for T below, with the artifact)
        spec = IOSpec(img_size=(SIZE, SIZE))
        assert max_tensor_rank(graph_model(fused, spec), example_input(spec, 1)) == 4
        return
    exp = get_exporter(fmt)
    layout = exp.capabilities.layouts[0]
    spec = IOSpec(img_size=(SIZE, SIZE), layout=layout)  # type: ignore[arg-type]
    precision = "fp16" if fmt == "coreml" else "fp32"
    out = tmp_path / f"{fused.variant}{exp.suffix}"
    options = ExportOptions(precision=precision, format=exp.options_type())  # type: ignore[arg-type]
    exp.export(fused, spec, out, ExportTask(options, ExportData()))
    ranks = rank_histogram(out)
    assert max_rank(out) <= 4, ranks
    assert ranks is not None and ranks.get("4", 0) > 20, ranks  # the feature maps really are counted
    if fmt == "executorch":  # the delegate's own tensors are those of the lowered graph
        module = graph_model(fused, spec)
        assert max_tensor_rank(module, example_input(spec, 1)) == 4
