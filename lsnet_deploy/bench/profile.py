"""Where the time goes: an op-level profile of a model in ONNX Runtime, by LSNet op group and
by op kind.

The model (an LSNet variant, fused, in the portable form the ONNX exporter writes; or a peer
network in its deploy form) is exported exactly as ``lsnet-deploy export --format onnx`` does
(fp32; INT8: QDQ, per-channel, calibrated on the default calibration photos), loaded in ONNX
Runtime's CPU execution provider with all graph optimizations (what ``bench`` times) and run
``runs`` times with ONNX Runtime's own profiler on. Each kernel's time is attributed:

* to an **op group** (:data:`lsnet_deploy.quantize.groups.GROUPS`: stem, downsample,
  repvgg_dw, se, lkp_conv, lkp_groupnorm, ska, attention_proj, attention_core, ffn, residual,
  head), from the PyTorch module scope the dynamo exporter records for the node, followed
  through ONNX Runtime's renamings (a fused or NCHWc node is named after its output, an NHWC
  INT8 kernel gets a ``_token_N`` suffix); the layout changes ONNX Runtime inserts (NCHWc
  reorders, NHWC transposes) are their own group, ``layout``; peers have no LSNet scopes and
  get only the op-kind view;
* to an **op kind**: ``Conv`` split into ``conv dw KxK`` (depthwise), ``conv 1x1`` and
  ``conv KxK``, every other op by its ONNX Runtime name (``Add``, ``Slice``, ``QLinearConv``,
  ``ReorderInput``, ...).

Times are per run (mean over the profiled runs), in milliseconds; the profiler's own overhead
makes their sum a little larger than ``bench``'s median.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BenchmarkError, UnsupportedOptionError
from ..lsnet import LSNet

__all__ = ["OpProfile", "Share", "profile_markdown", "profile_onnx"]

log = logging.getLogger(__name__)

LAYOUT = "layout"
"""The group of the layout changes ONNX Runtime inserts: NCHWc reorders around its blocked fp32
kernels (ReorderInput / ReorderOutput), NHWC transposes around its INT8 kernels."""
UNATTRIBUTED = "unattributed"
"""Kernels whose node cannot be traced back to a PyTorch scope."""


@dataclass(frozen=True)
class Share:
    """The time of one group or op kind: ``ms`` per run, ``share`` of the total (0..1), the
    number of kernels per run and the multiply-accumulates of its convolutions (G per run;
    0 for kernels that are not convolutions)."""

    name: str
    ms: float
    share: float
    kernels: int
    gmacs: float = 0.0

    @property
    def gmac_per_s(self) -> float | None:
        """Convolution throughput, GMAC/s (``None`` without convolutions)."""
        return self.gmacs / (self.ms / 1e3) if self.gmacs and self.ms > 0 else None


@dataclass
class OpProfile:
    """A model's profile: ``total_ms`` (sum of kernel times per run), by group and by op kind
    (largest first)."""

    model: str
    precision: str
    threads: int
    runs: int
    total_ms: float
    groups: list[Share] = field(default_factory=list)
    kinds: list[Share] = field(default_factory=list)
    maps: list[Share] = field(default_factory=list)
    """Convolutions by kind and output map size (``conv 1x1 @ 4x4``): where MACs run slowly."""

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "precision": self.precision, "threads": self.threads,
                "runs": self.runs, "total_ms": self.total_ms,
                "groups": [vars(s) for s in self.groups],
                "kinds": [vars(s) for s in self.kinds], "maps": [vars(s) for s in self.maps]}


def _build(name: str, img_size: int) -> torch.nn.Module:
    """The fused LSNet (random weights) or the peer network ``name``."""
    from ..peers import create_peer, peer_names

    if name in peer_names():
        return create_peer(name)
    from ..api import create_model
    from ..reparam import reparameterize

    model = create_model(name, "random", img_size=img_size)
    reparameterize(model, check_inputs=None)
    return model


def _export(model: torch.nn.Module, precision: str, folder: Path, img_size: int
            ) -> tuple[Path, dict[str, str], Any]:
    """The ONNX file as ``export`` writes it, the op group of each of its nodes and the
    graph."""
    import onnx

    from ..exporters.base import ExportOptions
    from ..exporters.inputs import calibration_inputs
    from ..exporters.onnx import export_fp32, prepare_int8
    from ..quantize.onnx_int8 import Int8Config, assign_groups, quantize_int8
    from ..spec import IOSpec

    spec = IOSpec(img_size=(img_size, img_size))
    out = folder / f"model_{precision}.onnx"
    if precision == "fp32":
        known = export_fp32(model, spec, out, ExportOptions())
        return out, assign_groups(onnx.load(str(out)), known), onnx.load(str(out))
    if precision != "int8":
        raise UnsupportedOptionError(f"profile: precision fp32 or int8, not {precision}")
    from ..pipeline.images import split_images
    from ..preprocess import Preprocess

    _, pre, groups = prepare_int8(model, spec, folder, ExportOptions(precision="int8"))
    images = split_images(Preprocess(img_size=(img_size, img_size)))
    assert images.calib is not None
    quantize_int8(pre, out, groups, spec.input_name, calibration_inputs(images.calib, spec),
                  Int8Config())
    return out, groups, onnx.load(str(out))


def _attributor(groups: dict[str, str], graph: Any) -> Callable[[str], str]:
    """Kernel name -> op group, following ONNX Runtime's renamings (see module doc)."""
    by_output: dict[str, str] = {}
    for node in graph.graph.node:
        group = groups.get(node.name)
        for out in node.output:
            if group is not None:
                by_output[out] = group

    def attribute(kernel: str) -> str:
        if kernel.startswith(("ReorderInput", "ReorderOutput", "Transpose")):
            return LAYOUT  # ONNX Runtime's own layout changes (the exporter's are lowercase)
        base = _original_name(kernel)
        for candidate in (base, base.split("/")[0]):
            for suffix in ("", "_QuantizeLinear", "_DequantizeLinear", "_quantized"):
                key = candidate.removesuffix(suffix) if suffix else candidate
                if key in groups:
                    return groups[key]
                if key in by_output:
                    return by_output[key]
        return UNATTRIBUTED

    return attribute


