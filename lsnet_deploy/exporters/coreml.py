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

Validation runs the saved package against PyTorch everywhere: on macOS in Core ML itself
(``compute_units`` as asked), elsewhere in the reference executor of :mod:`lsnet_deploy.mil`,
which reads the saved ML Program (spec and weight blobs) and executes it op by op (fp16 where
the program is fp16, 8-bit weights dequantized, W8A8 quantize / dequantize, the ImageType
scale and bias and its colour order, the classifier's labels). The same gates apply as for
every format (:func:`lsnet_deploy.fidelity.compare_logits`); :meth:`CoremlExporter.validation_facts`
says which of the two ran. :func:`structural_checks` remain for inspecting a package without
running it. Benchmarks need Core ML, hence macOS.
"""

from __future__ import annotations

import copy
import logging
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..errors import BenchmarkError, ExportError, UnsupportedOptionError, first_line
from ..portable import to_portable_form
from ..spec import IOSpec
from .base import (
    Capabilities,
    Exporter,
    ExportResult,
    ExportTask,
    OutputKind,
    Precision,
    Runner,
)
from .coreml_checks import (
    IOS_SPEC_VERSION,
    check_class_labels,
    expected_class_labels,
    mil_summary,
    package_io,
    probability_floor,
    structural_checks,
    structural_summary,
)
from .coreml_checks import require_coremltools as _require
from .coreml_options import DEFAULT_IOS, W8A8_SCHEMES, CoremlOptions
from .session import Session, random_input

log = logging.getLogger(__name__)

__all__ = [
    "COMPUTE_UNITS",
    "DEFAULT_IOS",
    "IOS_SPEC_VERSION",
    "W8A8_SCHEMES",
    "CoremlExporter",
    "CoremlOptions",
    "can_run_coreml",
    "fold_std_into_stem",
    "mil_summary",
    "structural_checks",
]

COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")
"""Core ML compute units (``coremltools.ComputeUnit`` names)."""

AUTHOR = "lsnet-deploy (LSNet by Ao Wang, Hui Chen, Zijia Lin, Jungong Han, Guiguang Ding)"
LICENSE = "MIT (LSNet code and official weights)"


def can_run_coreml() -> bool:
    """Whether Core ML itself can execute models here (macOS only); elsewhere packages run in
    the reference executor (:mod:`lsnet_deploy.mil`)."""
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


class CoremlExporter(Exporter):
    """CoreML ML Program (``.mlpackage``): fp16 (default), fp32, 8-bit weights, W8A8.
    Runtime: Core ML on macOS, the MIL reference executor elsewhere (validation only)."""

    name = "coreml"
    suffixes = (".mlpackage", ".mlmodel")
    runtime = "coreml"
    extra = "coreml"
    tools = ("coremltools",)
    capabilities = Capabilities(
        precisions=("fp16", "fp32", "int8", "w8a8"),
        dynamic_batch=False,
        image_input=True,
        layouts=("NCHW",),
        default_image_input=True,
        int8_exclude=False,
        calibrated=("w8a8",),
        accelerators=COMPUTE_UNITS,
    )
    options_type = CoremlOptions

    def export(
        self, model: torch.nn.Module, spec: IOSpec, out: Path, task: ExportTask
    ) -> ExportResult:
        ct = _require()
        options = task.options
        fmt = options.format if isinstance(options.format, CoremlOptions) else CoremlOptions()
        ios = fmt.ios_target
        classifier = fmt.is_classifier(spec.num_classes)
        model = to_portable_form(model)  # rank <= 4, no GroupNorm/BatchNorm ops
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
                expected_class_labels(spec.num_classes), predicted_feature_name="classLabel")
        else:
            kwargs["outputs"] = [ct.TensorType(name=n) for n in spec.output_names]
        info: dict[str, Any] = {}
        try:
            if options.precision == "w8a8":
                source, info["w8a8"] = self._w8a8(model, spec, task, classifier, fmt.scheme)
            else:
                with torch.no_grad():
                    source = torch.export.export(module.eval(), (torch.randn(shape),)
                                                 ).run_decompositions({})
            mlmodel = _convert(ct, source, inputs, options.precision, ios, kwargs)
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
        mlmodel.version = __version__
        mlmodel.save(str(out))
        summary = mil_summary(mlmodel.get_spec())
        features = package_io(mlmodel.get_spec().description, options.batch)
        return ExportResult(details={
            "converter": "coremltools", "ios": ios, "classifier": classifier,
            "compute_precision": "fp32" if options.precision == "fp32" else "fp16",
            **info, **summary},
            metadata={**features, "output_kind": "probabilities" if classifier else "logits"})

    def _w8a8(self, model: nn.Module, spec: IOSpec, task: ExportTask,
              classifier: bool, scheme: str) -> tuple[Any, dict[str, Any]]:
        """Calibrate int8 weights + activations in PyTorch with coremltools' LinearQuantizer
        (fake quantization, ``scheme``: ``symmetric`` or ``affine``), report its fidelity
        against the reference logits, and return the finalized model traced with
        ``torch.jit.trace`` (``torch.export`` does not take the quantized model) for
        conversion."""
        from coremltools.optimize.torch.quantization import (
            LinearQuantizer,
            LinearQuantizerConfig,
            ModuleLinearQuantizerConfig,
        )

        from ..fidelity import compare_logits

        options, calibration = task.options, task.data.calibration
        if calibration is None:
            raise UnsupportedOptionError("--w8a8 needs calibration images (--calib DIR)")
        image = spec.value_range == "0..255"
        std = torch.tensor(spec.std).view(1, 3, 1, 1)
        base = fold_std_into_stem(model, spec.std) if image else copy.deepcopy(model)

        def prepare_input(x: torch.Tensor) -> torch.Tensor:  # normalized -> the module's input
            return x * std if image else x

        calib = calibration.images
        # observers run from step 0 and are never frozen: pure post-training calibration; min/max
        # activation observers (the default moving average barely moves off the first image)
        config = LinearQuantizerConfig(global_config=ModuleLinearQuantizerConfig(
            quantization_scheme=scheme, activation_observer="min_max",
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
            "method": f"coremltools.optimize.torch LinearQuantizer ({scheme} int8 weights "
                      "and activations), calibrated in PyTorch",
            "scheme": scheme,
            "calibration_source": calibration.source,
            "linear_quantize_activations": "not used: it calibrates by running the Core ML "
                                           "model, which only macOS can do",
        }
        if task.data.reference is not None:
            reference = task.data.reference
            with torch.no_grad():
                fake = final(prepare_input(reference.images)).numpy()
            report = compare_logits(fake, reference.logits, "int8", "held-out (PyTorch fake-quant)",
                                    options.min_cosine, options.min_photo_cosine,
                                    reference.names)
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
        """The runner works on every OS: Core ML on macOS, the reference executor elsewhere."""
        return True

    def can_bench(self) -> bool:
        """Timing needs Core ML itself: macOS only."""
        return can_run_coreml()

    def validation_facts(self) -> dict[str, Any]:
        """Where :meth:`runner` runs packages on this machine, for the validation record."""
        if can_run_coreml():
            return {"mode": "coreml", "runtime": "Core ML (macOS)"}
        from ..mil import EXECUTOR_NAME, EXECUTOR_VERSION

        return {"mode": "reference-executor",
                "executor": {"name": EXECUTOR_NAME, "version": EXECUTOR_VERSION}}

    def output_kind(self, details: dict[str, Any]) -> OutputKind:
        """A classifier package's runner returns log-probabilities."""
        return "log_probs" if details.get("classifier") else "logits"

    def structural_validation(self, path: Path, spec: IOSpec, precision: Precision,
                              details: dict[str, Any]) -> dict[str, Any]:
        """The validation record of a package that cannot run here (see
        :func:`structural_checks`); for W8A8 the PyTorch fake-quant fidelity recorded at
        export (``details["w8a8"]``) must also meet the gate."""
        result = structural_checks(path, spec, precision, int(details.get("ios", DEFAULT_IOS)),
                                   bool(details.get("classifier", False)))
        fake = (details.get("w8a8") or {}).get("fake_quant_fidelity")
        if fake is not None:
            result["checks"]["w8a8_fake_quant_fidelity"] = bool(fake["passed"])
            result["fake_quant_fidelity"] = fake
            result["passed"] = all(result["checks"].values())
        return {"mode": "structural", **result, "gate": "all structural checks",
                "summary": structural_summary(result, fake)}

    def runner(self, path: Path, threads: int | None = None,
               accelerator: str | None = None) -> Runner:
        """Core ML on ``accelerator`` (macOS), else the reference executor; one image per
        prediction. A classifier's labels must be the expected ones, in order."""
        if can_run_coreml():
            model = _load(path, accelerator or "ALL")
        elif accelerator is not None:
            raise UnsupportedOptionError(
                f"--compute-units {accelerator}: compute units need Core ML (macOS); here the "
                "package runs in the reference executor")
        else:
            _require()
            from ..mil import ReferenceModel

            model = ReferenceModel(path)
        spec = model.get_spec()
        inp = spec.description.input[0]
        is_image = inp.type.WhichOneof("Type") == "imageType"
        floor = None  # logits
        if spec.description.predictedFeatureName == "classLabel":
            check_class_labels(spec, path.name)
            floor = probability_floor(spec)

        def run(x: np.ndarray) -> np.ndarray:
            rows = [_predict_one(model, inp.name, x[i : i + 1], is_image, floor)
                    for i in range(x.shape[0])]
            return np.stack(rows)

        return run

    def bench_session(self, path: Path, threads: int | None, batch: int | None,
                      accelerator: str | None = None) -> Session:
        """One image per prediction; the thread count is Core ML's business."""
        if not can_run_coreml():
            raise BenchmarkError("CoreML models run only on macOS; on this machine benchmark "
                                 "the ONNX/TFLite artifacts, or use 'lsnet-deploy bench "
                                 "ios-harness'")
        if batch not in (None, 1):
            raise BenchmarkError("CoreML benchmarks run one image per prediction (batch 1)")
        unit = accelerator or "ALL"
        t0 = time.perf_counter()
        try:
            model = _load(path, unit)
        except Exception as e:
            raise BenchmarkError(f"{path}: Core ML cannot load it on {unit}: "
                                 f"{first_line(e)}") from e
        load_ms = (time.perf_counter() - t0) * 1e3
        feed, first_shape = _random_feed(model.get_spec(), path)
        return Session(lambda: model.predict(feed), first_shape, 1, load_ms)


def _convert(ct: Any, source: Any, inputs: list[Any], precision: str, ios: int,
             kwargs: dict[str, Any]) -> Any:
    """``ct.convert`` to an ML Program (fp32 or fp16 compute), then for ``int8`` per-channel
    symmetric 8-bit weights on every conv / linear (the default threshold skips small ones)."""
    compute = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    target = {16: ct.target.iOS16, 17: ct.target.iOS17, 18: ct.target.iOS18}[ios]
    mlmodel = ct.convert(source, inputs=inputs, convert_to="mlprogram",
                         minimum_deployment_target=target, compute_precision=compute, **kwargs)
    if precision == "int8":
        import coremltools.optimize as cto

        op_config = cto.coreml.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel",
            weight_threshold=0)
        config = cto.coreml.OptimizationConfig(
            op_type_configs={"conv": op_config, "linear": op_config})
        mlmodel = cto.coreml.linear_quantize_weights(mlmodel, config=config)
    return mlmodel




