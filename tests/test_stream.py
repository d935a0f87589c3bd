"""Residual-stream equalization (lsnet_deploy.quantize.stream) and the INT8 preparation the
export pipeline applies (``equalize=True``)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from conftest import TINY_SIZE
from torch import nn

from lsnet_deploy import export
from lsnet_deploy.errors import UnsupportedOptionError
from lsnet_deploy.lsnet import LSNet, build_lsnet
from lsnet_deploy.quantize.attention import equalize_attention
from lsnet_deploy.quantize.prepare import prepare_for_int8
from lsnet_deploy.quantize.stream import equalize_stream, stream_channel_max
from lsnet_deploy.reparam import reparameterize
from lsnet_deploy.sidecar import read_sidecar
from lsnet_deploy.synthetic import FAMILIES, init_trained_looking

TINY = "test_lsnet"


def _model(family: str, seed: int = 0) -> LSNet:
    return init_trained_looking(build_lsnet(TINY, img_size=TINY_SIZE), seed=seed, family=family)


def _fused(family: str, seed: int = 0) -> LSNet:
    model = _model(family, seed)
    reparameterize(model, None)
    return model


def _changed(before: nn.Module, after: nn.Module) -> set[str]:
    """Names of the parameters that differ between two copies of one model."""
    return {name for (name, p), (_, q) in zip(before.named_parameters(),
                                              after.named_parameters(), strict=True)
            if not torch.equal(p, q)}


def _stream_quant_error(model: LSNet, images: torch.Tensor) -> float:
    """Relative logit error when every stream tensor is fake-quantized to uint8 per tensor
    (min/max range): what the INT8 graph's residual adds lose."""
    def hook(_m: nn.Module, _a: tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        scale = (hi - lo) / 255 or 1.0
        return torch.clamp(torch.round((x - lo) / scale), 0, 255) * scale + lo

    with torch.no_grad():
        ref = model(images)
    hooks = [b.ffn.register_forward_hook(hook) for stage in
             (model.blocks1, model.blocks2, model.blocks3, model.blocks4)
             for b in stage if hasattr(b, "ffn")]
    try:
        with torch.no_grad():
            got = model(images)
    finally:
        for h in hooks:
            h.remove()
    return float((got - ref).norm() / ref.norm())


@pytest.mark.parametrize("family", FAMILIES)
def test_stream_equalization_is_exact(family: str, tiny_images: torch.Tensor) -> None:
    model = _fused(family)
    before = copy.deepcopy(model)
    report = equalize_stream(model, tiny_images[:4])
    assert report.stages == len(report.spread_before) >= 3
    with torch.no_grad():
        a, b = before(tiny_images), model(tiny_images)
    assert torch.allclose(a, b, atol=1e-4, rtol=0), float((a - b).abs().max())
    # every kind of reader and writer changed (a no-op would pass the check above)
    changed = _changed(before, model)
    for part in ("patch_embed.4.weight", "ffn.m.pw1.weight", "ffn.m.pw2.weight",
                 "lkp.cv1.weight", "mixer.bn.bias", "se.fc1.weight", "mixer.m.qkv.weight",
                 "mixer.m.proj.1.weight", "head.weight"):
        assert any(n.endswith(part) for n in changed), (part, sorted(changed))


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_equalization_is_exact(family: str, tiny_images: torch.Tensor) -> None:
    model = _fused(family)
    before = copy.deepcopy(model)
    assert equalize_attention(model, tiny_images[:4]) >= 1
    with torch.no_grad():
        a, b = before(tiny_images), model(tiny_images)
    assert torch.allclose(a, b, atol=1e-4, rtol=0), float((a - b).abs().max())
    changed = _changed(before, model)
    for part in ("mixer.m.qkv.weight", "mixer.m.qkv.bias", "mixer.m.dw.weight",
                 "mixer.m.dw.bias", "mixer.m.proj.1.weight"):
        assert any(n.endswith(part) for n in changed), (part, sorted(changed))
    with pytest.raises(ValueError, match="fused LSNet"):
        equalize_attention(_model(family), tiny_images)


def test_stream_equalization_flattens_outlier_channels(tiny_images: torch.Tensor) -> None:
    model = _fused("outliers")
    err_before = _stream_quant_error(model, tiny_images)
    report = equalize_stream(model, tiny_images)
    err_after = _stream_quant_error(model, tiny_images)
    assert max(report.spread_before) > 10 and max(report.spread_after) < 2, report
    after = stream_channel_max(model, tiny_images)
    assert all(float(a.max() / a.median()) < 2 for a in after.values())
    assert err_after < 0.5 * err_before, (err_before, err_after)


def test_stream_equalization_rejects_what_it_cannot_rescale(
        tiny_images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="fused LSNet"):
        equalize_stream(_model("trained-looking"), tiny_images)  # not reparameterized
    with pytest.raises(ValueError, match="alpha"):
        equalize_stream(_fused("trained-looking"), tiny_images, alpha=1.5)
    with pytest.raises(ValueError, match="images"):
        equalize_stream(_fused("trained-looking"), tiny_images[:0])


def test_prepare_for_int8_records_both_steps(tiny_images: torch.Tensor) -> None:
    model = _fused("outliers")
    before = copy.deepcopy(model)
    record = prepare_for_int8(model, tiny_images)
    assert set(record) == {"stream", "attentions", "pairs"}
    assert record["pairs"]["pairs"] > 0 and record["attentions"] >= 1  # type: ignore[index]
    with torch.no_grad():
        assert torch.allclose(before(tiny_images), model(tiny_images), atol=1e-4, rtol=0)


def test_int8_export_of_outlier_model_gains_from_equalization(tmp_path: Path) -> None:
    """ONNX Runtime INT8 of a tiny model with outlier channels: the equalized export keeps the
    logits closer to PyTorch than the plain one, and its sidecar says what was done."""
    cosines = {}
    for equalize in (False, True):
        [art] = export(_model("outliers", seed=3), "onnx", precision="int8",
                       img_size=TINY_SIZE, min_cosine=0.0, equalize=equalize,
                       calib_size=24, val_size=24,
                       output_dir=tmp_path / str(equalize))
        side = read_sidecar(art.path)
        assert side is not None
        cosines[equalize] = side["validation"]["mean_cosine"]
        prep = side["export"].get("preparation")
        if equalize:
            assert prep is not None and prep["max_abs_logit_change"] <= 1e-3
            assert max(prep["stream"]["spread_before"]) > 10
        else:
            assert prep is None
    assert cosines[True] > cosines[False] + 0.02, cosines


def test_quant_report_compares_each_group_with_and_without_equalization() -> None:
    from lsnet_deploy import quant_report

    rep = quant_report(TINY, weights="random-outliers", img_size=96, calib_size=16,
                       val_size=16, compare_equalize=True)
    assert rep["preparation"] is not None and rep["preparation"]["attentions"] >= 1
    assert rep["full_int8_cosine"] > rep["full_int8_cosine_unequalized"] + 0.02, rep
    groups = {g["group"]: g for g in rep["groups"]}
    assert {"residual", "ska", "ffn"} <= set(groups)
    for g in groups.values():
        assert 0.0 < g["only_cosine_unequalized"] <= 1.0
    # the stream's outlier channels hurt the residual adds most when not equalized
    assert groups["residual"]["only_cosine"] > groups["residual"]["only_cosine_unequalized"]
    with pytest.raises(UnsupportedOptionError, match="--compare-equalize"):
        quant_report(TINY, weights="random", img_size=96, equalize=False,
                     compare_equalize=True)
