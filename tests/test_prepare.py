"""Channel equalization (lsnet_deploy.quantize.prepare) and the synthetic outlier family."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import TINY_SIZE
from torch import nn

from lsnet_deploy.api import RANDOM_OUTLIERS, create_model
from lsnet_deploy.lsnet import build_lsnet
from lsnet_deploy.quantize.prepare import equalizable_pairs, equalize
from lsnet_deploy.reparam import reparameterize
from lsnet_deploy.synthetic import FAMILIES, add_outlier_channels, init_trained_looking


def _fused(family: str, seed: int = 0) -> nn.Module:
    model = init_trained_looking(build_lsnet("test_lsnet", img_size=TINY_SIZE), seed=seed,
                                 family=family)
    reparameterize(model, None)
    return model


def _activation_error(model: nn.Module, images: torch.Tensor) -> float:
    """Mean relative error of uint8 per-tensor fake quantization (min/max range) of every
    equalized activation: what the per-tensor activation quantizers of an INT8 graph lose."""
    errors: list[float] = []

    def hook(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0]
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        scale = (hi - lo) / 255 or 1.0
        q = torch.clamp(torch.round((x - lo) / scale), 0, 255) * scale + lo
        errors.append(float((q - x).norm() / x.norm().clamp_min(1e-12)))

    hooks = [p.consumer.register_forward_pre_hook(hook) for p in equalizable_pairs(model)]
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    return sum(errors) / len(errors)


@pytest.mark.parametrize("family", FAMILIES)
def test_equalization_is_exact(family: str, tiny_images: torch.Tensor) -> None:
    model = _fused(family)
    before = copy.deepcopy(model)
    report = equalize(model, tiny_images[:4])
    assert report.pairs == len(equalizable_pairs(model)) > 0
    with torch.no_grad():
        a, b = before(tiny_images), model(tiny_images)
    assert torch.allclose(a, b, atol=1e-4, rtol=0), float((a - b).abs().max())
    # and it changed the weights (a no-op would pass the check above)
    changed = [not torch.equal(p.weight, q.weight)
               for p, q in zip(before.modules(), model.modules(), strict=True)
               if isinstance(p, nn.Conv2d) and isinstance(q, nn.Conv2d)]
    assert sum(changed) >= report.pairs


def test_every_kind_of_pair_is_found(tiny_images: torch.Tensor) -> None:
    names = [p.name for p in equalizable_pairs(_fused("trained-looking"))]
    for kind in ("pw1->pw2", "cv1->cv2", "cv2->cv3", "cv3->cv4", "fc1->fc2", "patch_embed.0->2",
                 "patch_embed.2->4"):
        assert any(kind in n for n in names), (kind, names)
    assert any(n.endswith(".0->1") and n.startswith("blocks") for n in names), names


def test_equalization_shrinks_outlier_channels(tiny_images: torch.Tensor) -> None:
    model = _fused("outliers")
    err_before = _activation_error(model, tiny_images)
    report = equalize(model, tiny_images)
    err_after = _activation_error(model, tiny_images)
    assert report.max_spread_before > 10 * report.max_spread_after, report
    assert err_after < 0.7 * err_before, (err_before, err_after)


def test_equalize_rejects_bad_arguments(tiny_images: torch.Tensor) -> None:
    model = _fused("trained-looking")
    with pytest.raises(ValueError, match="alpha"):
        equalize(model, tiny_images, alpha=1.5)
    with pytest.raises(ValueError, match="images"):
        equalize(model, tiny_images[:0])


def test_unfused_model_has_only_its_plain_conv_pairs() -> None:
    model = init_trained_looking(build_lsnet("test_lsnet", img_size=TINY_SIZE))
    names = [p.name for p in equalizable_pairs(model)]  # Conv2d_BN is not a Conv2d: skipped
    assert names and all(n.endswith("se.fc1->fc2") for n in names), names


def test_outlier_family_scales_a_few_channels() -> None:
    g = torch.Generator().manual_seed(0)
    bns = [nn.BatchNorm2d(100), nn.BatchNorm2d(8)]
    assert add_outlier_channels(bns, g) == 2 + 1
    big = bns[0].weight > 5
    assert int(big.sum()) == 2 and bool((bns[0].weight[big] <= 50).all())
    assert int((bns[1].weight > 5).sum()) == 1


def test_outlier_family_has_outlier_activations_and_finite_logits(
        tiny_images: torch.Tensor) -> None:
    plain, outl = _fused("trained-looking"), _fused("outliers")
    spread = {}
    for name, model in (("plain", plain), ("outliers", outl)):
        report = equalize(copy.deepcopy(model), tiny_images)
        spread[name] = report.max_spread_before
        with torch.no_grad():
            logits = model(tiny_images)
        assert torch.isfinite(logits).all() and float(logits.abs().max()) < 1e3
    assert spread["outliers"] > 5 * spread["plain"], spread


def test_unknown_family_is_an_error() -> None:
    with pytest.raises(ValueError, match="family"):
        init_trained_looking(build_lsnet("test_lsnet", img_size=TINY_SIZE), family="nope")


def test_create_model_random_outliers_is_recorded() -> None:
    model = create_model("test_lsnet", RANDOM_OUTLIERS, img_size=TINY_SIZE)
    assert model.weights_source.kind == "random"
    assert model.weights_source.path == RANDOM_OUTLIERS
    assert "outlier" in model.weights_source.label
    again = create_model("test_lsnet", RANDOM_OUTLIERS, img_size=TINY_SIZE)
    plain = create_model("test_lsnet", "random", img_size=TINY_SIZE)
    x = torch.randn(1, 3, TINY_SIZE, TINY_SIZE)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))  # deterministic: validation can rebuild it
        assert not torch.allclose(model(x), plain(x))