def _load(path: Path, unit: str) -> Any:
    """An ``MLModel`` on compute units ``unit`` (macOS): the one Core ML loader of validation
    and benchmarks."""
    ct = _require()
    if unit not in COMPUTE_UNITS:
        raise UnsupportedOptionError(f"unknown compute unit {unit}; known: "
                                     f"{', '.join(COMPUTE_UNITS)}")
    return ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, unit))


def _predict_one(model: Any, name: str, x: np.ndarray, is_image: bool,
                 floor: float | None) -> np.ndarray:
    """One image ``(1, 3, H, W)`` (uint8 pixels for an image input) -> logits, or for a
    classifier (``floor``: see :func:`probability_floor`) log-probabilities."""
    if is_image:
        from PIL import Image

        arr = np.ascontiguousarray(x[0].transpose(1, 2, 0)).astype(np.uint8)
        feed: Any = Image.fromarray(arr, "RGB")
    else:
        feed = x.astype(np.float32)
    out = model.predict({name: feed})
    if floor is not None:
        probs = out["classLabel_probs"]
        p = np.array([probs[label] for label in expected_class_labels(len(probs))],
                     dtype=np.float64)
        return np.log(np.clip(p, floor, None))
    return np.asarray(out["logits"], dtype=np.float64).reshape(-1)


def _random_feed(spec: Any, path: Path) -> tuple[dict[str, Any], list[int]]:
    """Fixed random inputs for every model input (an RGB image or a float32 array)."""
    rng = np.random.default_rng(0)
    feed: dict[str, Any] = {}
    first_shape: list[int] = []
    for inp in spec.description.input:
        kind = inp.type.WhichOneof("Type")
        if kind == "imageType":
            from PIL import Image

            w, h = int(inp.type.imageType.width), int(inp.type.imageType.height)
            pixels = rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)
            feed[inp.name] = Image.fromarray(pixels, "RGB")
            shape = [1, 3, h, w]
        elif kind == "multiArrayType":
            shape = [int(s) for s in inp.type.multiArrayType.shape]
            feed[inp.name] = random_input(shape, np.float32, rng)
        else:
            raise BenchmarkError(f"{path.name}: input {inp.name!r} of type {kind} is not "
                                 "supported by the benchmark")
        first_shape = first_shape or shape
    return feed, first_shape
