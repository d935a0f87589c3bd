"""The default image set and its manifest split (issue 13, "INT8 you can ship"): at least 96
distinct, freely licensed photos with provenance per file, at least 48 held out for validation,
and a folder split by its ``SOURCES.json`` while other folders keep the every-4th rule."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from lsnet_deploy.errors import ImageError, UnsupportedOptionError
from lsnet_deploy.paths import calibration_dir
from lsnet_deploy.pipeline.image_manifest import SPLITS, read_split
from lsnet_deploy.pipeline.images import split_images
from lsnet_deploy.preprocess import Preprocess, list_images

PRE = Preprocess.for_size(32)


def _red(t: torch.Tensor) -> list[float]:
    """The red value 0..255 of each image's top-left pixel (the fixtures encode an index)."""
    return ((t[:, 0, 0, 0] * 0.229 + 0.485) * 255).round().tolist()


def _folder(root: Path, n: int, split: dict[int, str] | None = None,
            extra: list[dict[str, object]] | None = None) -> Path:
    """``n`` images ``0.png``.. (red = 20 * index) and, with ``split``, a manifest giving
    each listed index its split."""
    root.mkdir()
    for i in range(n):
        Image.new("RGB", (32, 32), (20 * i, 0, 0)).save(root / f"{i}.png")
    if split is not None or extra is not None:
        entries = [{"file": f"{i}.png", "license": "CC0-1.0", "split": s}
                   for i, s in (split or {}).items()]
        (root / "SOURCES.json").write_text(json.dumps(entries + (extra or [])))
    return root


# -- the code: split by the manifest ---------------------------------------------------------

def test_manifest_split_is_honoured(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", 6, {0: "calibration", 1: "validation", 2: "calibration",
                                           3: "calibration", 4: "calibration", 5: "validation"})
    split = split_images(PRE, folder)
    assert _red(split.val) == [20.0, 100.0] and split.calib is not None
    assert split.val_names == ("1.png", "5.png")  # each validation row's file
    assert _red(split.calib) == [0.0, 40.0, 60.0, 80.0]
    assert "2 photos marked validation in SOURCES.json" in split.val_source
    assert split.calib_source.endswith("(4 images)")
    limited = split_images(PRE, folder, calib_size=2, val_size=1)
    assert _red(limited.val) == [20.0] and _red(limited.calib) == [0.0, 40.0]  # type: ignore[arg-type]
    assert limited.val_names == ("1.png",)
    only_val = split_images(PRE, folder, need_calib=False)
    assert only_val.calib is None and only_val.val.shape[0] == 2
    assert only_val.val_names == ("1.png", "5.png")


def test_files_missing_from_the_manifest_calibrate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _folder(tmp_path / "set", 4, {1: "validation"})
    with caplog.at_level(logging.INFO):
        split = split_images(PRE, folder)
    assert _red(split.val) == [20.0] and _red(split.calib) == [0.0, 40.0, 60.0]  # type: ignore[arg-type]
    assert "not listed in SOURCES.json calibrate" in caplog.text


def test_folder_without_split_keeps_every_4th_rule(tmp_path: Path) -> None:
    plain = _folder(tmp_path / "plain", 6)
    split = split_images(PRE, plain)
    assert _red(split.val) == [0.0, 80.0] and split.calib is not None
    assert split.calib.shape[0] == 4 and "every 4th" in split.val_source
    # a provenance-only manifest (no "split" field) is not a split either
    provenance = _folder(tmp_path / "prov", 6, extra=[{"file": "0.png", "license": "CC0-1.0"}])
    assert _red(split_images(PRE, provenance).val) == [0.0, 80.0]
    # val_size caps the held-out images without moving the others to calibration
    capped = split_images(PRE, plain, val_size=1)
    assert _red(capped.val) == [0.0] and capped.calib is not None and capped.calib.shape[0] == 4
    assert split.val_names == ("0.png", "4.png") and capped.val_names == ("0.png",)


