"""ONNX exporter: ``torch.onnx.export`` (dynamo), onnxslim, optional INT8 static PTQ.

fp32: the fused model is exported with the dynamo exporter at opset 18 (``--opset``) and
simplified with onnxslim. The dynamo exporter only produces a truly dynamic batch when the
example has batch >= 2 *and* ``dynamic_shapes`` is given (with batch 1 it silently fixes the
batch or the output type), so dynamic exports trace a batch of 2.

int8: the fp32 graph goes through ONNX Runtime's ``quant_pre_process`` and ``quantize_static``
(QDQ, per-channel int8 weights, uint8 activations), see :mod:`lsnet_deploy.quantize.onnx_int8`.

Validation runtime: ONNX Runtime CPU.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ExportError, MissingDependencyError, UnsupportedOptionError
from ..io_wrappers import ImageInput
from ..spec import IOSpec
from .base import Capabilities, ExportOptions, Runner

log = logging.getLogger(__name__)

__all__ = ["OnnxExporter"]


def _require() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
        import onnxslim  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(
            f"ONNX export needs {e.name}: pip install -c constraints.txt 'lsnet-deploy[onnx]'"
        ) from e


def graph_model(model: torch.nn.Module, spec: IOSpec) -> torch.nn.Module:
    """The module to export: the network, wrapped with in-graph normalization for image input."""
    if spec.value_range == "0..255":
        return ImageInput(model, spec.mean, spec.std).eval()
    return model


def example_input(spec: IOSpec, batch: int) -> torch.Tensor:
    """An example input of the spec's layout and dtype."""
    h, w = spec.img_size
    shape = (batch, 3, h, w) if spec.layout == "NCHW" else (batch, h, w, 3)
    if spec.dtype == "uint8":
        return torch.randint(0, 256, shape, dtype=torch.uint8)
    if spec.value_range == "0..255":
        return torch.rand(shape) * 255.0
    return torch.randn(shape)


def export_fp32(
    model: torch.nn.Module, spec: IOSpec, out: Path, options: ExportOptions
) -> dict[str, str]:
    """Export + slim to ``out``; returns the scope-derived op group of every original node."""
    import onnx
    import onnxslim

    from ..quantize.onnx_int8 import scope_groups

    module = graph_model(model, spec)
    batch = 2 if options.dynamic_batch else options.batch
    x = example_input(spec, batch)
    kwargs: dict[str, Any] = {}
    if options.dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                module,
                (x,),
                dynamo=True,
                opset_version=options.opset,
                input_names=[spec.input_name],
                output_names=list(spec.output_names),
                verbose=False,
                **kwargs,
            )
    except Exception as e:
        raise ExportError(f"torch.onnx.export failed: {type(e).__name__}: {e}") from e
    if program is None:  # pragma: no cover - dynamo export always returns a program
        raise ExportError("torch.onnx.export returned no program")
    proto = program.model_proto
    groups = scope_groups(proto)
    try:
        slim = onnxslim.slim(proto)
    except Exception as e:
        raise ExportError(f"onnxslim failed: {type(e).__name__}: {e}") from e
    assert isinstance(slim, onnx.ModelProto)
    onnx.save(slim, str(out))
    return groups


def prepare_int8(
    model: torch.nn.Module, spec: IOSpec, folder: Path, options: ExportOptions
) -> tuple[Path, Path, dict[str, str]]:
    """Export fp32 to ``folder/fp32.onnx``, run ``quant_pre_process`` into ``folder/pre.onnx``
    and assign every node of the latter to its op group. Returns ``(fp32, pre, groups)``."""
    import onnx

    from ..quantize.onnx_int8 import assign_groups, preprocess_for_quant

    fp32, pre = folder / "fp32.onnx", folder / "pre.onnx"
    known = export_fp32(model, spec, fp32, options)
    preprocess_for_quant(fp32, pre)
    return fp32, pre, assign_groups(onnx.load(str(pre)), known)


class OnnxExporter:
    """ONNX (``.onnx``), fp32 and INT8, static or dynamic batch, optional image input."""

    name = "onnx"
    suffix = ".onnx"
    capabilities = Capabilities(
        precisions=("fp32", "int8"), dynamic_batch=True, image_input=True, layouts=("NCHW",)
    )

    def export(
        self, model: torch.nn.Module, spec: IOSpec, out: Path, options: ExportOptions
    ) -> dict[str, Any]:
        _require()
        import onnx

        if options.opset < 18:
            raise UnsupportedOptionError(
                f"--opset {options.opset}: the dynamo exporter needs opset >= 18"
            )
        meta: dict[str, Any] = {"opset": options.opset}
        if options.precision == "fp32":
            export_fp32(model, spec, out, options)
        elif options.precision == "int8":
            meta["int8"] = self._export_int8(model, spec, out, options)
        else:
            raise UnsupportedOptionError(
                f"ONNX export supports {', '.join(self.capabilities.precisions)}, "
                f"not {options.precision}"
            )
        proto = onnx.load(str(out))
        meta["op_histogram"] = dict(Counter(n.op_type for n in proto.graph.node).most_common())
        return meta

    def _export_int8(
        self, model: torch.nn.Module, spec: IOSpec, out: Path, options: ExportOptions
    ) -> dict[str, Any]:
        from ..quantize.auto import auto_exclude, onnx_setup
        from ..quantize.onnx_int8 import Int8Config, quantize_int8

        if options.calibration is None:
            raise UnsupportedOptionError("INT8 export needs calibration images (--calib DIR)")
        with tempfile.TemporaryDirectory(prefix="lsnet-onnx-") as tmp:
            _, pre, groups = prepare_int8(model, spec, Path(tmp), options)
            calib = calibration_inputs(options.calibration.images, spec)
            exclude = tuple(options.int8_exclude)
            auto_report = None
            if options.int8_auto:
                if options.auto_reference is None:
                    raise UnsupportedOptionError("--int8-exclude auto needs validation images")
                val, reference = options.auto_reference
                setup = onnx_setup(pre, groups, spec, calib, val, reference, self.runner)
                exclude, auto_report = auto_exclude(
                    setup, options.min_cosine,
                    Int8Config(method=options.calibration.method,
                               percentile=options.calibration.percentile, exclude=exclude),
                )
            config = Int8Config(
                method=options.calibration.method,
                percentile=options.calibration.percentile,
                exclude=exclude,
            )
            info = quantize_int8(pre, out, groups, spec.input_name, calib, config)
            info["calibration_source"] = options.calibration.source
            info["group_sizes"] = dict(Counter(groups.values()))
            if auto_report is not None:
                info["auto"] = auto_report
            return info

    def embed_metadata(self, path: Path, metadata: dict[str, str]) -> None:
        import onnx

        proto = onnx.load(str(path))
        del proto.metadata_props[:]
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name = "lsnet-deploy"
        onnx.save(proto, str(path))

    def read_metadata(self, path: Path) -> dict[str, str]:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return {p.key: p.value for p in proto.metadata_props}

    def can_run(self) -> bool:
        return True

    def runner(self, path: Path, threads: int | None = None) -> Runner:
        _require()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ExportError(f"ONNX Runtime cannot load {path}: {type(e).__name__}: {e}") from e
        name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(None, {name: x})[0])

        return run


def calibration_inputs(images: torch.Tensor, spec: IOSpec) -> list[np.ndarray]:
    """Calibration batches (one image each) in the artifact's input format: normalized float
    images are converted back to 0..255 (uint8 for uint8 inputs) for image-input graphs."""
    from ..fidelity import to_artifact_input

    return [to_artifact_input(images[i : i + 1], spec) for i in range(images.shape[0])]
