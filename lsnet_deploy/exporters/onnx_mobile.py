"""ONNX Runtime Mobile: how its mobile execution providers would take an ONNX graph, and the
``.ort`` file.

**Usability** (:func:`check_usability`): ONNX Runtime's own usability checker
(``python -m onnxruntime.tools.check_onnx_model_mobile_usability``), called through its
functions rather than its log: the model is optimized to ORT's BASIC level (as the checker
does, and as the ``.ort`` conversion does), shapes are inferred, and for each EP the checker's
partitioning estimate over the EP's supported-op table gives the partition count, the nodes
it takes, the ops it refuses and the verdict "should perform well with <EP> as is"
(``YES`` / ``MAYBE`` / ``NO``: one partition over more than 75 % of the nodes is ``YES``).
:data:`EPS` lists the EPs; NNAPI and CoreML ML Program are the ones :data:`ASSERTED` by the
tests (the CoreML NeuralNetwork format is recorded for information). The checker reads op
types only: the caveats of each op (e.g. NNAPI's 2-D Conv) are not checked.

**ORT format** (:func:`convert_to_ort`): ONNX Runtime's converter
(``onnxruntime.tools.convert_onnx_models_to_ort``) with optimization style ``Runtime``, ORT's
guidance for NNAPI and CoreML: only BASIC optimizations are applied, so the ``.ort`` graph is the
one the checker analysed, and the CPU EP's fusions are saved in the file, replayed at load time
for the nodes left to the CPU only when the session option
``session.enable_saved_runtime_optimizations`` is ``1`` (style ``Fixed`` would bake them in as
``com.microsoft`` ops that the mobile EPs take only partly). Target platform ``arm`` (phones:
int8 QDQ kept as int8). ``model.onnx`` gives ``model.ort`` and ``model.required_operators.config``
(the operators a reduced ORT build must include: ``--include_ops_by_config``), one pair per
artifact, so exports in one folder do not overwrite each other's config.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, first_line
from ..fidelity import Runner, compare_logits, run_artifact
from ..spec import IOSpec
from ..threads import default_threads
from .base import ReferenceSet
from .session import native_stderr_silenced, random_input, static_shape

__all__ = [
    "ASSERTED",
    "EPS",
    "ORT_STYLE",
    "ORT_TARGET",
    "EpUsability",
    "OrtFiles",
    "Usability",
    "check_usability",
    "convert_to_ort",
    "load_ort",
    "ort_files",
    "refresh_ort",
    "validate_ort",
]

log = logging.getLogger(__name__)

EPS: dict[str, tuple[str, str]] = {
    "nnapi": ("NNAPI", "nnapi_supported_ops.md"),
    "coreml_mlprogram": ("CoreML MLProgram", "coreml_supported_mlprogram_ops.md"),
    "coreml_neuralnetwork": ("CoreML NeuralNetwork", "coreml_supported_neuralnetwork_ops.md"),
}
"""Sidecar key -> (the checker's EP name, the supported-op table it reads)."""

ASSERTED = ("nnapi", "coreml_mlprogram")
"""The EPs the LSNet graph is formulated for: one partition covering every node."""

ORT_STYLE = "Runtime"
ORT_TARGET = "arm"
_REPLAY = "session.enable_saved_runtime_optimizations"


# -- usability -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EpUsability:
    """The checker's estimate for one EP.

    Attributes:
        ep: the checker's name of the EP.
        partitions: the number of partitions the EP would get.
        supported_nodes / nodes: the nodes it takes, of all nodes (after BASIC optimization).
        refused: op type -> number of its nodes the EP does not support (by op type).
        dynamic_shape_nodes: nodes refused because an input has a dynamic shape.
        rank_nodes: nodes refused for the rank of an input (CoreML: rank > 5).
        verdict: ``YES`` / ``MAYBE`` / ``NO``, "should perform well with <ep> as is".
        verdict_if_fixed: for a dynamic input shape, the verdict if it were fixed.
    """

    ep: str
    partitions: int
    supported_nodes: int
    nodes: int
    refused: dict[str, int]
    dynamic_shape_nodes: int
    rank_nodes: int
    verdict: str
    verdict_if_fixed: str | None = None

    @property
    def single_partition(self) -> bool:
        """One partition covering every node: the whole model runs on the EP."""
        return self.partitions == 1 and self.supported_nodes == self.nodes


@dataclass(frozen=True)
class Usability:
    """The checker's estimate per EP (keys of :data:`EPS`) for one model."""

    eps: dict[str, EpUsability]
    dynamic_inputs: tuple[str, ...]
    onnxruntime: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The sidecar record (``export.mobile``)."""
        out: dict[str, Any] = {
            "checker": "onnxruntime.tools.mobile_helpers.usability_checker",
            "onnxruntime": self.onnxruntime,
            "optimization": "basic",
            "seconds": self.seconds,
        }
        if self.dynamic_inputs:
            out["dynamic_inputs"] = list(self.dynamic_inputs)
        for key, ep in self.eps.items():
            out[key] = {k: v for k, v in asdict(ep).items()
                        if v is not None or k != "verdict_if_fixed"}
            out[key]["single_partition"] = ep.single_partition
        return out


def check_usability(path: Path) -> Usability:
    """Run ORT's usability checker on the ONNX model at ``path`` (silently: the checker's
    functions log nothing, ORT's session is quietened). Raises :class:`ExportError` when the
    checker cannot analyse the model."""
    import onnxruntime as ort
    from onnxruntime.tools.onnx_model_utils import (
        ModelProtoWithShapeInfo,
        is_fixed_size_tensor,
        optimize_model,
    )

    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="lsnet-usability-") as tmp:
            optimized = Path(tmp) / path.name
            with native_stderr_silenced():
                optimize_model(path, optimized, use_external_initializers=True)
            model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
            dynamic = tuple(i.name for i in model.graph.input if not is_fixed_size_tensor(i))
            eps = {key: _check_ep(model, name, table, bool(dynamic))
                   for key, (name, table) in EPS.items()}
    except Exception as e:  # the checker raises plain exceptions
        raise ExportError(f"{path.name}: ONNX Runtime's usability checker failed: "
                          f"{type(e).__name__}: {first_line(e)}") from e
    return Usability(eps, dynamic, ort.__version__, round(time.perf_counter() - t0, 3))


def _check_ep(model: Any, name: str, table: str, dynamic: bool) -> EpUsability:
    """Mirror of the checker's ``check_ep``: with the shapes as they are, and for a dynamic
    input also as if they were fixed."""
    info = _partitions(model, table, require_fixed_input_sizes=True)
    verdict = info.suitability().name
    if_fixed = None
    if dynamic and verdict != "YES":
        if_fixed = _partitions(model, table, require_fixed_input_sizes=False).suitability().name
    supported = info.supported_ops_checker
    refused = Counter(_op_name(n) for n in model.graph.node if not supported.is_op_supported(n))
    return EpUsability(
        ep=name, partitions=info.num_partitions, supported_nodes=info.num_supported_nodes,
        nodes=info.num_nodes, refused=dict(sorted(refused.items())),
        dynamic_shape_nodes=info.nodes_unsupported_due_to_dynamic_input,
        rank_nodes=info.num_unsupported_nodes_due_to_rank, verdict=verdict,
        verdict_if_fixed=if_fixed)


def _partitions(model: Any, table: str, require_fixed_input_sizes: bool) -> Any:
    from onnxruntime.tools.mobile_helpers import usability_checker as uc

    if table == EPS["nnapi"][1]:
        return uc.check_nnapi_partitions(model, require_fixed_input_sizes)
    return uc.check_coreml_partitions(model, require_fixed_input_sizes, table)


def _op_name(node: Any) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"


# -- the ORT format ------------------------------------------------------------------------------

@dataclass(frozen=True)
class OrtFiles:
    """The ORT Mobile files of one ``.onnx``: the model and its operator config."""

    model: Path
    config: Path


def ort_files(onnx_path: Path) -> OrtFiles:
    """``x.onnx`` -> ``x.ort`` and ``x.required_operators.config`` in the same folder."""
    return OrtFiles(onnx_path.with_suffix(".ort"),
                    onnx_path.with_name(f"{onnx_path.stem}.required_operators.config"))


def convert_to_ort(onnx_path: Path) -> OrtFiles:
    """Convert the ONNX model at ``onnx_path`` with ORT's converter (style :data:`ORT_STYLE`,
    target :data:`ORT_TARGET`) into :func:`ort_files` next to it (replacing them). The
    converter's prints and ORT's native log are kept off our stdout / stderr; its messages are
    quoted in the :class:`ExportError` raised when it fails."""
    files = ort_files(onnx_path)
    stem = onnx_path.stem
    with tempfile.TemporaryDirectory(prefix=".ort-", dir=onnx_path.parent) as tmp:
        out = Path(tmp)
        printed = io.StringIO()
        try:
            with _quiet_ort_tools(printed):
                from onnxruntime.tools.convert_onnx_models_to_ort import (
                    OptimizationStyle,
                    convert_onnx_models_to_ort,
                )

                convert_onnx_models_to_ort(
                    onnx_path, output_dir=out,
                    optimization_styles=[OptimizationStyle[ORT_STYLE]],
                    target_platform=ORT_TARGET)
        except Exception as e:  # the converter raises plain exceptions
            said = " ".join(printed.getvalue().split()[-40:])
            raise ExportError(f"{onnx_path.name}: ONNX Runtime's .ort conversion failed: "
                              f"{type(e).__name__}: {first_line(e)} ({said})") from e
        suffix = ".with_runtime_opt" if ORT_STYLE == "Runtime" else ""
        made_model = out / f"{stem}{suffix}.ort"
        made_config = out / f"{stem}.required_operators{suffix}.config"
        if not made_model.is_file() or not made_config.is_file():
            raise ExportError(f"{onnx_path.name}: ONNX Runtime's converter wrote "
                              f"{sorted(p.name for p in out.iterdir())}, not {made_model.name} "
                              f"and {made_config.name}")
        os.replace(made_model, files.model)
        files.config.write_text(_config_text(made_config.read_text(), files.model.name))
    return files


def _config_text(text: str, model_name: str) -> str:
    """The converter's config with its header naming the published ``.ort`` (it lists the
    temp paths of the two conversions the Runtime style makes)."""
    body = [line for line in text.splitlines() if not line.startswith("#")]
    header = (f"# Operators required by {model_name} (ONNX Runtime convert_onnx_models_to_ort, "
              f"optimization style {ORT_STYLE}, with and without its runtime optimizations)")
    return "\n".join([header, *body]) + "\n"


@contextlib.contextmanager
def _quiet_ort_tools(printed: io.StringIO) -> Iterator[None]:
    """Keep ORT's tools from talking: their ``print`` goes to ``printed``, ORT's native log
    to /dev/null, and importing them does not configure the root logger (their logger module
    calls ``logging.basicConfig`` at import time, which is a no-op when the root logger has a
    handler: a temporary ``NullHandler``); the config writer's INFO line is held back."""
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    chatty = logging.getLogger("ort_format_model.utils")
    level = chatty.level
    chatty.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(printed), native_stderr_silenced():
            yield
    finally:
        chatty.setLevel(level)
        root.removeHandler(guard)


