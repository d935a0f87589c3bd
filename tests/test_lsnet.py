"""The architecture: official keys, geometry checks, heads, attention bias behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import TINY_SIZE, trained_looking
from lsnet_deploy.errors import InputShapeError, UnknownVariantError
from lsnet_deploy.flops import count_macs, count_params
from lsnet_deploy.lsnet import Attention, build_lsnet, stage_grid

OFFICIAL_KEYS = [
    "patch_embed.0.c.weight",
    "patch_embed.0.bn.running_var",
    "blocks2.0.c.weight",
    "blocks2.2.mixer.conv.c.weight",
    "blocks2.2.mixer.conv1.bn.weight",
    "blocks2.2.se.fc1.weight",
    "blocks2.3.mixer.lkp.cv2.c.weight",
    "blocks2.3.mixer.lkp.cv4.bias",
    "blocks2.3.mixer.lkp.norm.weight",
    "blocks2.3.mixer.bn.running_mean",
    "blocks4.3.mixer.m.qkv.c.weight",
    "blocks4.3.mixer.m.attention_biases",
    "blocks4.3.mixer.m.attention_bias_idxs",
    "blocks4.3.mixer.m.proj.1.c.weight",
    "blocks2.2.ffn.m.pw1.c.weight",
    "head.bn.weight",
    "head.l.weight",
]


def test_state_dict_has_the_official_keys() -> None:
    sd = build_lsnet("lsnet_t").state_dict()
    for key in OFFICIAL_KEYS:
        assert key in sd, key
    assert "head_dist.l.bias" not in sd
    assert "head_dist.l.bias" in build_lsnet("lsnet_t_distill").state_dict()
    model = build_lsnet("lsnet_t")
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            assert f"{name}.num_batches_tracked" in sd
    assert not any(k.startswith("blocks1.") for k in sd)  # LSNet-T has no stage-1 block
    assert sd["blocks4.3.mixer.m.qkv.c.weight"].shape == (384 + 128, 384, 1, 1)
    assert sd["blocks2.3.mixer.lkp.cv4.weight"].shape == (9 * 128 // 8, 64, 1, 1)


@pytest.mark.parametrize(
    ("variant", "params_m", "fused_m"),
    [("lsnet_t", 11.41, 11.37), ("lsnet_s", 16.15, 16.10), ("lsnet_b", 23.31, 23.25)],
)
def test_parameter_counts_match_the_paper(variant: str, params_m: float, fused_m: float) -> None:
    """The paper's 11.4M / 16.1M / 23.2M are the fused counts."""
    from lsnet_deploy.reparam import reparameterize

    model = build_lsnet(variant)
    assert count_params(model) / 1e6 == pytest.approx(params_m, abs=0.005)
    reparameterize(model)
    assert count_params(model) / 1e6 == pytest.approx(fused_m, abs=0.005)


@pytest.mark.parametrize(
    ("variant", "gmacs", "paper"), [("lsnet_t", 0.3158, 0.3), ("lsnet_s", 0.5380, 0.5),
                                    ("lsnet_b", 1.2447, 1.3)]
)
def test_mac_counter_reproduces_the_paper(variant: str, gmacs: float, paper: float) -> None:
    macs = count_macs(build_lsnet(variant))
    assert macs.total / 1e9 == pytest.approx(gmacs, abs=5e-4)
    assert round(macs.paper_total / 1e9, 1) == paper
    assert macs.ska > 0 and macs.attention > 0


def test_stage_grid_geometry() -> None:
    assert stage_grid(224) == (4, 4)
    assert stage_grid(193) == (4, 4) and stage_grid(256) == (4, 4)
    assert stage_grid(192) == (3, 3) and stage_grid(257) == (5, 5)
    assert stage_grid(224, 1) == (28, 28)
    assert stage_grid((128, 512)) == (2, 8)


