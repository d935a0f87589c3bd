"""Hostile and damaged inputs (issue 16, the input half): checkpoints and images must fail
with a typed one-line error before they can produce a silently wrong result, and images must
never be silently altered while decoding."""

from __future__ import annotations

import logging
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_SIZE, trained_looking
from test_cli import run_main
from PIL import Image

from lsnet_deploy import create_model, predict
from lsnet_deploy.checkpoint import load_weights
from lsnet_deploy.cli import EXIT_CODES
from lsnet_deploy.errors import CheckpointError, ImageError, UnsupportedOptionError
from lsnet_deploy.lsnet import build_lsnet
from lsnet_deploy.paths import calibration_dir
from lsnet_deploy.pipeline.images import split_images
from lsnet_deploy.preprocess import (
    DEFAULT_MAX_RESIZED_PIXELS,
    PixelBudget,
    Preprocess,
    load_folder,
    load_image,
    probe_image,
)

CHELSEA = calibration_dir() / "skimage_chelsea.png"
SdEdit = Callable[[dict[str, torch.Tensor]], None]


# -- helpers -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_sd() -> dict[str, torch.Tensor]:
    return trained_looking("test_lsnet", TINY_SIZE, seed=3).state_dict()


def _save(tmp_path: Path, sd: dict[str, torch.Tensor], name: str = "ckpt.pth",
          edit: SdEdit | None = None, **save_kw: object) -> Path:
    sd = {k: v.clone() for k, v in sd.items()}
    if edit is not None:
        edit(sd)
    path = tmp_path / name
    torch.save({"model": sd}, path, **save_kw)  # type: ignore[arg-type]
    return path


def _load(path: Path, **kw: object) -> None:
    load_weights(build_lsnet("test_lsnet", img_size=TINY_SIZE), path, **kw)  # type: ignore[arg-type]


def _refused(path: Path, *needles: str) -> str:
    with pytest.raises(CheckpointError) as ei:
        _load(path)
    msg = str(ei.value)
    assert str(path) in msg and "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def _first(sd: dict[str, torch.Tensor], suffix: str) -> str:
    return next(k for k in sd if k.endswith(suffix))


def _png(path: Path, pixels: np.ndarray, bit_depth: int, colour_type: int) -> Path:
    """A minimal PNG written by hand (Pillow cannot write 1x20000 cheaply-identical files, nor
    16-bit colour): ``pixels`` ``(H, W[, C])``."""
    h, w = pixels.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + pixels[y].astype(dtype).tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


# -- 1. non-finite weights and negative running variances ----------------------------------------

@pytest.mark.parametrize(
    ("suffix", "value"),
    [(".weight", float("nan")), (".weight", float("inf")), (".bias", float("-inf"))],
    ids=["nan", "inf", "-inf"],
)
def test_nonfinite_weights_are_refused_naming_the_tensors(
    tmp_path: Path, tiny_sd, suffix: str, value: float  # type: ignore[no-untyped-def]
) -> None:
    keys = [k for k in tiny_sd if k.endswith(suffix) and tiny_sd[k].is_floating_point()][:5]

    def poison(sd: dict[str, torch.Tensor]) -> None:
        for k in keys:
            sd[k].view(-1)[0] = value

    msg = _refused(_save(tmp_path, tiny_sd, edit=poison), "5 tensor(s) hold NaN/Inf", keys[0],
                   "+2 more", "allow_nonfinite")
    assert keys[3] not in msg  # the first few, then a count


def test_negative_running_var_is_refused(tmp_path: Path, tiny_sd) -> None:  # type: ignore[no-untyped-def]
    key = _first(tiny_sd, "running_var")

    def negate(sd: dict[str, torch.Tensor]) -> None:
        sd[key].view(-1)[0] = -0.5

    _refused(_save(tmp_path, tiny_sd, edit=negate), "running_var", key, "negative")