_TOKEN = re.compile(r"_token_\d+$")


def _original_name(kernel: str) -> str:
    """The graph node (or output) name an ONNX Runtime kernel was made from: without the
    suffixes of its NCHWc (``_nchwc``) and NHWC int8 (``_token_N``) rewrites, or of a node it
    duplicated (``.../duplicated``)."""
    return _TOKEN.sub("", kernel.removesuffix("_nchwc")).removesuffix("/duplicated")


def _weight_shapes(graph: Any) -> dict[str, list[int]]:
    """Node name -> ``[O, I/groups, kh, kw]`` of every Conv of the graph whose weight is an
    initializer, directly or through a DequantizeLinear (QDQ INT8)."""
    init = {t.name: list(t.dims) for t in graph.graph.initializer}
    producer = {o: n for n in graph.graph.node for o in n.output}
    shapes: dict[str, list[int]] = {}
    for node in graph.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        weight = node.input[1]
        dq = producer.get(weight)
        if weight not in init and dq is not None and dq.op_type == "DequantizeLinear":
            weight = dq.input[0]
        if len(init.get(weight, [])) == 4:
            shapes[node.name] = init[weight]
    return shapes


def _conv_macs(event: dict[str, Any], weights_of: dict[str, list[int]]) -> int:
    """Multiply-accumulates of a convolution kernel event: output elements x (input channels
    per group x kh x kw), the weight shape from the event (fp32) or from the graph (INT8
    kernels hold prepacked weights); 0 for other ops."""
    args = event.get("args", {})
    if "Conv" not in str(args.get("op_name", "")):
        return 0
    shapes = [next(iter(s.values())) for s in args.get("input_type_shape", []) if s]
    outs = [next(iter(s.values())) for s in args.get("output_type_shape", []) if s]
    weights = next((s for s in shapes[1:] if len(s) == 4), None)
    if weights is None:
        weights = weights_of.get(_original_name(str(event.get("name", "")).removesuffix(
            "_kernel_time")))
    if weights is None or not outs:
        return 0
    return int(np.prod(outs[0])) * int(np.prod(weights[1:]))


def _map_size(event: dict[str, Any]) -> str:
    """``HxW`` of a convolution's output (NCHW, or NHWC for ONNX Runtime's INT8 kernels)."""
    args = event.get("args", {})
    out = next(iter(args["output_type_shape"][0].values()))
    h, w = (out[1], out[2]) if "QLinear" in str(args.get("op_name")) else (out[2], out[3])
    return f"{h}x{w}"


def _kind(event: dict[str, Any], weights_of: dict[str, list[int]]) -> str:
    """The op kind of a kernel event: ``Conv`` / ``QLinearConv`` / ``FusedConv`` split by the
    weight shape ``[O, I/groups, kh, kw]`` (from the event, else from the graph)."""
    args = event.get("args", {})
    op = str(args.get("op_name", "?"))
    if "Conv" not in op:
        return op
    shapes = [next(iter(s.values())) for s in args.get("input_type_shape", []) if s]
    weights = next((s for s in shapes[1:] if len(s) == 4), None)
    if weights is None:
        weights = weights_of.get(_original_name(str(event.get("name", "")).removesuffix(
            "_kernel_time")))
    if weights is None:
        return op
    o, i, kh, kw = weights
    prefix = op.replace("Conv", "conv").replace("QLinear", "int8 ").replace("Fused", "")
    if i == 1 and o > 1:
        return f"{prefix} dw {kh}x{kw}"
    return f"{prefix} {kh}x{kw}" if (kh, kw) != (1, 1) else f"{prefix} 1x1"


