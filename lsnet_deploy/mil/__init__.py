"""A reference executor for Core ML ML Programs: runs a saved ``.mlpackage`` op by op with
PyTorch CPU kernels, on any OS (Core ML itself runs only on macOS).

* :mod:`.package`: the package on disk (manifest, spec protobuf, weight blobs);
* :mod:`.values` / :mod:`.program`: MIL types and values, a function as plain data;
* :mod:`.ops` + ``kernels_*``: the op table, one kernel per MIL op, after Apple's MIL op
  reference; an op without a kernel is an :class:`UnsupportedMilOpError` naming it;
* :mod:`.executor`: the interpreter (declared shapes and types checked, fp16 honoured);
* :mod:`.model`: :class:`ReferenceModel`, the ``MLModel.predict`` interface (image inputs,
  classifier outputs).

Used by the CoreML exporter to validate packages numerically where Core ML cannot run.
"""

from __future__ import annotations

from .errors import MilError, MilProgramError, UnsupportedMilOpError
from .executor import Executor
from .model import EXECUTOR_NAME, EXECUTOR_VERSION, ReferenceModel
from .ops import OPS
from .package import read_package
from .program import Program, load_program

__all__ = [
    "EXECUTOR_NAME",
    "EXECUTOR_VERSION",
    "OPS",
    "Executor",
    "MilError",
    "MilProgramError",
    "Program",
    "ReferenceModel",
    "UnsupportedMilOpError",
    "load_program",
    "read_package",
    "supported_ops",
]


def supported_ops() -> list[str]:
    """Every MIL op type the executor has a kernel for, sorted."""
    return sorted(OPS)
