"""Planning an export: every option checked and every default filled in, per format, before
anything is built. Pure (it only looks at the file system to refuse existing artifacts), so
it is unit-tested in milliseconds.

``plan(request) -> [ExportJob]``: one job per format, with its resolved
:class:`~lsnet_deploy.exporters.ExportOptions` (typed per-format options included), its
:class:`~lsnet_deploy.spec.IOSpec` and its destination
``<out>/<variant>/<variant>_<img>_<precision>[...].<ext>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..errors import OutputError, UnknownVariantError, UnsupportedOptionError
from ..exporters import PRECISIONS, Exporter, ExportOptions, FormatOptions, get_exporter
from ..fidelity import DEFAULT_MIN_COSINE, check_gates
from ..limits import check_img_size
from ..lsnet import VARIANTS, LSNet, to_hw
from ..metadata import sidecar_path
from ..paths import default_export_dir
from ..quantize.groups import GROUPS
from ..spec import IOSpec
from .request import ExportRequest
from .staging import replaceable

__all__ = ["CALIB_METHODS", "ExportJob", "ModelFacts", "artifact_name", "check_destinations",
           "model_facts", "plan"]

CALIB_METHODS = ("minmax", "percentile")
LABELS_SUFFIX = ".labels.txt"
"""A labels file is named after its artifact: ``lsnet_t_224_fp32.onnx.labels.txt``."""
LABELED_CLASSES = 1000
"""Models with this many classes are ImageNet-1K classifiers: their labels file is written."""


@dataclass(frozen=True)
class ModelFacts:
    """What planning needs to know about the model, without building it."""

    variant: str
    img_size: tuple[int, int]
    num_classes: int


@dataclass(frozen=True)
class ExportJob:
    """One artifact to write: the format, its resolved options and IO spec, where it goes,
    and which data it needs (calibration photos, the held-out reference)."""

    format: str
    variant: str
    spec: IOSpec
    options: ExportOptions
    dest: Path
    calibrate: bool
    needs_reference: bool
    force: bool = False
    """Replace an existing artifact of lsnet-deploy's (never a foreign file or folder)."""
    companions: tuple[str, ...] = ()
    """Names of the files published next to ``dest`` (in its folder), the format's own and
    :attr:`labels_file`."""
    labels_file: str | None = None
    """``<artifact name>.labels.txt``: the class names, one per line in class order, for
    models with known class names (ImageNet-1K); ``None`` otherwise."""

    @property
    def outputs(self) -> list[Path]:
        """Every path the job publishes: the companions, the artifact, its sidecar."""
        folder = self.dest.parent
        return [*(folder / c for c in self.companions), self.dest, sidecar_path(self.dest)]

    @property
    def exporter(self) -> Exporter:
        return get_exporter(self.format)


def model_facts(request: ExportRequest) -> ModelFacts:
    """Variant name, input size and class count of the requested model."""
    model = request.model
    if isinstance(model, LSNet):
        if request.img_size is not None and to_hw(request.img_size) != model.img_size:
            raise UnsupportedOptionError(
                f"--img-size {request.img_size} does not match the given model "
                f"({model.img_size}); build the model for that size")
        return ModelFacts(str(getattr(model, "variant", "lsnet")), model.img_size,
                          model.num_classes)
    from ..peers import PEER_CLASSES, peer_names

    if model not in VARIANTS and model not in peer_names():
        known = ", ".join(n for n, c in VARIANTS.items() if c.official)
        raise UnknownVariantError(f"unknown variant {model!r}; known: {known} (peers, for "
                                  f"latency comparisons: {', '.join(peer_names())})")
    if model in peer_names() and request.weights not in (None, "random"):
        raise UnsupportedOptionError(
            f"{model} is a peer for latency comparisons: lsnet-deploy has no trained weights "
            "for it; use --weights random")
    size = to_hw(request.img_size if request.img_size is not None else 224)
    check_img_size(size)
    classes = VARIANTS[model].num_classes if model in VARIANTS else PEER_CLASSES
    return ModelFacts(model, size, classes)


