"""The portable formulation of the fused LSNet, for the NCHW converters (ONNX, Core ML,
ExecuTorch): no tensor of rank > 4, no GroupNorm, InstanceNorm or BatchNorm op (and for ONNX
no Pad op), and no shape arithmetic (every reshape has static sizes and ``-1`` for the batch).

Why: phone accelerators and their compilers are built around 4-D tensors (Qualcomm HTP, Apple's
Neural Engine), and ONNX Runtime's mobile execution providers refuse some ops outright (NNAPI:
``InstanceNormalization``, the ONNX lowering of GroupNorm; Core ML ML Program: ``Pad``,
``BatchNormalization``, ``Gather``), which splits the graph between the accelerator and the CPU.
The canonical fused LSNet (:mod:`lsnet_deploy.lsnet`) views SKA's kernels as
``(B, C/8, 9, H, W)`` and pads before the nine shifted slices; this module rewrites, in a
*fused* model, the two blocks that do so:

* :class:`LSConvPortable` (each LSConv):

  - LKP's last 1x1 conv emits its ``9 G`` channels **tap-major** (channel ``k G + g``, its rows
    permuted once), so the kernels are a free ``(B, 9, G, H*W)`` view;
  - :class:`GroupNormRank4`: GroupNorm as reduce-means over axes 1 and 3 of that view (each
    group ``g`` is one index of axis 2), ``d / sqrt(var + eps)``, then the affine;
  - SKA: the scale of the BatchNorm after SKA is applied to its input, then zero padding:
    for ONNX (``pad_in_conv``) both are one depthwise 1x1 convolution with ``padding=1``
    (weight ``scale[c]``, no bias), so padding stays inside a Conv; then nine shifted slices, each viewed ``(B, C/G, G, H*W)`` (channel ``c = r G + g`` uses
    kernel group ``g = c % G``) times the tap's ``(B, 1, G, H*W)`` kernels, summed, viewed back
    to ``(B, C, H, W)`` plus the BatchNorm's shift;
* :class:`AttentionPortable` (each stage-4 attention): the fused attention with the head split
  as static reshapes (``-1`` batch) and the gathered bias as a constant.

The head's pooling ``mean(2, 3, keepdim) -> reshape(-1, C)`` is the canonical model's own.

The rewritten model computes the fused function up to float32 reordering (~1e-6;
``tests/test_portable.py``), keeps every sub-module name that the INT8 op groups read
(``mixer.lkp.cv1``, ``mixer.lkp.norm``, ``mixer.ska``, ``mixer.m.qkv``, ...) and, having no
shape-dependent Python, also traces with ``torch.fx`` (coremltools' W8A8 quantizer). Its
spatial sizes are fixed by the model's ``img_size``, as the attention bias already was.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .channels_last import FusedAttentionParts, fused_lkp_convs, tap_major_kernel_conv
from .errors import ReparamError
from .lsnet import LKP, Attention, LSConv, LSNet, Residual, stage_grid
from .reparam import is_reparameterized

__all__ = [
    "AttentionPortable",
    "GroupNormRank4",
    "LSConvPortable",
    "SKAPortable",
    "is_portable_form",
    "max_tensor_rank",
    "to_portable_form",
]


class GroupNormRank4(nn.Module):
    """GroupNorm of tap-major kernels viewed ``(B, K, G, N)`` (``K`` taps, ``G`` groups, ``N``
    pixels): group ``g``'s statistics run over axes 1 and 3, two-pass like PyTorch.

    ``weight`` / ``bias``: the GroupNorm affine permuted tap-major, shaped ``(1, K, G, 1)``.
    Returns ``(B, K, G, N)``.
    """

    def __init__(self, norm: nn.GroupNorm, taps: int) -> None:
        super().__init__()
        if norm.weight is None or norm.bias is None:
            raise ReparamError("LKP GroupNorm without affine parameters is not supported")
        g = norm.num_groups
        self.eps = float(norm.eps)
        # group-major (g, k) -> tap-major (k, g)
        self.register_buffer("weight", norm.weight.detach().view(g, taps).t().reshape(
            1, taps, g, 1).clone())
        self.register_buffer("bias", norm.bias.detach().view(g, taps).t().reshape(
            1, taps, g, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - x.mean((1, 3), keepdim=True)
        var = (d * d).mean((1, 3), keepdim=True)
        return d * (self.weight / torch.sqrt(var + self.eps)) + self.bias


class LKPPortable(nn.Module):
    """A fused LKP emitting tap-major, normalized kernels ``(B, 9, G, H*W)`` for a
    ``(B, C, H, W)`` input (``G = C / 8``; tap ``k`` row-major over the 3x3 window)."""

    def __init__(self, lkp: LKP, grid: tuple[int, int]) -> None:
        super().__init__()
        self.cv1, self.cv2, self.cv3 = fused_lkp_convs(lkp, "the portable form")
        self.act = nn.ReLU()
        self.taps = lkp.sks**2
        self.groups = lkp.dim // lkp.groups
        self.pixels = grid[0] * grid[1]
        self.cv4 = tap_major_kernel_conv(lkp)
        self.norm = GroupNormRank4(lkp.norm, self.taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.cv3(self.cv2(self.act(self.cv1(x)))))
        w = self.cv4(x).reshape(-1, self.taps, self.groups, self.pixels)
        return self.norm(w)


class SKAPortable(nn.Module):
    """SKA followed by the eval-mode BatchNorm of LSConv, rank <= 4.

    ``forward(x, w)``: ``x`` ``(B, C, H, W)``, ``w`` ``(B, 9, G, H*W)`` tap-major kernels;
    returns ``(B, C, H, W)`` = ``scale[c] * sum_k shift_k(x)[c] * w[k, c % G] + shift[c]``
    with zero padding. With ``pad_in_conv`` the BN scale and the zero padding are one depthwise
    1x1 convolution with ``padding=1`` (for graphs where a ``Pad`` op splits the accelerator's
    partition: ONNX Runtime's Core ML EP); otherwise a multiply and a zero ``pad`` (Core ML and
    ExecuTorch take ``pad`` natively, and their INT8 paths handle it better than a positive-only
    1x1 conv: coremltools stores such weights as uint8, XNNPACK cannot load the quantized conv).
    """

    def __init__(self, channels: int, groups: int, grid: tuple[int, int],
                 bn: nn.BatchNorm2d, ks: int = 3, pad_in_conv: bool = False) -> None:
        super().__init__()
        if bn.running_var is None or bn.running_mean is None:
            raise ReparamError("the BatchNorm after SKA has no running statistics")
        self.channels, self.groups, self.grid, self.ks = channels, groups, grid, ks
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        self.pad: nn.Conv2d | None = None
        if pad_in_conv:  # (s * x) zero-padded by ks // 2, in one depthwise 1x1 conv
            self.pad = nn.Conv2d(channels, channels, 1, padding=ks // 2, groups=channels,
                                 bias=False, device=scale.device, dtype=scale.dtype)
            with torch.no_grad():
                self.pad.weight.copy_(scale.view(channels, 1, 1, 1))
        else:
            self.register_buffer("scale", scale.view(1, channels, 1, 1).clone())
        shift = bn.bias.detach() - bn.running_mean * scale
        self.register_buffer("shift", shift.view(1, channels, 1, 1).clone())

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        h, wd = self.grid
        reps, g = self.channels // self.groups, self.groups
        p = self.ks // 2
        xp = self.pad(x) if self.pad is not None else F.pad(x * self.scale, (p, p, p, p))
        out = None
        for k in range(self.ks * self.ks):
            dy, dx = divmod(k, self.ks)
            tap = xp[:, :, dy : dy + h, dx : dx + wd].reshape(-1, reps, g, h * wd)
            term = tap * w[:, k : k + 1]
            out = term if out is None else out + term
        assert out is not None
        return out.reshape(-1, self.channels, h, wd) + self.shift


class LSConvPortable(nn.Module):
    """A fused LSConv, ``bn(SKA(x, LKP(x))) + x``, in the portable form. ``(B, C, H, W)``
    in/out, ``(H, W) = grid``."""

    def __init__(self, ls: LSConv, grid: tuple[int, int], pad_in_conv: bool = False) -> None:
        super().__init__()
        self.lkp = LKPPortable(ls.lkp, grid)
        self.ska = SKAPortable(ls.lkp.dim, self.lkp.groups, grid, ls.bn, ls.lkp.sks,
                               pad_in_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ska(x, self.lkp(x)) + x


class AttentionPortable(FusedAttentionParts):
    """A fused stage-4 Attention with static reshapes: ``(B, C, h, w)`` in/out for the grid
    the bias was built for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        n, nh = h * w, self.num_heads
        q, k, v = self.qkv(x).split([self.nh_kd, self.nh_kd, self.dh], dim=1)
        q = self.dw(q).reshape(-1, nh, self.key_dim, n)
        k = k.reshape(-1, nh, self.key_dim, n)
        v = v.reshape(-1, nh, self.d, n)
        attn = (q.transpose(-2, -1) @ k + self.bias).softmax(dim=-1)
        out = (v @ attn.transpose(-2, -1)).reshape(-1, self.dh, h, w)
        return self.proj(out)


