"""Benchmark targets and how each is loaded for timing.

A :class:`Target` is one thing to time: an LSNet in PyTorch eager (unfused or fused) or an
artifact file in its format's runtime. :func:`open_session` loads it for a thread count and
batch size and returns a :class:`~lsnet_deploy.exporters.session.Session` running one batch
on fixed random inputs. Artifact files are loaded by their format's exporter
(``bench_session``: the same runtime loader its validation uses), from the model's own input
description, so any ``.onnx`` / ``.tflite`` / ``.mlpackage`` / ``.pte`` works, LSNet or not.

PyTorch eager: ``torch.set_num_threads(n)`` (intra-op pool), ``torch.inference_mode``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BenchmarkError, MissingDependencyError, first_line
from ..exporters import exporter_for_runtime, get_exporter
from ..exporters.coreml import COMPUTE_UNITS
from ..exporters.session import Session, random_input
from .artifacts import describe_artifact

__all__ = [
    "COMPUTE_UNITS",
    "PYTORCH_RUNTIMES",
    "Session",
    "Target",
    "artifact_targets",
    "open_session",
    "pytorch_targets",
    "random_input",
]

PYTORCH_RUNTIMES = ("pytorch-unfused", "pytorch-fused")
"""PyTorch eager, LSNet before / after reparameterization."""


@dataclass(frozen=True)
class Target:
    """One model in one runtime.

    ``module`` is set for the ``pytorch-*`` runtimes (an eval-mode ``nn.Module`` taking
    ``(B, 3, H, W)`` float32 of ``img_size``); ``artifact`` for the others. ``accelerator`` is
    the runtime's hardware choice (CoreML compute unit). ``notes`` is copied into the result
    (e.g. the artifact's cosine).
    """

    model: str
    runtime: str
    precision: str
    artifact: Path | None = None
    module: Any = None
    img_size: tuple[int, int] = (224, 224)
    accelerator: str | None = None
    notes: str | None = None

    @property
    def label(self) -> str:
        parts = [self.model, self.runtime, self.precision]
        if self.accelerator:
            parts.append(self.accelerator)
        return " / ".join(parts)


def pytorch_targets(model: Any, fused: Any, variant: str) -> list[Target]:
    """PyTorch eager, unfused (``model``) and fused (``fused``, its reparameterized copy)."""
    size = tuple(model.img_size)
    return [
        Target(variant, "pytorch-unfused", "fp32", module=model, img_size=size),  # type: ignore[arg-type]
        Target(variant, "pytorch-fused", "fp32", module=fused, img_size=size),  # type: ignore[arg-type]
    ]


def artifact_targets(path: Path, compute_units: tuple[str, ...] = ("ALL",)) -> list[Target]:
    """Targets of one artifact file (one per accelerator for formats that have them)."""
    info = describe_artifact(path)
    notes = "; ".join(filter(None, [
        f"cosine vs PyTorch {info.mean_cosine:.4f}" if info.mean_cosine is not None else None,
        "failed its validation gate at export" if info.failed_gate else None,
        f"sidecar ignored ({info.ignored_sidecar})" if info.ignored_sidecar else None,
    ])) or None
    exp = get_exporter(info.fmt)
    if exp.capabilities.accelerators:
        return [Target(info.model, exp.runtime, info.precision, artifact=Path(path),
                       accelerator=unit, notes=notes) for unit in compute_units]
    return [Target(info.model, exp.runtime, info.precision, artifact=Path(path), notes=notes)]


def open_session(target: Target, threads: int | None, batch: int | None) -> Session:
    """Load ``target`` for ``threads`` (``None``: runtime default) and ``batch`` (``None``: the
    model's own batch, else 1). Raises :class:`BenchmarkError` when it cannot load or run."""
    if target.runtime in PYTORCH_RUNTIMES:
        session = _torch_session(target, threads, batch or 1)
    else:
        if target.artifact is None or not Path(target.artifact).exists():
            raise BenchmarkError(f"{target.artifact}: no such file")
        exp = exporter_for_runtime(target.runtime)
        if exp is None:
            raise BenchmarkError(f"unknown runtime {target.runtime!r}")
        try:
            session = exp.bench_session(Path(target.artifact), threads, batch,
                                        target.accelerator)
        except (BenchmarkError, MissingDependencyError):
            raise
        except Exception as e:  # e.g. an input type the runtime refuses
            raise BenchmarkError(f"{target.artifact}: {target.runtime} cannot prepare it: "
                                 f"{type(e).__name__}: {first_line(e)}") from e
    try:  # the cold first call, and a clear error here rather than inside the timing loop
        t0 = time.perf_counter()
        session.run()
        session.first_ms = (time.perf_counter() - t0) * 1e3
    except Exception as e:
        session.close()
        what = target.artifact or target.model
        raise BenchmarkError(f"{what}: {target.runtime} fails to run it: "
                             f"{type(e).__name__}: {first_line(e)}") from e
    return session


def _torch_session(target: Target, threads: int | None, batch: int) -> Session:
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    module = target.module.eval()
    x = torch.randn(batch, 3, *target.img_size, generator=torch.Generator().manual_seed(0))

    def run() -> object:
        with torch.inference_mode():
            return module(x)

    return Session(run, list(x.shape), batch, None, lambda: torch.set_num_threads(before))
