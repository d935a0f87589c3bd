"""A channels-last friendly formulation of the fused LSNet, for converters that lay tensors out
NHWC (TFLite / LiteRT).

litert-torch converts an NCHW PyTorch graph to NHWC TFLite by marking every 4-D tensor that
comes out of a convolution as NHWC and rewriting layout-agnostic ops (elementwise, slice,
concat, mean, softmax) in place; a ``view``/``reshape``/``permute``/``expand`` of such a tensor
must see NCHW memory, so the converter brackets it with ``TRANSPOSE`` ops. The canonical fused
LSNet reshapes in three places (LKP's GroupNorm, SKA's 5-D view, the attention's head split), so
LSNet-T converted with 51 transposes. This module rewrites those three places, in a *fused*
model, so that every reshape acts on a tensor whose torch layout is already channels-last:
an explicit ``permute(0, 2, 3, 1)`` directly after an NHWC-marked tensor cancels the converter's
own transpose, and what remains is a free ``RESHAPE``. LSNet-T then converts with no internal
``TRANSPOSE`` at all (docs/benchmarks.md).

The rewritten modules compute the same function as the fused ones (float32 reordering only,
~1e-6; ``tests/test_channels_last.py``):

* :class:`LKPChannelsLast`: the 1x1 conv producing the kernels emits its ``9 * G`` channels
  **tap-major** (channel ``k * G + g``, a permutation of the conv's rows fixed at rewrite time)
  instead of group-major (``9 g + k``); :class:`TapMajorGroupNorm` computes GroupNorm's
  statistics from per-channel spatial means, averaged over each group's nine taps by one
  constant 1x1 convolution, two-pass like PyTorch (mean, then mean of squared deviations).
* :func:`ska_channels_last`: ``x`` viewed channels-last as ``(B, H, W * C/G, G)`` (channel
  ``c = r * G + g`` uses weight group ``g = c % G``), padded, nine shifted slices each viewed
  ``(B, H * W, C/G, G)`` times the tap's ``(B, H * W, 1, G)`` weights; rank <= 4 throughout.
* :class:`AttentionChannelsLast`: tokens ``(B, N, C)`` from a channels-last view, one head at
  a time with channel slices (a 4-D head split would need a real transpose), heads concatenated
  on the channel axis.
* the BatchNorm after SKA becomes a per-channel scale and shift applied in SKA's channels-last
  view.
* LKP's 7x7 depthwise convolution becomes a sum of three row bands (3x7 + 2x7 + 2x7,
  :mod:`lsnet_deploy.depthwise_bands`): XNNPACK runs kernels of up to 25 taps several times
  faster than larger ones.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .depthwise_bands import banded_if_large
from .errors import ReparamError
from .lsnet import LKP, Attention, LSConv, LSNet, Residual
from .reparam import is_reparameterized

__all__ = [
    "AttentionChannelsLast",
    "FusedAttentionParts",
    "LKPChannelsLast",
    "LSConvChannelsLast",
    "TapMajorGroupNorm",
    "fused_lkp_convs",
    "is_channels_last_form",
    "ska_channels_last",
    "tap_major_kernel_conv",
    "tap_major_permutation",
    "to_channels_last_form",
]


class TapMajorGroupNorm(nn.Module):
    """GroupNorm of LKP's kernels laid out tap-major.

    Input ``(B, K * G, H, W)`` with channel ``k * G + g`` = tap ``k`` of group ``g``; a group's
    statistics run over its ``K`` taps and all pixels, exactly like ``nn.GroupNorm(G, K * G)``
    on the group-major layout. ``weight``/``bias`` are the GroupNorm affine, permuted to
    tap-major, shaped ``(1, K * G, 1, 1)``.

    The statistics come from per-channel spatial means (``MEAN``), averaged over each group's
    taps and repeated for every tap by one constant 1x1 convolution (``tap_average``:
    ``(K*G, K*G, 1, 1)``, ``1/K`` where two channels share a group). Summing nine tap slices and
    concatenating nine copies instead cost 18 ``SLICE``, 16 ``ADD`` and a 9-input
    ``CONCATENATION`` per GroupNorm in TFLite; XNNPACK does not take a 9-input concatenation,
    so each one split the delegate's graph (LSNet-T: 16 partitions, 6 with the convolution;
    docs/performance.md).
    """

    def __init__(self, norm: nn.GroupNorm, perm: torch.Tensor, taps: int) -> None:
        super().__init__()
        if norm.weight is None or norm.bias is None:
            raise ReparamError("LKP GroupNorm without affine parameters is not supported")
        self.taps = taps
        self.groups = norm.num_groups
        self.eps = float(norm.eps)
        self.register_buffer("weight", norm.weight.detach()[perm].reshape(1, -1, 1, 1).clone())
        self.register_buffer("bias", norm.bias.detach()[perm].reshape(1, -1, 1, 1).clone())
        channels = taps * self.groups
        group = torch.arange(channels, device=norm.weight.device) % self.groups
        average = (group[:, None] == group[None, :]).to(norm.weight.dtype) / taps
        self.register_buffer("tap_average", average.reshape(channels, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = F.conv2d(x.mean((2, 3), keepdim=True), self.tap_average)
        d = x - mean
        var = F.conv2d((d * d).mean((2, 3), keepdim=True), self.tap_average)
        return d * (torch.rsqrt(var + self.eps) * self.weight) + self.bias


def tap_major_permutation(taps: int, groups: int) -> torch.Tensor:
    """Group-major channel index ``taps * g + k`` of tap-major channel ``k * groups + g``."""
    return torch.tensor([taps * g + k for k in range(taps) for g in range(groups)])


def tap_major_kernel_conv(lkp: LKP) -> nn.Conv2d:
    """LKP's last 1x1 conv (``cv4``) with its output rows permuted tap-major: channel
    ``k * G + g`` is tap ``k`` of group ``g`` (instead of ``9 g + k``)."""
    old = lkp.cv4
    perm = tap_major_permutation(lkp.sks**2, lkp.dim // lkp.groups)
    cv4 = nn.Conv2d(old.in_channels, old.out_channels, 1, bias=True,
                    device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        cv4.weight.copy_(old.weight[perm])
        assert old.bias is not None
        cv4.bias.copy_(old.bias[perm])
    return cv4


def fused_lkp_convs(lkp: LKP, who: str) -> tuple[nn.Conv2d, nn.Conv2d, nn.Conv2d]:
    """LKP's fused ``cv1``, ``cv2``, ``cv3``; :class:`ReparamError` naming ``who`` if the LKP
    is not fused."""
    convs = (lkp.cv1, lkp.cv2, lkp.cv3)
    if not all(isinstance(c, nn.Conv2d) for c in convs):
        raise ReparamError(f"{who} needs a fused LKP (run reparameterize first)")
    return convs  # type: ignore[return-value]


class LKPChannelsLast(nn.Module):
    """A fused :class:`~lsnet_deploy.lsnet.LKP` emitting tap-major kernels.

    ``(B, C, H, W)`` -> ``(B, K*G, H, W)``, channel ``k * G + g`` = tap ``k`` (row-major over
    the 3x3 window) of weight group ``g`` (``G = C / 8``).
    """

    def __init__(self, lkp: LKP, bands: bool = True) -> None:
        super().__init__()
        self.cv1, cv2, self.cv3 = fused_lkp_convs(lkp, type(self).__name__)
        # the 7x7 depthwise as 3x7 + 2x7 + 2x7 (XNNPACK's fast kernels) unless told not to
        self.cv2 = banded_if_large(cv2) if bands else cv2
        self.act = nn.ReLU()
        taps = lkp.sks**2
        groups = lkp.dim // lkp.groups
        self.taps, self.groups = taps, groups
        self.cv4 = tap_major_kernel_conv(lkp)
        self.norm = TapMajorGroupNorm(lkp.norm, tap_major_permutation(taps, groups), taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.cv3(self.cv2(self.act(self.cv1(x)))))
        return self.norm(self.cv4(x))


def ska_channels_last(
    x: torch.Tensor,
    w: torch.Tensor,
    groups: int,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """SKA on channels-last views of rank <= 4, optionally followed by a per-channel affine.

    Args:
        x: ``(B, C, H, W)`` features.
        w: ``(B, K*G, H, W)`` tap-major kernels (``K = 9``, ``G = groups``).
        scale, shift: ``(C,)``: the eval-mode BatchNorm after SKA, applied in the
            channels-last view (an NCHW affine would cost a transpose pair in INT8 graphs).

    Returns:
        ``(B, C, H, W)``: ``sum_k shift_k(x)[c] * w[k * G + c % G]`` with zero padding,
        then ``* scale[c] + shift[c]``.

    Layout: ``x`` channels-last is ``(B, H, W, C)``, viewed ``(B, H, W * R, G)`` with
    ``R = C / G`` (channel ``c = r G + g`` at ``[.., w R + r, g]``), so a shift by ``dx``
    pixels is a shift by ``dx R`` along axis 2; each shifted slice is viewed
    ``(B, H * W, R, G)`` and multiplied by the tap's ``(B, H * W, 1, G)`` kernels.
    """
    b, c, h, wd = x.shape
    taps = w.shape[1] // groups
    ks = int(round(taps**0.5))
    pad = ks // 2
    reps = c // groups
    xl = x.permute(0, 2, 3, 1).reshape(b, h, wd * reps, groups)
    xp = F.pad(xl, (0, 0, pad * reps, pad * reps, pad, pad))
    wl = w.permute(0, 2, 3, 1).reshape(b, h * wd, 1, taps * groups)
    out = None
    for k in range(taps):
        dy, dx = divmod(k, ks)
        tap = xp[:, dy : dy + h, dx * reps : (dx + wd) * reps].reshape(b, h * wd, reps, groups)
        term = tap * wl[..., k * groups : (k + 1) * groups]
        out = term if out is None else out + term
    assert out is not None
    if scale is not None:
        out = out * scale.reshape(1, 1, reps, groups)
    if shift is not None:
        out = out + shift.reshape(1, 1, reps, groups)
    return out.reshape(b, h, wd, c).permute(0, 3, 1, 2)


class SKAChannelsLast(nn.Module):
    """:func:`ska_channels_last` with the BatchNorm that follows SKA folded to a per-channel
    ``scale``/``shift`` (``(C,)`` buffers)."""

    def __init__(self, groups: int, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.groups = groups
        assert bn.running_var is not None and bn.running_mean is not None
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        self.register_buffer("scale", scale.clone())
        self.register_buffer("shift", (bn.bias.detach() - bn.running_mean * scale).clone())

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return ska_channels_last(x, w, self.groups, self.scale, self.shift)


class LSConvChannelsLast(nn.Module):
    """A fused :class:`~lsnet_deploy.lsnet.LSConv`: ``bn(SKA(x, LKP(x))) + x``.
    ``(B, C, H, W)`` in/out."""

    def __init__(self, ls: LSConv, bands: bool = True) -> None:
        super().__init__()
        self.lkp = LKPChannelsLast(ls.lkp, bands)
        self.ska = SKAChannelsLast(self.lkp.groups, ls.bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ska(x, self.lkp(x)) + x


class FusedAttentionParts(nn.Module):
    """What the rewritten attentions keep of a fused :class:`~lsnet_deploy.lsnet.Attention`:
    the fused ``qkv``, ``dw`` and ``proj`` modules, the head geometry and the gathered bias
    ``(heads, N, N)``. Subclasses define ``forward``."""

    def __init__(self, att: Attention) -> None:
        super().__init__()
        if not att.fused:
            raise ReparamError(f"{type(self).__name__} needs a fused Attention")
        self.qkv, self.dw, self.proj = att.qkv, att.dw, att.proj
        self.num_heads, self.key_dim, self.d = att.num_heads, att.key_dim, att.d
        self.nh_kd, self.dh = att.nh_kd, att.dh
        self.resolution = att.resolution
        self.register_buffer("bias", att.bias_const.detach().clone())


class AttentionChannelsLast(FusedAttentionParts):
    """A fused :class:`~lsnet_deploy.lsnet.Attention` on channels-last tokens, head by head.
    ``(B, C, h, w)`` in/out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        n = h * w
        qkv = self.qkv(x)
        nk = self.nh_kd
        q, k, v = qkv[:, :nk], qkv[:, nk : 2 * nk], qkv[:, 2 * nk :]  # slices quantize simply
        q = self.dw(q).permute(0, 2, 3, 1).reshape(b, n, self.nh_kd)
        k = k.permute(0, 2, 3, 1).reshape(b, n, self.nh_kd)
        v = v.permute(0, 2, 3, 1).reshape(b, n, self.dh)
        kd, d = self.key_dim, self.d
        heads = []
        for i in range(self.num_heads):
            qi = q[:, :, i * kd : (i + 1) * kd]
            ki = k[:, :, i * kd : (i + 1) * kd]
            vi = v[:, :, i * d : (i + 1) * d]
            attn = (qi @ ki.transpose(1, 2) + self.bias[i]).softmax(dim=-1)
            heads.append(attn @ vi)
        out = torch.cat(heads, dim=-1).reshape(b, h, w, self.dh).permute(0, 3, 1, 2)
        return self.proj(out)


