"""Re-validating an artifact exported earlier: the artifact-vs-PyTorch comparison of the
export, run again from what the artifact says about itself (sidecar or embedded metadata).

Nothing the artifact says is taken on trust (see :mod:`lsnet_deploy.sidecar`): the sidecar's
structure, its sha256 against the artifact and its metadata against the embedded one are
checked, then the input the metadata describes against the input the artifact really takes,
all before any model is built. Gates are range-checked up front (:func:`check_gates`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import file_sha256
from ..errors import (
    ArtifactError,
    CheckpointError,
    OutputError,
    UnsupportedOptionError,
)
from ..exporters import Exporter, exporter_for_path, exporters
from ..fidelity import (
    check_gates,
    check_min_cosine,
    comparable_outputs,
    compare_logits,
    run_artifact,
)
from ..metadata import from_native
from ..preprocess import Preprocess, list_images, load_files
from ..progress import Say
from ..sidecar import REDO, Sidecar, check_metadata, load_sidecar, verify_sidecar
from ..spec import IOSpec, preprocess_from_recipe
from .cross_arch import DEFAULT_EMULATED_IMAGES, check_arch, emulated_record
from .images import split_images

__all__ = ["DescribedArtifact", "describe_artifact", "source_weights", "spec_from_metadata",
           "validate"]

log = logging.getLogger(__name__)


def validate(
    artifact: Path,
    *,
    weights: str | Path | None | object = ...,
    images: Path | None = None,
    min_cosine: float | None = None,
    min_photo_cosine: float | None = None,
    threads: int | None = None,
    compute_units: str | None = None,
    arch: str = "host",
    max_images: int | None = None,
    cpu: str | None = None,
    progress: Say | None = None,
) -> dict[str, Any]:
    """Re-run the artifact-vs-PyTorch comparison for an artifact exported earlier.

    The model, input size and preprocessing come from the sidecar (or, without one, from the
    metadata embedded in the artifact). ``weights`` defaults to what the artifact was exported
    from (the same file if it still exists with the same sha256, the official checkpoint, or
    the same synthetic random weights). ``images``: a folder (default: the held-out
    calibration photos). Reduced precisions' gates, in [0, 1]: ``min_cosine`` (default: the
    sidecar's, else the precision's) and ``min_photo_cosine``, on every photo (default: the
    sidecar's, if any). ``compute_units``: the accelerator of formats that have them (CoreML
    on macOS: ``ALL``, ``CPU_ONLY``, ``CPU_AND_GPU``, ``CPU_AND_NE``); formats that cannot
    run here are re-checked structurally. ``arch="aarch64"``: gate the run on the aarch64
    kernels (emulated ``cpu``) and compare it with the host's, see
    :mod:`~lsnet_deploy.pipeline.cross_arch`. ``max_images``: the first N images only
    (default: all; 4 under emulation). ``progress``: see :mod:`lsnet_deploy.progress`.
    Returns ``{"artifact", "passed", "validation", ...}``.

    Raises:
        ArtifactError: a malformed sidecar or embedded metadata, a sidecar whose sha256 or
            metadata does not match the artifact, or metadata describing another input than
            the artifact takes (all before any work is done).
        UnsupportedOptionError: a gate outside [0, 1], a folder that is not an artifact, an
            artifact without metadata, an ``arch`` it cannot run on.
        MissingDependencyError: ``arch="aarch64"`` without its environment.
    """
    from ..api import create_model

    check_gates(min_cosine, min_photo_cosine)
    path = Path(artifact)
    if not path.exists():
        raise OutputError(f"artifact not found: {path}")
    exp = _exporter(path)
    _check_accelerator(exp, compute_units)
    check_arch(arch, exp.name, max_images, cpu)
    max_images = max_images or (DEFAULT_EMULATED_IMAGES if arch != "host" else None)
    # 1. what the artifact says about itself, checked against the artifact
    sidecar, meta, source, todo = _described(path, exp)
    variant, spec = str(meta["variant"]), spec_from_metadata(meta)
    precision = str(meta.get("precision", "fp32"))
    details = sidecar.export if sidecar is not None else {}
    gates = _gates(sidecar, min_cosine, min_photo_cosine)
    if not exp.can_run():
        structural = exp.structural_validation(path, spec, precision, details)  # type: ignore[arg-type]
        return {"artifact": str(path), "variant": variant, "precision": precision,
                "passed": bool(structural["passed"]), "validation": structural}
    _check_real_input(exp, path, spec, source, todo)
    # 2. the reference and the images
    chosen = source_weights(meta) if weights is ... else weights
    reference = create_model(variant, chosen, img_size=spec.img_size)  # type: ignore[arg-type]
    val, images_from, names = _held_out(images, meta, reference.img_size, max_images)
    # 3. run and compare
    outputs = run_artifact(exp.runner(path, threads, accelerator=compute_units), val, spec,
                           progress)
    with torch.no_grad():
        logits = reference(val)
    if tuple(outputs.shape) != tuple(logits.shape):
        raise ArtifactError(f"{path.name}: it returns {tuple(outputs.shape)} where the model "
                            f"{source} describes returns {tuple(logits.shape)}; {todo}")
    outputs, expected = comparable_outputs(outputs, logits, kind := exp.output_kind(details))
    report = compare_logits(outputs, expected, precision, images_from, *gates, names)
    record = {**report.to_dict(), **exp.validation_facts(), "summary": report.summary()}
    if arch == "aarch64":  # the same images on the phone kernels, beside this run
        record = emulated_record(path, exp.name, val, spec, logits, (outputs, report), kind=kind,
                                 precision=precision, gates=gates, threads=threads, cpu=cpu,
                                 progress=progress, names=names)
    return {"artifact": str(path), "variant": variant, "precision": precision,
            "passed": bool(record["passed"]), "validation": record}


def _check_accelerator(exp: Exporter, compute_units: str | None) -> None:
    """Refuse ``compute_units`` for a format without accelerators."""
    if compute_units is not None and compute_units not in exp.capabilities.accelerators:
        having = [e.name for e in exporters() if e.capabilities.accelerators]
        raise UnsupportedOptionError(f"--compute-units applies to {', '.join(having)} "
                                     f"artifacts, not {exp.name}")


def _described(path: Path, exp: Exporter) -> tuple[Sidecar | None, dict[str, Any], str, str]:
    """``(sidecar, metadata, where it comes from, what to do if it is wrong)``: the sidecar,
    verified against the artifact, or else the artifact's embedded metadata, checked."""
    sidecar = load_sidecar(path)
    if sidecar is not None:
        verify_sidecar(path, sidecar, exp)
        return sidecar, sidecar.metadata, sidecar.path.name, REDO
    meta = from_native(exp.read_metadata(path))
    if "variant" not in meta:
        raise UnsupportedOptionError(f"{path} has no lsnet-deploy metadata and no sidecar")
    check_metadata(meta, f"{path.name}: embedded metadata")
    return None, meta, "its embedded metadata", "re-export the artifact"


