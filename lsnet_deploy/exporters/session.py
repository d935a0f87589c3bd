"""A model file loaded in its runtime for timing: the :class:`Session` every format's
``bench_session`` returns, and the helpers they share (fixed random inputs, static shapes,
silencing native banners).

Runtime settings (what "1 thread" means) are each format's: see its ``bench_session``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BenchmarkError

__all__ = ["Session", "native_stderr_silenced", "random_input", "static_shape"]


@dataclass
class Session:
    """A loaded target: ``run()`` runs one batch of ``input_shape``; ``load_ms`` is the time
    to load (and compile) the model (``None`` for PyTorch eager, already in memory);
    ``first_ms`` the first (cold) call, made by the benchmark to check the model runs;
    ``close()`` restores global settings."""

    run: Callable[[], object]
    input_shape: list[int]
    batch: int
    load_ms: float | None
    close: Callable[[], None] = field(default=lambda: None)
    first_ms: float | None = None


def random_input(shape: list[int], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    """Fixed random data of ``shape``: N(0, 1) clipped to [-3, 3] for floats, the full range
    for 8-bit integers, zeros for wider integers (ids, masks) and booleans."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.clip(rng.standard_normal(shape), -3, 3).astype(dtype)
    if dtype in (np.dtype(np.uint8), np.dtype(np.int8)):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)
    return np.zeros(shape, dtype)


def static_shape(name: str, dims: list[Any], batch: int | None, path: Path) -> list[int]:
    """Concrete input shape: a symbolic first dim takes ``batch`` (default 1); a fixed first
    dim must equal ``batch`` when one is asked for; other symbolic dims are refused."""
    shape = []
    for i, d in enumerate(dims):
        fixed = isinstance(d, (int, np.integer)) and int(d) > 0
        if i == 0:
            if fixed and batch is not None and int(d) != batch:
                raise BenchmarkError(
                    f"{path.name}: input {name!r} has a fixed batch of {int(d)}, not {batch} "
                    "(export with --dynamic-batch, or benchmark --batch "
                    f"{int(d)})")
            shape.append(int(d) if fixed else (batch or 1))
        elif fixed:
            shape.append(int(d))
        else:
            raise BenchmarkError(
                f"{path.name}: input {name!r} has a dynamic dimension {i} ({d!r}); benchmark a "
                "model with a fixed input size")
    return shape


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null inside the block (native banners that would tear
    through the progress bar); Python's ``sys.stderr`` is flushed first."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
