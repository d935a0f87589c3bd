"""lsnet-deploy: LSNet from its PyTorch definition to mobile artifacts, measured and trusted.

Public API (the CLI's verbs): :func:`create_model`, :func:`reparameterize`, :func:`predict`,
:func:`export`, :func:`validate`, :func:`evaluate`, :func:`quant_report`, :func:`list_variants`; building blocks: :class:`LSNet`, :class:`IOSpec`, :class:`Preprocess`,
:func:`count_macs`, :func:`count_params`, :func:`load_weights`. Errors derive from
:class:`LsnetDeployError`.

The names are imported on first use (PEP 562), so ``import lsnet_deploy`` and the command
line start without loading PyTorch until they need it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    ArtifactError,
    BenchmarkError,
    CheckpointError,
    DatasetError,
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

if TYPE_CHECKING:
    from .api import Prediction, WeightsSource, create_model, list_variants, predict
    from .checkpoint import load_weights
    from .evaluation import EvaluationResult, evaluate
    from .flops import MacReport, count_macs, count_params
    from .lsnet import LSNet
    from .pipeline import Artifact, export, quant_report, validate
    from .preprocess import Preprocess
    from .reparam import ReparamReport, reparameterize
    from .spec import IOSpec

_LAZY = {
    "Prediction": "api", "WeightsSource": "api", "create_model": "api",
    "list_variants": "api", "predict": "api", "load_weights": "checkpoint",
    "MacReport": "flops", "count_macs": "flops", "count_params": "flops", "LSNet": "lsnet",
    "Artifact": "pipeline", "export": "pipeline", "quant_report": "pipeline",
    "validate": "pipeline", "Preprocess": "preprocess", "ReparamReport": "reparam",
    "reparameterize": "reparam", "IOSpec": "spec", "evaluate": "evaluation",
    "EvaluationResult": "evaluation",
}
"""Public name -> the submodule that defines it (imported on first access)."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lsnet_deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Artifact",
    "ArtifactError",
    "BenchmarkError",
    "CheckpointError",
    "DatasetError",
    "EvaluationResult",
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
    "evaluate",
    "export",
    "list_variants",
    "load_weights",
    "predict",
    "quant_report",
    "reparameterize",
    "validate",
]
