"""Reparameterization: fused == unfused with randomized BN statistics, per block and whole."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from conftest import TINY_SIZE, trained_looking
from lsnet_deploy.lsnet import (
    Attention,
    BN_Linear,
    Block,
    Conv2d_BN,
    LSConv,
    RepVGGDW,
    build_lsnet,
)
from lsnet_deploy.reparam import is_reparameterized, remaining_batchnorms, reparameterize
from lsnet_deploy.synthetic import _residual_end_bns, init_trained_looking


def randomize_bn(module: nn.Module, seed: int = 0) -> None:
    """Random weight, bias, running mean and running var for every BN in ``module``; the BNs
    that end a residual branch get trained-looking small scales (0.1-0.3)."""
    g = torch.Generator().manual_seed(seed)
    ends = _residual_end_bns(module)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            lo, hi = (0.1, 0.3) if m in ends else (0.5, 1.5)
            m.weight.data = lo + (hi - lo) * torch.rand(n, generator=g)
            m.bias.data = 0.2 * torch.randn(n, generator=g)
            m.running_mean = 0.5 * torch.randn(n, generator=g)
            m.running_var = 0.5 + torch.rand(n, generator=g) * 1.5


def fuse_module(m: nn.Module) -> nn.Module:
    """Fuse a single block the way reparameterize does (children first)."""
    from lsnet_deploy.reparam import _fuse_children

    holder = nn.Sequential(m)
    _fuse_children(holder)
    return holder[0]


@pytest.mark.parametrize(
    "factory",
    [
        lambda: Conv2d_BN(16, 32, 3, 2, 1),
        lambda: Conv2d_BN(16, 16, 7, 1, 3, groups=16),
        lambda: RepVGGDW(16),
        lambda: LSConv(32),
        lambda: Block(32, 16, 4, 0.5, (4, 4), stage=1, depth=0),
        lambda: Block(32, 16, 4, 0.5, (4, 4), stage=1, depth=1),
        lambda: Block(64, 16, 4, 1.0, (4, 4), stage=3, depth=1),
    ],
    ids=["conv_bn", "dw7_bn", "repvggdw", "lsconv", "block_repvgg_se", "block_lsconv",
         "block_attention"],
)
def test_block_fusion_is_exact(factory) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    m = factory().eval()
    randomize_bn(m)
    for a in m.modules():
        if isinstance(a, Attention):
            a.attention_biases.data.normal_(0, 0.5)
    x = torch.randn(2, m[0].in_channels if isinstance(m, Conv2d_BN) else _channels(m), 4, 4)
    ref = m(x)
    fused = fuse_module(copy.deepcopy(m))
    torch.testing.assert_close(fused(x), ref, atol=1e-5, rtol=1e-5)
    left = [n for n, b in fused.named_modules() if isinstance(b, nn.modules.batchnorm._BatchNorm)]
    assert all(n.endswith("bn") and isinstance(fused, (LSConv, Block)) for n in left), left


def _channels(m: nn.Module) -> int:
    for p in m.modules():
        if isinstance(p, nn.Conv2d):
            return p.in_channels
    raise AssertionError


def test_bn_linear_fusion_is_exact() -> None:
    m = BN_Linear(32, 10).eval()
    randomize_bn(m)
    x = torch.randn(5, 32)
    torch.testing.assert_close(m.fuse()(x), m(x), atol=1e-5, rtol=1e-5)


def test_fresh_bn_stats_would_hide_a_bug() -> None:
    """Why the tests randomize BN statistics: a fusion that forgets the running-mean term is
    exact on a fresh BN (mean 0, var 1) and wrong on a trained one."""

    def fuse_without_mean(m: Conv2d_BN) -> nn.Conv2d:
        fused = m.fuse()
        fused.bias.data = m.bn.bias.detach().clone()  # bug: drops - running_mean * scale
        return fused

    m = Conv2d_BN(8, 8).eval()
    x = torch.randn(1, 8, 3, 3)
    torch.testing.assert_close(fuse_without_mean(m)(x), m(x))  # fresh stats: bug invisible
    randomize_bn(m)
    assert (fuse_without_mean(m)(x) - m(x)).abs().max() > 1e-2  # randomized: caught
    torch.testing.assert_close(m.fuse()(x), m(x), atol=1e-5, rtol=1e-5)


def test_fused_state_dict_round_trip(tiny_images: torch.Tensor) -> None:
    """A fused model's state dict carries the attention bias constant: loading it into another
    fused model reproduces its outputs exactly (no stale cached bias)."""
    a = trained_looking("test_lsnet", TINY_SIZE, seed=1)
    b = trained_looking("test_lsnet", TINY_SIZE, seed=2)
    reparameterize(a, None)
    reparameterize(b, None)
    assert (a(tiny_images) - b(tiny_images)).abs().max() > 1e-2
    sd = a.state_dict()
    assert any(k.endswith("bias_const") for k in sd)
    assert not any(k.endswith("attention_biases") for k in sd)
    b.load_state_dict(sd)
    torch.testing.assert_close(b(tiny_images), a(tiny_images), atol=0, rtol=0)


def test_default_check_uses_real_photos(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    model = trained_looking("test_lsnet", TINY_SIZE)
    with caplog.at_level(logging.INFO, logger="lsnet_deploy"):
        report = reparameterize(model)
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-4
    assert "max |fused - unfused|" in caplog.text and "on 4 images" in caplog.text


def test_whole_tiny_model(tiny_images: torch.Tensor) -> None:
    for variant in ("test_lsnet", "test_lsnet_distill"):
        model = trained_looking(variant, TINY_SIZE, seed=1)
        ref = model(tiny_images)
        report = reparameterize(model, tiny_images)
        assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-4
        torch.testing.assert_close(model(tiny_images), ref, atol=1e-4, rtol=0)
        assert all(n.endswith(".mixer.bn") for n in report.remaining_batchnorms)
        assert len(report.remaining_batchnorms) == 2  # the LSConvs of stages 2 and 3
        assert report.params_after < report.params_before
        assert model.head_dist is None
        assert is_reparameterized(model)
        again = reparameterize(model, tiny_images)
        assert again.already_fused and again.params_after == report.params_after
        torch.testing.assert_close(model(tiny_images), ref, atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["lsnet_t", "lsnet_s_distill", "lsnet_b"])
def test_whole_real_variant(variant: str, real_images: torch.Tensor) -> None:
    model = init_trained_looking(build_lsnet(variant), seed=2, images=real_images[:4])
    ref = model(real_images)
    assert ref.abs().max() < 20  # O(1) logits, or the comparison means nothing
    report = reparameterize(model, real_images)
    # float rounding of the fused sums: about 1e-5 of the largest logit (up to 20); the order
    # of the sums, so the rounding, changes with the thread count (B, 1 thread: 1.6e-5 of 13.6)
    bound = max(2.5e-5 * float(ref.detach().abs().max()), 5e-5)
    assert report.max_abs_diff is not None and report.max_abs_diff <= bound
    leftovers = remaining_batchnorms(model)
    assert leftovers and all(n.endswith(".mixer.bn") for n in leftovers)
    assert not any(isinstance(m, (Conv2d_BN, BN_Linear, RepVGGDW)) for m in model.modules())
    attns = [a for a in model.modules() if isinstance(a, Attention)]
    assert attns and all(a.fused and a.bias_const.shape == (4, 16, 16) for a in attns)
