"""The CPU thread budget of lsnet-deploy's own work: ``LSNET_DEPLOY_THREADS``.

Exports calibrate and validate in PyTorch, ONNX Runtime and LiteRT, and each of them sizes its
thread pool to the machine by default. That is the fastest choice when one export has the
machine. When several processes share the cores (a build farm running jobs side by side,
pytest-xdist workers), every pool spins for cores the others hold, and the small ops of INT8
calibration (one observer per activation, hundreds per image) get many times slower: two
concurrent TFLite INT8 exports of the test model took 80 s each with the default pools and
47 s each with one thread (docs/decisions.md, "Thread budget").

``LSNET_DEPLOY_THREADS=N`` (a positive integer) caps that work at N threads:

- PyTorch's intra-op pool (``torch.set_num_threads``), set when a CLI command starts
  (:func:`apply_to_torch`; Python API users call it, or ``torch.set_num_threads``, themselves);
- the ONNX Runtime sessions, LiteRT interpreters and ExecuTorch's thread pool that validate
  artifacts and compare them (:func:`default_threads`, the thread count when the caller names
  none); :func:`lsnet_deploy.pipeline.run_export` checks the value before any work.

Benchmarks are not affected: ``bench`` times the thread counts it is given (``--threads``).
Unset (the default): every library keeps its own default.
"""

from __future__ import annotations

import os

from .errors import UnsupportedOptionError

__all__ = ["ENV", "apply_to_torch", "default_threads"]

ENV = "LSNET_DEPLOY_THREADS"


def default_threads() -> int | None:
    """The budget from :data:`ENV`: a positive int, or ``None`` when it is unset or empty.

    Raises:
        UnsupportedOptionError: the variable is set to something else than a positive integer.
    """
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise UnsupportedOptionError(f"{ENV}={raw!r}: give a positive number of threads, "
                                     "or unset it for the libraries' defaults")
    return n


def apply_to_torch() -> int | None:
    """Set PyTorch's intra-op thread count to the budget, if one is set; returns it."""
    n = default_threads()
    if n is not None:
        import torch

        torch.set_num_threads(n)
    return n
