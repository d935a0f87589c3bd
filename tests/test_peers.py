"""Comparison networks (lsnet_deploy.peers): published MACs/params, deploy form, exact BN
folding, deterministic trained-looking weights, registry errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lsnet_deploy.errors import UnknownVariantError
from lsnet_deploy.peers import (
    PEER_CLASSES,
    PEERS,
    count_peer_macs,
    count_peer_params,
    create_peer,
    get_peer,
    peer_names,
)
from lsnet_deploy.peers.common import fold_batchnorms, make_divisible, remaining_batchnorms
from lsnet_deploy.peers.repvit import RepVGGDW, RepViTBlock

NAMES = ("mobilenetv3_large", "efficientnet_b0", "repvit_m0_9")
TOLERANCE = 0.06  # counted vs published MACs / params


@pytest.fixture(scope="module")
def deployed() -> dict[str, nn.Module]:
    """``create_peer(name, seed=0)`` for every peer, built once (each costs a 224 forward)."""
    return {name: create_peer(name, seed=0) for name in NAMES}


def _images(n: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_registry_order_and_fields() -> None:
    assert peer_names() == NAMES == tuple(PEERS)
    assert [PEERS[n].title for n in NAMES] == ["MobileNetV3-L", "EfficientNet-B0", "RepViT-M0.9"]
    for name in NAMES:
        peer = get_peer(name)
        assert peer.name == name
        assert 70.0 < peer.top1 < 80.0 and "\n" not in peer.reference


@pytest.mark.parametrize("name", NAMES)
def test_macs_and_params_match_the_paper(name: str, deployed: dict[str, nn.Module]) -> None:
    peer, model = get_peer(name), deployed[name]
    gmacs = count_peer_macs(model, 224) / 1e9
    params_m = count_peer_params(model) / 1e6
    assert abs(gmacs / peer.paper_gmacs - 1) <= TOLERANCE, (gmacs, peer.paper_gmacs)
    assert abs(params_m / peer.paper_params_m - 1) <= TOLERANCE, (params_m, peer.paper_params_m)
    # convs scale with the pixels; the head's linears and the SE convs do not
    assert 3.8 < count_peer_macs(model, 448) / (gmacs * 1e9) < 4.0


@pytest.mark.parametrize("name", NAMES)
def test_deploy_form_has_no_batchnorm_and_gives_o1_logits(
        name: str, deployed: dict[str, nn.Module]) -> None:
    model = deployed[name]
    assert not model.training
    assert remaining_batchnorms(model) == []
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert not any(callable(getattr(m, "fuse", None)) for m in model.modules())  # all folded
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        logits = model(_images(2, 224))
    assert logits.shape == (2, 1000) and PEER_CLASSES == 1000
    assert torch.isfinite(logits).all()
    assert 0.3 <= logits.std().item() <= 10.0, logits.std().item()
    with torch.no_grad():  # any multiple of 32, non-square
        assert model(_images(1, 160)[..., :96]).shape == (1, 1000)


def _randomize_bn(model: nn.Module, seed: int) -> int:
    """Random affine and running statistics for every BN of ``model``; returns how many."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for bn in bns:
            n = bn.num_features
            bn.weight.copy_(0.5 + torch.rand(n, generator=g))
            bn.bias.copy_(0.2 * torch.randn(n, generator=g))
            bn.running_mean.copy_(0.5 * torch.randn(n, generator=g))  # type: ignore[union-attr]
            bn.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))  # type: ignore[union-attr]
    return len(bns)


@pytest.mark.parametrize("name", NAMES)
def test_folding_is_exact(name: str) -> None:
    torch.manual_seed(0)
    model = get_peer(name).build()
    assert _randomize_bn(model, seed=3) > 20
    model.eval()
    fused = fold_batchnorms(copy.deepcopy(model))
    assert remaining_batchnorms(fused) == []
    x = _images(2, 64)
    with torch.no_grad():
        ref, out = model(x), fused(x)
    scale = ref.abs().max().item()
    assert scale > 0 and torch.isfinite(ref).all()
    assert (out - ref).abs().max().item() <= 1e-4 * scale
    macs_fused, macs = count_peer_macs(fused, 64), count_peer_macs(model, 64)
    if name == "repvit_m0_9":  # the dw 1x1 branches and the distillation head are folded away
        assert macs_fused < macs
    else:
        assert macs_fused == macs


def test_repvit_token_mixer_folds_to_one_depthwise_conv() -> None:
    torch.manual_seed(0)
    mixer = RepVGGDW(16)
    _randomize_bn(mixer, seed=5)
    mixer.eval()
    conv = mixer.fuse()
    assert isinstance(conv, nn.Conv2d) and conv.groups == 16 and conv.kernel_size == (3, 3)
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(conv(x), mixer(x), rtol=1e-5, atol=1e-5)


def test_architecture_tables() -> None:
    repvit = get_peer("repvit_m0_9").build()
    blocks = [m for m in repvit.modules() if isinstance(m, RepViTBlock)]
    assert len(blocks) == 26
    assert sum(isinstance(m, RepVGGDW) for m in repvit.modules()) == 23
    mbv3 = get_peer("mobilenetv3_large").build()
    assert sum(getattr(m, "use_res", None) is not None for m in mbv3.modules()) == 15
    effnet = get_peer("efficientnet_b0").build()
    assert sum(getattr(m, "use_res", None) is not None for m in effnet.modules()) == 16
    # SE squeeze widths: MobileNetV3 make_divisible(exp // 4, 8); EfficientNet c_in // 4;
    # RepViT (timm) make_divisible(c / 4, 8) never bumped
    assert make_divisible(72 // 4, 8) == 24 and make_divisible(12, 8, round_limit=0.0) == 16
    se_widths = {m.fc1.out_channels for m in effnet.modules() if hasattr(m, "fc1")}
    assert se_widths == {8, 4, 6, 10, 20, 28, 48}


def test_create_peer_is_deterministic_per_seed(deployed: dict[str, nn.Module]) -> None:
    name = "mobilenetv3_large"
    again, other = create_peer(name, seed=0), create_peer(name, seed=1)
    x = _images(2, 64)
    with torch.no_grad():
        a, b, c = deployed[name](x), again(x), other(x)
    assert torch.equal(a, b)
    for (k, v), w in zip(deployed[name].state_dict().items(), again.state_dict().values()):
        assert torch.equal(v, w), k
    assert (a - c).abs().max().item() > 0.1 * a.abs().max().item()


def test_unknown_peer_names_the_known_ones() -> None:
    with pytest.raises(UnknownVariantError) as info:
        get_peer("nope")
    msg = str(info.value)
    assert msg == "unknown peer 'nope'; known: mobilenetv3_large, efficientnet_b0, repvit_m0_9"
    assert "\n" not in msg
    with pytest.raises(UnknownVariantError):
        create_peer("nope")
