"""Report: candidate ONNX formulations of LSNet, each proven equal to the fused model and timed
against the shipped one (interleaved A/B, ONNX Runtime CPU).

Usage (from the repository root)::

    .venv/bin/python benchmarks/formulations.py [--variant lsnet_t] [--threads 1 2]
        [--rounds 12] [--calls 25] [--out FILE.md]

The shipped formulation is the portable form (:mod:`lsnet_deploy.portable`, what
``lsnet-deploy export --format onnx`` writes). Each candidate rewrites one part of it, in a copy of
the fused model with random trained-looking weights:

* ``ska_onehot_conv``: SKA's nine shifted views from one depthwise 3x3 convolution with fixed
  one-hot kernels (``C -> 9C``, the BatchNorm scale folded in), one broadcast multiply with the
  kernels on a ``(B, C/G, 9G, H*W)`` view, and the sum over taps as a grouped 1x1 convolution
  of ones (the BatchNorm shift as its bias); LKP's GroupNorm on a group-major
  ``(B, G, 9*H*W)`` view. No Pad, no Slice;
* ``se_global_pool``: the squeeze-excite mean as ``GlobalAveragePool`` (ONNX Runtime runs it
  in its blocked NCHWc layout) instead of ``ReduceMean``;
* ``ffn_matmul``: the FFN of the stages of at most 49 pixels (7x7 and 4x4 at 224) as two
  MatMuls on ``(B, H*W, C)`` tokens (transposes around), instead of 1x1 convolutions.

Every candidate is checked against the fused model before timing (max |logit diff| <= 1e-4 on
two random images) and exported with the ONNX exporter's own ``export_fp32`` (dynamo, onnxslim).
The timing is that of ``benchmarks/ab_latency.py`` (rounds interleaved, ratio per round).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table, measuring, write_markdown  # noqa: E402
from ab_latency import COLUMNS, measure, rows  # noqa: E402

from lsnet_deploy.api import create_model  # noqa: E402
from lsnet_deploy.channels_last import fused_lkp_convs  # noqa: E402
from lsnet_deploy.lsnet import LSConv, SqueezeExcite, stage_grid  # noqa: E402
from lsnet_deploy.portable import to_portable_form  # noqa: E402
from lsnet_deploy.reparam import reparameterize  # noqa: E402

TOLERANCE = 1e-4


class LSConvOneHot(nn.Module):
    """A fused LSConv with SKA as one-hot depthwise conv + multiply + grouped sum conv."""

    def __init__(self, ls: LSConv, grid: tuple[int, int]) -> None:
        super().__init__()
        lkp, bn = ls.lkp, ls.bn
        self.cv1, self.cv2, self.cv3 = fused_lkp_convs(lkp, "the one-hot SKA form")
        self.cv4, self.act = lkp.cv4, nn.ReLU()
        c, g, taps = lkp.dim, lkp.dim // lkp.groups, lkp.sks**2
        self.c, self.g, self.taps, self.grid, self.eps = c, g, taps, grid, float(lkp.norm.eps)
        self.register_buffer("gamma", lkp.norm.weight.detach().view(1, -1, 1, 1).clone())
        self.register_buffer("beta", lkp.norm.bias.detach().view(1, -1, 1, 1).clone())
        assert bn.running_var is not None and bn.running_mean is not None
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        self.shifts = nn.Conv2d(c, c * taps, 3, padding=1, groups=c, bias=False)
        self.total = nn.Conv2d(c * taps, c, 1, groups=c, bias=True)
        with torch.no_grad():
            self.shifts.weight.zero_()
            for k in range(taps):  # output channel ch * 9 + k holds tap k of channel ch
                self.shifts.weight[k::taps, 0, k // 3, k % 3] = scale
            self.total.weight.fill_(1.0)
            self.total.bias.copy_(bn.bias.detach() - bn.running_mean * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.grid
        k = self.cv4(self.act(self.cv3(self.cv2(self.act(self.cv1(x))))))  # (B, 9G, H, W)
        v = k.reshape(-1, self.g, self.taps * h * w)  # group-major: one row per group
        d = v - v.mean(2, keepdim=True)
        v = d / torch.sqrt((d * d).mean(2, keepdim=True) + self.eps)
        k = v.reshape(-1, self.g * self.taps, h, w) * self.gamma + self.beta
        s = self.shifts(x).reshape(-1, self.c // self.g, self.g * self.taps, h * w)
        prod = s * k.reshape(-1, 1, self.g * self.taps, h * w)
        return self.total(prod.reshape(-1, self.c * self.taps, h, w)) + x


class SEGlobalPool(nn.Module):
    """Squeeze-excite with ``adaptive_avg_pool2d`` (ONNX ``GlobalAveragePool``)."""

    def __init__(self, se: SqueezeExcite) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = se.fc1, se.act, se.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(s))))


class FFNTokens(nn.Module):
    """A fused residual FFN as two MatMuls on ``(B, H*W, C)`` tokens."""

    def __init__(self, res: nn.Module, grid: tuple[int, int]) -> None:
        super().__init__()
        pw1, pw2 = res.m.pw1, res.m.pw2
        self.grid, self.c = grid, pw1.in_channels
        self.register_buffer("w1", pw1.weight.detach()[:, :, 0, 0].t().contiguous())
        self.register_buffer("w2", pw2.weight.detach()[:, :, 0, 0].t().contiguous())
        self.register_buffer("b1", pw1.bias.detach().clone())
        self.register_buffer("b2", pw2.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.grid
        t = x.reshape(-1, self.c, h * w).transpose(1, 2)
        y = torch.relu(t @ self.w1 + self.b1) @ self.w2 + self.b2
        return x + y.transpose(1, 2).reshape(-1, self.c, h, w)


def _stages(model: nn.Module) -> list[tuple[tuple[int, int], nn.Sequential]]:
    return [(stage_grid(model.img_size, i), blocks) for i, blocks in
            enumerate((model.blocks1, model.blocks2, model.blocks3, model.blocks4), 1)]


def ska_onehot_conv(fused: nn.Module) -> nn.Module:
    out = copy.deepcopy(fused)
    for grid, blocks in _stages(out):
        for b in blocks:
            if isinstance(getattr(b, "mixer", None), LSConv):
                b.mixer = LSConvOneHot(b.mixer, grid)
    return to_portable_form(out, True)  # the attention as shipped


def se_global_pool(fused: nn.Module) -> nn.Module:
    out = copy.deepcopy(to_portable_form(fused, True))
    for _, blocks in _stages(out):
        for b in blocks:
            if isinstance(getattr(b, "se", None), SqueezeExcite):
                b.se = SEGlobalPool(b.se)
    return out


def ffn_matmul(fused: nn.Module) -> nn.Module:
    out = copy.deepcopy(to_portable_form(fused, True))
    for grid, blocks in _stages(out):
        if grid[0] * grid[1] <= 49:
            for b in blocks:
                if hasattr(b, "ffn"):
                    b.ffn = FFNTokens(b.ffn, grid)
    return out


CANDIDATES: dict[str, Callable[[nn.Module], nn.Module]] = {
    "shipped": lambda fused: to_portable_form(fused, True),
    "ska_onehot_conv": ska_onehot_conv,
    "se_global_pool": se_global_pool,
    "ffn_matmul": ffn_matmul,
}


def export_candidates(variant: str, folder: Path, names: list[str]) -> list[Path]:
    """Each candidate checked against the fused model and exported to ``folder``."""
    from lsnet_deploy.exporters.base import ExportOptions
    from lsnet_deploy.exporters.onnx import export_fp32
    from lsnet_deploy.spec import IOSpec

    fused = create_model(variant, "random")
    reparameterize(fused, check_inputs=None)
    x = torch.randn(2, 3, *fused.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = fused(x)
    paths = []
    for name in names:
        model = CANDIDATES[name](fused).eval()
        with torch.no_grad():
            diff = float((model(x) - ref).abs().max())
        if diff > TOLERANCE:
            raise SystemExit(f"{name}: max |logit diff| {diff:.2e} > {TOLERANCE}")
        print(f"{name}: max |logit diff| vs fused {diff:.2e}", file=sys.stderr)
        path = folder / f"{variant}_{name}.onnx"
        export_fp32(model, IOSpec(img_size=fused.img_size), path, ExportOptions())
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="lsnet_t")
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES)[1:],
                    choices=list(CANDIDATES)[1:])
    ap.add_argument("--threads", nargs="+", type=int, default=[1])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--calls", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", type=Path, help="write the Markdown to this file instead of stdout")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lsnet-formulations-") as tmp:
        paths = export_candidates(args.variant, Path(tmp), ["shipped", *args.candidates])
        with measuring():
            series = measure(paths, args.threads, args.rounds, args.calls, args.warmup)
        cells = rows(series)
    for row in cells:
        row[0] = Path(row[0]).stem.removeprefix(f"{args.variant}_")
    caption = (f"Machine: {machine()}; {args.variant}, ONNX Runtime fp32; {args.rounds} "
               f"interleaved rounds of {args.calls} timed calls per file; batch 1; baseline: the "
               "shipped portable form.")
    write_markdown(markdown_table(caption, ["formulation", *COLUMNS[1:]], cells), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
