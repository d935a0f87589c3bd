"""Scores of one model on the evaluated images (pure numpy): accuracy against the labels and
agreement with the PyTorch fp32 reference, from per-image top-k classes and logit cosines.

Definitions (docs/evaluate.md):

- top-1 / top-5 **accuracy**: the label is the first class / among the first five.
- top-1 **agreement**: the model's first class is PyTorch fp32's first class.
- top-5 **overlap**: ``|top5 ∩ top5 of PyTorch| / 5``, averaged (as ``validate`` reports).
- mean / min **cosine** and max ``|diff|`` of the output vectors with PyTorch's logits, in logit
  units: a classifier artifact's log-probabilities are first shifted by the per-image
  constant the softmax discards (:func:`lsnet_deploy.fidelity.comparable_outputs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["TOP_K", "ModelScore", "Tally", "top_classes"]

TOP_K = 5


def top_classes(outputs: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """``(N, classes)`` scores -> ``(N, min(k, classes))`` class indices, best first (ties: the
    lower index first)."""
    x = np.asarray(outputs, dtype=np.float64)
    return np.argsort(-x, axis=1, kind="stable")[:, : min(k, x.shape[1])]


@dataclass(frozen=True)
class ModelScore:
    """One row of the evaluation: PyTorch fp32 or an artifact, on ``n_images`` images.

    Attributes:
        name: ``"pytorch"`` or the artifact's file name; ``path``: the artifact (``None`` for
            PyTorch); ``runtime``: ``pytorch`` or the format; ``precision``: fp32, int8, ...
        output_kind: ``logits`` or ``log_probs`` (a classifier artifact's softmax outputs).
        correct_top1, correct_top5: images whose label is the first / in the first five
            (``None`` without labels); ``top1``, ``top5``: the same as fractions in [0, 1].
        top1_agreement, top5_overlap: in [0, 1] vs PyTorch fp32 (``None`` for PyTorch).
        mean_cosine, min_cosine, max_abs_diff: outputs vs PyTorch logits in logit units
            (``None`` for PyTorch).
    """

    name: str
    path: str | None
    runtime: str
    precision: str
    output_kind: str
    n_images: int
    correct_top1: int | None
    correct_top5: int | None
    top1: float | None
    top5: float | None
    top1_agreement: float | None
    top5_overlap: float | None
    mean_cosine: float | None
    min_cosine: float | None
    max_abs_diff: float | None

    @property
    def is_reference(self) -> bool:
        return self.path is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Tally:
    """What one model's outputs add up to, chunk by chunk (:meth:`add`), until :meth:`score`."""

    name: str
    path: str | None
    runtime: str
    precision: str
    output_kind: str
    tops: list[np.ndarray] = field(default_factory=list)
    cosines: list[np.ndarray] = field(default_factory=list)
    max_abs: float = 0.0

    def add(self, outputs: np.ndarray, reference: np.ndarray | None) -> None:
        """A chunk's ``(B, classes)`` outputs (in logit units) and PyTorch's logits for the
        same images (``None``: this is PyTorch)."""
        a = np.asarray(outputs, dtype=np.float64)
        self.tops.append(top_classes(a))
        if reference is None:
            return
        r = np.asarray(reference, dtype=np.float64)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(r, axis=1) + 1e-12
        self.cosines.append((a * r).sum(1) / norms)
        self.max_abs = max(self.max_abs, float(np.abs(a - r).max()))

    def top(self) -> np.ndarray:
        """``(N, k)`` top classes of every image added so far."""
        return np.concatenate(self.tops) if self.tops else np.zeros((0, TOP_K), dtype=np.int64)

    def score(self, labels: Sequence[int] | None, reference_top: np.ndarray | None) -> ModelScore:
        """The row: accuracy against ``labels`` (one per image, or ``None``) and agreement with
        ``reference_top`` (PyTorch's ``(N, k)`` top classes; ``None`` for PyTorch itself)."""
        top = self.top()
        n = int(top.shape[0])
        c1 = c5 = None
        if labels is not None and n:
            y = np.asarray(labels, dtype=np.int64)[:, None]
            c1 = int((top[:, :1] == y).any(axis=1).sum())
            c5 = int((top == y).any(axis=1).sum())
        agree = overlap = mean_cos = min_cos = max_abs = None
        if reference_top is not None and n:
            agree = float((top[:, 0] == reference_top[:, 0]).mean())
            k = top.shape[1]
            overlap = float(np.mean([len(set(a) & set(b)) / k
                                     for a, b in zip(top, reference_top, strict=True)]))
            cos = np.concatenate(self.cosines)
            mean_cos, min_cos, max_abs = float(cos.mean()), float(cos.min()), self.max_abs
        return ModelScore(
            name=self.name, path=self.path, runtime=self.runtime, precision=self.precision,
            output_kind=self.output_kind, n_images=n, correct_top1=c1, correct_top5=c5,
            top1=None if c1 is None else c1 / n, top5=None if c5 is None else c5 / n,
            top1_agreement=agree, top5_overlap=overlap, mean_cosine=mean_cos,
            min_cosine=min_cos, max_abs_diff=max_abs)