def is_channels_last_form(model: nn.Module) -> bool:
    """Whether :func:`to_channels_last_form` has been applied."""
    return bool(getattr(model, "channels_last_form", False))


def to_channels_last_form(model: LSNet, inplace: bool = False, bands: bool = True) -> LSNet:
    """Rewrite a fused LSNet into the channels-last friendly formulation.

    Args:
        model: a reparameterized LSNet (:func:`lsnet_deploy.reparameterize`).
        inplace: modify ``model`` instead of a deep copy.
        bands: LKP's 7x7 depthwise as row bands (:mod:`lsnet_deploy.depthwise_bands`);
            ``False`` keeps one convolution, whose weights then quantize on one per-channel
            grid (weights already rounded to that grid, by GPTQ, stay as they are).

    Returns:
        The rewritten model (same inputs and outputs, same function). Idempotent.
    """
    if not is_reparameterized(model):
        raise ReparamError("to_channels_last_form needs a reparameterized model; call "
                           "lsnet_deploy.reparameterize(model) first")
    if is_channels_last_form(model):
        return model
    out = model if inplace else copy.deepcopy(model)
    for module in list(out.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LSConv):
                setattr(module, name, LSConvChannelsLast(child, bands))
            elif isinstance(child, Residual) and isinstance(child.m, Attention):
                child.m = AttentionChannelsLast(child.m)
    out.channels_last_form = True  # type: ignore[assignment]
    return out
