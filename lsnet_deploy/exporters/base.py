"""The exporter protocol: one module per format behind one small interface.

A format owns its facts. Its exporter class (a subclass of :class:`Exporter`) says:

* who it is: ``name``, ``suffixes`` (the first is written, all are recognized), ``runtime``
  (the name its results carry in benchmarks), ``extra`` (the pip extra that installs it),
  ``tools`` (the packages whose versions its artifacts record);
* what it supports: :class:`Capabilities` (precisions, layouts, dynamic batch, image input,
  INT8 groups, accelerators) and its typed per-format options (``options_type``, a
  :class:`FormatOptions` subclass with its own checks and naming);
* what it does: ``export(model, spec, out, task) -> ExportResult``, native metadata
  (``embed_metadata`` / ``read_metadata``), ``runner`` (the artifact in its real runtime, for
  validation), ``structural_validation`` (where it cannot run), ``precision_of`` (label a file
  it did not write) and ``bench_session`` (the same runtime loaded for timing).

Adding a format touches one new module and one line of
:data:`lsnet_deploy.exporters.REGISTRY` (docs/architecture.md, "How to add a format").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch

from ..errors import UnsupportedOptionError
from ..fidelity import Runner
from ..progress import Say
from ..spec import IOSpec
from .session import Session

if TYPE_CHECKING:
    from ..quantize.auto import SensitivityProbe

__all__ = [
    "PRECISIONS",
    "CalibrationSet",
    "Capabilities",
    "ExportData",
    "ExportOptions",
    "ExportResult",
    "ExportTask",
    "Exporter",
    "FormatOptions",
    "NameParts",
    "NoOptions",
    "OutputKind",
    "Precision",
    "ReferenceSet",
    "Runner",
]

Precision = Literal["fp32", "fp16", "int8", "w8a8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8", "w8a8")
"""Every precision any format knows; a format's :class:`Capabilities` lists its own."""

OutputKind = Literal["logits", "log_probs"]
"""What a runner returns per image: raw logits, or log-probabilities (a classifier artifact)."""



@dataclass(frozen=True)
class Capabilities:
    """What an exporter supports; anything else is refused with a clear error."""

    precisions: tuple[Precision, ...]
    """Supported precisions; the first is the format's default."""
    dynamic_batch: bool
    image_input: bool
    layouts: tuple[str, ...] = ("NCHW",)
    """Input layouts; the first is the format's default."""
    default_image_input: bool = False
    """Whether image input is on when the user does not say (CoreML: yes)."""
    int8_exclude: bool = True
    """Supports keeping op groups in float (``--int8-exclude``)."""
    int8_exclude_nodes: bool = False
    """``--int8-exclude`` also takes single node names of the exported graph (else op groups
    only, checked when the export is planned)."""
    calibrated: tuple[Precision, ...] = ("int8",)
    """Precisions that calibrate on images (CoreML's 8-bit *weights* need none, W8A8 does)."""
    calib_methods: tuple[str, ...] = ("minmax",)
    """``--calib-method`` values its calibration honours (``minmax``: the format's own
    observers, whatever they are; ONNX also takes ``percentile``); others are refused when
    the export is planned."""
    accelerators: tuple[str, ...] = ()
    """Hardware choices of its runtime (CoreML compute units); empty: none to choose."""
    bench_precisions: tuple[Precision, ...] = ()
    """Precisions ``bench --model`` times by default (empty: only with ``--runtime``)."""
    sensitivity: bool = False
    """Offers the per-op-group INT8 sensitivity report (``quant-report``)."""


@dataclass(frozen=True)
class NameParts:
    """A format's parts of an artifact name for non-default options: ``extra`` goes after the
    image-input part (CoreML ``_logits``, ``_ios16``), ``io`` is an INT8 boundary type."""

    extra: str = ""
    io: str | None = None


