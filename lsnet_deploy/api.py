"""The Python API: the same verbs as the CLI.

>>> import lsnet_deploy
>>> model = lsnet_deploy.create_model("lsnet_t", "models/lsnet_t.pth", reparameterize=True)
>>> top5 = lsnet_deploy.predict(model, ["calibration/skimage_chelsea.png"])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_weights
from .errors import ImageError, UnknownVariantError
from .labels import imagenet_classes
from .lsnet import VARIANTS, LSNet, build_lsnet, to_hw
from .preprocess import PixelBudget, Preprocess, check_image_path, load_image
from .reparam import reparameterize as _reparameterize
from .synthetic import init_trained_looking
from .zoo import fetch_checkpoint

__all__ = ["Prediction", "WeightsSource", "create_model", "list_variants", "predict"]

log = logging.getLogger(__name__)

RANDOM = "random"
OFFICIAL = "official"
RANDOM_OUTLIERS = "random-outliers"
"""``--weights`` of the synthetic ``outliers`` family (:mod:`lsnet_deploy.synthetic`): kind
``random``, and ``path`` names the family (``None`` for the default trained-looking one)."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights came from: ``kind`` is ``official``, ``file`` or ``random``."""

    kind: str
    path: str | None = None
    sha256: str | None = None

    @property
    def label(self) -> str:
        if self.kind == RANDOM:
            family = " with outlier channels" if self.path == RANDOM_OUTLIERS else ""
            return f"RANDOM (synthetic{family}, untrained: predictions are meaningless)"
        return f"{self.kind}: {self.path} (sha256 {self.sha256[:12] if self.sha256 else '?'}...)"


def list_variants(include_test: bool = False) -> list[str]:
    """Registered variant names (the six official ones, plus tiny test configs if asked)."""
    return [n for n, c in VARIANTS.items() if c.official or include_test]


def create_model(
    variant: str,
    weights: str | Path | None = None,
    *,
    img_size: int | tuple[int, int] = 224,
    reparameterize: bool = False,
    seed: int = 0,
    allow_nonfinite: bool = False,
) -> LSNet:
    """Build an LSNet variant in eval mode.

    Args:
        variant: ``lsnet_t``, ``lsnet_s``, ``lsnet_b`` or their ``_distill`` forms.
        weights: path to a checkpoint (official ``.pth``, a bare/wrapped state dict, or
            ``.safetensors``); ``"official"`` for the official checkpoint (cached or downloaded
            from Hugging Face); ``None`` or ``"random"`` for synthetic trained-looking random
            weights (seeded by ``seed``; never meaningful predictions); ``"random-outliers"``
            for the synthetic family with outlier channels (harder for INT8).
        img_size: input size the model is built for (``int`` or ``(H, W)``); other sizes than
            224 get the attention-bias tables interpolated bicubically.
        reparameterize: fuse for inference (see :func:`lsnet_deploy.reparameterize`).
        allow_nonfinite: load a checkpoint holding NaN/Inf or negative BatchNorm running
            variances anyway (a warning; its outputs will be NaN): for inspecting a broken file.
            By default it is a :class:`~lsnet_deploy.errors.CheckpointError`.

    The returned model has a ``weights_source`` attribute (:class:`WeightsSource`).
    """
    if variant not in VARIANTS:
        raise UnknownVariantError(
            f"unknown variant {variant!r}; known: {', '.join(list_variants())}"
        )
    model = build_lsnet(variant, img_size=to_hw(img_size))
    source: WeightsSource
    if weights is None or str(weights) in (RANDOM, RANDOM_OUTLIERS):
        outliers = str(weights) == RANDOM_OUTLIERS
        init_trained_looking(model, seed=seed, family="outliers" if outliers else "trained-looking")
        source = WeightsSource(RANDOM, RANDOM_OUTLIERS if outliers else None)
        log.warning("%s: RANDOM weights (synthetic, untrained); predictions are meaningless", variant)
    else:
        kind = "file"
        path = Path(weights)
        if str(weights) == OFFICIAL:
            path, kind = fetch_checkpoint(variant), OFFICIAL
        info = load_weights(model, path, variant=variant, allow_nonfinite=allow_nonfinite)
        source = WeightsSource(kind, str(path), info.sha256)
    model.eval()
    model.weights_source = source  # type: ignore[assignment]
    model.variant = variant  # type: ignore[assignment]
    if reparameterize:
        _reparameterize(model)
    return model


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image: ``(class_index, class_name, probability)`` best first."""

    path: str
    top: tuple[tuple[int, str, float], ...]


@torch.no_grad()
def predict(
    model: LSNet,
    images: list[str | Path],
    top_k: int = 5,
    crop_pct: float = 0.9,
    *,
    pixel_budget: PixelBudget | None = None,
) -> list[Prediction]:
    """Classify image files with ``model`` (ImageNet preprocessing at the model's size).

    Every path is checked (a regular file) before any is decoded, and each header against
    ``pixel_budget`` (default :class:`~lsnet_deploy.preprocess.PixelBudget`: 2**27 pixels per
    file, 2**24 after the planned resize; ``PixelBudget(None, None)`` lifts both) before it is
    decoded. Raises :class:`~lsnet_deploy.errors.ImageError` naming the first unusable file.
    """
    pre = Preprocess(img_size=model.img_size, crop_pct=crop_pct)
    paths = [check_image_path(p) for p in images]
    if not paths:
        raise ImageError("no image given")
    budget = pixel_budget or PixelBudget()
    batch = torch.stack([pre(load_image(p, pre, budget)) for p in paths])
    probs = model(batch).softmax(-1)
    names = imagenet_classes() if probs.shape[-1] == 1000 else None
    out = []
    for path, p in zip(paths, probs, strict=True):
        values, idx = p.topk(min(top_k, p.numel()))
        top = tuple(
            (int(i), names[int(i)] if names else str(int(i)), float(v))
            for v, i in zip(values, idx, strict=True)
        )
        out.append(Prediction(str(path), top))
    return out