def _shares(times: dict[str, float], counts: Counter[str], macs: Counter[str], runs: int
            ) -> list[Share]:
    total = sum(times.values()) or 1.0
    return sorted((Share(k, v / runs / 1e3, v / total, counts[k] // runs, macs[k] / runs / 1e9)
                   for k, v in times.items()), key=lambda s: -s.ms)


def profile_onnx(name: str, precision: str = "fp32", *, threads: int = 1, runs: int = 50,
                 warmup: int = 10, img_size: int = 224) -> OpProfile:
    """Profile the LSNet variant or peer ``name`` in ONNX Runtime (see the module doc).

    Raises:
        BenchmarkError: ONNX Runtime cannot load or run the graph, or its profile is empty.
    """
    import onnxruntime as ort

    if runs < 1 or threads < 1:
        raise BenchmarkError("profile: --runs and --threads must be >= 1")
    model = _build(name, img_size)
    with tempfile.TemporaryDirectory(prefix="lsnet-profile-") as tmp:
        path, groups, graph = _export(model, precision, Path(tmp), img_size)
        if not isinstance(model, LSNet):
            groups = {}  # no LSNet scopes: the op-kind view only
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort_profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name:
                np.random.default_rng(0).standard_normal((1, 3, img_size, img_size),
                                                         dtype=np.float32)}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node"
               and str(e.get("name", "")).endswith("_kernel_time")]
    if not kernels:
        raise BenchmarkError(f"{name}: ONNX Runtime's profile holds no kernel timings")
    # the session's first ``warmup`` runs are skipped: each run executes the same kernels
    per_run = len(kernels) // (warmup + runs)
    kernels = kernels[per_run * warmup:]
    attribute = _attributor(groups, graph)
    weights_of = _weight_shapes(graph)
    by_group: dict[str, float] = defaultdict(float)
    by_kind: dict[str, float] = defaultdict(float)
    group_n: Counter[str] = Counter()
    kind_n: Counter[str] = Counter()
    group_macs: Counter[str] = Counter()
    kind_macs: Counter[str] = Counter()
    by_map: dict[str, float] = defaultdict(float)
    map_n: Counter[str] = Counter()
    map_macs: Counter[str] = Counter()
    for e in kernels:
        group, kind = attribute(str(e["name"]).removesuffix("_kernel_time")), _kind(e, weights_of)
        by_group[group] += float(e["dur"])
        by_kind[kind] += float(e["dur"])
        group_n[group] += 1
        kind_n[kind] += 1
        macs = _conv_macs(e, weights_of)
        group_macs[group] += macs
        kind_macs[kind] += macs
        if macs:
            where = f"{kind} @ {_map_size(e)}"
            by_map[where] += float(e["dur"])
            map_n[where] += 1
            map_macs[where] += macs
    total = sum(by_kind.values()) / runs / 1e3
    has_scopes = any(g not in (LAYOUT, UNATTRIBUTED) for g in by_group)
    return OpProfile(name, precision, threads, runs, total,
                     _shares(by_group, group_n, group_macs, runs) if has_scopes else [],
                     _shares(by_kind, kind_n, kind_macs, runs),
                     _shares(by_map, map_n, map_macs, runs))


def _row(s: Share) -> str:
    rate = s.gmac_per_s
    return (f"| {s.name} | {s.ms:.3f} | {100 * s.share:.1f}% | {s.kernels} | "
            f"{s.gmacs:.4f} | {'-' if rate is None else f'{rate:.1f}'} |")


def profile_markdown(profiles: list[OpProfile], top: int = 12) -> str:
    """The profiles as Markdown: per model, the group table (LSNet) and the op-kind table
    (``top`` kinds, the rest summed)."""
    lines: list[str] = []
    for p in profiles:
        lines += [f"### {p.model}, ONNX Runtime {p.precision}, {p.threads} thread"
                  f"{'s' * (p.threads != 1)}: {p.total_ms:.2f} ms of kernels per run "
                  f"({p.runs} profiled runs)", ""]
        header = ["| {} | ms | share | kernels | conv GMAC | conv GMAC/s |",
                  "|---|---|---|---|---|---|"]
        if p.groups:
            lines += [header[0].format("op group"), header[1]]
            lines += [_row(s) for s in p.groups]
            lines.append("")
        rest = p.kinds[top:]
        lines += [header[0].format("op kind"), header[1]]
        lines += [_row(s) for s in p.kinds[:top]]
        if rest:
            lines.append(_row(Share(f"(other {len(rest)} kinds)", sum(s.ms for s in rest),
                                    sum(s.share for s in rest), sum(s.kernels for s in rest),
                                    sum(s.gmacs for s in rest))))
        lines.append("")
        if p.maps:
            lines += [header[0].format("convolution @ output map"), header[1]]
            lines += [_row(s) for s in sorted(p.maps, key=lambda s: -s.gmacs)[:top]]
            lines.append("")
    return "\n".join(lines)