def test_val_dir_and_val_size(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", 3, {0: "validation"})
    other = _folder(tmp_path / "val", 3)
    split = split_images(PRE, folder, other, val_size=2)
    assert _red(split.val) == [0.0, 20.0] and split.calib is not None
    assert split.val_names == ("0.png", "1.png")
    assert split.calib.shape[0] == 3  # with a validation folder every image calibrates
    with pytest.raises(UnsupportedOptionError, match="val_size"):
        split_images(PRE, folder, val_size=0)


@pytest.mark.parametrize(("content", "match"), [
    ("{not json", "not valid JSON"),
    ('{"file": "0.png", "split": "validation"}', "list of objects"),
    ('[{"file": "0.png", "split": "test"}]', "'test', expected one of"),
    ('[{"file": "0.png", "split": "validation"}, {"file": "1.png"}]', "1.png: \"split\" is None"),
    ('[{"file": "0.png", "split": "validation"}, {"file": "0.png", "split": "calibration"}]',
     "listed twice"),
    ('[{"file": "../0.png", "split": "validation"}]', "file name inside the folder"),
    ('[{"split": "validation"}]', "entry 0"),
])
def test_malformed_manifest_is_an_image_error(tmp_path: Path, content: str, match: str) -> None:
    folder = _folder(tmp_path / "set", 3)
    (folder / "SOURCES.json").write_text(content)
    with pytest.raises(ImageError, match=match) as info:
        split_images(PRE, folder)
    assert "\n" not in str(info.value) and "malformed image manifest" in str(info.value)
    assert "fix it" in str(info.value)


def test_manifest_naming_missing_files_or_no_split(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", 2, {0: "calibration", 1: "validation"},
                     extra=[{"file": "gone.jpg", "split": "validation"},
                            {"file": "notes.txt", "split": "calibration"}])
    with pytest.raises(ImageError, match=r"names 2 image file\(s\) not in .*gone.jpg, notes.txt"
                                         r"; restore them or remove their entries"):
        split_images(PRE, folder)
    only_calib = _folder(tmp_path / "c", 2, {0: "calibration", 1: "calibration"})
    with pytest.raises(ImageError, match="marks no image \"validation\""):
        split_images(PRE, only_calib)
    only_val = _folder(tmp_path / "v", 2, {0: "validation", 1: "validation"})
    with pytest.raises(ImageError, match="marks every image \"validation\""):
        split_images(PRE, only_val)
    assert split_images(PRE, only_val, need_calib=False).val.shape[0] == 2


def test_unreadable_validation_files_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _folder(tmp_path / "set", 3, {0: "validation", 1: "calibration", 2: "validation"})
    (folder / "0.png").write_bytes(b"\x89PNG broken")
    with caplog.at_level(logging.WARNING):
        split = split_images(PRE, folder)
    assert _red(split.val) == [40.0] and "0.png" in caplog.text


# -- the data: the default image set -----------------------------------------------------------

def _entries() -> list[dict[str, str]]:
    return json.loads((calibration_dir() / "SOURCES.json").read_text(encoding="utf-8"))


def test_default_set_manifest_matches_the_folder() -> None:
    folder = calibration_dir()
    files = {p.name for p in list_images(folder)}
    entries = _entries()
    names = [e["file"] for e in entries]
    assert len(names) == len(set(names)) and set(names) == files
    assert {p.name for p in folder.iterdir()} == files | {"SOURCES.json", "README.md"}
    manifest = read_split(folder, files)
    assert manifest is not None and manifest.calibration | manifest.validation == files


def test_default_set_is_licensed_distinct_and_split() -> None:
    entries = _entries()
    for e in entries:
        for key in ("author", "license", "license_text_source", "source_package", "source_file",
                    "description", "original_size", "scene"):
            assert str(e.get(key, "")).strip(), f"{e['file']}: no {key}"
        assert e["split"] in SPLITS and e["derived"] in ("original", "resized")  # no crops
        assert not any(bad in e["license"].upper() for bad in ("-NC", "NC-", "-ND", "ND-"))
    assert len(entries) >= 96
    val = [e for e in entries if e["split"] == "validation"]
    assert len(val) >= 48 and len(entries) - len(val) >= 48
    # balanced: every source and every scene type with 2+ photos is on both sides
    for key in ("source_package", "scene"):
        groups: dict[str, set[str]] = {}
        for e in entries:
            groups.setdefault(e[key].split(" ")[0] if key == "source_package" else e[key],
                              set()).add(e["split"])
        assert all(s == set(SPLITS) for g, s in groups.items()
                   if sum((e[key].split(" ")[0] if key == "source_package" else e[key]) == g
                          for e in entries) >= 2), key


def test_default_set_stays_small() -> None:
    files = list_images(calibration_dir())
    assert sum(p.stat().st_size for p in files) < 15 * 10**6
    for p in files:
        with Image.open(p) as im:
            assert max(im.size) <= 1024, p.name


def test_default_split_loads_as_marked() -> None:
    split = split_images(PRE, val_size=3, calib_size=2)
    assert split.val.shape[0] == 3 and split.calib is not None and split.calib.shape[0] == 2
    assert "marked validation in SOURCES.json" in split.val_source
