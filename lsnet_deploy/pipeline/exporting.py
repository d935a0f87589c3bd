"""The export pipeline shared by every format, as numbered steps (:func:`run_export`).

1. plan: every option checked, every default filled in, every artifact named (nothing built);
2. prepare the output folders: writable, what interrupted exports left there completed or
   removed (:mod:`~lsnet_deploy.pipeline.staging`), destinations checked again;
3. build (or take) the reference model: the unfused model is the truth;
4. load the calibration and held-out photos; the reference logits on the held-out ones;
5. reparameterize a copy, recording the fused-vs-unfused difference;
6. for INT8 / W8A8 (unless ``equalize=False``): equalize another copy's channels
   (:func:`~lsnet_deploy.quantize.prepare.prepare_for_int8`, exact), checked on the held-out
   photos; with int16 activations, or ``gptq=True`` (where the format's weights are on the
   symmetric int8 grid), round the weights of a copy (the equalized one, where there is one)
   onto that grid with GPTQ
   (:func:`~lsnet_deploy.quantize.rounding.round_weights`); both recorded in the sidecar's
   ``export.preparation``;
7. publish each artifact (export to a staging folder, embed metadata, validate, sidecar, then
   publish artifact, companions and sidecar together);
8. summarize: a failed validation raises :class:`~lsnet_deploy.errors.ValidationFailedError`
   after every artifact has been written and recorded.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..api import RANDOM
from ..errors import ExportError, OutputError, ValidationFailedError
from ..exporters import CalibrationSet, ExportData, ReferenceSet
from ..lsnet import LSNet
from ..preprocess import Preprocess
from ..progress import counted
from ..quantize.prepare import prepare_for_int8
from ..quantize.rounding import round_weights
from ..reparam import is_reparameterized, reparameterize
from ..threads import default_threads
from .images import ImageSplit, split_images
from .plan import ExportJob, check_destinations, plan
from .publish import Artifact, Progress, Provenance, publish
from .request import ExportRequest
from .staging import STAGING_MARK, output_error, recover

__all__ = ["EQUALIZATION_TOLERANCE", "export", "prepared_copy", "run_export"]

EQUALIZATION_TOLERANCE = 1e-3
"""Largest change of the float logits that INT8 channel equalization may make, relative to
the largest logit (at least 1): it is exact, so anything more is a bug."""


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
    opset: int | None = None,
    calib: Path | None = None,
    calib_size: int | None = None,
    calib_method: str = "minmax",
    val: Path | None = None,
    val_size: int | None = None,
    min_cosine: float | None = None,
    min_photo_cosine: float | None = None,
    int8_exclude: str | Sequence[str] = (),
    layout: str | None = None,
    io: str | None = None,
    ios: int | None = None,
    classifier: bool | None = None,
    ort: bool | None = None,
    w8a8_scheme: str | None = None,
    int8_int16: str | Sequence[str] | None = None,
    int16_headroom: float | None = None,
    equalize: bool = True,
    gptq: bool | None = None,
    output_dir: Path | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> list[Artifact]:
    """Export an LSNet to one format (or ``"all"``) and validate every artifact.

    ``model``: a variant name (built with ``weights``: a checkpoint path, ``"official"`` or
    ``None``/``"random"``) or an :class:`LSNet` instance; or the name of a peer
    (:mod:`lsnet_deploy.peers`, e.g. ``"mobilenetv3_large"``: random weights only, exported
    the same way for latency comparisons). ``precision``, ``image_input``,
    ``layout``: ``None`` is the format's default (CoreML: fp16 with image input; TFLite:
    NHWC). ``int8_exclude``: op groups or node names kept in float, ``["auto"]`` to search
    them until ``min_cosine`` (and ``min_photo_cosine``, a cosine every validation photo must
    reach, when given) is met. Format options: ``opset`` (ONNX), ``io`` (TFLite INT8 boundary
    type), ``ort`` (ONNX: also the ``.ort`` file), ``int8_int16`` (INT8: op groups whose
    activations are int16, w8a16, in ONNX, ``["auto"]`` to search them until ``min_cosine``;
    ``["all"]`` in TFLite: its 16x8), ``int16_headroom`` (with ``int8_int16``: each int16
    range spans that many times its calibrated range, 1 to 64; ``None``:
    :data:`~lsnet_deploy.quantize.headroom.INT16_HEADROOM`), ``ios`` and
    ``w8a8_scheme`` (CoreML W8A8: ``"symmetric"`` by default, or ``"affine"``) and
    ``classifier`` (CoreML and TFLite: probabilities, or ``False`` for logits).
    ``val_size``: validate on at most that many of the held-out photos (faster checks).
    ``equalize``: 8-bit INT8 and W8A8
    quantize an exactly equalized copy of the fused model (``False``: the fused model as is;
    int16 everywhere, ``int8_int16=["all"]``, never is). ``gptq``: calibrated exports
    (except Core ML W8A8, whose weight grid differs) round the weights onto the backends'
    int8 grid with GPTQ first; ``None``: only where activations are int16 (``int8_int16``),
    ``False``: never (the backend's nearest rounding).
    The fields are those of
    :class:`~lsnet_deploy.pipeline.request.ExportRequest`; see ``lsnet-deploy export --help``.

    Returns the artifacts written. Raises :class:`ValidationFailedError` (after writing and
    recording) if an artifact misses its gate.
    """
    request = ExportRequest.build(
        model, format, weights=weights, precision=precision, img_size=img_size, batch=batch,
        dynamic_batch=dynamic_batch, image_input=image_input, opset=opset, calib=calib,
        calib_size=calib_size, calib_method=calib_method, val=val, val_size=val_size,
        min_cosine=min_cosine, min_photo_cosine=min_photo_cosine,
        int8_exclude=_names(int8_exclude) or (), layout=layout, io=io, ios=ios,
        classifier=classifier, ort=ort, int8_int16=_names(int8_int16),
        int16_headroom=int16_headroom,
        w8a8_scheme=w8a8_scheme,
        equalize=equalize, gptq=gptq, output_dir=output_dir, force=force)
    return run_export(request, progress)


def _names(given: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Op group names as a tuple: one name may be given as a plain string (``"all"``)."""
    if not given:
        return None
    return (given,) if isinstance(given, str) else tuple(given)


def run_export(request: ExportRequest, progress: Progress | None = None) -> list[Artifact]:
    """Run the steps of the module docstring for ``request``."""
    say = progress or (lambda _msg: None)
    default_threads()  # a bad LSNET_DEPLOY_THREADS is refused before any work
    # 1. Plan: options checked, artifacts named, existing ones refused, before any work
    jobs = plan(request)
    # 2. The output folders: writable, interrupted exports recovered, destinations re-checked
    created = _prepare_folders(jobs)
    try:
        return _run_jobs(request, jobs, say)
    except BaseException:
        _remove_empty(created)  # an early failure leaves no empty <variant>/ folder
        raise


def _run_jobs(request: ExportRequest, jobs: list[ExportJob], say: Progress) -> list[Artifact]:
    # 3. The reference model (unfused: the truth)
    reference = _reference_model(request)
    # 4. Photos: calibration where a job calibrates, held-out validation, reference logits
    say("loading images")
    images = split_images(Preprocess(img_size=jobs[0].spec.img_size), request.calib,
                          request.val, request.calib_size,
                          need_calib=any(j.calibrate for j in jobs), val_size=request.val_size)
    with torch.no_grad():
        ref_logits = reference(images.val)
    # 5. Reparameterize a copy
    say("reparameterizing")
    fused, reparam = _fused_copy(reference, images)
    provenance = Provenance(_weights_info(reference), reparam, images.val, images.val_source,
                            ref_logits, images.val_names)
    # 6. INT8 preparation of other copies (channel equalization, GPTQ weight rounding)
    prepare = _Preparations(fused, images, say)
    # 7. Publish each artifact
    artifacts = []
    for job in counted(say if len(jobs) > 1 else None, "artifacts", jobs, lambda j: j.dest.name):
        model, preparation = prepare.for_job(job, request)
        artifacts.append(publish(job, model, _data(job, request, images, ref_logits, preparation),
                                 provenance, say))
    # 8. Summarize
    _raise_on_failures(artifacts, jobs, request.precision or jobs[0].options.precision)
    return artifacts


def _equalizes(job: ExportJob) -> bool:
    """A calibrated job whose format quantizes the equalized copy (not int16 everywhere)."""
    return job.calibrate and job.options.format.equalizes(job.options.precision)


def _rounds(job: ExportJob, gptq: bool | None) -> bool:
    """A calibrated job whose weights GPTQ rounds: its format quantizes them on the symmetric
    int8 grid GPTQ rounds to, and the request asks for it (``None``: the format's default,
    yes where activations are int16)."""
    fmt, precision = job.options.format, job.options.precision
    wanted = fmt.gptq_by_default(precision) if gptq is None else gptq
    return job.calibrate and wanted and fmt.rounds_weights(precision)


class _Preparations:
    """The prepared copies of the fused model, made once each and shared by the jobs that
    quantize them: equalized or not, GPTQ-rounded or not."""

    def __init__(self, fused: torch.nn.Module, images: ImageSplit, say: Progress) -> None:
        self.fused, self.images, self.say = fused, images, say
        self.copies: dict[tuple[bool, bool], tuple[torch.nn.Module, dict[str, Any] | None]] = {}

    def for_job(self, job: ExportJob, request: ExportRequest
                ) -> tuple[torch.nn.Module, dict[str, Any] | None]:
        """The model ``job`` exports and its ``export.preparation`` record (``None``: none)."""
        if self.images.calib is None or not isinstance(self.fused, LSNet):
            return self.fused, None
        key = (request.equalize and _equalizes(job), _rounds(job, request.gptq))
        if key not in self.copies:
            self.copies[key] = self._make(*key)
        return self.copies[key]

    def _make(self, equalize: bool, gptq: bool
              ) -> tuple[torch.nn.Module, dict[str, Any] | None]:
        model, record = (prepared_copy(self.fused, self.images, self.say) if equalize
                         else (self.fused, None))
        if not gptq:
            return model, record
        if model is self.fused:
            model = copy.deepcopy(self.fused)
        assert self.images.calib is not None
        rounding = round_weights(model, self.images.calib, self.say)
        return model, {**(record or {}), "weight_rounding": rounding.as_dict()}


def _prepare_folders(jobs: list[ExportJob]) -> list[Path]:
    """Create the jobs' folders, check they are writable, complete or remove what interrupted
    exports left there (:func:`~lsnet_deploy.pipeline.staging.recover`), and check the
    destinations again (a recovered publication may have written one). Returns the folders
    this call created, deepest first."""
    created: list[Path] = []
    for folder in dict.fromkeys(j.dest.parent for j in jobs):
        missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            created += [p for p in missing if p not in created]
            with tempfile.NamedTemporaryFile(dir=folder, prefix=f"{STAGING_MARK}write-test-"):
                pass
        except FileExistsError as e:
            raise OutputError(f"cannot use the output folder {folder}: a file is in its "
                              "place; remove it or choose another --output-dir") from e
        except OSError as e:
            raise output_error(e, folder) from e
        recover(folder)
    check_destinations(jobs)
    return created


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty


def _reference_model(request: ExportRequest) -> torch.nn.Module:
    """The LSNet of the request (built for its size and weights), or a peer network."""
    if isinstance(request.model, LSNet):
        return request.model
    from ..peers import create_peer, peer_names

    if request.model in peer_names():  # the plan checked that the weights are random
        return create_peer(request.model)
    from ..api import create_model

    size = request.img_size if request.img_size is not None else 224
    return create_model(request.model, request.weights, img_size=size)


def _weights_info(model: torch.nn.Module) -> dict[str, Any]:
    if not isinstance(model, LSNet):  # a peer: random weights
        return {"kind": RANDOM, "path": None, "sha256": None}
    source = getattr(model, "weights_source", None)
    return {"kind": source.kind, "path": source.path, "sha256": source.sha256} if source else {}


def _fused_copy(reference: torch.nn.Module, images: ImageSplit
                ) -> tuple[torch.nn.Module, dict[str, Any]]:
    fused = copy.deepcopy(reference)
    if not isinstance(reference, LSNet):
        return fused, {"max_abs_diff": None,
                       "note": "peer network, built in its deploy form (BatchNorm folded)"}
    if is_reparameterized(reference):
        return fused, {"max_abs_diff": None, "note": "model was already fused"}
    rep = reparameterize(fused, images.val)
    return fused, {"max_abs_diff": rep.max_abs_diff, "params_unfused": rep.params_before,
                   "params_fused": rep.params_after,
                   "remaining_batchnorms": len(rep.remaining_batchnorms)}


def prepared_copy(fused: torch.nn.Module, images: ImageSplit, say: Progress
                   ) -> tuple[torch.nn.Module, dict[str, Any] | None]:
    """A copy of the fused LSNet equalized for INT8 (:func:`prepare_for_int8`) and its record;
    ``fused`` itself for other networks (peers). Raises :class:`ExportError` if the float
    logits moved beyond rounding (the preparation is exact)."""
    if not isinstance(fused, LSNet) or images.calib is None:
        return fused, None
    say("equalizing channels for INT8")
    prepared = copy.deepcopy(fused)
    record = prepare_for_int8(prepared, images.calib)
    with torch.no_grad():
        before, after = fused(images.val), prepared(images.val)
    diff = float((after - before).abs().max())
    scale = max(1.0, float(before.abs().max()))
    if not diff <= EQUALIZATION_TOLERANCE * scale:
        raise ExportError(f"channel equalization changed the float logits by {diff:.3g} "
                          f"(a bug: please report it); --no-equalize exports without it")
    return prepared, {"method": "channel equalization (residual stream, attention q/k/v, conv pairs), exact",
                      **record, "max_abs_logit_change": diff}


def _data(job: ExportJob, request: ExportRequest, images: ImageSplit,
          ref_logits: torch.Tensor, preparation: dict[str, Any] | None = None) -> ExportData:
    calibration = None
    if job.calibrate and images.calib is not None:
        calibration = CalibrationSet(images.calib, images.calib_source,
                                     request.calib_method)  # type: ignore[arg-type]
    reference = (ReferenceSet(images.val, ref_logits.numpy(), images.val_source,
                              images.val_names)
                 if job.needs_reference else None)
    if not job.calibrate:
        preparation = None
    return ExportData(calibration, reference, preparation)


def _raise_on_failures(artifacts: list[Artifact], jobs: list[ExportJob],
                       precision: str) -> None:
    failed = [(a, j) for a, j in zip(artifacts, jobs, strict=True) if not a.passed]
    failures = [f"{a.path.name}: {a.validation['summary']}" for a, _ in failed]
    if not failures:
        return
    hints = {j.options.format.failure_hint(j.options.precision) for _, j in failed}
    hint = ""
    if len(hints) == 1 and None not in hints:  # the format's own (TFLite 16x8)
        hint = hints.pop() or ""
    elif precision == "w8a8":
        hint = " try --int8 (8-bit weights, fp16 activations) or lower --min-cosine"
    elif precision == "int8":
        percentile = all("percentile" in j.exporter.capabilities.calib_methods
                         for _, j in failed)  # only what every failed format takes
        hint = (" try --int8-exclude auto (keeps the most sensitive op groups in float), "
                + ("--calib-method percentile, " if percentile else "") + "or lower --min-cosine")
    if any(j.options.min_photo_cosine is not None for _, j in failed):
        hint = hint.replace("lower --min-cosine", "lower --min-cosine or --min-photo-cosine")
    error = ValidationFailedError(
        "validation failed (artifact kept, sidecar marked failed): "
        + "; ".join(failures) + (";" + hint if hint else ""))
    error.artifacts = artifacts
    raise error
