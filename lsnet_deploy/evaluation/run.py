"""``evaluate``: top-1 / top-5 accuracy of PyTorch fp32 and of artifacts on a labelled image
folder, and each artifact's agreement with PyTorch fp32 on the same images.

The images are streamed in chunks (decoded, preprocessed, run through PyTorch and every
artifact, then dropped): only the top-5 classes and one cosine per image and model are kept,
so 50,000 ImageNet val images need no more memory than a chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ArtifactError, ImageError, UnknownVariantError, UnsupportedOptionError
from ..fidelity import comparable_outputs, run_artifact
from ..lsnet import VARIANTS, to_hw
from ..pipeline.validation import DescribedArtifact, describe_artifact, source_weights
from ..preprocess import Preprocess, iter_images, no_usable_image, warn_skipped
from ..progress import Say, counted
from .dataset import LabelledImages, read_dataset
from .scores import ModelScore, Tally

__all__ = ["DEFAULT_BATCH", "EvaluationResult", "evaluate"]

log = logging.getLogger(__name__)

DEFAULT_BATCH = 32
"""Images decoded and run per chunk (an artifact with a static batch runs its own batch)."""

FROM_ARTIFACTS: Any = ...
"""``weights`` default: what the artifacts were exported from (official without artifacts)."""


@dataclass(frozen=True)
class EvaluationResult:
    """The evaluation of PyTorch fp32 and of every artifact on the same images.

    Attributes:
        variant, weights: the model (``weights``: its source, e.g. ``"official: ..."`` or
            ``"RANDOM ..."``); ``img_size``: its input ``(H, W)``; ``num_classes``.
        images: where the images come from (folder, layout, count); ``layout``: ``synsets``,
            ``labels-file`` or ``unlabelled`` (no accuracy, agreement only).
        n_images: images scored; ``skipped``: unreadable files left out (with their labels).
        scores: PyTorch fp32 first, then the artifacts in the order given.
    """

    variant: str
    weights: str
    img_size: tuple[int, int]
    num_classes: int
    images: str
    layout: str
    n_images: int
    skipped: tuple[str, ...]
    scores: tuple[ModelScore, ...]

    @property
    def labelled(self) -> bool:
        return self.layout != "unlabelled"

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object (``scores``: one dict per row, see :class:`ModelScore`)."""
        return {"variant": self.variant, "weights": self.weights,
                "img_size": list(self.img_size), "num_classes": self.num_classes,
                "images": self.images, "layout": self.layout, "labelled": self.labelled,
                "n_images": self.n_images, "skipped": list(self.skipped),
                "scores": [s.to_dict() for s in self.scores]}


def evaluate(
    artifacts: Sequence[str | Path],
    images: str | Path,
    *,
    labels: str | Path | None = None,
    model: str | None = None,
    weights: str | Path | None | Any = FROM_ARTIFACTS,
    img_size: int | tuple[int, int] | None = None,
    limit: int | None = None,
    batch: int = DEFAULT_BATCH,
    threads: int | None = None,
    progress: Say | None = None,
) -> EvaluationResult:
    """Accuracy and agreement of PyTorch fp32 and of ``artifacts`` on the images of ``images``.

    Args:
        artifacts: lsnet-deploy artifacts of one model (their sidecars, verified against
            them, must agree on variant, weights, input size and preprocessing); may be empty
            with ``model``.
        images: a folder: ImageNet val synset folders, a flat folder with ``labels``, or a
            plain folder (agreement only); see :mod:`lsnet_deploy.evaluation.dataset`.
        labels: a labels file (``path<TAB>class index`` lines, paths relative to ``images``).
        model: the variant of the PyTorch reference (default: the artifacts'; needed without
            artifacts; must match them).
        weights: the reference's checkpoint, ``"official"``, or ``None`` / ``"random"`` for
            the synthetic weights (default: what the artifacts were exported from, the
            official checkpoint without artifacts).
        img_size: the reference's input size without artifacts (default 224; with artifacts
            theirs, and a different one is refused).
        limit: score at most this many images (a round-robin spread over the classes).
        batch: images per chunk (decoded, run, then dropped).
        threads: threads of the artifacts' runtimes (default: the ``LSNET_DEPLOY_THREADS``
            budget, else theirs).
        progress: "evaluating k/n" steps (:mod:`lsnet_deploy.progress`).

    Raises:
        UnsupportedOptionError: no artifact and no ``model``, artifacts of different models,
            a ``model`` / ``img_size`` other than the artifacts', ``batch`` or ``limit`` < 1.
        ImageError, DatasetError: the folder or its labels (before any model is built).
        ArtifactError, OutputError: an artifact that is missing, cannot be trusted, or returns
            another shape than its model.
    """
    from ..api import OFFICIAL, create_model

    if batch < 1:
        raise UnsupportedOptionError(f"--batch must be at least 1, got {batch}")
    # 1. the artifacts, checked against their sidecars, and the model they agree on
    described = [describe_artifact(Path(a)) for a in artifacts]
    variant, size, pre, num_classes = _the_model(described, model, img_size)
    # 2. the images and their labels (listed, nothing decoded yet)
    data = read_dataset(images, labels, num_classes, limit)
    # 3. the reference and the runners
    chosen = weights
    if weights is FROM_ARTIFACTS:
        chosen = source_weights(described[0].metadata) if described else OFFICIAL
    if progress is not None:
        progress(f"loading {variant} (PyTorch fp32) and {len(described)} artifact(s)")
    reference = create_model(variant, chosen, img_size=size)
    source = reference.weights_source.label  # type: ignore[union-attr]
    runners = [d.exporter.runner(d.path, threads) for d in described]
    tallies = [Tally("pytorch", None, "pytorch", "fp32", "logits"),
               *(Tally(d.path.name, str(d.path), d.exporter.name, d.precision, d.output_kind)
                 for d in described)]
    # 4. run every chunk through all of them
    used, skipped = _run(data, pre, batch, reference, described, runners, tallies, progress)
    # 5. the scores
    warn_skipped(skipped, str(data.folder))
    if not used:
        raise no_usable_image(str(data.folder), skipped)
    labels_used = None if data.labels is None else [data.labels[i] for i in used]
    reference_top = tallies[0].top()
    scores = (tallies[0].score(labels_used, None),
              *(t.score(labels_used, reference_top) for t in tallies[1:]))
    return EvaluationResult(variant=variant, weights=source, img_size=size,
                            num_classes=num_classes, images=data.source, layout=data.layout,
                            n_images=len(used), skipped=tuple(str(p) for p in skipped),
                            scores=scores)