@dataclass(frozen=True)
class FormatOptions:
    """Options only one format has (typed; ``None`` fields mean "the format's default").

    Subclasses are frozen dataclasses; each field names its CLI flag in its metadata
    (``field(default=None, metadata={"flag": "--ios"})``). The plan hands a format its own
    options (:meth:`check` them against the precision) and refuses options given for a format
    that does not own them (:meth:`refuse_for`).
    """

    owner: ClassVar[str] = ""
    """The display name of the format these options belong to (in error messages)."""

    def given(self) -> list[str]:
        """Flags of the fields that were set, e.g. ``["--ios"]``."""
        return [f.metadata.get("flag", f"--{f.name}") for f in fields(self)
                if getattr(self, f.name) is not None]

    def check(self, precision: Precision) -> None:
        """Refuse values that do not fit ``precision`` (:class:`UnsupportedOptionError`)."""

    def refuse_for(self, format_name: str, precision: Precision) -> None:
        """Called when these options were given but ``format_name`` is exported: refuse."""
        flags = self.given()
        if flags:
            raise UnsupportedOptionError(
                f"{' and '.join(flags)} {'applies' if len(flags) == 1 else 'apply'} to "
                f"{self.owner}, not {format_name}"
            )

    def check_quantization(self, precision: Precision, exclude: tuple[str, ...]) -> None:
        """Refuse, at plan time, an ``exclude`` (``--int8-exclude``, ``"auto"`` included)
        these options cannot honour; nothing is refused by default (``--calib-method``: the
        plan checks :attr:`Capabilities.calib_methods`)."""

    def observers(self, precision: Precision) -> str | None:
        """How a calibration with these options takes its ranges, for the message that
        refuses ``--calib-method`` (``None``: "its own observers")."""
        return None

    def failure_hint(self, precision: Precision) -> str | None:
        """What to try when an artifact with these options misses its gate (``None``: the
        pipeline's hint for ``precision``)."""
        return None

    def equalizes(self, precision: Precision) -> bool:
        """Whether a calibrated export with these options quantizes the equalized copy of the
        fused model (:func:`~lsnet_deploy.quantize.prepare.prepare_for_int8`; yes by
        default, unless the request says ``equalize=False``)."""
        return True

    def rounds_weights(self, precision: Precision) -> bool:
        """Whether a calibrated export with these options quantizes weights per output channel
        on the symmetric grid ``max|w| / 127 * (-127..127)``, so GPTQ's rounded weights
        (:func:`~lsnet_deploy.quantize.rounding.round_weights`) pass through it unchanged (yes
        by default: ONNX Runtime, litert-torch's PT2E, ai-edge-quantizer, ExecuTorch's
        XNNPACK quantizer)."""
        return True

    def gptq_by_default(self, precision: Precision) -> bool:
        """Whether GPTQ rounds the weights when the request does not say (``gptq=None``): where
        activations are int16 (the weights' error is then most of what is left; with 8-bit
        activations it moved the worst photo's cosine both ways, docs/int8.md). No by
        default."""
        return False

    def needs_reference(self, precision: Precision) -> bool:
        """Whether the export itself needs the held-out reference (``ExportData.reference``),
        e.g. to validate a companion file (ONNX's ``.ort``) before publishing."""
        return False

    def companion_names(self, artifact_name: str) -> tuple[str, ...]:
        """Names of the files published next to the artifact ``artifact_name`` with these
        options (``ExportResult.companions``; ONNX ``--ort``: the ``.ort`` and its operator
        config); the plan checks them like the artifact itself."""
        return ()

    def name_parts(self, precision: Precision, num_classes: int) -> NameParts:
        """Name parts for non-default choices (none by default)."""
        return NameParts()

    def output_names(self, num_classes: int) -> tuple[str, ...] | None:
        """Output tensor names when the format's options change them (``None``: the IO
        spec's default, ``("logits",)``)."""
        return None


@dataclass(frozen=True)
class NoOptions(FormatOptions):
    """A format without options of its own."""


@dataclass(frozen=True)
class CalibrationSet:
    """INT8 calibration: ``images`` ``(N, 3, H, W)`` normalized float32 and where they came from."""

    images: torch.Tensor
    source: str
    method: Literal["minmax", "percentile"] = "minmax"
    percentile: float = 99.999


@dataclass(frozen=True)
class ReferenceSet:
    """Held-out photos ``images`` ``(N, 3, H, W)`` (normalized) and the unfused PyTorch model's
    ``logits`` ``(N, classes)`` on them: what automatic mixed precision and fake-quant
    fidelity reports compare against; ``names``: the photos' file names, in order."""

    images: torch.Tensor
    logits: np.ndarray
    source: str = ""
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportOptions:
    """The user's choices for one format (validated by the plan).

    Attributes:
        precision: one of the format's ``capabilities.precisions``.
        batch: static batch size (ignored when ``dynamic_batch``).
        dynamic_batch: leave the batch dimension symbolic.
        image_input: take a 0..255 RGB image (uint8 where the format allows) and normalize
            inside the graph.
        int8_exclude: op groups (or node names) kept in float for INT8.
        int8_auto: exclude the most sensitive groups until the cosine gates are met.
        min_cosine: reduced-precision fidelity gate (mean logit cosine vs PyTorch).
        min_photo_cosine: and the cosine every validation photo must reach (``None``: no
            such gate).
        format: the format's own options (an instance of its ``options_type``).
    """

    precision: Precision = "fp32"
    batch: int = 1
    dynamic_batch: bool = False
    image_input: bool = False
    int8_exclude: tuple[str, ...] = ()
    int8_auto: bool = False
    min_cosine: float = 0.99
    min_photo_cosine: float | None = None
    format: FormatOptions = field(default_factory=NoOptions)


