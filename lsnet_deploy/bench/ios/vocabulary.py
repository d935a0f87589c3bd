"""The names the iOS harness and the result importer share: Core ML compute units (ours and
Swift's ``MLComputeUnits``), precision labels, the result-line marker, and the checks of the
labels a user gives."""

from __future__ import annotations

from typing import Any

from ...errors import UnsupportedOptionError
from ..runtimes import COMPUTE_UNITS as RUNTIME_COMPUTE_UNITS
from ..schema import PRECISIONS as RESULT_PRECISIONS

__all__ = [
    "COMPUTE_UNITS",
    "PRECISIONS",
    "RESULT_MARKER",
    "SWIFT_COMPUTE_UNITS",
    "check_choice",
    "nonblank_name",
    "normalize_compute_unit",
]

COMPUTE_UNITS = RUNTIME_COMPUTE_UNITS
"""Core ML compute units under lsnet-deploy's names (the ``accelerator`` of a result): the
ones the Mac runner uses."""

SWIFT_COMPUTE_UNITS = {
    "CPU_ONLY": "cpuOnly",
    "CPU_AND_GPU": "cpuAndGPU",
    "CPU_AND_NE": "cpuAndNeuralEngine",
    "ALL": "all",
}
"""lsnet-deploy's compute-unit name -> the ``MLComputeUnits`` case in Swift."""

PRECISIONS = RESULT_PRECISIONS
"""Precision labels of a result (:data:`lsnet_deploy.bench.schema.PRECISIONS`)."""

RESULT_MARKER = "LSNET_BENCH_RESULT"
"""Prefix of a result line printed by the harness (then whitespace and a JSON object)."""


def normalize_compute_unit(name: str) -> str:
    """``"CPU_AND_NE"``, ``"cpu_and_ne"`` or ``"cpuAndNeuralEngine"`` -> ``"CPU_AND_NE"``;
    :class:`UnsupportedOptionError` for anything else."""
    key = str(name).strip().lower().replace("-", "_")
    for unit, swift in SWIFT_COMPUTE_UNITS.items():
        if key in (unit.lower(), swift.lower()):
            return unit
    raise UnsupportedOptionError(
        f"unknown compute unit {name!r}: use one of {', '.join(COMPUTE_UNITS)}"
    )


def nonblank_name(value: Any, what: str) -> str:
    """``value`` stripped; :class:`UnsupportedOptionError` naming ``what`` unless it is a
    non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise UnsupportedOptionError(f"{what} must be a non-empty name, got {value!r}")
    return value.strip()


def check_choice(value: Any, allowed: tuple[str, ...], what: str) -> None:
    """:class:`UnsupportedOptionError` naming ``what`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise UnsupportedOptionError(
            f"{what} {value!r} is not one of {', '.join(allowed)}"
        )
