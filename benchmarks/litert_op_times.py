"""Report: where a ``.tflite`` spends its time, op by op, without an op profiler.

Usage (from the repository root)::

    .venv/bin/python benchmarks/litert_op_times.py MODEL.tflite [--calls 40] [--top 15]
        [--no-delegate] [--out FILE.md]

LiteRT's Python interpreter has no op profiler (``benchmark_model --enable_op_profiling`` is a
separate native tool). This script cuts the file into one-op models instead: for every
operator, a copy of the flatbuffer whose only operator is that one, its runtime inputs made the
graph's inputs (constants stay constants), is timed on 1 thread with random inputs (XNNPACK, or
LiteRT's own kernels with ``--no-delegate``). Per op kind: count, summed median ms, share of the
sum; then the ``--top`` slowest single ops with their output shapes. The sum is close to the
whole model's time when the graph is one or a few XNNPACK partitions (LSNet-B's first stage:
8.3 ms summed, 7.9 ms whole), since an op alone pays its own call and its cold inputs.

A ``PAD`` whose only reader is a convolution is timed together with it (XNNPACK folds a
constant pad into the next convolution's padding): the pair's time is the convolution's, the
``PAD`` counts 0 ms. Alone, the stem's ``PAD`` of a 224x224 RGB image takes about 0.5 ms in
XNNPACK; folded, the pad and its convolution take what the convolution takes alone (0.145 ms,
AMD EPYC). ``--no-delegate`` times every op alone (LiteRT's own kernels fold nothing).

This is how LKP's 7x7 depthwise convolution was found to be slower in XNNPACK than in LiteRT's
own kernels (docs/performance.md, "LiteRT: LKP's 7x7 depthwise as three row bands").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table, measuring, write_markdown  # noqa: E402

KIND_COLUMNS = ["op", "count", "ms (sum)", "share"]
TOP_COLUMNS = ["#", "op", "output shape", "ms"]


def _kind(model: Any, op: Any) -> str:
    from lsnet_deploy.exporters.tflite_flatbuffer import op_name

    return op_name(model.operatorCodes[op.opcodeIndex])


def _sub_file(src: Path, indices: list[int], dst: Path) -> tuple[str, list[int]]:
    """Write the model reduced to the operators ``indices`` (in order, each reading the one
    before or the graph's tensors); return the last one's kind and output shape."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(src))
    graph = model.subgraphs[0]
    ops = [graph.operators[i] for i in indices]
    made = {int(t) for op in ops[:-1] for t in op.outputs}

    def is_runtime(t: int) -> bool:
        data = model.buffers[graph.tensors[t].buffer].data
        return t not in made and (data is None or len(data) == 0)

    graph.operators = ops
    graph.inputs = list(dict.fromkeys(int(t) for op in ops for t in op.inputs
                                      if t >= 0 and is_runtime(int(t))))
    graph.outputs = [int(ops[-1].outputs[0])]
    model.signatureDefs = []
    flatbuffer_utils.write_model(model, str(dst))
    return _kind(model, ops[-1]), [int(d) for d in graph.tensors[int(ops[-1].outputs[0])].shape]


FOLDED_INTO = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"})


def _spatial_only(model: Any, graph: Any, op: Any) -> bool:
    """A ``PAD`` whose constant paddings (NHWC, ``(4, 2)`` int32) touch only H and W."""
    import numpy as np

    data = model.buffers[graph.tensors[int(op.inputs[1])].buffer].data
    if data is None or len(data) != 32:
        return False
    pads = np.frombuffer(bytes(data), dtype="<i4").reshape(4, 2)
    return not pads[0].any() and not pads[3].any()


def folded_pads(path: Path) -> dict[int, int]:
    """``{PAD index: convolution index}`` for each ``PAD`` of H and W whose output only a
    convolution reads (and is not a graph output): the pads XNNPACK folds into that
    convolution's padding."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    readers: dict[int, list[int]] = {}
    for i, op in enumerate(graph.operators):
        for t in op.inputs:
            readers.setdefault(int(t), []).append(i)
    outputs = {int(t) for t in graph.outputs}
    folded = {}
    for i, op in enumerate(graph.operators):
        out = int(op.outputs[0])
        read_by = readers.get(out, [])
        if (_kind(model, op) == "PAD" and out not in outputs and len(read_by) == 1
                and _kind(model, graph.operators[read_by[0]]) in FOLDED_INTO
                and _spatial_only(model, graph, op)):
            folded[i] = read_by[0]
    return folded


def median_ms(path: Path, delegate: bool, calls: int, warmup: int = 3) -> float:
    """Median ms of ``calls`` invocations of ``path`` on 1 thread, after ``warmup`` calls, on
    random inputs (integers in -100..99, floats in [0, 1)); XNNPACK or LiteRT's own kernels."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (OpResolverType.AUTO if delegate
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it = Interpreter(model_path=str(path), num_threads=1, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        dt = d["dtype"]
        x = (rng.integers(-100, 100, d["shape"]).astype(dt) if np.issubdtype(dt, np.integer)
             else rng.random(d["shape"]).astype(dt))
        it.set_tensor(d["index"], x)
    for _ in range(warmup):
        it.invoke()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        it.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def op_times(path: Path, delegate: bool, calls: int, folded: dict[int, int]
             ) -> list[tuple[int, str, list[int], float]]:
    """``(index, kind, output shape, median ms)`` of every operator of ``path`` run alone; a
    ``PAD`` of ``folded`` (:func:`folded_pads`) is run with its convolution, which gets the
    pair's time, and counts 0 ms itself."""
    from ai_edge_litert.tools import flatbuffer_utils

    n = len(flatbuffer_utils.read_model(str(path)).subgraphs[0].operators)
    pad_of = {conv: pad for pad, conv in folded.items()}
    out = []
    with tempfile.TemporaryDirectory(prefix="lsnet-opt-") as tmp:
        for i in range(n):
            one = Path(tmp) / f"op{i}.tflite"
            kind, shape = _sub_file(path, [pad_of[i], i] if i in pad_of else [i], one)
            out.append((i, kind, shape, 0.0 if i in folded else median_ms(one, delegate, calls)))
            if (i + 1) % 50 == 0:
                print(f"{i + 1}/{n} ops", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="a .tflite file")
    ap.add_argument("--calls", type=int, default=40, help="timed calls per op (default: 40)")
    ap.add_argument("--top", type=int, default=15, help="slowest single ops listed (default: 15)")
    ap.add_argument("--no-delegate", dest="delegate", action="store_false",
                    help="LiteRT's own kernels instead of XNNPACK")
    ap.add_argument("--out", type=Path, help="write the Markdown here instead of stdout")
    args = ap.parse_args(argv)
    if not args.model.is_file():
        ap.error(f"not found: {args.model}")
    if args.calls < 1 or args.top < 0:
        ap.error("--calls must be >= 1 and --top >= 0")
    folded = folded_pads(args.model) if args.delegate else {}  # LiteRT's own kernels fold none
    with measuring():
        times = op_times(args.model, args.delegate, args.calls, folded)
    total = sum(t[3] for t in times) or 1.0
    ms, count = Counter[str](), Counter[str]()
    for _i, kind, _shape, t in times:
        ms[kind] += t
        count[kind] += 1
    where = "XNNPACK" if args.delegate else "LiteRT's own kernels (no delegate)"
    kinds = [[k, str(count[k]), f"{v:.3f}", f"{100 * v / total:.1f}%"] for k, v in ms.most_common()]
    text = markdown_table(f"Machine: {machine()}; {args.model.name}, each op alone in {where}, "
                          f"1 thread, median of {args.calls} calls; sum {total:.2f} ms"
                          + (f"; {len(folded)} PAD timed with the convolution it feeds (0 ms)"
                             if folded else ""),
                          KIND_COLUMNS, kinds)
    slow = sorted(times, key=lambda t: -t[3])[:args.top]
    text += "\n" + markdown_table(f"Machine: {machine()}; the {len(slow)} slowest single ops of "
                                  f"{args.model.name}", TOP_COLUMNS,
                                  [[str(i), k, "x".join(map(str, s)), f"{t:.3f}"]
                                   for i, k, s, t in slow])
    write_markdown(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
