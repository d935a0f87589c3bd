"""``evaluate``: accuracy of PyTorch fp32 and of exported artifacts on labelled images, and
each artifact's agreement with PyTorch fp32 (docs/evaluate.md).

* :mod:`.dataset`: the images and labels of a folder (synset folders, a labels file, or none),
  listed without decoding (pure);
* :mod:`.scores`: accuracy and agreement from per-image top-5 classes and cosines (pure);
* :mod:`.run`: :func:`evaluate`, the images streamed through every model;
* :mod:`.plot`: the bar chart (matplotlib, the ``bench`` extra).
"""

from __future__ import annotations

from .dataset import LabelledImages, parse_labels, read_dataset
from .run import DEFAULT_BATCH, EvaluationResult, evaluate
from .scores import ModelScore

__all__ = [
    "DEFAULT_BATCH",
    "EvaluationResult",
    "LabelledImages",
    "ModelScore",
    "evaluate",
    "parse_labels",
    "read_dataset",
]