def plan(request: ExportRequest, facts: ModelFacts | None = None) -> list[ExportJob]:
    """Check ``request`` against every format's capabilities and options and return the jobs.

    Raises:
        UnsupportedOptionError: an option a format or precision does not support (never
            silently rewritten).
        OutputError: an artifact exists already and ``force`` is not set.
    """
    facts = facts or model_facts(request)
    exporters = [get_exporter(f) for f in request.formats]
    precision = _precision(request, exporters)
    _check_common(request, precision)
    out_root = Path(request.output_dir) if request.output_dir is not None else \
        default_export_dir()
    jobs = []
    for exp in exporters:
        fmt = _format_options(request, exp, precision)
        _check_capabilities(request, exp, precision)
        jobs.append(_job(request, exp, precision, fmt, facts, out_root))
    if any(j.calibrate for j in jobs) and request.calib_method not in CALIB_METHODS:
        raise UnsupportedOptionError(
            f"--calib-method {request.calib_method!r}; use minmax or percentile")
    for job in jobs:  # never ignored silently (Core ML W8A8 used to)
        if job.calibrate and request.calib_method not in job.exporter.capabilities.calib_methods:
            how = job.options.format.observers(job.options.precision) or "its own observers"
            raise UnsupportedOptionError(
                f"--calib-method {request.calib_method}: {job.format} {job.options.precision} "
                f"calibrates with {how}; --calib-method applies to ONNX only")
    _check_gptq(request, jobs)
    check_destinations(jobs)
    return jobs


def _check_gptq(request: ExportRequest, jobs: list[ExportJob]) -> None:
    """Refuse ``--gptq`` where no job rounds weights: a peer network, nothing calibrated
    (Core ML's weight-only int8 included), or only Core ML W8A8 (another weight grid)."""
    if not request.gptq:
        return
    from ..peers import peer_names

    if not isinstance(request.model, LSNet) and request.model in peer_names():
        raise UnsupportedOptionError("--gptq rounds LSNet's weights; peers are exported as the "
                                     "backends quantize them (drop --gptq)")
    calibrated = [j for j in jobs if j.calibrate]
    if not calibrated:
        raise UnsupportedOptionError("--gptq rounds the weights of calibrated INT8 exports: "
                                     "add --int8 with --format onnx, tflite or executorch")
    if not any(j.options.format.rounds_weights(j.options.precision) for j in calibrated):
        raise UnsupportedOptionError(f"--gptq applies to ONNX, TFLite and ExecuTorch INT8, not "
                                     f"{jobs[0].format} (its W8A8 uses another weight grid)")


def check_destinations(jobs: list[ExportJob]) -> None:
    """Refuse a job whose outputs exist without ``force``, or (with ``force``) are not
    lsnet-deploy's own artifact files (a folder, a symlink, a file without our sidecar).

    Raises:
        OutputError: with the path and what to do.
    """
    for job in jobs:
        for path in job.outputs:
            if not os.path.lexists(path):
                continue
            if not job.force:
                if not path.exists():
                    raise OutputError(f"{path} is a dangling symbolic link; remove it or "
                                      "choose another --output-dir")
                raise OutputError(f"{path} already exists; pass --force to overwrite it")
            why = replaceable(path, job.dest)
            if why:
                raise OutputError(f"--force replaces only lsnet-deploy's own artifacts: {why}; "
                                  "move it away first")


def _precision(request: ExportRequest, exporters: list[Exporter]) -> str:
    if request.precision is None:
        return exporters[0].capabilities.precisions[0] if len(exporters) == 1 else "fp32"
    if request.precision not in PRECISIONS:
        raise UnsupportedOptionError(f"unknown precision {request.precision!r}")
    return request.precision


def _check_common(request: ExportRequest, precision: str) -> None:
    if request.batch < 1:
        raise UnsupportedOptionError(f"--batch must be >= 1, got {request.batch}")
    if request.dynamic_batch and request.batch != 1:
        raise UnsupportedOptionError("--batch and --dynamic-batch are exclusive")
    if request.int8_exclude and precision != "int8":
        raise UnsupportedOptionError("--int8-exclude only applies with --int8")
    for given, flag in ((request.min_cosine, "--min-cosine"),
                        (request.min_photo_cosine, "--min-photo-cosine")):
        if precision == "fp32" and given is not None:  # asked for, or the format's default
            raise UnsupportedOptionError(f"{flag} gates reduced precision (add --int8, --fp16 "
                                         "or --w8a8); fp32 is gated by max |diff| <= 1e-3")
    check_gates(request.min_cosine, request.min_photo_cosine)


