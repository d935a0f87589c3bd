"""The channels-last formulation: same function as the fused model, rank <= 4, and the op-level
pieces (tap-major GroupNorm, channels-last SKA) against their definitions."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from conftest import TINY_SIZE, trained_looking
from lsnet_deploy.channels_last import (
    TapMajorGroupNorm,
    is_channels_last_form,
    ska_channels_last,
    to_channels_last_form,
)
from lsnet_deploy.errors import ReparamError
from lsnet_deploy.lsnet import LSConv
from lsnet_deploy.portable import max_tensor_rank
from lsnet_deploy.reparam import reparameterize
from lsnet_deploy.ska import ska


def _fused(variant: str, size: int, seed: int = 3) -> nn.Module:
    model = trained_looking(variant, img_size=size, seed=seed)
    reparameterize(model, None)
    return model


def test_tap_major_groupnorm_equals_groupnorm() -> None:
    groups, taps = 6, 9
    norm = nn.GroupNorm(groups, groups * taps)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    # offset and scaled per channel, so a wrong grouping changes the statistics
    x = torch.randn(2, groups * taps, 5, 7) * torch.linspace(0.5, 3.0, groups * taps).view(
        1, -1, 1, 1) + torch.linspace(-2.0, 4.0, groups * taps).view(1, -1, 1, 1)
    perm = torch.tensor([taps * g + k for k in range(taps) for g in range(groups)])
    tap_major = TapMajorGroupNorm(norm, perm, taps)
    expected = norm(x)[:, perm]
    got = tap_major(x[:, perm])
    assert torch.allclose(got, expected, atol=2e-5), (got - expected).abs().max()


def test_channels_last_ska_equals_ska() -> None:
    b, c, h, w, groups = 2, 32, 6, 5, 4
    x = torch.randn(b, c, h, w)
    kernels = torch.randn(b, groups, 9, h, w)  # group-major, as LKP returns it
    tap_major = kernels.permute(0, 2, 1, 3, 4).reshape(b, 9 * groups, h, w)
    got = ska_channels_last(x, tap_major, groups)
    assert torch.allclose(got, ska(x, kernels), atol=1e-5)


@pytest.mark.parametrize("variant,size", [("test_lsnet", TINY_SIZE), ("test_lsnet_distill", 160),
                                          ("lsnet_t", 224)])
def test_form_computes_the_fused_function(variant: str, size: int) -> None:
    fused = _fused(variant, size)
    form = to_channels_last_form(fused)
    assert is_channels_last_form(form) and not is_channels_last_form(fused)
    assert not any(isinstance(m, LSConv) for m in form.modules())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref, got = fused(x), form(x)
    assert ref.abs().max() > 0.1  # O(1) logits, not a degenerate zero output
    assert torch.allclose(got, ref, atol=5e-5), (got - ref).abs().max()
    assert to_channels_last_form(form) is form  # idempotent


def test_form_stays_within_rank_4() -> None:
    form = to_channels_last_form(_fused("test_lsnet", TINY_SIZE))
    assert max_tensor_rank(form, torch.randn(1, 3, TINY_SIZE, TINY_SIZE)) == 4


def test_form_needs_a_fused_model() -> None:
    model = trained_looking("test_lsnet", img_size=TINY_SIZE)
    with pytest.raises(ReparamError, match="reparameterize"):
        to_channels_last_form(model)


def test_form_leaves_the_input_model_alone() -> None:
    fused = _fused("test_lsnet", TINY_SIZE)
    before = copy.deepcopy(fused.state_dict())
    to_channels_last_form(fused)
    after = fused.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
