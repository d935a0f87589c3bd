"""CoreML exporter: an ML Program ``.mlpackage`` (fp16 / fp32 compute, 8-bit weights).

Conversion: ``torch.export`` of the fused model, ``run_decompositions({})``, then
``coremltools.convert(..., convert_to="mlprogram")`` with a minimum deployment target of iOS 17
(``ios=16|17|18``). Precisions:

* ``fp16`` (the default for CoreML): fp16 weights and compute;
* ``fp32``: fp32 weights and compute;
* ``int8``: 8-bit weights, ``linear_quantize_weights`` (per-channel symmetric) on the fp16
  program; activations stay fp16;
* ``w8a8``: int8 weights and activations, calibrated in PyTorch with coremltools'
  ``LinearQuantizer`` on the calibration photos (its fake-quant fidelity is measured against
  the reference), traced with ``torch.jit.trace`` and converted; the activations become
  quantize/dequantize pairs that the Neural Engine runs in int8 (A17 Pro / M4 and later).

App-ready I/O: with image input (the CoreML default) the input is an ``ImageType`` (RGB, the
model's size) whose ``scale = 1/255`` and per-channel ``bias = -mean`` give ``x/255 - mean``;
the per-channel ``1/std`` cannot be a single ImageType scale, so it is folded into the stem's
first convolution (:func:`fold_std_into_stem`; zero padding stays zero, so this is exact).
With ``classifier`` (default for 1000-class models) the model is a Core ML classifier with the
ImageNet class names: outputs ``classLabel`` and ``classLabel_probs`` (softmax inside), so
Vision's ``VNCoreMLRequest`` works as is; otherwise the output is the ``logits`` array.

A CoreML model runs only on macOS: elsewhere :meth:`CoremlExporter.runner` raises and the
pipeline validates the package structurally (:func:`structural_checks`).
"""

from __future__ import annotations

import copy
import logging
import platform
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ExportError, MissingDependencyError, UnsupportedOptionError, first_line
from ..spec import IOSpec
from .base import Capabilities, ExportOptions, Runner

log = logging.getLogger(__name__)

__all__ = [
    "IOS_SPEC_VERSION",
    "CoremlExporter",
    "can_run_coreml",
    "fold_std_into_stem",
    "mil_summary",
    "structural_checks",
]

IOS_SPEC_VERSION = {16: 7, 17: 8, 18: 9}
"""Minimum deployment target -> Core ML specification version of an ML Program."""

AUTHOR = "lsnet-deploy (LSNet by Ao Wang, Hui Chen, Zijia Lin, Jungong Han, Guiguang Ding)"
LICENSE = "MIT (LSNet code and official weights)"


def _require() -> Any:
    try:
        import coremltools as ct
    except ImportError as e:
        raise MissingDependencyError(
            "CoreML export needs coremltools: pip install -c constraints.txt "
            "'lsnet-deploy[coreml]'"
        ) from e
    return ct


def can_run_coreml() -> bool:
    """Core ML models can be executed only on macOS."""
    return platform.system() == "Darwin"


def fold_std_into_stem(model: nn.Module, std: tuple[float, float, float]) -> nn.Module:
    """A copy of a fused LSNet whose first convolution takes ``x * std`` instead of ``x``:
    ``conv(W / std_c)`` on ``(p/255 - mean)`` equals ``conv(W)`` on ``(p/255 - mean) / std``.

    The stem's first layer is a 3x3 stride-2 conv with zero padding; a zero input pixel is zero
    in both parametrizations, so the fold is exact at the borders too.
    """
    folded = copy.deepcopy(model)
    stem = getattr(folded, "patch_embed", None)
    first = stem[0] if isinstance(stem, nn.Sequential) and len(stem) else None
    if not isinstance(first, nn.Conv2d) or first.in_channels != 3:
        raise ExportError("folding the input std needs a fused model whose stem starts with a "
                          "3-channel Conv2d (run reparameterize first)")
    with torch.no_grad():
        scale = 1.0 / torch.tensor(std, dtype=first.weight.dtype).view(1, 3, 1, 1)
        first.weight.mul_(scale)
    return folded