def test_allow_nonfinite_loads_with_a_warning(
    tmp_path: Path, tiny_sd, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    key = _first(tiny_sd, "head.l.weight")

    def poison(sd: dict[str, torch.Tensor]) -> None:
        sd[key][0, 0] = float("nan")

    path = _save(tmp_path, tiny_sd, edit=poison)
    with pytest.raises(CheckpointError, match="NaN"):
        create_model("test_lsnet", path, img_size=TINY_SIZE)
    with caplog.at_level(logging.WARNING):
        model = create_model("test_lsnet", path, img_size=TINY_SIZE, allow_nonfinite=True)
    assert "loaded anyway" in caplog.text and key in caplog.text
    assert torch.isnan(model.state_dict()[key]).any()


def test_cli_info_and_predict_refuse_nonfinite_weights(
    tmp_path: Path, tiny_sd, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    def poison(sd: dict[str, torch.Tensor]) -> None:
        sd[_first(sd, "running_mean")][0] = float("nan")

    path = _save(tmp_path, tiny_sd, edit=poison)
    common = ["--test-model", "test_lsnet", "--img-size", str(TINY_SIZE), "--weights", str(path)]
    for argv in (["info", *common], ["predict", *common, str(CHELSEA)]):
        code, out, err = run_main(argv, capsys)
        assert code == EXIT_CODES[CheckpointError], err
        assert "NaN/Inf" in err and "internal error" not in err and "nan" not in out


# -- 2. index buffers ----------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [999, -1])
def test_out_of_range_bias_index_names_the_buffer_and_range(
    tmp_path: Path, tiny_sd, bad: int  # type: ignore[no-untyped-def]
) -> None:
    key = _first(tiny_sd, "attention_bias_idxs")
    n = tiny_sd[key.replace("attention_bias_idxs", "attention_biases")].shape[1]

    def corrupt(sd: dict[str, torch.Tensor]) -> None:
        sd[key][0, 0] = bad

    _refused(_save(tmp_path, tiny_sd, edit=corrupt), key, f"valid [0, {n - 1}]", str(bad))


# -- 3. corrupt files and silently cast dtypes ---------------------------------------------------

def test_flipped_bytes_in_a_zip_checkpoint_fail_the_crc(tmp_path: Path, tiny_sd) -> None:  # type: ignore[no-untyped-def]
    path = _save(tmp_path, tiny_sd)
    with zipfile.ZipFile(path) as z:  # the largest tensor's bytes, past its local header
        member = max(z.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[member.header_offset + 26:
                                                    member.header_offset + 30])
    start = member.header_offset + 30 + name_len + extra_len
    n = min(4096, member.file_size)
    data[start:start + n] = bytes(b ^ 0xA5 for b in data[start:start + n])
    bad = tmp_path / "flipped.pth"
    bad.write_bytes(bytes(data))
    torch.load(bad, weights_only=True)  # what used to happen: torch itself does not notice
    _refused(bad, "CRC", "re-download")


def test_legacy_format_has_no_crc_but_its_values_are_checked(
    tmp_path: Path, tiny_sd, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    ok = _save(tmp_path, tiny_sd, "legacy.pth", _use_new_zipfile_serialization=False)
    with caplog.at_level(logging.INFO):
        _load(ok)
    assert "no checksums" in caplog.text

    def poison(sd: dict[str, torch.Tensor]) -> None:
        sd[_first(sd, ".weight")].view(-1)[0] = float("inf")

    bad = _save(tmp_path, tiny_sd, "legacy_inf.pth", edit=poison,
                _use_new_zipfile_serialization=False)
    _refused(bad, "NaN/Inf")


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.complex64])
def test_non_float_weights_are_refused_not_cast(
    tmp_path: Path, tiny_sd, dtype: torch.dtype  # type: ignore[no-untyped-def]
) -> None:
    key = _first(tiny_sd, ".weight")

    def cast(sd: dict[str, torch.Tensor]) -> None:
        sd[key] = sd[key].to(dtype)

    _refused(_save(tmp_path, tiny_sd, edit=cast), key, str(dtype), "silently cast")


def test_float_index_buffer_is_refused(tmp_path: Path, tiny_sd) -> None:  # type: ignore[no-untyped-def]
    key = _first(tiny_sd, "attention_bias_idxs")

    def cast(sd: dict[str, torch.Tensor]) -> None:
        sd[key] = sd[key].float() + 0.4

    _refused(_save(tmp_path, tiny_sd, edit=cast), key, "integer")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_precisions_still_load(
    tmp_path: Path, tiny_sd, dtype: torch.dtype  # type: ignore[no-untyped-def]
) -> None:
    def cast(sd: dict[str, torch.Tensor]) -> None:
        for k, v in sd.items():
            if v.is_floating_point():
                sd[k] = v.to(dtype)

    _load(_save(tmp_path, tiny_sd, edit=cast))


def test_safetensors_get_the_value_and_dtype_checks(tmp_path: Path, tiny_sd) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file

    key = _first(tiny_sd, ".weight")
    nan = {k: v.clone().contiguous() for k, v in tiny_sd.items()}
    nan[key].view(-1)[0] = float("nan")
    save_file(nan, str(tmp_path / "nan.safetensors"))
    _refused(tmp_path / "nan.safetensors", "NaN/Inf", key)
    ints = {k: v.contiguous() for k, v in tiny_sd.items()}
    ints[key] = ints[key].to(torch.int32)
    save_file(ints, str(tmp_path / "int.safetensors"))
    _refused(tmp_path / "int.safetensors", "torch.int32")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_checkpoint_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "weights.pth"
    os.mkfifo(fifo)
    _refused(fifo, "not a regular file", "FIFO")


# -- 4. decoding never silently changes content --------------------------------------------------

_RAMP16 = np.linspace(0, 65535, 32 * 16).reshape(16, 32).astype(np.uint16)
_EXPECTED8 = np.rint(_RAMP16.astype(np.float64) * 255 / 65535).astype(np.uint8)


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = _png(tmp_path / "g16.png", _RAMP16, 16, 0)
    assert Image.open(path).mode == "I;16"
    assert Image.open(path).convert("RGB").getextrema()[0][0] == 0  # Pillow alone: clipped
    rgb = np.asarray(load_image(path))
    assert rgb.shape == (16, 32, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])
    assert np.array_equal(rgb[..., 0], _EXPECTED8)


