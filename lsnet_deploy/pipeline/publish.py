"""Publishing one planned artifact: the only step of an export with side effects.

``publish(job, fused, data, provenance)``: export into a temp folder next to the destination,
embed the metadata natively, validate the artifact in its real runtime against the unfused
PyTorch model (or structurally where it cannot run), then rename it into place and write the
JSON sidecar. Any error or interrupt before the rename leaves nothing behind; a failed
validation keeps the artifact and marks its sidecar ``"status": "failed"``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import file_sha256
from ..exporters import ExportData, Exporter, ExportResult, ExportTask, tool_names
from ..exporters.ranks import rank_histogram
from ..fidelity import comparable_outputs, compare_logits, run_artifact
from ..metadata import build_metadata, sidecar_path, to_native, write_json_atomic
from .plan import ExportJob

__all__ = ["Artifact", "Progress", "Provenance", "publish"]

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
class Provenance:
    """What every artifact of one export shares: where the weights came from, the
    fused-vs-unfused record, and the held-out photos with the unfused model's logits."""

    weights: dict[str, Any]
    reparam: dict[str, Any]
    val_images: torch.Tensor
    val_source: str
    val_logits: torch.Tensor


def publish(job: ExportJob, fused: torch.nn.Module, data: ExportData, provenance: Provenance,
            say: Progress) -> Artifact:
    """Write, validate and publish one artifact (see the module docstring)."""
    exp, options, dest = job.exporter, job.options, job.dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp = tmp_dir / dest.name
    try:
        say(f"exporting {dest.name}")
        result = exp.export(fused, job.spec, tmp, ExportTask(options, data))
        info = dict(result.details)
        ranks = rank_histogram(tmp)  # read from the file: what an NPU compiler sees
        if ranks is not None:
            info["tensor_ranks"] = ranks
        if options.precision != "fp32":
            info["min_cosine"] = options.min_cosine
        meta = _metadata(job, provenance, result)
        exp.embed_metadata(tmp, to_native(meta))
        validation = _validate(exp, job, tmp, info, provenance, say)
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
            "reparameterization": provenance.reparam,
            "validation": validation,
        }
        companions = [dest.parent / c.name for c in result.companions]
        if companions:
            sidecar["companions"] = [c.name for c in companions]
        for src, target in zip(result.companions, companions, strict=True):
            if target.exists() or target.is_symlink():
                _remove(target)
            os.replace(src, target)
        if dest.exists() or dest.is_symlink():
            _remove(dest)
        os.replace(tmp, dest)
        write_json_atomic(sidecar_path(dest), sidecar)
        log.info("%s: %s", dest.name, validation["summary"])
        return Artifact(dest, exp.name, options.precision, size, digest, validation,
                        passed, meta, info)
    finally:  # on any error or interrupt nothing half-written stays behind
        _remove(tmp_dir)


def _metadata(job: ExportJob, provenance: Provenance, result: ExportResult) -> dict[str, Any]:
    meta = build_metadata(variant=job.variant, spec=job.spec, precision=job.options.precision,
                          fmt=job.format, weights=provenance.weights,
                          dynamic_batch=job.options.dynamic_batch, tools=tool_names())
    meta.update(result.metadata)  # e.g. TFLite's INT8 boundary types and quantization
    return meta


def _validate(exp: Exporter, job: ExportJob, path: Path, info: dict[str, Any],
              provenance: Provenance, say: Progress) -> dict[str, Any]:
    """The validation record: in the real runtime against PyTorch, or structural where the
    format cannot run on this machine."""
    if not exp.can_run():
        say(f"checking {path.name} structurally (it cannot run on this OS)")
        return exp.structural_validation(path, job.spec, job.options.precision, info)
    say(f"validating {path.name} on {provenance.val_images.shape[0]} images")
    outputs, expected = comparable_outputs(
        run_artifact(exp.runner(path), provenance.val_images, job.spec), provenance.val_logits,
        exp.output_kind(info))
    report = compare_logits(outputs, expected, job.options.precision, provenance.val_source,
                            job.options.min_cosine)
    return {**report.to_dict(), **exp.validation_facts(), "summary": report.summary()}


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
