"""The export pipeline shared by every format, in rooms of one job each.

* :mod:`.request`: :class:`ExportRequest`, the user's intent (CLI and API build the same);
* :mod:`.plan`: ``plan(request) -> [ExportJob]``, options checked and defaults filled in,
  artifacts named, before anything is built (pure);
* :mod:`.images`: calibration and held-out photos;
* :mod:`.publish`: one artifact exported to a temp folder, validated, renamed into place
  with its sidecar (the only step with side effects);
* :mod:`.exporting`: :func:`export` / :func:`run_export`, the numbered steps;
* :mod:`.validation`: :func:`validate`, an earlier artifact checked again;
* :mod:`.sensitivity`: :func:`quant_report`, the per-op-group INT8 sensitivity.
"""

from __future__ import annotations

from .exporting import export, run_export
from .images import ImageSplit, split_images
from .plan import ExportJob, artifact_name, plan
from .publish import Artifact
from .request import ExportRequest
from .sensitivity import quant_report, sensitivity_formats
from .validation import validate

__all__ = [
    "Artifact",
    "ExportJob",
    "ExportRequest",
    "ImageSplit",
    "artifact_name",
    "export",
    "plan",
    "quant_report",
    "run_export",
    "sensitivity_formats",
    "split_images",
    "validate",
]
