"""Benchmark targets and how each runtime loads and runs them.

A :class:`Target` is one thing to time: an LSNet in PyTorch eager (unfused or fused) or an
artifact file in its runtime (ONNX Runtime, the LiteRT interpreter, CoreML on macOS).
:func:`open_session` loads it for a thread count and batch size and returns a zero-argument
callable that runs one batch on fixed random inputs; inputs are built from the model's own
input description, so any ``.onnx`` / ``.tflite`` / ``.mlpackage`` works, LSNet or not.

Runtime settings (what "1 thread" means):

* PyTorch: ``torch.set_num_threads(n)`` (intra-op pool), ``torch.inference_mode``;
* ONNX Runtime: CPU execution provider, ``intra_op_num_threads=n``, ``inter_op_num_threads=1``,
  all graph optimizations (the default);
* LiteRT: ``ai_edge_litert`` interpreter, ``num_threads=n``, its default XNNPACK delegate;
* CoreML: ``MLModel(compute_units=...)``; the thread count is Core ML's business (``None``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BenchmarkError, MissingDependencyError, first_line
from .artifacts import describe_artifact

__all__ = [
    "COMPUTE_UNITS",
    "RUNTIME_OF_FORMAT",
    "Session",
    "Target",
    "artifact_targets",
    "open_session",
    "pytorch_targets",
    "random_input",
]

COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")
"""CoreML compute units (``coremltools.ComputeUnit`` names)."""

RUNTIME_OF_FORMAT = {"onnx": "onnxruntime", "tflite": "litert", "coreml": "coreml"}


@dataclass(frozen=True)
class Target:
    """One model in one runtime.

    ``module`` is set for the ``pytorch-*`` runtimes (an eval-mode ``nn.Module`` taking
    ``(B, 3, H, W)`` float32 of ``img_size``); ``artifact`` for the others. ``accelerator`` is
    the CoreML compute unit. ``notes`` is copied into the result (e.g. the artifact's cosine).
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


@dataclass
class Session:
    """A loaded target: ``run()`` runs one batch of ``input_shape``; ``load_ms`` is the time
    to load (and compile) the model (``None`` for PyTorch eager, already in memory);
    ``first_ms`` the first (cold) call, made by :func:`open_session` to check the model runs;
    ``close()`` restores global settings."""

    run: Callable[[], object]
    input_shape: list[int]
    batch: int
    load_ms: float | None
    close: Callable[[], None] = field(default=lambda: None)
    first_ms: float | None = None


def pytorch_targets(model: Any, fused: Any, variant: str) -> list[Target]:
    """PyTorch eager, unfused (``model``) and fused (``fused``, its reparameterized copy)."""
    size = tuple(model.img_size)
    return [
        Target(variant, "pytorch-unfused", "fp32", module=model, img_size=size),  # type: ignore[arg-type]
        Target(variant, "pytorch-fused", "fp32", module=fused, img_size=size),  # type: ignore[arg-type]
    ]


def artifact_targets(path: Path, compute_units: tuple[str, ...] = ("ALL",)) -> list[Target]:
    """Targets of one artifact file (one per compute unit for CoreML)."""
    info = describe_artifact(path)
    notes = f"cosine vs PyTorch {info.mean_cosine:.4f}" if info.mean_cosine is not None else None
    runtime = RUNTIME_OF_FORMAT[info.fmt]
    if info.fmt == "coreml":
        return [Target(info.model, runtime, info.precision, artifact=Path(path),
                       accelerator=unit, notes=notes) for unit in compute_units]
    return [Target(info.model, runtime, info.precision, artifact=Path(path), notes=notes)]


def random_input(shape: list[int], dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """Fixed random data of ``shape``: N(0, 1) clipped to [-3, 3] for floats, the full range
    for 8-bit integers, zeros for wider integers (ids, masks) and booleans."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.clip(rng.standard_normal(shape), -3, 3).astype(dtype)
    if dtype in (np.dtype(np.uint8), np.dtype(np.int8)):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)
    return np.zeros(shape, dtype)


def open_session(target: Target, threads: int | None, batch: int | None) -> Session:
    """Load ``target`` for ``threads`` (``None``: runtime default) and ``batch`` (``None``: the
    model's own batch, else 1). Raises :class:`BenchmarkError` when it cannot load or run."""
    if target.runtime.startswith("pytorch"):
        session = _torch_session(target, threads, batch or 1)
    else:
        if target.artifact is None or not Path(target.artifact).exists():
            raise BenchmarkError(f"{target.artifact}: no such file")
        opener = {"onnxruntime": _ort_session, "litert": _litert_session,
                  "coreml": _coreml_session}.get(target.runtime)
        if opener is None:
            raise BenchmarkError(f"unknown runtime {target.runtime!r}")
        try:
            session = opener(target, threads, batch)
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


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
               "tensor(double)": np.float64, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
               "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


def _static_shape(name: str, dims: list[Any], batch: int | None, path: Path) -> list[int]:
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


def _ort_session(target: Target, threads: int | None, batch: int | None) -> Session:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise MissingDependencyError(
            "ONNX Runtime is not installed: pip install 'lsnet-deploy[onnx]'") from e
    path = Path(target.artifact)  # type: ignore[arg-type]
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    t0 = time.perf_counter()
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise BenchmarkError(f"{path}: ONNX Runtime cannot load it: {first_line(e)}") from e
    load_ms = (time.perf_counter() - t0) * 1e3
    rng = np.random.default_rng(0)
    feeds = {}
    first_shape: list[int] = []
    for inp in sess.get_inputs():
        if inp.type not in _ORT_DTYPES:
            raise BenchmarkError(f"{path.name}: input {inp.name!r} has type {inp.type}, which "
                                 "the benchmark cannot fill")
        shape = _static_shape(inp.name, list(inp.shape), batch, path)
        feeds[inp.name] = random_input(shape, _ORT_DTYPES[inp.type], rng)
        first_shape = first_shape or shape
    return Session(lambda: sess.run(None, feeds), first_shape, first_shape[0] if first_shape
                   else 1, load_ms)


def _litert_session(target: Target, threads: int | None, batch: int | None) -> Session:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise MissingDependencyError(
            "the LiteRT interpreter is not installed: pip install 'lsnet-deploy[tflite]'") from e
    path = Path(target.artifact)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    try:
        with _native_stderr_silenced():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
            interp = Interpreter(model_path=str(path), num_threads=threads)
        details = interp.get_input_details()
        for d in details:
            if batch is not None and len(d["shape"]) and int(d["shape"][0]) != batch:
                interp.resize_tensor_input(d["index"], [batch, *d["shape"][1:]], strict=True)
        interp.allocate_tensors()
    except Exception as e:
        what = f" at batch {batch}" if batch is not None else ""
        raise BenchmarkError(
            f"{path}: LiteRT cannot load it{what}: {first_line(e)}") from e
    load_ms = (time.perf_counter() - t0) * 1e3
    rng = np.random.default_rng(0)
    first_shape: list[int] = []
    for d in interp.get_input_details():
        shape = [int(s) for s in d["shape"]]
        interp.set_tensor(d["index"], random_input(shape, d["dtype"], rng))
        first_shape = first_shape or shape
    return Session(interp.invoke, first_shape, first_shape[0] if first_shape else 1, load_ms)


def _coreml_session(target: Target, threads: int | None, batch: int | None) -> Session:
    from ..exporters.coreml import can_run_coreml

    if not can_run_coreml():
        raise BenchmarkError("CoreML models run only on macOS; on this machine benchmark the "
                             "ONNX/TFLite artifacts, or use 'lsnet-deploy bench ios-harness'")
    if batch not in (None, 1):
        raise BenchmarkError("CoreML benchmarks run one image per prediction (batch 1)")
    import coremltools as ct

    unit = target.accelerator or "ALL"
    if unit not in COMPUTE_UNITS:
        raise BenchmarkError(f"unknown compute unit {unit}; known: {', '.join(COMPUTE_UNITS)}")
    path = Path(target.artifact)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    try:
        model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, unit))
    except Exception as e:
        raise BenchmarkError(f"{path}: Core ML cannot load it on {unit}: {first_line(e)}") from e
    load_ms = (time.perf_counter() - t0) * 1e3
    spec = model.get_spec()
    rng = np.random.default_rng(0)
    feed: dict[str, Any] = {}
    first_shape: list[int] = []
    for inp in spec.description.input:
        kind = inp.type.WhichOneof("Type")
        if kind == "imageType":
            from PIL import Image

            w, h = int(inp.type.imageType.width), int(inp.type.imageType.height)
            pixels = rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)
            feed[inp.name] = Image.fromarray(pixels, "RGB")
            shape = [1, 3, h, w]
        elif kind == "multiArrayType":
            shape = [int(s) for s in inp.type.multiArrayType.shape]
            feed[inp.name] = random_input(shape, np.float32, rng)
        else:
            raise BenchmarkError(f"{path.name}: input {inp.name!r} of type {kind} is not "
                                 "supported by the benchmark")
        first_shape = first_shape or shape
    return Session(lambda: model.predict(feed), first_shape, 1, load_ms)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
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
