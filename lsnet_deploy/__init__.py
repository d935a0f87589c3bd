"""lsnet-deploy: LSNet from its PyTorch definition to mobile artifacts, measured and trusted.

Public API (the CLI's verbs): :func:`create_model`, :func:`reparameterize`, :func:`predict`,
:func:`export`, :func:`validate`, :func:`quant_report`, :func:`list_variants`; building blocks: :class:`LSNet`, :class:`IOSpec`, :class:`Preprocess`,
:func:`count_macs`, :func:`count_params`, :func:`load_weights`. Errors derive from
:class:`LsnetDeployError`.
"""

from __future__ import annotations

from ._version import __version__
from .api import Prediction, WeightsSource, create_model, list_variants, predict
from .checkpoint import load_weights
from .errors import (
    CheckpointError,
    ExportError,
    ImageError,
    InputShapeError,
    LsnetDeployError,
    MissingDependencyError,
    OutputError,
    UnknownVariantError,
    UnsupportedOptionError,
    ValidationFailedError,
    WeightsUnavailableError,
)
from .flops import MacReport, count_macs, count_params
from .lsnet import LSNet
from .pipeline import Artifact, export, quant_report, validate
from .preprocess import Preprocess
from .reparam import ReparamReport, reparameterize
from .spec import IOSpec

__all__ = [
    "Artifact",
    "CheckpointError",
    "ExportError",
    "IOSpec",
    "ImageError",
    "InputShapeError",
    "LSNet",
    "LsnetDeployError",
    "MacReport",
    "MissingDependencyError",
    "OutputError",
    "Prediction",
    "Preprocess",
    "ReparamReport",
    "UnknownVariantError",
    "UnsupportedOptionError",
    "ValidationFailedError",
    "WeightsSource",
    "WeightsUnavailableError",
    "__version__",
    "count_macs",
    "count_params",
    "create_model",
    "export",
    "list_variants",
    "load_weights",
    "predict",
    "quant_report",
    "reparameterize",
    "validate",
]
