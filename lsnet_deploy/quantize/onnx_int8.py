"""INT8 static post-training quantization of ONNX LSNet graphs with ONNX Runtime's tools.

Pipeline: ``quant_pre_process`` (shape inference + graph optimization), then ``quantize_static``
in QDQ format with per-channel int8 weights, uint8 activations (int8/int8 ran 2x slower on x86
CPUs here) and a calibration reader over real photos.

Mixed precision works on **op groups**: every node of the exported graph is assigned to the
LSNet structure it implements (stem, RepVGG dw conv, SE, LKP convs, LKP GroupNorm, SKA,
attention projections, attention core, FFN, downsample, head), from the module scopes the
PyTorch exporter records; ``exclude`` keeps whole groups (or single node names) in float.

Two op types always stay in float (:data:`FLOAT_OP_TYPES`): ``MatMul`` (the attention's
activation-by-activation products) and ``Split`` (the attention's q/k/v split). ONNX Runtime
1.32 cannot replay the saved runtime optimizations of their QDQ node units in an ``.ort`` of
style Runtime (loading fails with "Not enough produced nodes in the runtime optimization
record", reproduced on one-node graphs); without the replay the CPU runs every QDQ unit as
float dequantize-op-quantize, 3x slower than the ``.onnx``. Both are a few nodes of the last
stage (no weights), and NNAPI / CoreML take the float op inside the same partition.
"""

from __future__ import annotations

import ast
import logging
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from ..errors import ExportError, UnsupportedOptionError
from ..fidelity import Runner, run_artifact
from ..progress import Say, counted
from ..spec import IOSpec
from .auto import QuantSetup
from .groups import GROUPS, group_of_scope
from .headroom import resolve_headroom, widen

__all__ = [
    "FLOAT_OP_TYPES",
    "GROUPS",
    "Int8Config",
    "assign_groups",
    "group_of_scope",
    "onnx_setup",
    "quantize_int8",
]

log = logging.getLogger(__name__)

FLOAT_OP_TYPES = ("MatMul", "Split")
"""Op types never quantized (see the module docstring: ORT's ``.ort`` replay)."""


def _op_types_to_quantize() -> list[str]:
    """Every op type ORT's QDQ quantizer handles, but :data:`FLOAT_OP_TYPES`."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted((set(QDQRegistry) | set(QLinearOpsRegistry)) - set(FLOAT_OP_TYPES))

def _scopes(node: onnx.NodeProto) -> list[str] | None:
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                value = ast.literal_eval(p.value)
            except (ValueError, SyntaxError):
                return None
            return [str(v) for v in value] if isinstance(value, list) else None
    return None


def scope_groups(model: onnx.ModelProto) -> dict[str, str]:
    """Node name -> op group from the scopes the dynamo exporter records (before onnxslim,
    which drops node metadata)."""
    out: dict[str, str] = {}
    for node in model.graph.node:
        scopes = _scopes(node)
        group = group_of_scope(scopes, node.op_type) if scopes else None
        if group is not None:
            out[node.name] = group
    return out


def assign_groups(model: onnx.ModelProto, known: dict[str, str]) -> dict[str, str]:
    """Group of every node of ``model``: the known ones by name, the others (nodes renamed or
    created by graph simplification) from the producer of their first grouped input, else
    from a consumer, else ``residual`` for Add nodes and ``head`` for the graph's tail."""
    producer: dict[str, onnx.NodeProto] = {o: n for n in model.graph.node for o in n.output}
    groups: dict[str, str] = {}
    for node in model.graph.node:  # nodes are topologically sorted
        g = known.get(node.name)
        if g is None:
            for name in node.input:
                prod = producer.get(name)
                if prod is not None and prod.name in groups and prod.op_type not in ("Add",):
                    g = groups[prod.name]
                    break
        if g is None and node.op_type == "Add":
            g = "residual"
        if g is None and node.op_type in ("ReduceMean", "GlobalAveragePool", "Gemm", "MatMul"):
            g = "head"  # forward_head's pooling has no module scope
        groups[node.name] = g or "other"
    outputs = {o.name for o in model.graph.output}
    for node in reversed(model.graph.node):  # the classifier tail
        if any(o in outputs for o in node.output) and groups[node.name] == "other":
            groups[node.name] = "head"
    return groups


