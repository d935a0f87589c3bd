"""The one preprocessing definition, image decoding and the shipped calibration set."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lsnet_deploy.errors import ImageError
from lsnet_deploy.paths import calibration_dir
from lsnet_deploy.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    list_images,
    load_folder,
    load_image,
)


def _gradient(w: int, h: int) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8))


def test_constant_image_normalizes_to_known_values() -> None:
    img = Image.new("RGB", (300, 260), (255, 0, 128))
    x = Preprocess()(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    expected = [(1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], (0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1],
                (128 / 255 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]]
    for c in range(3):
        assert x[c].mean().item() == pytest.approx(expected[c], abs=1e-4)


@pytest.mark.parametrize(
    ("size", "resized", "box"),
    [
        # landscape 400x300: short side 248, long int(248 * 400 / 300) = 330; left (330-224)/2 = 53
        ((400, 300), (330, 248), (53, 12, 277, 236)),
        # portrait 300x401: long int(248 * 401 / 300) = 331; top round(53.5) = 54 (half to even)
        ((300, 401), (248, 331), (12, 54, 236, 278)),
        # already 248 square: plain center crop
        ((248, 248), (248, 248), (12, 12, 236, 236)),
    ],
)
def test_resize_shorter_side_then_center_crop(
    size: tuple[int, int], resized: tuple[int, int], box: tuple[int, int, int, int]
) -> None:
    """Golden sizes and crop boxes of the timm/torchvision eval transform (224, crop 0.9)."""
    img = _gradient(*size)
    got = np.asarray(Preprocess().resize_crop(img))
    expected = np.asarray(img.resize(resized, Image.Resampling.BICUBIC).crop(box))
    assert got.shape == (224, 224, 3) and np.array_equal(got, expected)


def test_non_square_target_keeps_the_aspect_ratio() -> None:
    """A square photo for a 128x256 model is scaled to cover 142x284, not stretched 2:1."""
    img = Image.new("RGB", (500, 500), (0, 0, 0))
    img.paste((255, 255, 255), (200, 200, 300, 300))  # a centred white square
    out = np.asarray(Preprocess(img_size=(128, 256)).resize_crop(img))
    assert out.shape == (128, 256, 3)
    white = np.argwhere(out[..., 0] > 128)
    height = white[:, 0].max() - white[:, 0].min() + 1
    width = white[:, 1].max() - white[:, 1].min() + 1
    assert abs(int(height) - int(width)) <= 2  # still a square


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"),
                                        ("BMP", ".bmp")])
def test_formats(tmp_path: Path, fmt: str, suffix: str) -> None:
    p = tmp_path / f"img{suffix}"
    _gradient(320, 240).save(p, format=fmt)
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (320, 240)


def test_grayscale_and_rgba_become_rgb(tmp_path: Path) -> None:
    _gradient(64, 48).convert("L").save(tmp_path / "g.png")
    g = load_image(tmp_path / "g.png")
    assert g.mode == "RGB"
    arr = np.asarray(g)
    assert np.array_equal(arr[..., 0], arr[..., 1])
    rgba = Image.new("RGBA", (10, 10), (200, 30, 30, 0))  # fully transparent red
    rgba.save(tmp_path / "t.png")
    # like the official evaluation loader (convert("RGB")): alpha dropped, colours kept
    assert np.asarray(load_image(tmp_path / "t.png"))[0, 0].tolist() == [200, 30, 30]
    Image.new("CMYK", (8, 8), (0, 255, 0, 0)).save(tmp_path / "c.jpg")
    assert load_image(tmp_path / "c.jpg").mode == "RGB"


def test_decompression_bomb_is_an_image_error(tmp_path: Path) -> None:
    Image.new("L", (1, 1)).save(tmp_path / "big.png")
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 0  # every image is now "too large" (2x the limit is an error)
        with pytest.raises(ImageError, match="big.png"):
            load_image(tmp_path / "big.png")
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = _gradient(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").size == (40, 80)


def test_folder_skips_unreadable_with_a_counted_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _gradient(64, 64).save(tmp_path / "a.png")
    (tmp_path / "broken.jpg").write_bytes(b"not really a jpeg")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    with caplog.at_level(logging.WARNING):
        loaded = load_folder(tmp_path, Preprocess.for_size(64))
    assert loaded.tensors.shape == (1, 3, 64, 64)
    assert [p.name for p in loaded.skipped] == ["broken.jpg"]
    assert "skipped 1 unreadable" in caplog.text


def test_empty_or_invalid_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no usable image"):
        load_folder(tmp_path, Preprocess())
    (tmp_path / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageError, match="1 unreadable"):
        load_folder(tmp_path, Preprocess())
    with pytest.raises(ImageError, match="not found"):
        load_folder(tmp_path / "missing", Preprocess())
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.jpg")


def test_calibration_set_is_real_documented_and_loadable() -> None:
    folder = calibration_dir()
    files = list_images(folder)
    sources = json.loads((folder / "SOURCES.json").read_text())
    assert {s["file"] for s in sources} == {p.name for p in files}
    assert len(sources) >= 96 and all(s["derived"] in ("original", "resized") for s in sources)
    assert all(s["license"] and s["source_package"] for s in sources)
    readme = (folder / "README.md").read_text()
    assert all(p.name in readme for p in files)
    assert sum(p.stat().st_size for p in files) < 15 * 10**6
    loaded = load_folder(folder, Preprocess())
    assert len(loaded.paths) == len(files) and not loaded.skipped
    # distinct photographs, not copies
    flat = loaded.tensors.flatten(1)
    assert torch.cdist(flat, flat).add(torch.eye(len(flat)) * 1e9).min() > 1.0


def test_an_int_size_means_a_square() -> None:
    """``Preprocess(img_size=96)`` (an int, as ``for_size`` takes) is ``(96, 96)``: before, it
    failed on every photo, each reported as unreadable."""
    assert Preprocess(img_size=96).img_size == (96, 96) == Preprocess.for_size(96).img_size
    image = Image.new("RGB", (120, 90), (10, 200, 30))
    assert tuple(Preprocess(img_size=96)(image).shape) == (3, 96, 96)