def _the_model(described: list[DescribedArtifact], model: str | None,
               img_size: int | tuple[int, int] | None,
               ) -> tuple[str, tuple[int, int], Preprocess, int]:
    """``(variant, (H, W), preprocessing, classes)`` the artifacts agree on (or ``model`` at
    ``img_size`` without artifacts)."""
    if not described:
        if model is None:
            raise UnsupportedOptionError("nothing to evaluate: pass artifacts, or --model for "
                                         "PyTorch alone")
        if model not in VARIANTS:
            from ..api import list_variants

            raise UnknownVariantError(f"unknown variant {model!r}; known: "
                                      f"{', '.join(list_variants())}")
        size = to_hw(img_size if img_size is not None else 224)
        return model, size, Preprocess(img_size=size), VARIANTS[model].num_classes
    first = described[0]
    for d in described[1:]:
        for what, a, b in _identity_pairs(first, d):
            if a != b:
                raise UnsupportedOptionError(
                    f"{first.path.name} and {d.path.name} are not the same model ({what} "
                    f"{a} vs {b}); evaluate the artifacts of one model at a time")
    variant = str(first.metadata["variant"])
    if model is not None and model != variant:
        raise UnsupportedOptionError(f"--model {model}, but {first.path.name} is {variant}; "
                                     "leave --model out to use the artifacts' model")
    size = first.spec.img_size
    if img_size is not None and to_hw(img_size) != size:
        raise UnsupportedOptionError(f"--img-size {img_size}, but {first.path.name} takes "
                                     f"{size[0]}x{size[1]}; leave --img-size out")
    return variant, size, first.preprocess, first.spec.num_classes


def _identity_pairs(a: DescribedArtifact, b: DescribedArtifact) -> list[tuple[str, Any, Any]]:
    """What two artifacts of one model share: ``(what, a's, b's)``."""
    def weights(d: DescribedArtifact) -> str:
        m = d.metadata
        return str(m.get("source_checkpoint_sha256") or m.get("weights_path")
                   or m.get("weights_kind"))

    return [("variant", a.metadata["variant"], b.metadata["variant"]),
            ("weights", weights(a), weights(b)),
            ("input size", a.spec.img_size, b.spec.img_size),
            ("classes", a.spec.num_classes, b.spec.num_classes),
            ("preprocessing", a.preprocess, b.preprocess)]


@torch.no_grad()
def _run(data: LabelledImages, pre: Preprocess, batch: int, reference: torch.nn.Module,
         described: list[DescribedArtifact], runners: list[Any], tallies: list[Tally],
         progress: Say | None) -> tuple[list[int], list[Path]]:
    """Decode ``data`` chunk by chunk and add every model's outputs to its tally; returns the
    indices of the images used and the unreadable files."""
    used: list[int] = []
    skipped: list[Path] = []
    n = len(data.paths)
    starts = range(0, n, batch)
    for start in counted(progress, "evaluating", starts,
                         lambda s: f"images {s + 1}-{min(s + batch, n)} of {n}"):
        chunk = data.paths[start : start + batch]
        tensors = []
        for k, (path, result) in enumerate(iter_images(chunk, pre)):
            if isinstance(result, ImageError):
                skipped.append(path)
            else:
                tensors.append(result)
                used.append(start + k)
        if not tensors:
            continue
        x = torch.stack(tensors)
        logits = reference(x)
        tallies[0].add(logits.double().numpy(), None)
        for d, runner, tally in zip(described, runners, tallies[1:], strict=True):
            outputs = run_artifact(runner, x, d.spec)
            if outputs.shape != tuple(logits.shape):
                raise ArtifactError(
                    f"{d.path.name} returns {outputs.shape} where the model {d.source} "
                    f"describes returns {tuple(logits.shape)}; re-export the artifact")
            a, r = comparable_outputs(outputs, logits, d.output_kind)  # type: ignore[arg-type]
            tally.add(a, r)
    return used, skipped

