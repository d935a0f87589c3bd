"""Artifact vs PyTorch: run an artifact in its real runtime on real images and compare logits.

Metrics (per image, over the validation images): max absolute logit difference, mean and min
cosine similarity of the logit vectors, top-1 agreement and top-5 overlap (|top5 ∩ top5| / 5).
Gates: fp32 artifacts must match within ``FP32_ATOL`` max abs; reduced precision (fp16, int8)
must reach a mean cosine of ``min_cosine`` and, when ``min_photo_cosine`` is given, a cosine of
at least that on every validation photo (the worst photo, the ``min`` reported).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch

from .errors import UnsupportedOptionError
from .progress import Say, counted
from .spec import IOSpec

__all__ = [
    "DEFAULT_MIN_COSINE",
    "FP32_ATOL",
    "Runner",
    "ValidationReport",
    "artifact_batches",
    "check_gates",
    "check_min_cosine",
    "comparable_outputs",
    "compare_logits",
    "run_artifact",
    "to_artifact_input",
]

Runner = Callable[[np.ndarray], np.ndarray]
"""Runs an artifact: input batch laid out as the IO spec says -> ``(B, classes)`` float."""

FP32_ATOL = 1e-3
"""fp32 artifacts: max |artifact - PyTorch| on O(1) logits."""

DEFAULT_MIN_COSINE = {"int8": 0.98, "w8a8": 0.98, "fp16": 0.999}
"""Default fidelity gates (mean logit cosine vs PyTorch) per reduced precision."""


def check_min_cosine(value: float | None, what: str = "--min-cosine",
                     kind: str = "a mean cosine") -> float | None:
    """``value`` when it is a usable reduced-precision gate: ``None`` (the precision's
    default, :data:`DEFAULT_MIN_COSINE`; for ``--min-photo-cosine``: no per-photo gate) or a
    logit cosine in ``[0, 1]`` (``kind`` names it in the error); a mean gate of ``0`` is off
    in practice (to report a raw fidelity; a photo gate of 0 still fails a photo whose cosine
    is negative), a value above 1 or below 0 (or NaN) would make the gate meaningless and is
    refused before any work.

    Raises:
        UnsupportedOptionError: ``what`` out of range or not a number.
    """
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not 0.0 <= value <= 1.0):
        off = "; 0 turns the gate off" if kind == "a mean cosine" else ""
        raise UnsupportedOptionError(f"{what} must be {kind} in [0, 1] (e.g. 0.98{off}), got "
                                     f"{value!r}")
    return float(value)


def check_gates(min_cosine: float | None, min_photo_cosine: float | None) -> None:
    """Refuse (before any work) a ``--min-cosine`` or ``--min-photo-cosine`` that
    :func:`check_min_cosine` does not accept."""
    check_min_cosine(min_cosine)
    check_min_cosine(min_photo_cosine, "--min-photo-cosine", "a cosine")


@dataclass(frozen=True)
class ValidationReport:
    """Artifact vs PyTorch on ``n_images`` real images, with the gate applied;
    ``worst_photo``: the file name of the photo with the lowest cosine (``None`` when the
    names are not known)."""

    n_images: int
    images: str
    max_abs_diff: float
    mean_cosine: float
    min_cosine: float
    top1_agreement: float
    top5_overlap: float
    max_abs_logit: float
    gate: str
    passed: bool
    worst_photo: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        return (
            f"{status} on {self.n_images} images: max|diff| {self.max_abs_diff:.2e}, cosine "
            f"mean {self.mean_cosine:.5f} / min {self.min_cosine:.5f}"
            + (f" ({self.worst_photo})" if self.worst_photo else "") + ", top-1 agreement "
            f"{self.top1_agreement:.0%}, top-5 overlap {self.top5_overlap:.0%} (gate: {self.gate})"
        )


def _cosine_gate(mean: float, worst: float, min_cosine: float,
                 min_photo_cosine: float | None = None) -> tuple[str, bool]:
    """``(the gate in words, whether it is met)`` for a reduced precision whose logits reach a
    mean cosine of ``mean`` and ``worst`` on the worst photo."""
    gate = f"mean cosine >= {min_cosine:g}"
    if min_photo_cosine is None:
        return gate, mean >= min_cosine
    return (f"{gate}, every photo >= {min_photo_cosine:g}",
            mean >= min_cosine and worst >= min_photo_cosine)


def to_artifact_input(images: torch.Tensor, spec: IOSpec) -> np.ndarray:
    """Normalized ``(B, 3, H, W)`` float images -> the artifact's input (layout, dtype, range).

    For ``0..255`` inputs the normalization is inverted and rounded; since the normalized
    tensors were computed from 8-bit pixels, this recovers those pixels exactly.
    """
    x = images
    if spec.value_range == "0..255":
        mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(spec.std).view(1, 3, 1, 1)
        x = ((x * std + mean) * 255.0).round().clamp(0, 255)
        x = x.to(torch.uint8) if spec.dtype == "uint8" else x.float()
    if spec.layout == "NHWC":
        x = x.permute(0, 2, 3, 1)
    return np.ascontiguousarray(x.numpy())


def comparable_outputs(outputs: np.ndarray, logits: torch.Tensor,
                       kind: Literal["logits", "log_probs"]) -> tuple[np.ndarray, np.ndarray]:
    """``(artifact, reference)`` ``(N, classes)`` arrays to compare, both in logit units.

    ``kind="logits"``: the artifact's logits and PyTorch's, as they are. ``kind="log_probs"``
    (classifier artifacts, whose runners return log-probabilities): a log-probability is the
    logit minus the row's log-sum-exp, a constant the softmax discards, so each artifact row
    is shifted by the constant that best matches PyTorch's logits (the mean difference over
    its classes) and compared with the logits themselves: the same metrics, gates and units
    as for a logits artifact, not the cosine of two log-probability vectors (which stays near
    1 whatever the model, its values being dominated by the log-sum-exp). A class at the
    row's minimum may be a probability that underflowed to the floor of the runner: it is left
    out of the shift, and where PyTorch's logit is lower still it is taken as equal (the
    artifact can state no lower value).
    """
    ref = logits.detach().double().numpy()
    a = np.asarray(outputs, dtype=np.float64)
    if kind == "logits":
        return a, ref
    if a.shape != ref.shape:
        raise ValueError(f"artifact outputs {a.shape} vs PyTorch {ref.shape}")
    floor = a <= a.min(axis=1, keepdims=True)
    keep = ~floor
    shift = np.array([np.mean((r - x)[k]) if k.any() else np.mean(r - x)
                      for x, r, k in zip(a, ref, keep, strict=True)])[:, None]
    shifted = a + shift
    return np.where(floor & (ref <= shifted), ref, shifted), ref


def artifact_batches(images: torch.Tensor, spec: IOSpec) -> list[tuple[np.ndarray, int]]:
    """Normalized ``images`` ``(N, 3, H, W)`` as the artifact's input batches, with the count of
    real images in each: its static batch (the last chunk padded with its last image), chunks
    of 8 for a dynamic batch."""
    batch = spec.batch or 8
    out = []
    for start in range(0, images.shape[0], batch):
        chunk = images[start : start + batch]
        n = chunk.shape[0]
        if spec.batch and n < spec.batch:
            pad = chunk[-1:].expand(spec.batch - n, *chunk.shape[1:])
            chunk = torch.cat([chunk, pad])
        out.append((to_artifact_input(chunk, spec), n))
    return out


def run_artifact(runner: Runner, images: torch.Tensor, spec: IOSpec,
                 progress: Say | None = None) -> np.ndarray:
    """Logits of the artifact on normalized ``images`` ``(N, 3, H, W)``, batched as
    :func:`artifact_batches` says; ``progress`` gets a "validating" step per chunk."""
    batches = artifact_batches(images, spec)
    starts = np.cumsum([0] + [n for _, n in batches])
    outs = []
    for k in counted(progress, "validating", range(len(batches)),
                     lambda k: f"images {starts[k] + 1}-{starts[k + 1]}"):
        x, n = batches[k]
        outs.append(runner(x)[:n])
    return np.concatenate(outs).astype(np.float64)


def compare_logits(
    artifact: np.ndarray,
    reference: np.ndarray,
    precision: str,
    images: str,
    min_cosine: float | None = None,
    min_photo_cosine: float | None = None,
    names: Sequence[str] = (),
) -> ValidationReport:
    """Compare ``(N, classes)`` logits and apply the gate of ``precision``: fp32's max |diff|,
    else a mean cosine of ``min_cosine`` (default: the precision's) and, if given, a cosine of
    ``min_photo_cosine`` on every photo. ``names``: the photos' file names, in order (the
    report names the worst one; ignored unless there is one per row)."""
    a = np.asarray(artifact, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape:
        raise ValueError(f"artifact logits {a.shape} vs PyTorch {r.shape}")
    cos = (a * r).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(r, axis=1) + 1e-12)
    k = min(5, a.shape[1])
    top_a = np.argsort(-a, axis=1)[:, :k]
    top_r = np.argsort(-r, axis=1)[:, :k]
    overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(top_a, top_r, strict=True)])
    max_abs = float(np.abs(a - r).max())
    if precision == "fp32":
        gate = f"max|diff| <= {FP32_ATOL:g}"
        passed = max_abs <= FP32_ATOL
    else:
        threshold = min_cosine if min_cosine is not None else DEFAULT_MIN_COSINE.get(precision, 0.99)
        gate, passed = _cosine_gate(float(cos.mean()), float(cos.min()), threshold,
                                    min_photo_cosine)
    return ValidationReport(
        n_images=int(a.shape[0]),
        images=images,
        max_abs_diff=max_abs,
        mean_cosine=float(cos.mean()),
        min_cosine=float(cos.min()),
        top1_agreement=float((top_a[:, 0] == top_r[:, 0]).mean()),
        top5_overlap=float(overlap),
        max_abs_logit=float(np.abs(r).max()),
        gate=gate,
        passed=bool(passed),
        worst_photo=str(names[int(cos.argmin())]) if len(names) == a.shape[0] else None,
    )
