"""INT8 static quantization of LSNet for TFLite: PT2E (torchao) with litert-torch's quantizer.

Flow (see :func:`quantize_pt2e`): ``torch.export`` of the channels-last LSNet, ``prepare_pt2e``
with :class:`LsnetQuantizer`, calibration on real photos, ``convert_pt2e(fold_quantize=False)``;
litert-torch then converts the Q/DQ graph into integer TFLite kernels
(``litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=...))``).

litert-torch's ``PT2EQuantizer`` annotates convolutions, linear layers, additions,
multiplications, concatenations and sigmoid/softmax, and lets views, slices and means share
their producer's parameters. LSNet also has subtractions and ``rsqrt`` (GroupNorm), zero padding
(SKA), batched matmuls (attention) and a lone ReLU (attention projection); left in float they
leave float islands with DEQUANTIZE/QUANTIZE pairs around them. :class:`LsnetQuantizer` annotates
those too, so a full-INT8 LSNet is integer end to end (int8 activations, per-channel int8
weights, int32 biases), and it leaves the ops of *excluded* op groups
(:data:`~lsnet_deploy.quantize.groups.GROUPS`) unannotated: mixed precision.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.fx import GraphModule, Node

from ..errors import UnsupportedOptionError
from ..progress import Say, counted
from .groups import GROUPS, group_of_scope

__all__ = ["LsnetQuantizer", "TfliteInt8Config", "exported_graph", "node_group", "quantize_pt2e"]

log = logging.getLogger(__name__)

aten = torch.ops.aten


@dataclass(frozen=True)
class TfliteInt8Config:
    """Settings of one TFLite INT8 quantization.

    Attributes:
        exclude: op groups kept in float (mixed precision).
        only: if set, quantize only these groups (sensitivity report).
    """

    exclude: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        unknown = [g for g in (*self.exclude, *(self.only or ())) if g not in GROUPS]
        if unknown:
            raise UnsupportedOptionError(
                f"unknown op group(s) {', '.join(unknown)} for TFLite INT8; groups: "
                + ", ".join(GROUPS)
            )

    def quantizes(self, group: str) -> bool:
        if self.only is not None and group not in self.only:
            return False
        return group not in self.exclude


def _module_paths(node: Node) -> list[str]:
    """Module paths of an FX node, outermost first, relative to the LSNet (wrapper prefixes such
    as ``model.`` or litert-torch's channels-last wrapper are cut at the first LSNet name)."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = []
    for value in stack.values():
        path = str(value[0]) if isinstance(value, tuple) else str(value)
        parts = path.split(".")
        for i, p in enumerate(parts):
            if p.startswith("blocks") or p in ("patch_embed", "head", "head_dist"):
                paths.append(".".join(parts[i:]))
                break
    return paths


_ADDS = {aten.add.Tensor, aten.add_.Tensor}


def node_group(node: Node) -> str:
    """The op group of an FX node (``head`` for ops outside any block: the pooling)."""
    op = "Add" if node.target in _ADDS else ""
    return group_of_scope(_module_paths(node), op) or ("residual" if op else "head")


# ops litert-torch's quantizer leaves in float, with how their output is quantized
_OWN_QPARAMS = {
    aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.rsqrt.default, aten.matmul.default,
    aten.bmm.default, aten.mean.dim,
}
"""Ops with their own output parameters (litert-torch's add annotator misses torch 2.13's
``x + y``: its source-partition match finds no ``operator.add``)."""
_SHARED_QPARAMS = {
    aten.constant_pad_nd.default, aten.pad.default, aten.relu.default,
    aten.slice.Tensor, aten.select.int, aten.reshape.default, aten.view.default,
    aten.permute.default, aten.transpose.int, aten.flatten.using_ints,
}
"""Data movement (and ReLU): TFLite requires the output scale to equal the input's."""
_FIXED_QPARAMS = {aten.softmax.int, aten._softmax.default, aten.sigmoid.default}
"""Outputs in [0, 1]: TFLite's int8 kernels require scale 1/256, zero point -128."""


def _is_float(node: Node) -> bool:
    """Whether an FX node yields a floating-point tensor (uint8 image inputs are not observed)."""
    val = node.meta.get("val")
    return isinstance(val, torch.Tensor) and val.dtype.is_floating_point


def _annotate_rest(model: GraphModule, config: Any, keep: Any) -> None:
    """Annotate LSNet's ops the stock quantizer skips: add, sub, mul, rsqrt, mean and matmul
    get their own parameters, softmax/sigmoid the fixed ones; data movement (pad, slices,
    views) and ReLU share their input's, in topological order so that chains
    (permute -> reshape -> slice) share one scale."""
    from litert_torch.quantize.pt2e_quantizer_utils import get_fixed_qparams_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    act = config.input_activation
    out_act = config.output_activation
    fixed = get_fixed_qparams_qspec(config)
    for node in model.graph.nodes:
        if node.op != "call_function" or not keep(node) or not _is_float(node):
            continue
        ann = node.meta.get("quantization_annotation")
        if ann is not None and ann._annotated:
            continue
        if node.target in _OWN_QPARAMS:
            inputs = {a: act for a in node.args if isinstance(a, Node) and _is_float(a)}
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map=inputs, output_qspec=out_act, _annotated=True
            )
        elif node.target in _FIXED_QPARAMS:
            src = node.args[0]
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={src: act} if isinstance(src, Node) else {},
                output_qspec=fixed, _annotated=True,
            )
        elif node.target in _SHARED_QPARAMS:
            src = node.args[0]
            if not isinstance(src, Node) or not _is_float(src):
                continue
            src_ann = src.meta.get("quantization_annotation")
            if src_ann is not None and src_ann.output_qspec is not None:
                shared = SharedQuantizationSpec(src)
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={src: shared}, output_qspec=shared, _annotated=True
                )
            else:
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={src: act},
                    output_qspec=SharedQuantizationSpec((src, node)),
                    _annotated=True,
                )