@dataclass(frozen=True)
class Int8Config:
    """Settings of one INT8 quantization.

    Attributes:
        method: ``minmax`` or ``percentile`` activation calibration.
        percentile: the percentile for ``percentile``.
        exclude: op groups (see :data:`GROUPS`) or node names kept in float.
        only: if set, quantize only these groups (for the sensitivity report).
        int16: op groups (or node names) whose activations are quantized to int16 instead of
            uint8 (w8a16; the graph is moved to opset 21, whose Q/DQ take int16; ONNX
            Runtime's CPU provider runs the ops between int16 Q/DQ pairs in float).
            ``["all"]``: every activation.
        int16_headroom: how many times its calibrated MinMax range each int16 activation
            range spans (:func:`~lsnet_deploy.quantize.headroom.widen`; ``--int16-headroom``;
            ``None``: :data:`~lsnet_deploy.quantize.headroom.INT16_HEADROOM`).
    """

    method: str = "minmax"
    percentile: float = 99.999
    exclude: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    int16: tuple[str, ...] = ()
    int16_headroom: float | None = None


class _Reader:
    """CalibrationDataReader over ``(N, ...)`` arrays, one image at a time; ``progress`` gets a
    "calibrating" step per batch ONNX Runtime reads."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray],
                 progress: Say | None = None) -> None:
        self._it = counted(progress, "calibrating", [{input_name: b} for b in batches],
                           lambda _b: "image")

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - ORT calls it for some methods
        pass


def preprocess_for_quant(fp32_path: Path, out_path: Path) -> None:
    """ONNX Runtime's ``quant_pre_process`` (symbolic shape inference + optimization)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(out_path))


def resolve_nodes(
    groups: dict[str, str], names: Sequence[str], flag: str = "--int8-exclude"
) -> list[str]:
    """Node names of the given op groups or node names; unknown entries are an error."""
    nodes: list[str] = []
    for entry in names:
        if entry in GROUPS or entry == "other":
            nodes += [n for n, g in groups.items() if g == entry]
        elif entry in groups:
            nodes.append(entry)
        else:
            raise UnsupportedOptionError(
                f"{flag} {entry!r} is neither an op group ({', '.join(GROUPS)}) "
                "nor a node name of the graph"
            )
    return nodes


