"""Errors of the ML Program reference executor (all :class:`~lsnet_deploy.errors.LsnetDeployError`).

* :class:`UnsupportedMilOpError`: the program holds an op the executor has no kernel for
  (named in the message; never skipped);
* :class:`MilProgramError`: the package or program is malformed or inconsistent (a weight
  blob that fails its checks, an op whose result does not have the shape or type the program
  declares, a label list that is not the expected one). It is a
  :class:`~lsnet_deploy.errors.ValidationFailedError`: the package does not validate.
"""

from __future__ import annotations

from ..errors import LsnetDeployError, ValidationFailedError

__all__ = ["MilError", "MilProgramError", "UnsupportedMilOpError"]


class MilError(LsnetDeployError):
    """Base class of the reference executor's errors."""


class UnsupportedMilOpError(MilError):
    """An ML Program op without a kernel in the reference executor."""

    def __init__(self, op_type: str, where: str = "") -> None:
        self.op_type = op_type
        super().__init__(
            f"the Core ML reference executor has no kernel for MIL op {op_type!r}"
            + (f" ({where})" if where else "")
            + "; add one to lsnet_deploy/mil (op table: lsnet_deploy.mil.ops.OPS) or validate "
            "the package on macOS with Core ML")


class MilProgramError(MilError, ValidationFailedError):
    """A package or ML Program that is malformed or contradicts itself."""
