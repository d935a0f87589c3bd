"""The portable formulation (rank <= 4, no GroupNorm/BatchNorm/Pad ops, static reshapes): the
same function as the fused model, and its pieces against their definitions."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_SIZE, trained_looking
from reference_lsnet import ska_naive_loop
from torch import nn

from lsnet_deploy.errors import ReparamError
from lsnet_deploy.lsnet import LSConv, LSNet
from lsnet_deploy.portable import (
    GroupNormRank4,
    LSConvPortable,
    SKAPortable,
    is_portable_form,
    max_tensor_rank,
    to_portable_form,
)
from lsnet_deploy.reparam import reparameterize


def _fused(variant: str, size: int, seed: int = 3) -> LSNet:
    model = trained_looking(variant, img_size=size, seed=seed)
    reparameterize(model, None)
    return model


def test_rank4_groupnorm_equals_groupnorm() -> None:
    groups, taps, h, w = 6, 9, 5, 7
    norm = nn.GroupNorm(groups, groups * taps)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    # offset and scaled per channel, so a wrong grouping changes the statistics
    x = torch.randn(2, groups * taps, h, w) * torch.linspace(0.5, 3.0, groups * taps).view(
        1, -1, 1, 1) + torch.linspace(-2.0, 4.0, groups * taps).view(1, -1, 1, 1)
    expected = norm(x).view(2, groups, taps, h * w).permute(0, 2, 1, 3)  # (B, K, G, N)
    tap_major = x.view(2, groups, taps, h * w).permute(0, 2, 1, 3).contiguous()
    got = GroupNormRank4(norm, taps)(tap_major)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=0)


@pytest.mark.parametrize("pad_in_conv", [False, True])
def test_portable_ska_equals_the_formula(pad_in_conv: bool) -> None:
    b, c, h, w, groups = 2, 32, 6, 5, 4
    bn = nn.BatchNorm2d(c).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(b, c, h, w, dtype=torch.float64)
    kernels = torch.randn(b, groups, 9, h, w, dtype=torch.float64)  # group-major, as LKP's
    tap_major = kernels.permute(0, 2, 1, 3, 4).reshape(b, 9, groups, h * w)
    module = SKAPortable(c, groups, (h, w), bn.double(), pad_in_conv=pad_in_conv)
    expected = bn(ska_naive_loop(x, kernels))
    torch.testing.assert_close(module(x, tap_major), expected, atol=1e-10, rtol=0)
    if pad_in_conv:  # padding inside the depthwise conv: no F.pad
        assert module.pad is not None and module.pad.padding == (1, 1)
        assert module.pad.groups == c


@pytest.mark.parametrize("variant,size", [("test_lsnet", TINY_SIZE), ("test_lsnet_distill", 160),
                                          ("lsnet_t", 224), ("lsnet_b", 192)])
@pytest.mark.parametrize("pad_in_conv", [False, True])
def test_form_computes_the_fused_function(variant: str, size: int, pad_in_conv: bool) -> None:
    fused = _fused(variant, size)
    form = to_portable_form(fused, pad_in_conv)
    assert is_portable_form(form) and not is_portable_form(fused)
    assert not any(isinstance(m, LSConv) for m in form.modules())
    assert any(isinstance(m, LSConvPortable) for m in form.modules())
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        ref, got = fused(x), form(x)
    assert (got - ref).abs().max() <= 1e-4 * max(1.0, float(ref.abs().max()))
    assert torch.equal(got.argmax(1), ref.argmax(1))
    assert to_portable_form(form) is form


def test_no_rank5_tensor_and_no_norm_ops_in_the_graph() -> None:
    form = to_portable_form(_fused("test_lsnet", TINY_SIZE), pad_in_conv=True)
    x = torch.randn(2, 3, TINY_SIZE, TINY_SIZE)
    assert max_tensor_rank(form, x) == 4
    assert max_tensor_rank(_fused("test_lsnet", TINY_SIZE), x) == 5  # the canonical SKA view
    with torch.no_grad():
        graph = torch.export.export(form.eval(), (x,)).run_decompositions({}).graph
    targets = {str(n.target) for n in graph.nodes if n.op == "call_function"}
    for banned in ("group_norm", "batch_norm", "pad", "sym_size", "index.Tensor"):
        assert not [t for t in targets if banned in t], (banned, targets)


def test_dynamic_batch_and_fx_tracing() -> None:
    form = to_portable_form(_fused("test_lsnet", TINY_SIZE))
    batch = torch.export.Dim("batch", min=1, max=64)
    x = torch.randn(2, 3, TINY_SIZE, TINY_SIZE)
    program = torch.export.export(form.eval(), (x,), dynamic_shapes=({0: batch},))
    y = torch.randn(5, 3, TINY_SIZE, TINY_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(y), form(y))
    traced = torch.fx.symbolic_trace(form)  # coremltools' W8A8 quantizer traces with fx
    with torch.no_grad():
        torch.testing.assert_close(traced(y), form(y))


def test_needs_a_fused_model_and_leaves_other_modules_alone() -> None:
    with pytest.raises(ReparamError, match="reparameterize"):
        to_portable_form(trained_looking("test_lsnet", img_size=TINY_SIZE))
    other = nn.Conv2d(3, 3, 1)
    assert to_portable_form(other) is other
