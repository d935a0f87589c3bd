"""Report: LKP's 7x7 depthwise convolution in LiteRT, as one kernel or as row bands.

Usage (from the repository root)::

    .venv/bin/python benchmarks/litert_depthwise.py [--variants lsnet_t lsnet_s lsnet_b]
        [--models lsnet_t lsnet_b] [--out-dir DIR] [--rounds 6] [--calls 20]
        [--kernel-calls 50] [--out FILE.md]

1. **The kernel alone.** For every distinct shape of LKP's 7x7 depthwise convolution in the
   ``--variants`` (its input as the fused model sees it at 224x224), one fp32 ``.tflite`` of
   the convolution alone (NHWC, converted by litert-torch), timed on 1 thread: in XNNPACK as
   one 7x7 kernel, in LiteRT's own kernels without the delegate, and in XNNPACK as the three
   row bands of :class:`lsnet_deploy.depthwise_bands.BandedDepthwise` (3x7 + 2x7 + 2x7).
   Rows for a 3x3 and a 5x5 kernel of the first shape show where XNNPACK's fast path ends.
2. **The whole model** (``--models``; none by default, 4 exports per model). Each variant is
   exported fp32 and INT8 (the app form, ``--weights random``) twice: as shipped (bands) and
   with the bands turned off (monkeypatched here; the package has no such option), then the
   four files are timed interleaved (``benchmarks/ab_latency.py``'s rounds) on 1 thread.

Writes Markdown tables to stdout (or ``--out``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table, measuring, write_markdown  # noqa: E402
from litert_op_times import median_ms  # noqa: E402

KERNEL_COLUMNS = ["C", "H x W", "kernel", "XNNPACK ms", "LiteRT kernels (no delegate) ms",
                  "XNNPACK, 3 row bands ms", "bands vs one kernel"]
MODEL_COLUMNS = ["variant", "precision", "LKP 7x7 as", "depthwise ops", "mean cos", "min cos",
                 "median ms", "vs one kernel", "ratio range"]


def lkp_shapes(variant: str) -> list[tuple[int, int, int]]:
    """``(C, H, W)`` of each LKP 7x7 depthwise input of ``variant`` at 224x224."""
    import torch

    from lsnet_deploy import create_model
    from lsnet_deploy.lsnet import LKP
    from lsnet_deploy.reparam import reparameterize

    model = create_model(variant, "random")
    reparameterize(model, None)
    shapes: list[tuple[int, int, int]] = []
    hooks = [m.cv2.register_forward_hook(
        lambda _m, inp, _o: shapes.append(tuple(inp[0].shape[1:])))  # type: ignore[misc]
        for m in model.modules() if isinstance(m, LKP)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    return shapes


def _convert(module: Any, shape: tuple[int, int, int], path: Path) -> Path:
    import litert_torch
    import torch

    c, h, w = shape
    wrapped = litert_torch.to_channel_last_io(module.eval(), args=[0], outputs=[0])
    litert_torch.convert(wrapped, (torch.randn(1, h, w, c),)).export(str(path))
    return path


def kernel_rows(shapes: list[tuple[int, int, int]], calls: int, tmp: Path) -> list[list[str]]:
    """Part 1: one row per shape (and kernel size)."""
    from torch import nn

    from lsnet_deploy.depthwise_bands import BandedDepthwise

    cases = [(s, 7) for s in shapes] + [(shapes[0], 3), (shapes[0], 5)]
    rows = []
    for n, ((c, h, w), k) in enumerate(cases):
        conv = nn.Conv2d(c, c, k, padding=k // 2, groups=c)
        one = _convert(conv, (c, h, w), tmp / f"k{n}.tflite")
        xnn, builtin = median_ms(one, True, calls, 5), median_ms(one, False, calls, 5)
        banded, ratio = "-", "-"
        if k == 7:
            bands = _convert(BandedDepthwise(conv), (c, h, w), tmp / f"b{n}.tflite")
            t = median_ms(bands, True, calls, 5)
            banded, ratio = f"{t:.3f}", f"{t / xnn:.2f}"
        rows.append([str(c), f"{h} x {w}", f"{k}x{k}", f"{xnn:.3f}", f"{builtin:.3f}", banded,
                     ratio])
        print(f"C={c} {h}x{w} {k}x{k}: XNNPACK {xnn:.3f} ms, LiteRT {builtin:.3f} ms, "
              f"bands {banded}", file=sys.stderr, flush=True)
    return rows


def _export_pair(variant: str, out: Path, banded: bool) -> list[Any]:
    """fp32 and INT8 app-form ``.tflite`` of ``variant``, with or without the bands."""
    from lsnet_deploy import channels_last
    from lsnet_deploy.pipeline import export

    original = channels_last.banded_if_large
    if not banded:
        channels_last.banded_if_large = lambda conv, *a, **k: conv  # type: ignore[assignment]
    try:
        folder = out / ("bands" if banded else "one_kernel")
        [fp32] = export(variant, "tflite", weights="random", output_dir=folder, force=True)
        [int8] = export(variant, "tflite", weights="random", precision="int8",
                        output_dir=folder, force=True, min_cosine=0.5)  # kept whatever it scores
        return [fp32, int8]
    finally:
        channels_last.banded_if_large = original


def model_rows(variants: list[str], out: Path, rounds: int, calls: int) -> list[list[str]]:
    """Part 2: per variant and precision, one kernel against bands, interleaved."""
    from ab_latency import measure

    rows = []
    for variant in variants:
        one, bands = _export_pair(variant, out, False), _export_pair(variant, out, True)
        order = [(one[0], False), (bands[0], True), (one[1], False), (bands[1], True)]
        series = measure([a.path for a, _ in order], [1], rounds, calls, 5)
        for (art, banded), s, ref in zip(order, series, [series[0]] * 2 + [series[2]] * 2,
                                         strict=True):
            ratios = [x / y for x, y in zip(s.round_medians, ref.round_medians, strict=True)]
            v = art.validation
            cos = ((f"{v['mean_cosine']:.5f}", f"{v['min_cosine']:.5f}")
                   if s.precision == "int8" else ("-", "-"))
            rows.append([variant, s.precision, "3 row bands (shipped)" if banded else "one 7x7",
                         str(art.export_info["op_histogram"].get("DEPTHWISE_CONV_2D", 0)), *cos,
                         f"{statistics.median(s.calls):.2f}",
                         "baseline" if ref is s else f"{statistics.median(ratios):.3f}",
                         "-" if ref is s else f"{min(ratios):.3f}-{max(ratios):.3f}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["lsnet_t", "lsnet_s", "lsnet_b"],
                    help="variants whose LKP shapes are timed (default: %(default)s)")
    ap.add_argument("--models", nargs="*", default=[],
                    help="variants to export and time whole, both forms (default: none)")
    ap.add_argument("--out-dir", type=Path, help="where the --models exports go (default: a "
                    "temporary folder)")
    ap.add_argument("--rounds", type=int, default=6, help="rounds for --models (default: 6)")
    ap.add_argument("--calls", type=int, default=20,
                    help="timed calls per file and round (default: %(default)s)")
    ap.add_argument("--kernel-calls", type=int, default=50,
                    help="timed calls per kernel file (default: %(default)s)")
    ap.add_argument("--out", type=Path, help="write the Markdown here instead of stdout")
    args = ap.parse_args(argv)
    if min(args.rounds, args.calls, args.kernel_calls) < 1:
        ap.error("--rounds, --calls and --kernel-calls must be >= 1")
    shapes = sorted({s for v in args.variants for s in lkp_shapes(v)},
                    key=lambda s: (-s[1], s[0]))
    with tempfile.TemporaryDirectory(prefix="lsnet-dw-") as tmp, measuring():
        kernels = kernel_rows(shapes, args.kernel_calls, Path(tmp))
        models = model_rows(args.models, args.out_dir or Path(tmp), args.rounds, args.calls)
    text = markdown_table(
        f"Machine: {machine()}; LiteRT fp32, 1 thread, the depthwise convolution alone "
        f"(LKP's input shapes in {', '.join(args.variants)} at 224x224); median of "
        f"{args.kernel_calls} calls", KERNEL_COLUMNS, kernels)
    if models:
        text += "\n" + markdown_table(
            f"Machine: {machine()}; app-form .tflite (uint8 image in), random weights; "
            f"{args.rounds} interleaved rounds of {args.calls} calls, 1 thread; ratio: median "
            f"of per-round ratios to the one-kernel file of the same precision",
            MODEL_COLUMNS, models)
    write_markdown(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
