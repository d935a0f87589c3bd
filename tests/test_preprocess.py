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


def test_resize_shorter_side_then_center_crop() -> None:
    pre = Preprocess()
    img = _gradient(400, 300)  # landscape: height -> 248, width -> int(248 * 400 / 300) = 330
    cropped = pre.resize_crop(img)
    assert cropped.size == (224, 224)
    resized = img.resize((330, 248), Image.Resampling.BICUBIC)
    left, top = round((330 - 224) / 2), round((248 - 224) / 2)
    ref = np.asarray(resized.crop((left, top, left + 224, top + 224)))
    assert np.array_equal(np.asarray(cropped), ref)


def test_non_square_target() -> None:
    pre = Preprocess(img_size=(128, 256))
    assert pre(_gradient(500, 500)).shape == (3, 128, 256)


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
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent red
    rgba.save(tmp_path / "t.png")
    assert np.asarray(load_image(tmp_path / "t.png"))[0, 0].tolist() == [255, 255, 255]


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
    originals = [s for s in sources if not s["derived"].startswith("crop")]
    assert len(originals) >= 16
    assert all(s["license"] and s["source_package"] for s in sources)
    readme = (folder / "README.md").read_text()
    assert all(p.name in readme for p in files)
    assert sum(p.stat().st_size for p in files) < 8 * 2**20
    loaded = load_folder(folder, Preprocess())
    assert len(loaded.paths) == len(files) and not loaded.skipped
    # distinct photographs, not copies
    flat = loaded.tensors.flatten(1)
    assert torch.cdist(flat, flat).add(torch.eye(len(flat)) * 1e9).min() > 1.0