def load_ort(path: Path, threads: int | None = None, replay: bool = False) -> Any:
    """An ONNX Runtime CPU session of the ``.ort`` at ``path`` (``replay``: with the saved
    runtime optimizations applied). Raises :class:`ExportError` when it does not load."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    threads = threads or default_threads()  # LSNET_DEPLOY_THREADS when none is named
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.add_session_config_entry(_REPLAY, "1" if replay else "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError(f"{path.name}: ONNX Runtime cannot load it: {type(e).__name__}: "
                          f"{first_line(e, 300)}") from e


def validate_ort(files: OrtFiles, spec: IOSpec, precision: str, min_cosine: float,
                 reference: ReferenceSet, onnx_runner: Runner,
                 min_photo_cosine: float | None = None) -> dict[str, Any]:
    """Run the ``.ort`` in ONNX Runtime (CPU) on the held-out images and apply the artifact's
    own gate against PyTorch; record how close it is to the ``.onnx`` (``onnx_runner``), and
    the same with the saved runtime optimizations replayed. Raises :class:`ExportError` when
    the ``.ort`` misses the gate, in either mode where it loads. Returns the sidecar record."""
    outputs = run_artifact(_runner(load_ort(files.model)), reference.images, spec)
    report = compare_logits(outputs, reference.logits, precision, reference.source, min_cosine,
                            min_photo_cosine, reference.names)
    onnx = compare_logits(outputs, run_artifact(onnx_runner, reference.images, spec), "fp32",
                          "the .onnx on the same images")
    record: dict[str, Any] = {
        "model": files.model.name, "config": files.config.name,
        "converter": "onnxruntime.tools.convert_onnx_models_to_ort",
        "optimization_style": ORT_STYLE, "target_platform": ORT_TARGET,
        "size_bytes": files.model.stat().st_size,
        "validation": {**report.to_dict(), "summary": report.summary()},
        "vs_onnx": {"max_abs_diff": onnx.max_abs_diff, "mean_cosine": onnx.mean_cosine,
                    "top1_agreement": onnx.top1_agreement},
    }
    failed = [] if report.passed else [f"{files.model.name}: {report.summary()}"]
    try:
        replayed = run_artifact(_runner(load_ort(files.model, replay=True)), reference.images,
                                spec)
    except ExportError as e:  # an ONNX Runtime bug in replaying some QDQ records
        record["replay"] = {"loads": False, "error": str(e)}
        log.warning("%s loads, but not with %s=1 (%s)", files.model.name, _REPLAY, e)
    else:
        again = compare_logits(replayed, reference.logits, precision, reference.source,
                               min_cosine, min_photo_cosine, reference.names)
        record["replay"] = {"loads": True, "summary": again.summary(), "passed": again.passed}
        if not again.passed:
            failed.append(f"{files.model.name} with {_REPLAY}=1: {again.summary()}")
    if failed:
        raise ExportError("; ".join(failed) + " (the .ort misses the gate the .onnx is held "
                          "to; export without --ort, or report the ONNX Runtime version)")
    return record


def _runner(sess: Any) -> Runner:
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(sess.run(None, {name: x})[0])

    return run


def refresh_ort(onnx_path: Path) -> OrtFiles | None:
    """If the ``.ort`` of ``onnx_path`` exists, convert it again from the ``.onnx`` (whose
    metadata has changed) and check that the new file computes exactly what the old one did
    on a fixed random input; returns the files, or ``None`` when there is no ``.ort``."""
    files = ort_files(onnx_path)
    if not files.model.is_file():
        return None
    before = _probe(files.model)
    convert_to_ort(onnx_path)
    if not np.array_equal(before, _probe(files.model)):
        raise ExportError(f"{files.model.name}: converting again after embedding the metadata "
                          "changed its outputs; report this (ONNX Runtime conversion is not "
                          "deterministic here)")
    return files


def _probe(path: Path) -> np.ndarray:
    sess = load_ort(path, threads=1)
    inp = sess.get_inputs()[0]
    dtypes = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8}
    x = random_input(static_shape(inp.name, list(inp.shape), None, path),
                     dtypes.get(inp.type, np.float32), np.random.default_rng(0))
    return np.asarray(sess.run(None, {inp.name: x})[0])