def quantize_int8(
    pre_path: Path,
    out_path: Path,
    groups: dict[str, str],
    input_name: str,
    calib_inputs: Sequence[np.ndarray],
    config: Int8Config,
    progress: Say | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
) -> dict[str, object]:
    """Quantize the pre-processed fp32 graph at ``pre_path`` to ``out_path``.

    ``calib_inputs`` are input batches laid out as the graph's input. The int16 activations
    of ``config.int16`` span their MinMax range over them (whatever ``config.method``) widened
    by ``config.int16_headroom`` (``ranges``: those of
    :func:`activation_ranges`, when already computed). Returns what was done (for the
    sidecar): method, excluded groups and node count, calibration image count.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if config.method not in methods:
        raise UnsupportedOptionError(
            f"--calib-method {config.method!r}; use one of {', '.join(methods)}"
        )
    headroom = resolve_headroom(config.int16_headroom)  # refused before any work
    exclude = resolve_nodes(groups, config.exclude)
    include = resolve_nodes(groups, config.only) if config.only is not None else None
    extra: dict[str, object] = {}
    if config.method == "percentile":
        extra["CalibPercentile"] = config.percentile
    if config.int16:
        wide = (list(groups) if "all" in config.int16
                else resolve_nodes(groups, config.int16, "--int8-int16"))
        if ranges is None:
            ranges = activation_ranges(pre_path, input_name, calib_inputs, progress)
        extra["TensorQuantOverrides"] = _int16_outputs(pre_path, set(wide), ranges, headroom)
    try:
        quantize_static(
            str(pre_path),
            str(out_path),
            _Reader(input_name, calib_inputs, progress),  # type: ignore[arg-type]
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[config.method],
            nodes_to_exclude=exclude or None,
            nodes_to_quantize=include,
            op_types_to_quantize=_op_types_to_quantize(),
            extra_options=extra,
        )
    except Exception as e:  # ORT raises plain exceptions with long messages
        raise ExportError(f"INT8 quantization failed: {type(e).__name__}: {e}") from e
    return {
        "calibration_method": config.method,
        "calibration_images": len(calib_inputs),
        "excluded_groups": [g for g in config.exclude if g in GROUPS],
        "excluded_nodes": len(exclude),
        "quantized_only": list(config.only) if config.only is not None else None,
        "activation_type": "uint8",
        "int16_activations": list(config.int16),
        **({"int16_ranges": "minmax", "int16_headroom": headroom}
           if config.int16 else {}),
        "weight_type": "int8 per-channel",
        "format": "QDQ",
        "float_op_types": list(FLOAT_OP_TYPES),
    }


def _int16_outputs(pre_path: Path, nodes: set[str], ranges: dict[str, tuple[float, float]],
                   headroom: float) -> dict[str, list[dict[str, object]]]:
    """ONNX Runtime's ``TensorQuantOverrides``: int16 for every output of ``nodes``, over its
    calibrated range (``ranges``) widened ``headroom`` times."""
    from onnxruntime.quantization import QuantType

    proto = onnx.load(str(pre_path), load_external_data=False)
    overrides: dict[str, list[dict[str, object]]] = {}
    for node in proto.graph.node:
        for out in node.output if node.name in nodes else ():
            entry: dict[str, object] = {"quant_type": QuantType.QInt16}
            if out in ranges:
                entry["rmin"], entry["rmax"] = widen(*ranges[out], headroom)
            overrides[out] = [entry]
    return overrides


def activation_ranges(pre_path: Path, input_name: str, calib_inputs: Sequence[np.ndarray],
                      progress: Say | None = None) -> dict[str, tuple[float, float]]:
    """The MinMax range of every tensor of the graph at ``pre_path`` over ``calib_inputs``
    (ONNX Runtime's MinMax calibrator): ``{name: (min, max)}``;
    ``progress`` gets a "calibrating" step per input."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    with tempfile.TemporaryDirectory(prefix="lsnet-ranges-") as tmp:
        try:
            calibrator = create_calibrator(str(pre_path), None,
                                           augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                           calibrate_method=CalibrationMethod.MinMax)
            reader = _Reader(input_name, calib_inputs, progress)
            calibrator.collect_data(reader)  # type: ignore[arg-type]
            data = calibrator.compute_data()
        except Exception as e:  # ORT raises plain exceptions with long messages
            raise ExportError(f"INT8 calibration failed: {type(e).__name__}: {e}") from e
    return {name: (float(np.min(t.range_value[0])), float(np.max(t.range_value[1])))
            for name, t in data.data.items()}


def onnx_setup(
    pre: Path,
    groups: dict[str, str],
    spec: IOSpec,
    calib: Sequence[np.ndarray],
    val: torch.Tensor,
    reference: np.ndarray,
    runner_factory: Callable[[Path], Runner],
    ranges: dict[str, tuple[float, float]] | None = None,
) -> QuantSetup:
    """The setup for ONNX: ``pre`` is the pre-processed fp32 graph, ``groups`` the op group of
    every node, ``calib`` calibration inputs (artifact layout), ``val`` validation images
    ``(N, 3, H, W)`` normalized; each measurement quantizes with ONNX Runtime and runs the
    result in ONNX Runtime. The int16 ranges of :func:`activation_ranges` are computed once,
    for the first configuration with int16 activations, into ``ranges`` (a dict the caller
    may keep, to quantize its final configuration without computing them again)."""
    ranges = {} if ranges is None else ranges

    def logits(config: Int8Config) -> np.ndarray:
        if config.int16 and not ranges:
            ranges.update(activation_ranges(pre, spec.input_name, calib))
        with tempfile.TemporaryDirectory(prefix="lsnet-sens-") as tmp:
            out = Path(tmp) / "q.onnx"
            quantize_int8(pre, out, groups, spec.input_name, calib, config,
                          ranges=ranges or None)
            return run_artifact(runner_factory(out), val, spec)

    return QuantSetup(logits, dict(Counter(groups.values())), reference)
