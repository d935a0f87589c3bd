"""Publishing one planned artifact: the only step of an export with side effects.

``publish(job, fused, data, provenance)``: export into a staging folder next to the
destination (:mod:`~lsnet_deploy.pipeline.staging`; the converters' temporary files go there
too), embed the metadata natively, validate the artifact in its real runtime against the
unfused PyTorch model (or structurally where it cannot run), write its JSON sidecar beside it,
then publish the artifact, its companions and its sidecar together. Any error or interrupt
before publishing leaves nothing behind (a disk that fills up while the sidecar is written
included); a failed validation keeps the artifact and marks its sidecar
``"status": "failed"``. File-system errors at the output location (disk full, permissions, a
file in the way) are :class:`~lsnet_deploy.errors.OutputError`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ExportError, LsnetDeployError, OutputError
from ..exporters import ExportData, Exporter, ExportResult, ExportTask, tool_names
from ..exporters.ranks import rank_histogram
from ..fidelity import comparable_outputs, compare_logits, run_artifact
from ..metadata import (
    build_metadata,
    sidecar_path,
    to_native,
    write_json_atomic,
    write_text_atomic,
)
from ..progress import Say
from ..sidecar import artifact_sha256
from .plan import ExportJob
from .staging import Staging, is_output_oserror, output_error, stage

__all__ = ["Artifact", "Progress", "Provenance", "artifact_sha256", "publish"]

log = logging.getLogger(__name__)

Progress = Say
"""The progress callback (:mod:`lsnet_deploy.progress`)."""


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
    fused-vs-unfused record, and the held-out photos (and their file names) with the unfused
    model's logits."""

    weights: dict[str, Any]
    reparam: dict[str, Any]
    val_images: torch.Tensor
    val_source: str
    val_logits: torch.Tensor
    val_names: tuple[str, ...] = ()


def publish(job: ExportJob, fused: torch.nn.Module, data: ExportData, provenance: Provenance,
            say: Progress) -> Artifact:
    """Write, validate and publish one artifact (see the module docstring)."""
    dest = job.dest
    try:
        with stage(dest) as staging:
            return _publish(job, fused, data, provenance, say, staging)
    except OutputError:
        raise
    except (OSError, LsnetDeployError) as e:
        cause = is_output_oserror(e)  # e.g. a converter that failed on a full disk
        if cause is not None:
            raise output_error(cause, dest.parent) from e
        raise


def _publish(job: ExportJob, fused: torch.nn.Module, data: ExportData, provenance: Provenance,
             say: Progress, staging: Staging) -> Artifact:
    exp, options, dest = job.exporter, job.options, job.dest
    tmp = staging.new / dest.name
    say(f"exporting {dest.name}")
    with staging.temp_files_here(), _converters_contained():
        result = exp.export(fused, job.spec, tmp, ExportTask(options, data, say))
    info = dict(result.details)
    if data.preparation is not None:
        info["preparation"] = data.preparation
    ranks = rank_histogram(tmp)  # read from the file: what an NPU compiler sees
    if ranks is not None:
        info["tensor_ranks"] = ranks
    if options.precision != "fp32":
        info["min_cosine"] = options.min_cosine
        if options.min_photo_cosine is not None:
            info["min_photo_cosine"] = options.min_photo_cosine
    meta = _metadata(job, provenance, result)
    exp.embed_metadata(tmp, to_native(meta))
    with staging.temp_files_here():
        validation = _validate(exp, job, tmp, info, provenance, say)
    passed = bool(validation["passed"])
    size = _size(tmp)
    digest = artifact_sha256(tmp)
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
    names = []
    for companion in result.companions:
        if companion.parent != staging.new:
            raise ExportError(f"{exp.name} wrote the companion file {companion} outside its "
                              "staging folder (a bug: please report it)")
        names.append(companion.name)
    if job.labels_file is not None:  # the class names next to the artifact, for every format
        from ..labels import imagenet_classes

        write_text_atomic(staging.new / job.labels_file, "\n".join(imagenet_classes()) + "\n")
        names.append(job.labels_file)
        sidecar["labels_file"] = job.labels_file
    if names:
        sidecar["companions"] = names
    side = sidecar_path(tmp)
    write_json_atomic(side, sidecar)
    # everything is written: publish all of it or nothing
    staging.commit([*names, dest.name, side.name], force=job.force)
    log.info("%s: %s", dest.name, validation["summary"])
    return Artifact(dest, exp.name, options.precision, size, digest, validation,
                    passed, meta, info)


@contextlib.contextmanager
def _converters_contained() -> Iterator[None]:
    """While a converter runs: what it prints on stdout goes to stderr (a library must not
    write on its caller's stdout: the TFLite quantizer prints model sizes there), and the
    deprecation, future and user warnings of the libraries are not shown."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        for category in (DeprecationWarning, FutureWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category)
        yield


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
        run_artifact(exp.runner(path), provenance.val_images, job.spec, say),
        provenance.val_logits, exp.output_kind(info))
    report = compare_logits(outputs, expected, job.options.precision, provenance.val_source,
                            job.options.min_cosine, job.options.min_photo_cosine,
                            provenance.val_names)
    return {**report.to_dict(), **exp.validation_facts(), "summary": report.summary()}


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size