def test_wrong_geometry_is_an_error_not_a_silent_run() -> None:
    model = build_lsnet("lsnet_t").eval()
    with pytest.raises(InputShapeError, match="2x8 stage-4 grid.*img_size=\\(128, 512\\)"):
        model(torch.randn(1, 3, 128, 512))
    with pytest.raises(InputShapeError, match="B, C, H, W"):
        model(torch.randn(3, 224, 224))
    assert model(torch.randn(1, 3, 200, 240)).shape == (1, 1000)  # same 4x4 grid


def test_model_built_for_another_size_runs_it() -> None:
    model = build_lsnet("lsnet_t", img_size=(128, 512)).eval()
    assert model.attn_resolution == (2, 8)
    attn = next(m for m in model.modules() if isinstance(m, Attention))
    assert attn.attention_biases.shape == (4, 16)
    assert model(torch.randn(2, 3, 128, 512)).shape == (2, 1000)


def test_features_and_head_split(tiny_images: torch.Tensor) -> None:
    model = trained_looking("test_lsnet", TINY_SIZE)
    feats = model.forward_features(tiny_images)
    assert feats.shape == (6, 64, 2, 2)
    pooled = model.forward_head(feats, pre_logits=True)
    assert pooled.shape == (6, 64)
    torch.testing.assert_close(model.forward_head(feats), model(tiny_images))


def test_distill_heads_tuple_in_train_and_average_in_eval(tiny_images: torch.Tensor) -> None:
    model = trained_looking("test_lsnet_distill", TINY_SIZE)
    out = model(tiny_images)
    feats = model.forward_head(model.forward_features(tiny_images), pre_logits=True)
    assert model.head_dist is not None
    torch.testing.assert_close(out, (model.head(feats) + model.head_dist(feats)) / 2)
    model.train()
    both = model(tiny_images[:2])
    assert isinstance(both, tuple) and len(both) == 2


def test_eval_before_loading_weights_uses_the_loaded_bias(tiny_images: torch.Tensor) -> None:
    """Upstream caches the gathered bias on .eval(); ours must not go stale."""
    source = trained_looking("test_lsnet", TINY_SIZE, seed=3)
    early = build_lsnet("test_lsnet", img_size=TINY_SIZE).eval()  # eval first
    early.load_state_dict(source.state_dict())
    torch.testing.assert_close(early(tiny_images), source(tiny_images))
    attn = next(m for m in early.modules() if isinstance(m, Attention))
    assert attn.attention_biases.abs().sum() > 0


def test_unknown_variant() -> None:
    with pytest.raises(UnknownVariantError, match="lsnet_t"):
        build_lsnet("lsnet_xl")


def test_trained_looking_weights_give_input_dependent_order_one_logits(
    real_images: torch.Tensor,
) -> None:
    model = trained_looking("lsnet_t")
    logits = model(real_images)
    assert 0.3 < logits.std().item() < 3.0
    assert logits.abs().max() < 15
    assert logits.std(0).mean() > 0.3  # depends on the image
    assert len(set(logits.argmax(-1).tolist())) > 3


@pytest.mark.parametrize("variant,size", [("test_lsnet_distill", TINY_SIZE),
                                          pytest.param("lsnet_t", 224, marks=pytest.mark.slow)])
def test_whole_model_exports_within_rank_5(variant: str, size: int) -> None:
    """torch.export of the fused model: no tensor above rank 5, no repeat/unfold, and the
    exported program equals eager."""
    from lsnet_deploy.reparam import reparameterize

    model = trained_looking(variant, size)
    reparameterize(model)
    x = torch.randn(1, 3, size, size)
    program = torch.export.export(model, (x,))
    for node in program.graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            assert val.dim() <= 5, f"{node.name}: rank {val.dim()}"
        if node.op == "call_function":
            assert not any(s in str(node.target) for s in ("repeat", "unfold", "im2col"))
    torch.testing.assert_close(program.module()(x), model(x), atol=1e-5, rtol=0)