@dataclass(frozen=True)
class ExportData:
    """The images an export computes with (data, not options): calibration photos for the
    precisions that calibrate, and the held-out reference for searches and reports;
    ``preparation``: the record of the INT8 preparation the model went through (channel
    equalization, GPTQ weight rounding: the sidecar's ``export.preparation``), ``None`` when
    neither was applied."""

    calibration: CalibrationSet | None = None
    reference: ReferenceSet | None = None
    preparation: dict[str, Any] | None = None


@dataclass(frozen=True)
class ExportTask:
    """What an exporter is asked to do: the options, the data they need, and where to report
    the progress of long steps (calibration, the auto mixed-precision search)."""

    options: ExportOptions
    data: ExportData = field(default_factory=ExportData)
    progress: Say | None = None


@dataclass(frozen=True)
class ExportResult:
    """What an exporter reports about the file it wrote.

    Attributes:
        details: format-specific facts for the sidecar's ``export`` section (JSON-able).
        metadata: entries added to the artifact's metadata (e.g. TFLite's INT8 boundary
            ``io_type`` and the ``inputs`` / ``outputs`` quantization parameters).
        companions: files written next to the artifact (in the same temp folder) that are
            published with it, e.g. ONNX Runtime Mobile's ``.ort`` and its operator config;
            each keeps its file name and is listed in the sidecar.
    """

    details: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    companions: tuple[Path, ...] = ()


class Exporter(ABC):
    """A target format (see the module docstring). Subclasses set the class attributes and
    implement the abstract methods; the others have defaults."""

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    runtime: ClassVar[str]
    extra: ClassVar[str]
    tools: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[Capabilities]
    options_type: ClassVar[type[FormatOptions]] = NoOptions

    @property
    def suffix(self) -> str:
        """The suffix of the files it writes."""
        return self.suffixes[0]

    @abstractmethod
    def export(
        self, model: torch.nn.Module, spec: IOSpec, out: Path, task: ExportTask
    ) -> ExportResult:
        """Write the artifact of the fused ``model`` to ``out``."""

    @abstractmethod
    def embed_metadata(self, path: Path, metadata: dict[str, str]) -> None:
        """Store ``metadata`` natively inside the artifact at ``path``."""

    @abstractmethod
    def read_metadata(self, path: Path) -> dict[str, str]:
        """Read back what :meth:`embed_metadata` stored (``{}`` if nothing)."""

    @abstractmethod
    def runner(self, path: Path, threads: int | None = None,
               accelerator: str | None = None) -> Runner:
        """Load the artifact in its real runtime (``accelerator``: one of
        ``capabilities.accelerators``)."""

    @abstractmethod
    def bench_session(self, path: Path, threads: int | None, batch: int | None,
                      accelerator: str | None = None) -> Session:
        """Load any model file of this format for timing, fed with fixed random inputs built
        from the model's own input description (LSNet or not)."""

    def can_run(self) -> bool:
        """Whether :meth:`runner` works on this machine (CoreML: macOS only); otherwise
        :meth:`structural_validation` checks the artifact."""
        return True

    def can_bench(self) -> bool:
        """Whether :meth:`bench_session` can time artifacts here (CoreML: macOS only, while
        its runner works everywhere)."""
        return self.can_run()

    def validation_facts(self) -> dict[str, Any]:
        """What ran the artifact in a numeric validation on this machine, merged into the
        validation record (CoreML: ``{"mode": "reference-executor", "executor": ...}`` off
        macOS); ``{}`` for a format's own runtime."""
        return {}

    def structural_validation(self, path: Path, spec: IOSpec, precision: Precision,
                              details: dict[str, Any]) -> dict[str, Any]:
        """The validation record of an artifact that cannot run here (``details``: the
        sidecar's ``export`` section). Returns at least ``{"passed", "summary", "mode"}``."""
        raise UnsupportedOptionError(f"{self.name} artifacts must run to be validated, and "
                                     "they cannot run on this machine")

    def output_kind(self, details: dict[str, Any]) -> OutputKind:
        """What the runner of an artifact with these export ``details`` returns."""
        return "logits"

    def precision_of(self, path: Path) -> str:
        """The precision of a file of this format that carries no lsnet-deploy metadata,
        judged from the file (``"unknown"`` when it cannot be told)."""
        return "unknown"

    def sensitivity_probe(self, model: torch.nn.Module, img_size: tuple[int, int],
                          num_classes: int, calibration: CalibrationSet,
                          reference: ReferenceSet, folder: Path) -> SensitivityProbe:
        """The INT8 setup ``quant-report`` measures for the fused ``model`` (work files go
        to ``folder``); only where ``capabilities.sensitivity``."""
        raise UnsupportedOptionError(f"quant-report does not support {self.name}")
