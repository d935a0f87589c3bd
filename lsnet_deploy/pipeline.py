"""The export pipeline shared by every format.

``export(model_or_variant, format=...)`` does, for each format:

1. build (or take) the model; keep the unfused model as the reference ("truth") and
   reparameterize a copy, recording the fused-vs-unfused difference on the validation photos;
2. derive the :class:`~lsnet_deploy.spec.IOSpec` and check the options against the exporter's
   capabilities (an unsupported option is an error, never silently rewritten);
3. export to a temp file next to the destination, embed the metadata natively;
4. validate the artifact in its real runtime against the unfused PyTorch model on held-out
   photos; apply the gate;
5. rename into place and write the JSON sidecar (atomically). A failed validation keeps the
   artifact, marks the sidecar ``"status": "failed"`` and raises
   :class:`~lsnet_deploy.errors.ValidationFailedError`. Any error or interrupt before the rename
   leaves no file behind.

Artifacts are named ``<out>/<variant>/<variant>_<img>_<precision>[...].<ext>``.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import file_sha256
from .errors import (
    ImageError,
    OutputError,
    UnsupportedOptionError,
    ValidationFailedError,
)
from .exporters import REGISTRY, CalibrationOptions, ExportOptions, get_exporter
from .fidelity import DEFAULT_MIN_COSINE, compare_logits, run_artifact
from .lsnet import LSNet, to_hw
from .metadata import build_metadata, sidecar_path, to_native, write_json_atomic
from .paths import calibration_dir, default_export_dir
from .preprocess import Preprocess, list_images, load_files
from .reparam import is_reparameterized, reparameterize
from .spec import IOSpec

__all__ = ["Artifact", "ImageSplit", "artifact_name", "export", "split_images", "validate"]

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Artifact:
    """One exported file and what is known about it."""

    path: Path
    format: str
    precision: str
    size_bytes: int
    sha256: str
    validation: dict[str, Any]
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    export_info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


@dataclass(frozen=True)
class ImageSplit:
    """Calibration and validation images (normalized ``(N, 3, H, W)``) and their sources."""

    calib: torch.Tensor | None
    calib_source: str
    val: torch.Tensor
    val_source: str


def split_images(
    pre: Preprocess,
    calib_dir: Path | None = None,
    val_dir: Path | None = None,
    calib_size: int | None = None,
    need_calib: bool = True,
) -> ImageSplit:
    """Load calibration and validation photos.

    With ``val_dir``, every image of ``calib_dir`` may calibrate and ``val_dir`` validates.
    Without it, the calibration folder is split: every 4th image (sorted by name) is held out
    for validation, the rest calibrates. ``calib_size`` limits the calibration images (a
    warning with the counts when fewer are available).
    """
    cdir = Path(calib_dir) if calib_dir is not None else calibration_dir()
    files = list_images(cdir)
    if not files:
        raise ImageError(f"no image files in calibration folder {cdir}")
    if val_dir is not None:
        val_files, calib_files = list_images(val_dir), files
        val_source = str(val_dir)
    else:
        val_files = files[::4]
        calib_files = [f for i, f in enumerate(files) if i % 4]
        val_source = f"{cdir} (held out: every 4th image)"
        if not calib_files:  # a single image: use it for both, but say so
            calib_files = files
            log.warning("only %d image in %s: calibrating and validating on it", len(files), cdir)
    val = load_files(val_files, pre, source=val_source).tensors
    calib = None
    calib_source = ""
    if need_calib:
        if calib_size is not None and calib_size > len(calib_files):
            log.warning(
                "asked for %d calibration images but %s has %d available; using %d",
                calib_size, cdir, len(calib_files), len(calib_files),
            )
        loaded = load_files(calib_files, pre, limit=calib_size, source=str(cdir))
        calib = loaded.tensors
        calib_source = f"{cdir} ({len(loaded.paths)} images)"
    return ImageSplit(calib, calib_source, val, val_source)


def artifact_name(
    variant: str,
    spec: IOSpec,
    precision: str,
    suffix: str,
    dynamic: bool,
    mixed: bool,
    default_layout: str = "NCHW",
    io: str | None = None,
    default_image_input: bool = False,
    extra: str = "",
) -> str:
    """``lsnet_t_224_int8.onnx``; non-default options add ``_img`` (image input), ``_nchw``
    (a layout other than the format's default), ``_io-float32`` (INT8 boundary type), ``_dyn``
    (dynamic batch) or ``_b4`` (static batch 4); ``mix`` marks INT8 with float groups."""
    h, w = spec.img_size
    size = f"{h}" if h == w else f"{h}x{w}"
    name = f"{variant}_{size}_{precision}{'mix' if mixed else ''}"
    image = spec.value_range == "0..255"
    if image and not default_image_input:
        name += "_img"
    elif default_image_input and not image:
        name += "_tensor"
    name += extra
    if spec.layout != default_layout:
        name += f"_{spec.layout.lower()}"
    if io:
        name += f"_io-{io}"
    if dynamic:
        name += "_dyn"
    elif spec.batch and spec.batch != 1:
        name += f"_b{spec.batch}"
    return name + suffix


def _coreml_suffix(supports: bool, classifier: bool, num_classes: int, ios: int | None) -> str:
    """CoreML name parts for non-default choices: ``_logits`` / ``_cls``, ``_ios16``."""
    if not supports:
        return ""
    out = ""
    default_cls = num_classes == 1000
    if classifier != default_cls:
        out += "_cls" if classifier else "_logits"
    if ios is not None and ios != 17:
        out += f"_ios{ios}"
    return out


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise OutputError(f"output folder {folder} is not writable: {e.strerror or e}") from e


def _reference_logits(model: LSNet, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images)


def export(
    model: str | LSNet,
    format: str = "onnx",
    *,
    weights: str | Path | None = "official",
    precision: str | None = None,
    img_size: int | tuple[int, int] | None = None,
    batch: int = 1,
    dynamic_batch: bool = False,
    image_input: bool | None = None,
    opset: int = 18,
    calib: Path | None = None,
    calib_size: int | None = None,
    calib_method: str = "minmax",
    val: Path | None = None,
    min_cosine: float | None = None,
    int8_exclude: Sequence[str] = (),
    layout: str | None = None,
    io: str | None = None,
    ios: int | None = None,
    classifier: bool | None = None,
    output_dir: Path | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> list[Artifact]:
    """Export an LSNet to one format (or ``"all"``) and validate every artifact.

    Args:
        model: a variant name (built with ``weights``) or an :class:`LSNet` instance (unfused
            preferred, so the fused-vs-unfused difference can be recorded).
        format: ``onnx``, ``tflite``, ``coreml`` or ``all``.
        weights: for a variant name: checkpoint path, ``"official"`` or ``None``/``"random"``.
        precision: ``fp32``, ``fp16`` or ``int8`` (8-bit weights for CoreML); ``None``: the
            format's default (CoreML fp16, the others fp32; fp32 for ``"all"``).
        image_input: uint8 / image input with normalization inside; ``None``: the format's
            default (on for CoreML, off for the others).
        int8_exclude: op groups or node names kept in float; ``["auto"]`` searches the groups
            to keep in float until ``min_cosine`` is reached.
        layout: input layout ``NCHW`` / ``NHWC``; ``None``: the format's default (TFLite NHWC,
            ONNX NCHW).
        io: INT8 boundary tensor type (``int8``, ``float32``, ``uint8``; TFLite only);
            ``None``: the format's default.
        ios: CoreML minimum deployment target (16, 17, 18; default 17).
        classifier: CoreML classifier (class label + probabilities) instead of logits;
            ``None``: on for 1000-class models.
        Other arguments: see ``lsnet-deploy export --help``.

    Returns:
        The artifacts written. Raises :class:`ValidationFailedError` (after writing and
        recording) if an artifact misses its gate.
    """
    say = progress or (lambda _msg: None)
    formats = list(REGISTRY) if format == "all" else [format]
    exporters = [get_exporter(f) for f in formats]
    explicit_precision = precision is not None
    if precision is None:
        precision = exporters[0].capabilities.precisions[0] if len(exporters) == 1 else "fp32"
    if precision not in ("fp32", "fp16", "int8", "w8a8"):
        raise UnsupportedOptionError(f"unknown precision {precision!r}")
    if batch < 1:
        raise UnsupportedOptionError(f"--batch must be >= 1, got {batch}")
    if dynamic_batch and batch != 1:
        raise UnsupportedOptionError("--batch and --dynamic-batch are exclusive")
    exclude = tuple(int8_exclude)
    auto = "auto" in exclude
    if exclude and precision != "int8":
        raise UnsupportedOptionError("--int8-exclude only applies with --int8")
    if explicit_precision and precision == "fp32" and min_cosine is not None:
        raise UnsupportedOptionError("--min-cosine gates reduced precision; fp32 is gated by "
                                     "max |diff| <= 1e-3")
    for exp in exporters:
        caps = exp.capabilities
        if precision not in caps.precisions:
            raise UnsupportedOptionError(
                f"{exp.name} export does not support {precision} "
                f"(supported: {', '.join(caps.precisions)})"
            )
        if dynamic_batch and not caps.dynamic_batch:
            raise UnsupportedOptionError(f"{exp.name} export does not support --dynamic-batch")
        if image_input and not caps.image_input:
            raise UnsupportedOptionError(f"{exp.name} export does not support --image-input")
        if exclude and not caps.int8_exclude:
            raise UnsupportedOptionError(f"{exp.name} export does not support --int8-exclude")
        if classifier and not caps.classifier:
            raise UnsupportedOptionError(f"--classifier applies to CoreML, not {exp.name}")
        if ios is not None and not caps.classifier:
            raise UnsupportedOptionError(f"--ios applies to CoreML, not {exp.name}")
        if layout is not None and layout.upper() not in caps.layouts:
            raise UnsupportedOptionError(
                f"{exp.name} export supports layouts {', '.join(caps.layouts)}, not {layout}"
            )
        if io is not None:
            if precision != "int8" and io != "float32":
                raise UnsupportedOptionError(f"--io {io} needs --int8 (fp32/fp16 models have "
                                             "float32 inputs and outputs)")
            if precision == "int8" and io not in caps.io_types:
                raise UnsupportedOptionError(
                    f"{exp.name} INT8 export supports --io {', '.join(caps.io_types)}, not {io}"
                )

    out_root = Path(output_dir) if output_dir is not None else default_export_dir()
    _check_writable(out_root)

    if isinstance(model, str):
        from .api import create_model

        size = img_size if img_size is not None else 224
        reference = create_model(model, weights, img_size=size)
        variant = model
    else:
        if img_size is not None and to_hw(img_size) != model.img_size:
            raise UnsupportedOptionError(
                f"--img-size {img_size} does not match the given model ({model.img_size}); "
                "build the model for that size"
            )
        reference = model
        variant = str(getattr(model, "variant", "lsnet"))
    source = getattr(reference, "weights_source", None)
    weights_info = (
        {"kind": source.kind, "path": source.path, "sha256": source.sha256} if source else {}
    )
    pre = Preprocess(img_size=reference.img_size)
    say("loading images")
    quantized = any(precision in e.capabilities.calibrated for e in exporters)
    images = split_images(pre, calib, val, calib_size, need_calib=quantized)
    ref_logits = _reference_logits(reference, images.val)

    fused = copy.deepcopy(reference)
    say("reparameterizing")
    if is_reparameterized(reference):
        reparam = {"max_abs_diff": None, "note": "model was already fused"}
    else:
        rep = reparameterize(fused, images.val)
        reparam = {"max_abs_diff": rep.max_abs_diff, "params_unfused": rep.params_before,
                   "params_fused": rep.params_after,
                   "remaining_batchnorms": len(rep.remaining_batchnorms)}

    artifacts: list[Artifact] = []
    failures: list[str] = []
    for exp in exporters:
        caps = exp.capabilities
        img_in = caps.default_image_input if image_input is None else image_input
        cls = caps.classifier and (classifier if classifier is not None
                                   else reference.num_classes == 1000)
        spec = IOSpec(
            img_size=reference.img_size,
            batch=None if dynamic_batch else batch,
            dtype="uint8" if img_in else "float32",
            value_range="0..255" if img_in else "normalized",
            layout=(layout.upper() if layout else exp.capabilities.layouts[0]),  # type: ignore[arg-type]
            num_classes=reference.num_classes,
            output_names=("classLabel", "classLabel_probs") if cls else ("logits",),
        )
        gate = min_cosine if min_cosine is not None else DEFAULT_MIN_COSINE.get(precision)
        calibration = None
        if precision in caps.calibrated and images.calib is not None:
            if calib_method not in ("minmax", "percentile"):
                raise UnsupportedOptionError(
                    f"--calib-method {calib_method!r}; use minmax or percentile"
                )
            calibration = CalibrationOptions(images.calib, images.calib_source, calib_method)  # type: ignore[arg-type]
        options = ExportOptions(
            precision=precision,  # type: ignore[arg-type]
            batch=batch,
            dynamic_batch=dynamic_batch,
            image_input=img_in,
            opset=opset,
            calibration=calibration,
            int8_exclude=tuple(e for e in exclude if e != "auto"),
            int8_auto=auto,
            min_cosine=gate if gate is not None else 0.99,
            auto_reference=((images.val, ref_logits.numpy())
                            if auto or precision == "w8a8" else None),
            io_type=io if precision == "int8" else None,
            ios=ios or 17,
            classifier=cls,
        )
        mixed = bool(options.int8_exclude) or auto
        folder = out_root / variant
        folder.mkdir(parents=True, exist_ok=True)
        name = artifact_name(variant, spec, precision, exp.suffix, dynamic_batch, mixed,
                             default_layout=exp.capabilities.layouts[0],
                             io=io if precision == "int8" and io != exp.capabilities.io_types[0]
                             else None, default_image_input=caps.default_image_input,
                             extra=_coreml_suffix(caps.classifier, cls, reference.num_classes,
                                                  ios))
        dest = folder / name
        side = sidecar_path(dest)
        if (dest.exists() or side.exists()) and not force:
            raise OutputError(f"{dest} already exists; pass --force to overwrite it")
        artifact = _export_one(exp, fused, reference, spec, options, dest, variant,
                               weights_info, reparam, images, ref_logits, say)
        artifacts.append(artifact)
        if not artifact.passed:
            failures.append(f"{dest.name}: {artifact.validation['summary']}")
    if failures:
        hint = ""
        if precision == "w8a8":
            hint = " try --int8 (8-bit weights, fp16 activations) or lower --min-cosine"
        elif precision == "int8":
            hint = (" try --int8-exclude auto (keeps the most sensitive op groups in float), "
                    "--calib-method percentile, or lower --min-cosine")
        error = ValidationFailedError(
            "validation failed (artifact kept, sidecar marked failed): "
            + "; ".join(failures) + (";" + hint if hint else "")
        )
        error.artifacts = artifacts
        raise error
    return artifacts


def _export_one(
    exp: Any,
    fused: LSNet,
    reference: LSNet,
    spec: IOSpec,
    options: ExportOptions,
    dest: Path,
    variant: str,
    weights_info: dict[str, Any],
    reparam: dict[str, Any],
    images: ImageSplit,
    ref_logits: torch.Tensor,
    say: Progress,
) -> Artifact:
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp = tmp_dir / dest.name
    try:
        say(f"exporting {dest.name}")
        info = exp.export(fused, spec, tmp, options)
        if options.precision != "fp32":
            info["min_cosine"] = options.min_cosine
        meta = build_metadata(variant=variant, spec=spec, precision=options.precision,
                              fmt=exp.name, weights=weights_info,
                              dynamic_batch=options.dynamic_batch)
        for key in ("io_type", "inputs", "outputs"):  # boundary types and quantization (TFLite)
            if key in info:
                meta[key] = info[key]
        exp.embed_metadata(tmp, to_native(meta))
        if exp.can_run():
            say(f"validating {dest.name} on {images.val.shape[0]} images")
            reference_out = ref_logits
            if info.get("classifier"):  # the artifact returns log-probabilities
                reference_out = torch.log_softmax(ref_logits, dim=-1)
            logits = run_artifact(exp.runner(tmp), images.val, spec)
            report = compare_logits(logits, reference_out.numpy(), options.precision,
                                    images.val_source, options.min_cosine)
            validation = {**report.to_dict(), "summary": report.summary()}
            passed = report.passed
        else:
            say(f"checking {dest.name} structurally (it cannot run on this OS)")
            validation = exp.structural_validation(tmp, spec, options, info)
            passed = bool(validation["passed"])
        size = _size(tmp)
        digest = file_sha256(tmp) if tmp.is_file() else ""
        sidecar = {
            "artifact": dest.name,
            "format": exp.name,
            "precision": options.precision,
            "status": "passed" if passed else "failed",
            "size_bytes": size,
            "sha256": digest,
            "metadata": meta,
            "export": info,
            "reparameterization": reparam,
            "validation": validation,
        }
        if dest.exists() or dest.is_symlink():
            _remove(dest)
        os.replace(tmp, dest)
        write_json_atomic(sidecar_path(dest), sidecar)
        log.info("%s: %s", dest.name, validation["summary"])
        return Artifact(dest, exp.name, options.precision, size, digest, validation,
                        passed, meta, info)
    finally:  # on any error or interrupt nothing half-written stays behind
        _remove(tmp_dir)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def validate(
    artifact: Path,
    *,
    weights: str | Path | None | object = ...,
    images: Path | None = None,
    min_cosine: float | None = None,
    threads: int | None = None,
    compute_units: str | None = None,
) -> dict[str, Any]:
    """Re-run the artifact-vs-PyTorch comparison for an artifact exported earlier.

    CoreML packages run only on macOS (``compute_units``: ``ALL``, ``CPU_ONLY``,
    ``CPU_AND_GPU``, ``CPU_AND_NE``); elsewhere they are re-checked structurally.

    The model, input size and preprocessing come from the sidecar (or, without one, from the
    metadata embedded in the artifact). ``weights`` defaults to what the artifact was exported
    from (the same file if it still exists with the same sha256, the official checkpoint, or the
    same synthetic random weights). ``images``: a folder (default: the held-out calibration
    photos). Returns ``{"artifact", "passed", "validation", ...}``.
    """
    from .api import OFFICIAL, RANDOM, create_model
    from .errors import CheckpointError
    from .exporters import exporter_for_path
    from .metadata import from_native, read_sidecar

    path = Path(artifact)
    if not path.exists():
        raise OutputError(f"artifact not found: {path}")
    exp = exporter_for_path(str(path))
    sidecar = read_sidecar(path)
    meta = sidecar["metadata"] if sidecar else from_native(exp.read_metadata(path))
    if "variant" not in meta:
        raise UnsupportedOptionError(f"{path} has no lsnet-deploy metadata and no sidecar")
    variant = str(meta["variant"])
    h, w = meta["img_size"]
    shape = meta.get("input_shape", [1])
    spec = IOSpec(
        img_size=(int(h), int(w)),
        batch=None if meta.get("dynamic_batch") else int(shape[0]),
        input_name=meta.get("input_name", "image"),
        dtype=meta.get("input_dtype", "float32"),
        layout=meta.get("layout", "NCHW"),
        value_range=meta.get("value_range", "normalized"),
        mean=tuple(meta.get("mean", (0.485, 0.456, 0.406))),  # type: ignore[arg-type]
        std=tuple(meta.get("std", (0.229, 0.224, 0.225))),  # type: ignore[arg-type]
        num_classes=int(meta.get("num_classes", 1000)),
        output_names=tuple(meta.get("output_names", ("logits",))),
    )
    precision = str(meta.get("precision", "fp32"))
    export_info = (sidecar or {}).get("export", {})
    if not exp.can_run():
        options = ExportOptions(precision=precision,  # type: ignore[arg-type]
                                ios=int(export_info.get("ios", 17)),
                                classifier=bool(export_info.get("classifier", False)))
        structural = exp.structural_validation(path, spec, options, export_info)
        return {"artifact": str(path), "variant": str(meta["variant"]), "precision": precision,
                "passed": bool(structural["passed"]), "validation": structural}
    if weights is ...:
        kind = meta.get("weights_kind")
        if kind == RANDOM:
            weights = None
        elif kind == OFFICIAL:
            weights = OFFICIAL
        else:
            src = meta.get("weights_path")
            if not src or not Path(src).is_file():
                raise CheckpointError(
                    f"the checkpoint {path.name} was exported from ({src}) is not available; "
                    "pass --weights PATH"
                )
            if meta.get("source_checkpoint_sha256") and file_sha256(src) != meta[
                "source_checkpoint_sha256"
            ]:
                raise CheckpointError(f"{src} changed since the export (sha256 differs); "
                                      "pass --weights PATH")
            weights = src
    reference = create_model(variant, weights, img_size=(int(h), int(w)))  # type: ignore[arg-type]
    pre = Preprocess(img_size=reference.img_size)
    if images is not None:
        val = load_files(list_images(images), pre, source=str(images)).tensors
        source = str(images)
    else:
        split = split_images(pre, need_calib=False)
        val, source = split.val, split.val_source
    if min_cosine is None and sidecar:
        min_cosine = sidecar.get("export", {}).get("min_cosine")
    if compute_units is not None:
        if exp.name != "coreml":
            raise UnsupportedOptionError("--compute-units applies to CoreML packages")
        runner = exp.runner(path, threads, compute_units=compute_units)
    else:
        runner = exp.runner(path, threads)
    logits = run_artifact(runner, val, spec)
    ref_t = _reference_logits(reference, val)
    if export_info.get("classifier"):  # the artifact returns log-probabilities
        ref_t = torch.log_softmax(ref_t, dim=-1)
    ref = ref_t.numpy()
    report = compare_logits(logits, ref, precision, source, min_cosine)
    return {"artifact": str(path), "variant": variant, "precision": precision,
            "passed": report.passed,
            "validation": {**report.to_dict(), "summary": report.summary()}}


def quant_report(
    variant: str,
    *,
    weights: str | Path | None = "official",
    img_size: int | tuple[int, int] = 224,
    calib: Path | None = None,
    calib_size: int | None = None,
    calib_method: str = "minmax",
    val: Path | None = None,
    progress: Progress | None = None,
    format: str = "onnx",  # noqa: A002 - the CLI's word
) -> dict[str, Any]:
    """Per-op-group INT8 sensitivity (see :mod:`lsnet_deploy.quantize.auto`).

    ``format="onnx"`` quantizes with ONNX Runtime and runs each candidate in ONNX Runtime;
    ``format="tflite"`` quantizes with PT2E and measures the fake-quantized PyTorch model.
    Returns ``{"variant", "format", "full_int8_cosine", "groups": [...], ...}``; every cosine
    is the mean logit cosine vs the unfused PyTorch model on the validation photos.
    """
    from .api import create_model
    from .quantize.auto import sensitivity
    from .quantize.groups import GROUPS

    if format not in ("onnx", "tflite"):
        raise UnsupportedOptionError(f"quant-report supports onnx and tflite, not {format}")
    say = progress or (lambda _msg: None)
    reference = create_model(variant, weights, img_size=img_size)
    pre = Preprocess(img_size=reference.img_size)
    images = split_images(pre, calib, val, calib_size, need_calib=True)
    assert images.calib is not None
    ref_logits = _reference_logits(reference, images.val).numpy()
    fused = copy.deepcopy(reference)
    reparameterize(fused, None)
    with tempfile.TemporaryDirectory(prefix="lsnet-qreport-") as tmp:
        if format == "onnx":
            from .exporters.onnx import OnnxExporter, calibration_inputs, prepare_int8
            from .quantize.auto import onnx_setup
            from .quantize.onnx_int8 import Int8Config

            spec = IOSpec(img_size=reference.img_size, num_classes=reference.num_classes)
            exp = OnnxExporter()
            say("exporting fp32 ONNX")
            fp32, prep, groups = prepare_int8(fused, spec, Path(tmp), ExportOptions())
            fp32_logits = run_artifact(exp.runner(fp32), images.val, spec)
            calib_inputs = calibration_inputs(images.calib, spec)
            setup = onnx_setup(prep, groups, spec, calib_inputs, images.val, ref_logits,
                               exp.runner)
            base: Any = Int8Config(method=calib_method)
        else:
            from .exporters.tflite import _require, convertible_module, tflite_quant_setup
            from .quantize.tflite_int8 import TfliteInt8Config

            _require()
            if calib_method != "minmax":
                raise UnsupportedOptionError("--calib-method applies to ONNX only")
            spec = IOSpec(img_size=reference.img_size, num_classes=reference.num_classes,
                          layout="NHWC")
            module = convertible_module(fused, spec)
            from .fidelity import to_artifact_input

            with torch.no_grad():
                fp32_logits = module(torch.from_numpy(to_artifact_input(images.val, spec)))
            fp32_logits = fp32_logits.numpy()
            setup = tflite_quant_setup(module, spec, images.calib, images.val, ref_logits)
            base = TfliteInt8Config()
        fp32_rep = compare_logits(fp32_logits, ref_logits, "fp32", images.val_source)
        baseline, rows = sensitivity(setup, base, progress=lambda g: say(f"quantizing group {g}"))
    return {
        "variant": variant,
        "format": format,
        "weights": reference.weights_source.__dict__,
        "calibration": images.calib_source,
        "calibration_method": calib_method if format == "onnx" else "PT2E observers",
        "validation_images": images.val_source,
        "n_validation_images": int(images.val.shape[0]),
        "fp32_cosine": fp32_rep.mean_cosine,
        **baseline,
        "groups": [{**r.__dict__, "description": GROUPS[r.group]} for r in rows],
    }
