"""The exporter protocol: one module per format behind one small interface.

An exporter has a ``name``, a file ``suffix``, :class:`Capabilities` (precisions, dynamic batch,
image input), ``export(model, spec, out, options) -> dict`` (writes the artifact at ``out`` and
returns format-specific metadata), ``embed_metadata`` (native metadata) and ``runner`` (loads the
artifact in its real runtime for validation). Adding a format touches one new module and one
line of :data:`lsnet_deploy.exporters.REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from ..spec import IOSpec

Precision = Literal["fp32", "fp16", "int8"]
Runner = Callable[[np.ndarray], np.ndarray]
"""Runs an artifact: input batch laid out as the IO spec says -> logits ``(B, classes)``."""


@dataclass(frozen=True)
class Capabilities:
    """What an exporter supports; anything else is refused with a clear error."""

    precisions: tuple[Precision, ...]
    dynamic_batch: bool
    image_input: bool
    layouts: tuple[str, ...] = ("NCHW",)
    """Input layouts; the first is the format's default."""
    io_types: tuple[str, ...] = ("float32",)
    """INT8 boundary types (``--io``); the first is the default."""
    default_image_input: bool = False
    """Whether image input is on when the user does not say (CoreML: yes)."""
    classifier: bool = False
    """Can emit a classifier (label + probabilities) and has a deployment target (CoreML)."""
    int8_exclude: bool = True
    """Supports keeping op groups in float (``--int8-exclude``)."""
    calibrated: tuple[str, ...] = ("int8",)
    """Precisions that calibrate on images (CoreML's 8-bit *weights* need none, W8A8 does)."""


@dataclass(frozen=True)
class CalibrationOptions:
    """INT8 calibration: ``images`` ``(N, 3, H, W)`` normalized float32 and where they came from."""

    images: torch.Tensor
    source: str
    method: Literal["minmax", "percentile"] = "minmax"
    percentile: float = 99.999


@dataclass(frozen=True)
class ExportOptions:
    """Options of one export (the CLI flags, validated by the pipeline).

    Attributes:
        precision: ``fp32``, ``fp16`` or ``int8``.
        batch: static batch size (ignored when ``dynamic_batch``).
        dynamic_batch: leave the batch dimension symbolic.
        image_input: take a 0..255 RGB image (uint8 where the format allows) and normalize
            inside the graph.
        opset: ONNX opset.
        calibration: INT8 calibration data (required for ``int8``).
        int8_exclude: op groups (or node names) kept in float for INT8.
        int8_auto: exclude the most sensitive groups until the cosine gate is met.
        min_cosine: INT8/fp16 fidelity gate (mean cosine of logits vs PyTorch).
        auto_reference: for ``int8_auto``: validation images ``(N, 3, H, W)`` normalized and the
            PyTorch logits ``(N, classes)`` the search compares against.
        io_type: INT8 input/output tensor type (``int8``, ``float32``, ``uint8``); ``None`` is
            the format's default.
        ios: CoreML minimum deployment target (16, 17, 18).
        classifier: CoreML classifier output (class label + probabilities) instead of logits.
    """

    precision: Precision = "fp32"
    batch: int = 1
    dynamic_batch: bool = False
    image_input: bool = False
    opset: int = 18
    calibration: CalibrationOptions | None = None
    int8_exclude: tuple[str, ...] = ()
    int8_auto: bool = False
    min_cosine: float = 0.99
    auto_reference: tuple[torch.Tensor, np.ndarray] | None = None
    io_type: str | None = None
    ios: int = 17
    classifier: bool | None = None


class Exporter(Protocol):
    """A target format."""

    name: str
    suffix: str
    capabilities: Capabilities

    def export(
        self, model: torch.nn.Module, spec: IOSpec, out: Path, options: ExportOptions
    ) -> dict[str, Any]:
        """Write the artifact to ``out``; return metadata to merge into the sidecar."""
        ...

    def embed_metadata(self, path: Path, metadata: dict[str, str]) -> None:
        """Store ``metadata`` natively inside the artifact at ``path``."""
        ...

    def read_metadata(self, path: Path) -> dict[str, str]:
        """Read back what :meth:`embed_metadata` stored."""
        ...

    def can_run(self) -> bool:
        """Whether :meth:`runner` works on this machine (CoreML: macOS only); otherwise the
        pipeline validates structurally with ``structural_validation(path, spec, options,
        info)``."""
        ...

    def runner(self, path: Path, threads: int | None = None) -> Runner:
        """Load the artifact in its real runtime."""
        ...
