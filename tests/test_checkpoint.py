"""Checkpoint reading: official format, wrappers, safetensors, size adaptation and errors."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from conftest import TINY_SIZE, trained_looking
from lsnet_deploy import create_model
from lsnet_deploy.checkpoint import (
    adapt_state_dict,
    extract_state_dict,
    file_sha256,
    guess_variant,
    load_weights,
)
from lsnet_deploy.errors import CheckpointError
from lsnet_deploy.lsnet import Attention, build_lsnet


@pytest.fixture(scope="module")
def tiny_sd() -> dict[str, torch.Tensor]:
    return trained_looking("test_lsnet", TINY_SIZE, seed=5).state_dict()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"model": sd},
        lambda sd: sd,
        lambda sd: {"model_ema": sd, "epoch": 3},
        lambda sd: {"state_dict": sd},
        lambda sd: {"model": OrderedDict((f"module.{k}", v) for k, v in sd.items())},
    ],
    ids=["official", "bare", "model_ema", "state_dict", "ddp_prefix"],
)
def test_wrappers_load_strictly(tmp_path: Path, tiny_sd, wrap, tiny_images) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(tiny_sd), path)
    model = build_lsnet("test_lsnet", img_size=TINY_SIZE).eval()
    info = load_weights(model, path)
    assert info.sha256 == file_sha256(path)
    ref = trained_looking("test_lsnet", TINY_SIZE, seed=5)
    torch.testing.assert_close(model(tiny_images), ref(tiny_images))


@pytest.mark.parametrize("prefix", ["", "module."])
def test_safetensors(tmp_path: Path, tiny_sd, prefix: str) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file

    path = tmp_path / "with space" / "w.safetensors"
    path.parent.mkdir()
    save_file({prefix + k: v.contiguous() for k, v in tiny_sd.items()}, str(path))
    model = build_lsnet("test_lsnet", img_size=TINY_SIZE)
    load_weights(model, path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, tiny_sd[k])


def test_extract_prefers_model_and_rejects_non_state_dicts() -> None:
    a, b = {"x": torch.zeros(1)}, {"x": torch.ones(1)}
    sd, wrapper = extract_state_dict({"model": a, "model_ema": b})
    assert wrapper == "model" and sd["x"].item() == 0
    with pytest.raises(ValueError, match="no state dict"):
        extract_state_dict({"epoch": 3, "args": "x"})
    with pytest.raises(ValueError, match="no state dict"):
        extract_state_dict([1, 2])


def _expect(path: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as ei:
        load_weights(build_lsnet("test_lsnet", img_size=TINY_SIZE), path)
    assert str(path) in str(ei.value) and "\n" not in str(ei.value)


def test_error_missing_and_empty_and_directory(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.pth", "not found")
    (tmp_path / "empty.pth").write_bytes(b"")
    _expect(tmp_path / "empty.pth", "empty")
    with pytest.raises(CheckpointError, match="directory"):
        load_weights(build_lsnet("test_lsnet", img_size=TINY_SIZE), tmp_path)


def test_error_not_a_checkpoint(tmp_path: Path) -> None:
    p = tmp_path / "notes.pth"
    p.write_text("hello, this is not a checkpoint\n")
    _expect(p, "not a PyTorch checkpoint|could not be read")


def test_error_truncated(tmp_path: Path, tiny_sd) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "full.pth"
    torch.save({"model": tiny_sd}, p)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    _expect(cut, "truncated or corrupt")


class _Custom:
    pass


def test_error_objects_refused_by_weights_only(tmp_path: Path) -> None:
    p = tmp_path / "obj.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "args": _Custom()}, p)
    _expect(p, "weights_only")


def test_error_no_tensors(tmp_path: Path) -> None:
    p = tmp_path / "meta.pth"
    torch.save({"epoch": 1, "best": 0.5}, p)
    _expect(p, "no state dict")


def test_error_pickle_garbage(tmp_path: Path) -> None:
    p = tmp_path / "garbage.pth"
    p.write_bytes(pickle.dumps(object, protocol=2)[:5] + b"\x00" * 20)
    with pytest.raises(CheckpointError):
        load_weights(build_lsnet("test_lsnet", img_size=TINY_SIZE), p)


def test_wrong_variant_names_keys_and_guesses(tmp_path: Path) -> None:
    with torch.device("meta"):
        sd = build_lsnet("lsnet_s").state_dict()
    p = tmp_path / "lsnet_s.pth"
    torch.save({"model": {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in sd.items()}}, p)
    model = build_lsnet("lsnet_t")
    with pytest.raises(CheckpointError) as ei:
        load_weights(model, p, variant="lsnet_t")
    msg = str(ei.value)
    assert "does not fit lsnet_t" in msg and "unexpected" in msg and "mis-shaped" in msg
    assert "lsnet_s checkpoint: use --model lsnet_s" in msg
    assert "\n" not in msg


def test_guess_variant_distill() -> None:
    with torch.device("meta"):
        sd = build_lsnet("lsnet_b_distill").state_dict()
    assert guess_variant(sd) == "lsnet_b_distill"
    assert guess_variant({"foo": torch.zeros(1)}) is None


def test_other_input_size_interpolates_bias_tables(make_checkpoint, real_images) -> None:  # type: ignore[no-untyped-def]
    """A 224 checkpoint into a model built for 288 (5x5 grid): tables resized bicubically."""
    path = make_checkpoint("lsnet_t")
    model = create_model("lsnet_t", path, img_size=288)
    attn = next(m for m in model.modules() if isinstance(m, Attention))
    assert attn.resolution == (5, 5) and attn.attention_biases.shape == (4, 25)
    src = torch.load(path, weights_only=True)["model"]["blocks4.3.mixer.m.attention_biases"]
    resized = model.state_dict()["blocks4.3.mixer.m.attention_biases"]
    expected = torch.nn.functional.interpolate(src.view(1, 4, 4, 4), size=(5, 5), mode="bicubic",
                                               align_corners=False).view(4, 25)
    torch.testing.assert_close(resized, expected)
    assert torch.equal(model.state_dict()["blocks4.3.mixer.m.attention_bias_idxs"],
                       attn.attention_bias_idxs) and attn.attention_bias_idxs.shape == (25, 25)
    x = torch.nn.functional.interpolate(real_images[:2], size=(288, 288), mode="bilinear")
    assert torch.isfinite(model(x)).all()


def test_adapt_state_dict_is_identity_at_same_size(tiny_sd) -> None:  # type: ignore[no-untyped-def]
    out, n = adapt_state_dict(tiny_sd, tiny_sd)
    assert n == 0 and all(out[k] is tiny_sd[k] for k in tiny_sd)


def test_non_square_model_gets_a_non_square_table(make_checkpoint) -> None:  # type: ignore[no-untyped-def]
    """(128, 512) gives a 2x8 grid: its 16-entry table must be 2x8, not 4x4."""
    path = make_checkpoint("lsnet_t")
    model = create_model("lsnet_t", path, img_size=(128, 512))
    src = torch.load(path, weights_only=True)["model"]["blocks4.3.mixer.m.attention_biases"]
    got = model.state_dict()["blocks4.3.mixer.m.attention_biases"].view(4, 2, 8)
    expected = torch.nn.functional.interpolate(src.view(1, 4, 4, 4), size=(2, 8), mode="bicubic",
                                               align_corners=False).view(4, 2, 8)
    torch.testing.assert_close(got, expected)
    assert not torch.equal(got.reshape(4, 16), src)  # resized, not copied as a 4x4 table


def test_non_square_checkpoint_round_trip(tmp_path: Path, tiny_images) -> None:  # type: ignore[no-untyped-def]
    """A checkpoint saved from a 2x8-grid model reloads into one without any resizing."""
    model = trained_looking("lsnet_t", img_size=(128, 512), seed=2)
    path = tmp_path / "wide.pth"
    torch.save({"model": model.state_dict()}, path)
    again = build_lsnet("lsnet_t", img_size=(128, 512))
    info = load_weights(again, path)
    assert info.resized_bias_tables == 0
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)


def test_inconsistent_bias_table_names_the_file(tmp_path: Path, tiny_sd) -> None:  # type: ignore[no-untyped-def]
    sd = dict(tiny_sd)
    key = next(k for k in sd if k.endswith("attention_biases"))
    sd[key] = torch.zeros(4, 9)  # a 3x3 table, but its index is for the 2x2 grid
    p = tmp_path / "odd.pth"
    torch.save({"model": sd}, p)
    _expect(p, "inconsistent")


def test_truncated_legacy_format(tmp_path: Path, tiny_sd) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "legacy.pth"
    torch.save({"model": tiny_sd}, p, _use_new_zipfile_serialization=False)
    cut = tmp_path / "legacy_cut.pth"
    cut.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    _expect(cut, "truncated or corrupt")
