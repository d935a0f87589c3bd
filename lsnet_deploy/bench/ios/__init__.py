"""iPhone benchmarks: generate a Swift harness for a Core ML model, import what it prints.

One concern per module: :mod:`.harness` (the generator: Swift sources from
``bench/templates/ios``, written all or nothing), :mod:`.importer` (result lines, JSON and
hand-entered numbers back into :class:`~lsnet_deploy.bench.schema.BenchResult`), and
:mod:`.vocabulary` (the compute-unit and precision names and checks both use). This package
re-exports the public names.
"""

from __future__ import annotations

from .harness import HARNESS_FILES, HarnessConfig, render_ios_harness, write_ios_harness
from .importer import import_results, manual_result, parse_results
from .vocabulary import (
    COMPUTE_UNITS,
    PRECISIONS,
    RESULT_MARKER,
    SWIFT_COMPUTE_UNITS,
    normalize_compute_unit,
)

__all__ = [
    "COMPUTE_UNITS",
    "HARNESS_FILES",
    "PRECISIONS",
    "RESULT_MARKER",
    "SWIFT_COMPUTE_UNITS",
    "HarnessConfig",
    "import_results",
    "manual_result",
    "normalize_compute_unit",
    "parse_results",
    "render_ios_harness",
    "write_ios_harness",
]
