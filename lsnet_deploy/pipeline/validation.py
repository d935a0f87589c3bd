"""Re-validating an artifact exported earlier: the artifact-vs-PyTorch comparison of the
export, run again from what the artifact says about itself (sidecar or embedded metadata)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..checkpoint import file_sha256
from ..errors import CheckpointError, OutputError, UnsupportedOptionError
from ..exporters import exporter_for_path, exporters
from ..fidelity import comparable_outputs, compare_logits, run_artifact
from ..metadata import from_native, read_sidecar
from ..preprocess import Preprocess, list_images, load_files
from ..spec import IOSpec
from .images import split_images

__all__ = ["spec_from_metadata", "validate"]


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

    The model, input size and preprocessing come from the sidecar (or, without one, from the
    metadata embedded in the artifact). ``weights`` defaults to what the artifact was exported
    from (the same file if it still exists with the same sha256, the official checkpoint, or
    the same synthetic random weights). ``images``: a folder (default: the held-out
    calibration photos). ``compute_units``: the accelerator of formats that have them (CoreML
    on macOS: ``ALL``, ``CPU_ONLY``, ``CPU_AND_GPU``, ``CPU_AND_NE``); formats that cannot run
    here are re-checked structurally. Returns ``{"artifact", "passed", "validation", ...}``.
    """
    from ..api import create_model

    path = Path(artifact)
    if not path.exists():
        raise OutputError(f"artifact not found: {path}")
    exp = exporter_for_path(path)
    if compute_units is not None and compute_units not in exp.capabilities.accelerators:
        having = [e.name for e in exporters() if e.capabilities.accelerators]
        raise UnsupportedOptionError(f"--compute-units applies to {', '.join(having)} "
                                     f"artifacts, not {exp.name}")
    sidecar = read_sidecar(path)
    meta = sidecar["metadata"] if sidecar else from_native(exp.read_metadata(path))
    if "variant" not in meta:
        raise UnsupportedOptionError(f"{path} has no lsnet-deploy metadata and no sidecar")
    variant, spec = str(meta["variant"]), spec_from_metadata(meta)
    precision = str(meta.get("precision", "fp32"))
    details = (sidecar or {}).get("export", {})
    if not exp.can_run():
        structural = exp.structural_validation(path, spec, precision, details)  # type: ignore[arg-type]
        return {"artifact": str(path), "variant": variant, "precision": precision,
                "passed": bool(structural["passed"]), "validation": structural}
    source_weights = _source_weights(meta) if weights is ... else weights
    reference = create_model(variant, source_weights, img_size=spec.img_size)  # type: ignore[arg-type]
    pre = Preprocess(img_size=reference.img_size)
    if images is not None:
        val, source = load_files(list_images(images), pre, source=str(images)).tensors, str(images)
    else:
        split = split_images(pre, need_calib=False)
        val, source = split.val, split.val_source
    if min_cosine is None and sidecar:
        min_cosine = details.get("min_cosine")
    outputs = run_artifact(exp.runner(path, threads, accelerator=compute_units), val, spec)
    with torch.no_grad():
        outputs, expected = comparable_outputs(outputs, reference(val), exp.output_kind(details))
    report = compare_logits(outputs, expected, precision, source, min_cosine)
    return {"artifact": str(path), "variant": variant, "precision": precision,
            "passed": report.passed,
            "validation": {**report.to_dict(), **exp.validation_facts(),
                           "summary": report.summary()}}


def spec_from_metadata(meta: dict[str, Any]) -> IOSpec:
    """The IO spec an artifact's metadata describes."""
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


def _source_weights(meta: dict[str, Any]) -> str | None:
    """The weights an artifact was exported from: random, official, or the same file."""
    from ..api import OFFICIAL, RANDOM

    kind = meta.get("weights_kind")
    if kind == RANDOM:
        return None
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
