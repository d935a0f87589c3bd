"""Report: does SKA's INT8 error come from its chain of adds? ONNX Runtime INT8 of the shipped
SKA against a one-reduction SKA, per weight family.

Usage (from the repository root)::

    .venv/bin/python benchmarks/ska_int8_forms.py [--variants lsnet_t]
        [--families random random-outliers] [--img-size 224] [--out FILE.md]

The shipped portable SKA (:class:`lsnet_deploy.portable.SKAPortable`) sums its nine products
``tap_k * w_k`` in a chain of eight adds: in a QDQ graph that is nine requantized products and
eight requantized partial sums, 17 rounding points per SKA. The candidate, ``one reduction``,
computes the same function with two: the nine shifted views stacked along the batch axis
(``(9B, C/G, G, H*W)``; a concat of slices of one tensor, so one scale and no rounding), one
broadcast multiply with the kernels (``(9B, 1, G, H*W)``, a transpose that is a free reshape at
batch 1), and one ``ReduceSum`` over the taps (ONNX Runtime runs it on the dequantized
products, so the sum itself is exact). Every tensor stays rank 4.

Each configuration is a full ``lsnet-deploy export --format onnx --int8`` (channel
equalization included, gate off) with :meth:`SKAPortable.forward` swapped for the candidate's
while it runs; the candidate is first checked equal to the shipped form (max |diff| <= 1e-5 on
random inputs). Cosines are against the unfused PyTorch model on the held-out photos.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from lsnet_deploy.pipeline import export
from lsnet_deploy.portable import SKAPortable

if str(Path(__file__).resolve().parent) not in sys.path:  # _common, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, measuring, progress, write_markdown

COLUMNS = ["variant", "weights", "SKA form", "requantized per SKA", "mean cos", "min cos",
           "top-1 agree"]
FORMS = {"chained adds (shipped)": 17, "one reduction": 2}


def one_reduction(self: SKAPortable, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """:meth:`SKAPortable.forward` as stacked taps, one multiply and one sum over the taps.
    ``x``: ``(B, C, H, W)``; ``w``: ``(B, 9, G, H*W)`` tap-major kernels; returns
    ``(B, C, H, W)``."""
    h, wd = self.grid
    reps, g, ks = self.channels // self.groups, self.groups, self.ks
    p = ks // 2
    xp = self.pad(x) if self.pad is not None else F.pad(x * self.scale, (p, p, p, p))
    taps = torch.cat([xp[:, :, dy:dy + h, dx:dx + wd]
                      for dy in range(ks) for dx in range(ks)], 0)  # (9B, C, H, W), tap-major
    products = taps.reshape(-1, reps, g, h * wd) * w.transpose(0, 1).reshape(-1, 1, g, h * wd)
    out = products.reshape(ks * ks, -1, self.channels, h * wd).sum(0)
    return out.reshape(-1, self.channels, h, wd) + self.shift


@contextlib.contextmanager
def ska_form(form: str) -> Iterator[None]:
    """Run the block with SKAPortable computing ``form`` (a key of :data:`FORMS`)."""
    shipped = SKAPortable.forward
    if form == "one reduction":
        SKAPortable.forward = one_reduction  # type: ignore[method-assign]
    try:
        yield
    finally:
        SKAPortable.forward = shipped  # type: ignore[method-assign]


def check_equal() -> None:
    """The candidate computes the shipped function (raises ``AssertionError`` otherwise)."""
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(16).eval()
    with torch.no_grad():
        bn.running_var.uniform_(0.5, 2.0)
        bn.running_mean.normal_()
    ska = SKAPortable(16, 2, (5, 6), bn)
    x, w = torch.randn(2, 16, 5, 6), torch.randn(2, 9, 2, 30)
    diff = (ska(x, w) - one_reduction(ska, x, w)).abs().max().item()
    assert diff <= 1e-5, f"one reduction differs from the shipped SKA by {diff:.3g}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["lsnet_t"],
                    help="variants (default: %(default)s; test_lsnet for a quick run)")
    ap.add_argument("--families", nargs="+", default=["random", "random-outliers"],
                    choices=["random", "random-outliers"],
                    help="synthetic weight families (default: %(default)s)")
    ap.add_argument("--img-size", type=int, default=224, help="input size (default: 224)")
    ap.add_argument("--out", type=Path, help="write the Markdown to this file, not stdout")
    args = ap.parse_args(argv)
    check_equal()
    rows = []
    with measuring(), tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            for family in args.families:
                for form, points in FORMS.items():
                    with ska_form(form):
                        [art] = export(variant, "onnx", weights=family, precision="int8",
                                       img_size=args.img_size, min_cosine=0.0,
                                       output_dir=Path(tmp) / form.replace(" ", "_"),
                                       force=True)
                    v = art.validation
                    rows.append([variant, family, form, str(points), f"{v['mean_cosine']:.4f}",
                                 f"{v['min_cosine']:.4f}", f"{v['top1_agreement']:.0%}"])
                    progress(rows[-1])
    caption = (f"Machine: {machine()}; ONNX Runtime INT8 (QDQ, uint8 activations, per-channel "
               "int8 weights, equalized), cosine vs the unfused PyTorch model on the held-out "
               "photos")
    write_markdown(markdown_table(caption, COLUMNS, rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