def is_portable_form(model: nn.Module) -> bool:
    """Whether :func:`to_portable_form` has been applied."""
    return bool(getattr(model, "portable_form", False))


def to_portable_form(model: nn.Module, pad_in_conv: bool = False) -> nn.Module:
    """The portable form of a fused LSNet (a deep copy; idempotent).

    ``pad_in_conv``: SKA's zero padding inside a depthwise 1x1 conv instead of a ``pad`` op
    (:class:`SKAPortable`; the ONNX exporter asks for it).

    Any other module (a peer network, an already rewritten LSNet) is returned unchanged; an
    LSNet that is not reparameterized raises :class:`~lsnet_deploy.errors.ReparamError`.
    """
    if not isinstance(model, LSNet) or is_portable_form(model):
        return model
    if not is_reparameterized(model):
        raise ReparamError("the portable form needs a reparameterized model; call "
                           "lsnet_deploy.reparameterize(model) first")
    out = copy.deepcopy(model)
    for stage, blocks in enumerate((out.blocks1, out.blocks2, out.blocks3, out.blocks4), 1):
        grid = stage_grid(out.img_size, stage)
        for block in blocks:
            mixer = getattr(block, "mixer", None)
            if isinstance(mixer, LSConv):
                block.mixer = LSConvPortable(mixer, grid, pad_in_conv)
            elif isinstance(mixer, Residual) and isinstance(mixer.m, Attention):
                mixer.m = AttentionPortable(mixer.m)
    out.portable_form = True  # type: ignore[assignment]
    return out


def max_tensor_rank(module: nn.Module, example: torch.Tensor) -> int:
    """The largest rank of any tensor in ``module``'s ``torch.export`` graph for ``example``
    (inputs, parameters, constants and every intermediate value)."""
    with torch.no_grad():
        program = torch.export.export(module.eval(), (example,))
    rank = 0
    for node in program.graph.nodes:
        val = node.meta.get("val")
        vals = val if isinstance(val, (list, tuple)) else [val]
        for v in vals:
            if isinstance(v, torch.Tensor):
                rank = max(rank, v.dim())
    return rank