def _preprocess(meta: dict[str, Any], img_size: tuple[int, int]) -> Preprocess:
    """The preprocessing the artifact records (metadata schema 2), else the default one at
    its size; a recorded recipe lsnet-deploy cannot reproduce is refused."""
    recipe = meta.get("preprocessing")
    if not isinstance(recipe, dict):
        return Preprocess(img_size=img_size)
    try:
        return preprocess_from_recipe(recipe)
    except UnsupportedOptionError as e:
        raise ArtifactError(f"the artifact's preprocessing: {e}") from None


def _held_out(images: Path | None, meta: dict[str, Any], img_size: tuple[int, int],
              max_images: int | None = None) -> tuple[torch.Tensor, str, tuple[str, ...]]:
    """The validation images ``(N, 3, H, W)`` preprocessed as ``meta`` records, where they
    come from and their file names: ``images`` (a folder), else the held-out calibration
    photos; the first ``max_images`` if given."""
    pre = _preprocess(meta, img_size)
    if images is not None:
        loaded = load_files(list_images(images), pre, source=str(images))
        val, source, names = loaded.tensors, str(images), tuple(f.name for f in loaded.paths)
    else:
        split = split_images(pre, need_calib=False)
        val, source, names = split.val, split.val_source, split.val_names
    if max_images is not None and max_images < val.shape[0]:
        return val[:max_images], f"{source} (first {max_images})", names[:max_images]
    return val, source, names


def _exporter(path: Path) -> Exporter:
    """The format of ``path``; a plain folder is refused (validate checks one artifact)."""
    try:
        return exporter_for_path(path)
    except UnsupportedOptionError:
        if path.is_dir():
            raise UnsupportedOptionError(
                f"{path} is a folder, not an artifact; pass one artifact file in it") from None
        raise


def _gates(sidecar: Sidecar | None, min_cosine: float | None,
           min_photo_cosine: float | None) -> tuple[float | None, float | None]:
    """The gates to apply: those given, else the sidecar's (checked), else ``None``."""
    if sidecar is None:
        return min_cosine, min_photo_cosine
    side = sidecar.path.name
    return (min_cosine if min_cosine is not None
            else _sidecar_gate(sidecar.export, "min_cosine", side),
            min_photo_cosine if min_photo_cosine is not None
            else _sidecar_gate(sidecar.export, "min_photo_cosine", side))