def test_16bit_rgb_png_keeps_its_colours(tmp_path: Path) -> None:
    rgb16 = np.stack([_RAMP16, 65535 - _RAMP16, np.full_like(_RAMP16, 32768)], -1)
    out = np.asarray(load_image(_png(tmp_path / "c16.png", rgb16, 16, 2))).astype(int)
    assert np.abs(out[..., 0] - _EXPECTED8).max() <= 1 and abs(int(out[0, 0, 2]) - 128) <= 1


@pytest.mark.parametrize("suffix", [".pgm", ".tif"])
def test_16bit_pnm_and_tiff_are_scaled(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"g16{suffix}"
    Image.fromarray(_RAMP16).save(path)
    assert np.array_equal(np.asarray(load_image(path))[..., 0], _EXPECTED8)


def test_32bit_integer_tiff_uses_its_bit_depth(tmp_path: Path) -> None:
    values = (_RAMP16.astype(np.int64) * 32767 // 65535).astype(np.int32)  # 0..2**15-1
    Image.fromarray(values * 65536).save(tmp_path / "i32.tif")  # signed 32-bit: full 2**31-1
    got = np.asarray(load_image(tmp_path / "i32.tif"))[..., 0].astype(int)
    assert np.abs(got - _EXPECTED8.astype(int)).max() <= 1
    Image.fromarray(np.full((4, 4), -5, np.int32)).save(tmp_path / "neg.tif")
    with pytest.raises(ImageError, match="neg.tif.*values in"):
        load_image(tmp_path / "neg.tif")


def test_float_images_in_0_1_are_scaled_others_refused(tmp_path: Path) -> None:
    ramp = (_RAMP16 / 65535).astype(np.float32)
    Image.fromarray(ramp).save(tmp_path / "f.tif")
    assert np.array_equal(np.asarray(load_image(tmp_path / "f.tif"))[..., 0], _EXPECTED8)
    Image.fromarray(ramp * 1000).save(tmp_path / "big.tif")
    with pytest.raises(ImageError, match=r"big.tif is a F image with values in \[0, 1000\]"):
        load_image(tmp_path / "big.tif")
    nan = ramp.copy()
    nan[0, 0] = np.nan
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning either
        with pytest.raises(ImageError, match="NaN/Inf"):
            load_image(tmp_path / "nan.tif")


def test_palette_with_transparency_keeps_colours_without_a_warning(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.info["transparency"] = bytes([255, 0] + [255] * 254)  # index 1 fully transparent
    img.save(tmp_path / "p.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgb = load_image(tmp_path / "p.png")
    assert np.asarray(rgb)[0, 0].tolist() == [10, 200, 30]  # stored colour kept, like RGBA


# -- 5. pixel budget, from the header ------------------------------------------------------------

def test_thin_strip_is_refused_from_the_header(tmp_path: Path) -> None:
    """A 1x20000 PNG (~100 bytes) would be resized to 248x4960000 (3.7 GB) before the crop."""
    path = _png(tmp_path / "strip.png", np.zeros((1, 20000), np.uint8), 8, 0)
    assert path.stat().st_size < 200
    with pytest.raises(ImageError) as ei:
        load_image(path, Preprocess())
    msg = str(ei.value)
    assert "20000x1" in msg and "4960000x248" in msg and f"{DEFAULT_MAX_RESIZED_PIXELS:,}" in msg
    with pytest.raises(ImageError, match="1x60000"):  # the other orientation, and probing
        probe_image(_png(tmp_path / "tall.png", np.zeros((60000, 1), np.uint8), 8, 0),
                    Preprocess())


def test_budget_is_checked_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 48)).save(path)

    def no_decoding(*_: object) -> None:
        raise AssertionError("decoded before the budget check")

    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    with pytest.raises(ImageError, match=r"64x48 = 3,072 pixels, over the limit of 1,000"):
        load_image(path, budget=PixelBudget(max_pixels=1000))
    with pytest.raises(ImageError, match="46x35 = 1,610 pixels, over the limit of 1,000"):
        load_image(path, Preprocess.for_size(32), PixelBudget(max_resized_pixels=1000))


def test_budget_can_be_lifted_explicitly(tmp_path: Path) -> None:
    path = _png(tmp_path / "strip.png", np.full((2, 600), 200, np.uint8), 8, 0)  # 300:1
    pre = Preprocess.for_size(32)  # resize to 10650x35
    with pytest.raises(ImageError, match="aspect ratio 300:1"):
        load_image(path, pre, PixelBudget(max_resized_pixels=100_000))
    x = pre(load_image(path, pre, PixelBudget(max_resized_pixels=None)))
    assert x.shape == (3, 32, 32)


def test_predict_api_takes_a_pixel_budget() -> None:
    model = create_model("test_lsnet", img_size=TINY_SIZE)
    with pytest.raises(ImageError, match="over the limit of 10"):
        predict(model, [CHELSEA], pixel_budget=PixelBudget(max_pixels=10))


def test_pillow_bomb_warning_does_not_leak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           recwarn: pytest.WarningsRecorder) -> None:
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 px: Pillow warns, no error
    load_image(tmp_path / "a.png")
    probe_image(tmp_path / "a.png")
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_bad_crop_pct_is_an_option_error() -> None:
    with pytest.raises(UnsupportedOptionError, match="crop_pct"):
        Preprocess(crop_pct=0.0)


# -- 6. folders, FIFOs, order of checks ----------------------------------------------------------

def _folder_with_one_good_image(folder: Path) -> Path:
    folder.mkdir()
    (folder / "a_broken.jpg").write_bytes(b"not a jpeg")  # sorts first: the held-out slot
    Image.new("RGB", (40, 40), (200, 10, 10)).save(folder / "b_good.png")
    (folder / "c_empty.png").write_bytes(b"")
    return folder


def test_split_drops_unreadable_files_before_splitting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _folder_with_one_good_image(tmp_path / "calib")
    with caplog.at_level(logging.WARNING):
        split = split_images(Preprocess.for_size(32), folder)
    assert split.calib is not None and split.calib.shape == (1, 3, 32, 32)
    assert torch.equal(split.val, split.calib)
    assert "a_broken.jpg" in caplog.text and "c_empty.png" in caplog.text
    assert "only 1 readable image" in caplog.text


def test_split_keeps_every_4th_readable_image_for_validation(tmp_path: Path) -> None:
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(6):
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(folder / f"{i}.png")
    (folder / "0_bad.png").write_bytes(b"\x89PNG broken")  # between 0.png and 1.png
    split = split_images(Preprocess.for_size(32), folder, calib_size=3)
    assert split.val.shape[0] == 2 and split.calib is not None and split.calib.shape[0] == 3
    red = ((split.val[:, 0, 0, 0] * 0.229 + 0.485) * 255).round().tolist()
    assert red == [0.0, 160.0]  # 0.png and 4.png: readable images 0 and 4
    assert split.val_names == ("0.png", "4.png")  # the unreadable file shifts no name
    none = split_images(Preprocess.for_size(32), folder, need_calib=False)
    assert none.calib is None and none.val.shape[0] == 2


def test_folder_of_only_unreadable_files_names_them(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x.jpg").write_bytes(b"nope")
    with pytest.raises(ImageError, match=r"no usable image .*1 unreadable: x.jpg"):
        split_images(Preprocess.for_size(32), folder)
    with pytest.raises(ImageError, match="x.jpg"):
        load_folder(folder, Preprocess.for_size(32))


def test_predict_says_what_a_non_file_is_before_building_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lsnet_deploy import api

    def no_model(*_: object, **__: object) -> None:
        raise AssertionError("a model was built before the paths were checked")

    monkeypatch.setattr(api, "create_model", no_model)
    folder = tmp_path / "photos"
    folder.mkdir()
    cases = [(tmp_path / "nope.jpg", "image not found"),
             (folder, "is a folder, not an image file"),
             (_png(tmp_path / "strip.png", np.zeros((1, 20000), np.uint8), 8, 0), "20000x1")]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.jpg")
        cases.append((tmp_path / "pipe.jpg", "is a FIFO, not a regular file"))
    for path, needle in cases:
        code, _, err = run_main(["predict", "--weights", "random", str(path)], capsys)
        assert code == EXIT_CODES[ImageError], err
        assert needle in err and len(err.strip().splitlines()) == 1


def test_info_checks_its_image_folder_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lsnet_deploy.cli import models

    monkeypatch.setattr(models, "model_info", lambda *a, **k: pytest.fail("model built"))
    code, _, err = run_main(["info", "--weights", "random", "--images", str(CHELSEA)], capsys)
    assert code == EXIT_CODES[ImageError] and "is a file, not an image folder" in err


def test_unreadable_image_is_one_line_without_library_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    code, _, err = run_main(["predict", "--weights", "random", str(bad)], capsys)
    assert code == EXIT_CODES[ImageError] and "cannot read image" in err
    assert "Warning" not in err and len(err.strip().splitlines()) == 1