def _quantizer_class() -> type:
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    class _LsnetQuantizer(PT2EQuantizer):  # type: ignore[misc, valid-type]
        """litert-torch's PT2E quantizer, per op group, with LSNet's remaining ops."""

        def __init__(self, config: TfliteInt8Config) -> None:
            from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config

            super().__init__()
            self.lsnet_config = config
            self.set_global(get_symmetric_quantization_config(is_per_channel=True,
                                                              is_dynamic=False))

        def annotate(self, model: GraphModule) -> GraphModule:
            from litert_torch.quantize.pt2e_quantizer_utils import (
                OP_TO_ANNOTATOR,
                propagate_annotation,
            )

            cfg = self.lsnet_config

            def keep(node: Node) -> bool:
                return cfg.quantizes(node_group(node))

            for op in self.STATIC_OPS:
                OP_TO_ANNOTATOR[op](model, self.global_config, keep)
            _annotate_rest(model, self.global_config, keep)
            propagate_annotation(model)
            return model

    return _LsnetQuantizer


def LsnetQuantizer(config: TfliteInt8Config | None = None) -> Any:
    """A litert-torch ``PT2EQuantizer`` (symmetric, per-channel weights, static activations)
    that quantizes the op groups ``config`` selects, LSNet's extra ops included."""
    return _quantizer_class()(config or TfliteInt8Config())


def exported_graph(module: torch.nn.Module, example: torch.Tensor) -> GraphModule:
    """``torch.export`` of ``module`` on ``example``-like inputs, as :func:`quantize_pt2e`
    quantizes it (export once, quantize many configurations: pass it as ``graph``)."""
    with torch.no_grad():
        return torch.export.export(module, (example,)).module()  # type: ignore[return-value]


def quantize_pt2e(
    module: torch.nn.Module,
    example: torch.Tensor,
    calibration: Sequence[torch.Tensor],
    config: TfliteInt8Config,
    progress: Say | None = None,
    graph: GraphModule | None = None,
) -> tuple[GraphModule, Any]:
    """Export, prepare, calibrate and convert ``module`` (taking ``example``-like inputs).

    ``graph``: ``module`` already exported (:func:`exported_graph`); a copy of it is quantized,
    so one export serves many configurations (the sensitivity report, ``auto``).

    Returns ``(quantized GraphModule, quantizer)``: the GraphModule runs in PyTorch (fake
    quantization: what the integer TFLite model computes, up to rounding) and is what
    ``litert_torch.convert`` takes together with the quantizer.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = LsnetQuantizer(config)
    graph = copy.deepcopy(graph) if graph is not None else exported_graph(module, example)
    with torch.no_grad():
        prepared = prepare_pt2e(graph, quantizer)  # type: ignore[arg-type]
        n = 0
        for batch in counted(progress, "calibrating", calibration, lambda _b: "batch"):
            prepared(batch)
            n += 1
        if n == 0:
            raise UnsupportedOptionError("INT8 calibration needs at least one image")
        # fold_quantize=False: litert-torch cannot lower pre-folded int8 weight constants
        converted = convert_pt2e(prepared, fold_quantize=False)
    # an inference graph (BatchNorm fused, no dropout) whose training flag torch.export left
    # on: litert-torch would warn API users that the model "is converted in training mode"
    converted.training = False
    log.info("PT2E INT8: calibrated on %d images, excluded groups: %s", n,
             ", ".join(config.exclude) or "none")
    return converted, quantizer


def group_counts(model: GraphModule) -> dict[str, int]:
    """Number of compute ops (call_function nodes) per op group, for reports."""
    counts: dict[str, int] = {}
    for node in model.graph.nodes:
        if node.op == "call_function":
            g = node_group(node)
            counts[g] = counts.get(g, 0) + 1
    return counts