def _sidecar_gate(export: dict[str, Any], key: str, side: str) -> float | None:
    """The sidecar's gate ``export[key]`` (``min_cosine`` or ``min_photo_cosine``), refused
    when it is outside [0, 1] (an edited sidecar must not make the gate meaningless)."""
    kind = "a mean cosine" if key == "min_cosine" else "a cosine"
    try:
        return check_min_cosine(export.get(key), f"{side}: export.{key}", kind)
    except UnsupportedOptionError as e:
        flag = "--" + key.replace("_", "-")
        raise ArtifactError(f"{e}; the sidecar was edited: {REDO}, or pass {flag}") from None


def _check_real_input(exp: Exporter, path: Path, spec: IOSpec, source: str, todo: str) -> None:
    """Compare the input ``spec`` describes (from ``source``) with the input the artifact
    really takes, read by loading it as the benchmark does (formats that cannot be loaded
    for timing here, e.g. CoreML off macOS, were checked against their embedded metadata).
    A file that does not load is left to the runner, which says why."""
    if not exp.can_bench():
        return
    try:
        session = exp.bench_session(path, 1, None)
    except Exception as e:  # noqa: BLE001 - the runner reports what is wrong with the file
        log.debug("input of %s not read: %s", path, e)
        return
    try:
        real = list(session.input_shape)
    finally:
        session.close()
    described = list(spec.input_shape)
    # the dimensions must be the same; their order may be the format's own convention (Core ML
    # reports an image input as [1, 3, H, W] whatever the metadata's layout says)
    same = len(real) == len(described) and sorted(real[1:]) == sorted(described[1:]) and (
        spec.batch is None or real[0] == spec.batch)
    if not same:
        shown = ["batch" if d is None else d for d in described]
        raise ArtifactError(f"{path.name}: {source} describes the input {shown} but the "
                            f"artifact takes {real}; {todo}")


def spec_from_metadata(meta: dict[str, Any]) -> IOSpec:
    """The IO spec an artifact's metadata describes (checked first with
    :func:`lsnet_deploy.sidecar.check_metadata`)."""
    h, w = meta["img_size"]
    shape = meta.get("input_shape", [1])
    return IOSpec(
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


def source_weights(meta: dict[str, Any]) -> str | None:
    """The weights an artifact was exported from: random, official, or the same file."""
    from ..api import OFFICIAL, RANDOM, RANDOM_OUTLIERS

    kind = meta.get("weights_kind")
    if kind == RANDOM:
        return RANDOM_OUTLIERS if meta.get("weights_path") == RANDOM_OUTLIERS else None
    if kind == OFFICIAL:
        return OFFICIAL
    src = meta.get("weights_path")
    if not src or not Path(src).is_file():
        raise CheckpointError(f"the checkpoint the artifact was exported from ({src}) is not "
                              "available; pass --weights PATH")
    if meta.get("source_checkpoint_sha256") and file_sha256(src) != meta[
        "source_checkpoint_sha256"
    ]:
        raise CheckpointError(f"{src} changed since the export (sha256 differs); "
                              "pass --weights PATH")
    return str(src)


@dataclass(frozen=True)
class DescribedArtifact:
    """An artifact and what it says about itself, checked against it (``evaluate`` runs it).

    Attributes:
        path: the artifact; ``exporter``: its format.
        metadata: the sidecar's metadata (verified) or else the embedded metadata (checked).
        spec: the input it takes and the outputs it gives (``(B, num_classes)``).
        precision: ``fp32``, ``fp16``, ``int8``, ...
        output_kind: what its runner returns, ``logits`` or ``log_probs`` (classifiers).
        preprocess: the preprocessing it records (the default one at its size if none).
        source: where the metadata came from (the sidecar's name or "its embedded metadata").
    """

    path: Path
    exporter: Exporter
    metadata: dict[str, Any]
    spec: IOSpec
    precision: str
    output_kind: str
    preprocess: Preprocess
    source: str


def describe_artifact(artifact: Path) -> DescribedArtifact:
    """Step 1 of :func:`validate` alone: the artifact's description (sidecar verified against
    it, or its embedded metadata), and the input it describes checked against the input the
    artifact takes, before any model is built.

    Raises:
        OutputError: no such artifact.
        UnsupportedOptionError: a folder that is not an artifact, an artifact without
            metadata, a format that cannot run on this machine.
        ArtifactError: see :func:`validate`.
    """
    path = Path(artifact)
    if not path.exists():
        raise OutputError(f"artifact not found: {path}")
    exp = _exporter(path)
    if not exp.can_run():
        raise UnsupportedOptionError(f"{path.name}: {exp.name} artifacts cannot run on this "
                                     "machine")
    sidecar, meta, source, todo = _described(path, exp)
    spec = spec_from_metadata(meta)
    _check_real_input(exp, path, spec, source, todo)
    details = sidecar.export if sidecar is not None else {}
    return DescribedArtifact(
        path=path, exporter=exp, metadata=meta, spec=spec,
        precision=str(meta.get("precision", "fp32")),
        output_kind=exp.output_kind(details), preprocess=_preprocess(meta, spec.img_size),
        source=source)