class _Probabilities(nn.Module):
    """Logits -> softmax probabilities (the classifier output Core ML expects)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=-1)


def _class_labels(num_classes: int) -> list[str]:
    if num_classes == 1000:
        from ..labels import imagenet_classes

        return list(imagenet_classes())
    return [f"class_{i}" for i in range(num_classes)]


def mil_summary(spec: Any) -> dict[str, Any]:
    """Op histogram, highest tensor rank, weight dtypes and class-label count of an ML Program.

    Walks every function and block (nested blocks included). The weight dtype of a ``conv`` or
    ``linear`` op is the dtype of the constant feeding its ``weight`` input: ``FLOAT16`` /
    ``FLOAT32`` for a plain ``const``, the stored data type (``INT8``) when the weight comes out
    of a ``constexpr_*`` dequantization op.
    """
    from coremltools.proto import MIL_pb2

    ops: Counter[str] = Counter()
    weights: Counter[str] = Counter()
    max_rank = 0
    const_dtype: dict[str, str] = {}
    const_len: dict[str, int] = {}
    weight_inputs: list[str] = []
    label_inputs: list[str] = []
    inline_labels: list[int] = []

    def dtype_name(value_type: Any) -> str:
        return str(MIL_pb2.DataType.Name(value_type.tensorType.dataType))

    def walk(block: Any) -> None:
        nonlocal max_rank
        for op in block.operations:
            ops[op.type] += 1
            for out in op.outputs:
                if out.type.HasField("tensorType"):
                    max_rank = max(max_rank, int(out.type.tensorType.rank))
            if op.type == "const" and "val" in op.attributes:
                val = op.attributes["val"]
                if val.type.HasField("tensorType"):
                    const_dtype[op.outputs[0].name] = dtype_name(val.type)
                    dims = val.type.tensorType.dimensions
                    if len(dims) == 1:
                        const_len[op.outputs[0].name] = int(dims[0].constant.size)
            elif op.type.startswith("constexpr_"):
                for name in ("data", "quantized_data", "indices"):
                    if name in op.attributes:
                        const_dtype[op.outputs[0].name] = dtype_name(op.attributes[name].type)
                        break
            if op.type in ("conv", "linear") and "weight" in op.inputs:
                weight_inputs.extend(a.name for a in op.inputs["weight"].arguments)
            if op.type == "classify" and "classes" in op.inputs:
                for arg in op.inputs["classes"].arguments:
                    if arg.name:
                        label_inputs.append(arg.name)
                    elif arg.HasField("value"):  # the labels are stored inline, as a list
                        imm = arg.value.immediateValue
                        if imm.HasField("list"):
                            inline_labels.append(len(imm.list.values))
                        elif imm.HasField("tensor"):
                            inline_labels.append(len(imm.tensor.strings.values))
            for inner in op.blocks:
                walk(inner)

    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            walk(block)
    for name in weight_inputs:
        weights[const_dtype.get(name, "computed")] += 1
    labels = sum(const_len.get(name, 0) for name in label_inputs) + sum(inline_labels)
    return {"op_histogram": dict(ops.most_common()), "max_rank": max_rank,
            "weight_dtypes": dict(weights.most_common()), "class_labels": labels}


def structural_checks(path: Path, spec: IOSpec, precision: str, ios: int,
                      classifier: bool) -> dict[str, Any]:
    """What can be validated without running the model (any OS): reload, spec version,
    input/output descriptions, MIL op histogram, weight dtypes, rank <= 5, metadata.

    Returns ``{"checks": {name: bool}, "details": {...}, "passed": bool}``.
    """
    ct = _require()
    model = ct.models.MLModel(str(path), skip_model_load=True)
    mspec = model.get_spec()
    summary = mil_summary(mspec)
    desc = mspec.description
    inp = desc.input[0]
    h, w = spec.img_size
    if spec.value_range == "0..255":
        it = inp.type.imageType
        input_ok = (inp.type.WhichOneof("Type") == "imageType" and it.width == w
                    and it.height == h
                    and ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(
                        it.colorSpace) == "RGB")
    else:
        shape = list(inp.type.multiArrayType.shape)
        input_ok = inp.type.WhichOneof("Type") == "multiArrayType" and shape == [
            spec.batch or 1, 3, h, w]
    out_names = [o.name for o in desc.output]
    if classifier:
        output_ok = (desc.predictedFeatureName == "classLabel"
                     and {"classLabel", "classLabel_probs"} <= set(out_names)
                     and summary["class_labels"] == spec.num_classes)
    else:
        output_ok = out_names == list(spec.output_names)
    dtypes = summary["weight_dtypes"]
    expected = {"fp16": "FLOAT16", "fp32": "FLOAT32", "int8": "INT8", "w8a8": "INT8"}[precision]
    weights_ok = set(dtypes) == {expected}  # every conv / linear weight
    meta = dict(mspec.description.metadata.userDefined)
    checks = {
        "reloads": True,
        "spec_version": mspec.specificationVersion == IOS_SPEC_VERSION[ios],
        "ml_program": mspec.WhichOneof("Type") == "mlProgram",
        "input": bool(input_ok),
        "outputs": bool(output_ok),
        "weights": bool(weights_ok),
        "rank_le_5": summary["max_rank"] <= 5,
        "activations": (summary["op_histogram"].get("quantize", 0) > 0) == (precision == "w8a8"),
        "metadata": bool(desc.metadata.author and desc.metadata.license
                         and desc.metadata.versionString and desc.metadata.shortDescription),
    }
    details = {"spec_version": mspec.specificationVersion, "inputs": [inp.name],
               "outputs": out_names, **summary, "user_defined_metadata_keys": sorted(meta)}
    return {"checks": checks, "details": details, "passed": all(checks.values())}


class CoremlExporter:
    """CoreML ML Program (``.mlpackage``): fp16 (default), fp32, 8-bit weights."""

    name = "coreml"
    suffix = ".mlpackage"
    capabilities = Capabilities(
        precisions=("fp16", "fp32", "int8", "w8a8"),
        dynamic_batch=False,
        image_input=True,
        layouts=("NCHW",),
        default_image_input=True,
        classifier=True,
        int8_exclude=False,
        calibrated=("w8a8",),
    )

    def export(
        self, model: torch.nn.Module, spec: IOSpec, out: Path, options: ExportOptions
    ) -> dict[str, Any]:
        ct = _require()
        if options.ios not in IOS_SPEC_VERSION:
            raise UnsupportedOptionError(f"--ios {options.ios}: supported 16, 17, 18")
        classifier = bool(options.classifier)
        module: nn.Module = model
        h, w = spec.img_size
        shape = (options.batch, 3, h, w)
        if spec.value_range == "0..255":
            module = fold_std_into_stem(model, spec.std)
            inputs = [ct.ImageType(name=spec.input_name, shape=shape, scale=1.0 / 255.0,
                                   bias=[-m for m in spec.mean],
                                   color_layout=ct.colorlayout.RGB)]
        else:
            inputs = [ct.TensorType(name=spec.input_name, shape=shape)]
        kwargs: dict[str, Any] = {}
        if classifier:
            module = _Probabilities(module)
            kwargs["classifier_config"] = ct.ClassifierConfig(
                _class_labels(spec.num_classes), predicted_feature_name="classLabel")
        else:
            kwargs["outputs"] = [ct.TensorType(name=n) for n in spec.output_names]
        example = torch.randn(shape)
        precision = ct.precision.FLOAT32 if options.precision == "fp32" else \
            ct.precision.FLOAT16
        target = {16: ct.target.iOS16, 17: ct.target.iOS17, 18: ct.target.iOS18}[options.ios]
        info: dict[str, Any] = {}
        try:
            if options.precision == "w8a8":
                source, info["w8a8"] = self._w8a8(model, spec, options, classifier)
            else:
                with torch.no_grad():
                    source = torch.export.export(module.eval(),
                                                 (example,)).run_decompositions({})
            mlmodel = ct.convert(source, inputs=inputs, convert_to="mlprogram",
                                 minimum_deployment_target=target, compute_precision=precision,
                                 **kwargs)
            if options.precision == "int8":
                import coremltools.optimize as cto

                # every conv / linear weight (the default threshold skips small ones)
                op_config = cto.coreml.OpLinearQuantizerConfig(
                    mode="linear_symmetric", dtype="int8", granularity="per_channel",
                    weight_threshold=0)
                config = cto.coreml.OptimizationConfig(
                    op_type_configs={"conv": op_config, "linear": op_config})
                mlmodel = cto.coreml.linear_quantize_weights(mlmodel, config=config)
        except (UnsupportedOptionError, ExportError):
            raise
        except Exception as e:
            raise ExportError(f"coremltools conversion failed: {type(e).__name__}: "
                              f"{first_line(e)}") from e
        mlmodel.author = AUTHOR
        mlmodel.license = LICENSE
        mlmodel.short_description = (
            f"LSNet image classifier ({spec.num_classes} classes), {h}x{w} RGB input"
        )
        from .. import __version__

        mlmodel.version = __version__
        mlmodel.save(str(out))
        summary = mil_summary(mlmodel.get_spec())
        return {"converter": "coremltools", "ios": options.ios, "classifier": classifier,
                "compute_precision": "fp32" if options.precision == "fp32" else "fp16",
                **info, **summary}

    def _w8a8(self, model: nn.Module, spec: IOSpec, options: ExportOptions,
              classifier: bool) -> tuple[Any, dict[str, Any]]:
        """Calibrate int8 weights + activations in PyTorch with coremltools' LinearQuantizer
        (fake quantization, symmetric), report its fidelity against the reference logits, and
        return the finalized model traced with ``torch.jit.trace`` (``torch.export`` does not
        take the quantized model) for conversion."""
        from coremltools.optimize.torch.quantization import (
            LinearQuantizer,
            LinearQuantizerConfig,
            ModuleLinearQuantizerConfig,
        )

        from ..fidelity import compare_logits

        if options.calibration is None:
            raise UnsupportedOptionError("--w8a8 needs calibration images (--calib DIR)")
        image = spec.value_range == "0..255"
        std = torch.tensor(spec.std).view(1, 3, 1, 1)
        base = fold_std_into_stem(model, spec.std) if image else copy.deepcopy(model)

        def prepare_input(x: torch.Tensor) -> torch.Tensor:  # normalized -> the module's input
            return x * std if image else x

        calib = options.calibration.images
        # observers run from step 0 and are never frozen: pure post-training calibration; min/max
        # activation observers (the default moving average barely moves off the first image)
        config = LinearQuantizerConfig(global_config=ModuleLinearQuantizerConfig(
            quantization_scheme="symmetric", activation_observer="min_max",
            milestones=[0, 10**9, 10**9, 0]))
        quantizer = LinearQuantizer(base.eval(), config)
        prepared = quantizer.prepare(example_inputs=(prepare_input(calib[:1]),), inplace=True)
        prepared.train()
        with torch.no_grad():
            for i in range(calib.shape[0]):
                quantizer.step()
                prepared(prepare_input(calib[i : i + 1]))
        prepared.eval()
        final = quantizer.finalize(inplace=True).eval()
        info: dict[str, Any] = {
            "method": "coremltools.optimize.torch LinearQuantizer (symmetric int8 weights and "
                      "activations), calibrated in PyTorch",
            "calibration_source": options.calibration.source,
            "linear_quantize_activations": "not used: it calibrates by running the Core ML "
                                           "model, which only macOS can do",
        }
        if options.auto_reference is not None:
            val, reference = options.auto_reference
            with torch.no_grad():
                fake = final(prepare_input(val)).numpy()
            report = compare_logits(fake, reference, "int8", "held-out (PyTorch fake-quant)",
                                    options.min_cosine)
            info["fake_quant_fidelity"] = {**report.to_dict(), "summary": report.summary()}
        module: nn.Module = _Probabilities(final) if classifier else final
        h, w = spec.img_size
        with torch.no_grad():
            traced = torch.jit.trace(module, prepare_input(calib[:1]).expand(
                options.batch, 3, h, w).contiguous())
        return traced, info

    def embed_metadata(self, path: Path, metadata: dict[str, str]) -> None:
        ct = _require()
        model = ct.models.MLModel(str(path), skip_model_load=True)
        for key, value in metadata.items():
            model.user_defined_metadata[key] = value
        with tempfile.TemporaryDirectory(prefix=".meta-", dir=path.parent) as tmp:
            staged = Path(tmp) / path.name
            model.save(str(staged))
            shutil.rmtree(path)
            shutil.move(str(staged), str(path))

    def read_metadata(self, path: Path) -> dict[str, str]:
        ct = _require()
        model = ct.models.MLModel(str(path), skip_model_load=True)
        return dict(model.user_defined_metadata)

    def can_run(self) -> bool:
        return can_run_coreml()

    def structural_validation(self, path: Path, spec: IOSpec, options: ExportOptions,
                              info: dict[str, Any] | None = None) -> dict[str, Any]:
        """The validation record of a package that cannot run here (see
        :func:`structural_checks`); for W8A8 the PyTorch fake-quant fidelity (``info``) must
        also meet the gate."""
        result = structural_checks(path, spec, options.precision, options.ios,
                                   bool(options.classifier))
        fake = (info or {}).get("w8a8", {}).get("fake_quant_fidelity")
        if fake is not None:
            result["checks"]["w8a8_fake_quant_fidelity"] = bool(fake["passed"])
            result["fake_quant_fidelity"] = fake
            result["passed"] = all(result["checks"].values())
        failed = [k for k, ok in result["checks"].items() if not ok]
        status = "PASS" if result["passed"] else "FAIL"
        summary = (f"{status} structural checks ({len(result['checks'])}: reload, spec "
                   f"version {result['details']['spec_version']}, I/O, weights "
                   f"{result['details']['weight_dtypes']}, max rank "
                   f"{result['details']['max_rank']}, metadata)"
                   + (f"; failed: {', '.join(failed)}" if failed else "")
                   + (f"; W8A8 fake-quant mean cosine {fake['mean_cosine']:.5f} "
                      f"({fake['gate']})" if fake else "")
                   + "; numeric check not run: CoreML models run only on macOS "
                   "(run `lsnet-deploy validate` there)")
        return {"mode": "structural", **result, "gate": "all structural checks",
                "summary": summary}

    def runner(self, path: Path, threads: int | None = None,
               compute_units: str = "ALL") -> Runner:
        ct = _require()
        if not can_run_coreml():
            raise UnsupportedOptionError(
                "a CoreML model runs only on macOS; here the package is checked structurally")
        units = getattr(ct.ComputeUnit, compute_units)
        model = ct.models.MLModel(str(path), compute_units=units)
        spec = model.get_spec()
        inp = spec.description.input[0]
        is_image = inp.type.WhichOneof("Type") == "imageType"
        classifier = spec.description.predictedFeatureName == "classLabel"

        def run(x: np.ndarray) -> np.ndarray:
            from PIL import Image

            rows = []
            for i in range(x.shape[0]):
                if is_image:
                    arr = np.ascontiguousarray(x[i].transpose(1, 2, 0)).astype(np.uint8)
                    feed: Any = Image.fromarray(arr, "RGB")
                else:
                    feed = x[i : i + 1].astype(np.float32)
                out = model.predict({inp.name: feed})
                if classifier:
                    probs = out["classLabel_probs"]
                    labels = _class_labels(len(probs))
                    p = np.array([probs[label] for label in labels], dtype=np.float64)
                    rows.append(np.log(np.clip(p, 1e-12, None)))
                else:
                    rows.append(np.asarray(out["logits"], dtype=np.float64).reshape(-1))
            return np.stack(rows)

        return run