def _check_capabilities(request: ExportRequest, exp: Exporter, precision: str) -> None:
    caps = exp.capabilities
    if precision not in caps.precisions:
        raise UnsupportedOptionError(f"{exp.name} export does not support {precision} "
                                     f"(supported: {', '.join(caps.precisions)})")
    if request.dynamic_batch and not caps.dynamic_batch:
        raise UnsupportedOptionError(f"{exp.name} export does not support --dynamic-batch")
    if request.image_input and not caps.image_input:
        raise UnsupportedOptionError(f"{exp.name} export does not support --image-input")
    if request.int8_exclude and not caps.int8_exclude:
        raise UnsupportedOptionError(f"{exp.name} export does not support --int8-exclude")
    if request.int8_exclude and not caps.int8_exclude_nodes:
        unknown = [g for g in request.int8_exclude if g != "auto" and g not in GROUPS]
        if unknown:
            raise UnsupportedOptionError(
                f"unknown op group(s) {', '.join(unknown)} for {exp.name} INT8 (it takes "
                f"groups, not node names); groups: {', '.join(GROUPS)}")
    if request.layout is not None and request.layout.upper() not in caps.layouts:
        raise UnsupportedOptionError(f"{exp.name} export supports layouts "
                                     f"{', '.join(caps.layouts)}, not {request.layout}")


def _format_options(request: ExportRequest, exp: Exporter, precision: str) -> FormatOptions:
    """The format's own options (checked), after refusing those of formats not exported.

    A field several formats own (``classifier``: TFLite and CoreML; ``int8_int16``: ONNX and
    TFLite) is not refused for a format that owns it too: the format takes the value into its
    own options (:meth:`ExportRequest.build` gives it to the first such format's options)."""
    own_fields = {f.name for f in fields(exp.options_type)}
    shared: dict[str, Any] = {}
    for given in request.format_options:
        if type(given) is exp.options_type:
            continue
        mine = {f.name: getattr(given, f.name) for f in fields(given)
                if f.name in own_fields and getattr(given, f.name) is not None}
        shared.update(mine)
        replace(given, **dict.fromkeys(mine)).refuse_for(exp.name, precision)  # type: ignore[arg-type]
    own = request.options_for(exp.options_type) or exp.options_type()
    unset = {k: v for k, v in shared.items() if getattr(own, k) is None}
    if unset:
        own = replace(own, **unset)
    own.check(precision)  # type: ignore[arg-type]
    own.check_quantization(precision, request.int8_exclude)  # type: ignore[arg-type]
    return own


def _job(request: ExportRequest, exp: Exporter, precision: str, fmt: FormatOptions,
         facts: ModelFacts, out_root: Path) -> ExportJob:
    caps = exp.capabilities
    image = caps.default_image_input if request.image_input is None else request.image_input
    spec = IOSpec(
        img_size=facts.img_size,
        batch=None if request.dynamic_batch else request.batch,
        dtype="uint8" if image else "float32",
        value_range="0..255" if image else "normalized",
        layout=(request.layout.upper() if request.layout else caps.layouts[0]),  # type: ignore[arg-type]
        num_classes=facts.num_classes,
        output_names=fmt.output_names(facts.num_classes) or ("logits",),
    )
    gate = (request.min_cosine if request.min_cosine is not None
            else DEFAULT_MIN_COSINE.get(precision))
    auto = "auto" in request.int8_exclude
    options = ExportOptions(
        precision=precision,  # type: ignore[arg-type]
        batch=request.batch,
        dynamic_batch=request.dynamic_batch,
        image_input=image,
        int8_exclude=tuple(e for e in request.int8_exclude if e != "auto"),
        int8_auto=auto,
        min_cosine=gate if gate is not None else 0.99,
        min_photo_cosine=request.min_photo_cosine if precision != "fp32" else None,
        format=fmt,
    )
    parts = fmt.name_parts(options.precision, facts.num_classes)
    name = artifact_name(
        facts.variant, spec, options.precision, exp.suffix, options.dynamic_batch,
        mixed=bool(options.int8_exclude) or options.int8_auto,
        default_layout=caps.layouts[0], io=parts.io,
        default_image_input=caps.default_image_input, extra=parts.extra)
    labels = (f"{name}{LABELS_SUFFIX}",) if facts.num_classes == LABELED_CLASSES else ()
    return ExportJob(exp.name, facts.variant, spec, options, out_root / facts.variant / name,
                     calibrate=precision in caps.calibrated,
                     needs_reference=(auto or precision == "w8a8"
                                      or fmt.needs_reference(options.precision)),
                     force=request.force, companions=(*fmt.companion_names(name), *labels),
                     labels_file=labels[0] if labels else None)


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
    (dynamic batch) or ``_b4`` (static batch 4); ``mix`` marks INT8 with float groups;
    ``extra`` holds the format's own parts (CoreML ``_logits``, ``_ios16``)."""
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
