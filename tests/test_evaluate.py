"""``evaluate``: accuracy on labelled folders for a model whose answers are known, agreement with
PyTorch fp32, the three layouts, --json, --plot, and one-line errors (issue 13).

The known answers: PyTorch's top-5 classes of 12 real photos are computed first; then each
photo gets a label that is its top-1 class (5 photos), a class ranked 2..5 (4 photos: top-5
but not top-1) or a class outside its top-5 (3 photos). ``evaluate`` must report exactly
5/12 top-1 and 9/12 top-5, for PyTorch and for the fp32 ONNX artifact (which agrees 100%)."""

from __future__ import annotations

import json
import shutil
from functools import cached_property
from pathlib import Path

import pytest
import torch
from conftest import TINY_SIZE, write_checkpoint
from test_cli import run_main

from lsnet_deploy import create_model, evaluate
from lsnet_deploy.cli import EXIT_CODES
from lsnet_deploy.errors import DatasetError, ImageError, UnsupportedOptionError
from lsnet_deploy.evaluation import parse_labels, read_dataset
from lsnet_deploy.evaluation.dataset import spread
from lsnet_deploy.evaluation.scores import Tally
from lsnet_deploy.fidelity import comparable_outputs
from lsnet_deploy.metadata import sidecar_path
from lsnet_deploy.paths import calibration_dir
from lsnet_deploy.pipeline import export
from lsnet_deploy.preprocess import Preprocess, list_images, load_files

TINY, CLASSES = "test_lsnet", 10
N_TOP1, N_TOP5_ONLY, N_WRONG = 5, 4, 3
N = N_TOP1 + N_TOP5_ONLY + N_WRONG
SYNSETS = [f"n{k:08d}" for k in range(CLASSES)]


class Known:
    """An exported fp32 ONNX artifact, its checkpoint, 12 photos and labels whose scores are
    known (``labels[i]`` for ``photos[i]``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ckpt = write_checkpoint(root, TINY, img_size=TINY_SIZE, seed=5)
        self.photos = list_images(calibration_dir())[:N]
        model = create_model(TINY, self.ckpt, img_size=TINY_SIZE)
        with torch.no_grad():
            logits = model(load_files(self.photos, Preprocess.for_size(TINY_SIZE)).tensors)
        top = logits.argsort(dim=1, descending=True, stable=True)
        self.labels = []
        for i in range(N):
            if i < N_TOP1:
                self.labels.append(int(top[i, 0]))
            elif i < N_TOP1 + N_TOP5_ONLY:
                self.labels.append(int(top[i, 1 + i % 4]))
            else:
                self.labels.append(int(top[i, 5 + i % 5]))

    @cached_property
    def artifact(self) -> Path:
        """The fp32 ONNX artifact (exported on first use: the slow part)."""
        [art] = export(TINY, "onnx", weights=self.ckpt, img_size=TINY_SIZE,
                       output_dir=self.root / "out dir")
        return art.path

    def synset_folder(self, root: Path) -> Path:
        for name in SYNSETS:
            (root / name).mkdir(parents=True)
        for photo, label in zip(self.photos, self.labels, strict=True):
            shutil.copy(photo, root / SYNSETS[label] / photo.name)
        return root

    def flat_folder(self, root: Path) -> tuple[Path, Path]:
        """Photos (one renamed with a space) and a labels file with a header and a comment."""
        (root / "sub").mkdir(parents=True)
        lines = ["path,label", "# the photos of calibration/"]
        for k, (photo, label) in enumerate(zip(self.photos, self.labels, strict=True)):
            rel = f"sub/photo {k}{photo.suffix}" if k == 0 else photo.name
            shutil.copy(photo, root / rel)
            lines.append(f"{rel},{label}")
        labels = root / "labels.csv"
        labels.write_text("\n".join(lines) + "\n")
        return root, labels


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> Known:
    return Known(tmp_path_factory.mktemp("known"))


def _check_known(rows: list[dict[str, object]]) -> None:
    assert [r["runtime"] for r in rows] == ["pytorch", "onnx"]
    for r in rows:
        assert r["n_images"] == N
        assert r["correct_top1"] == N_TOP1 and r["correct_top5"] == N_TOP1 + N_TOP5_ONLY
        assert r["top1"] == pytest.approx(N_TOP1 / N)
        assert r["top5"] == pytest.approx((N_TOP1 + N_TOP5_ONLY) / N)
    assert rows[0]["top1_agreement"] is None and rows[0]["mean_cosine"] is None
    assert rows[1]["top1_agreement"] == 1.0 and rows[1]["top5_overlap"] == 1.0
    assert rows[1]["min_cosine"] > 0.9999 and rows[1]["max_abs_diff"] <= 1e-3  # type: ignore[operator]


def test_known_answers(known: Known, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One export, every layout that has labels (one test: the export is most of its time)."""
    # 1. synset folders, through the API
    folder = known.synset_folder(tmp_path / "val")
    result = evaluate([known.artifact], folder)
    assert result.layout == "synsets" and result.variant == TINY and result.n_images == N
    assert result.img_size == (TINY_SIZE, TINY_SIZE) and result.num_classes == CLASSES
    _check_known([s.to_dict() for s in result.scores])
    # PyTorch alone (--model), --limit spread over the classes
    alone = evaluate([], folder, model=TINY, weights=known.ckpt, img_size=TINY_SIZE, limit=3)
    assert [s.runtime for s in alone.scores] == ["pytorch"] and alone.n_images == 3
    listed = read_dataset(folder, num_classes=CLASSES, limit=3).labels
    assert listed is not None and len(set(listed)) == min(3, len(set(known.labels)))
    # 2. a labels file, through the CLI: --json, --plot, the table
    flat, labels = known.flat_folder(tmp_path / "flat dir")
    plot = tmp_path / "eval.png"
    code, out, err = run_main(["evaluate", str(known.artifact), "--images", str(flat),
                               "--labels", str(labels), "--plot", str(plot), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"variant", "weights", "img_size", "num_classes", "images", "layout",
                         "labelled", "n_images", "skipped", "scores", "plot"}
    assert data["layout"] == "labels-file" and data["labelled"] and data["plot"] == str(plot)
    assert set(data["scores"][1]) == {
        "name", "path", "runtime", "precision", "output_kind", "n_images", "correct_top1",
        "correct_top5", "top1", "top5", "top1_agreement", "top5_overlap", "mean_cosine",
        "min_cosine", "max_abs_diff"}
    _check_known(data["scores"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, err = run_main(["evaluate", str(known.artifact), "--images", str(flat),
                               "--labels", str(labels)], capsys)
    assert code == 0, err
    assert f"| PyTorch fp32 (reference) | pytorch | fp32 | {N} | 41.67% (5) | 75.00% (9) |" in out
    assert "| 100.00% | 100.00% |" in out and "top-1 agreement" in out
    # 3. artifacts of different models (another checkpoint) or another --model: refused
    other = tmp_path / "other.onnx"
    shutil.copy(known.artifact, other)
    side = json.loads(sidecar_path(known.artifact).read_text())
    side["metadata"]["source_checkpoint_sha256"] = "0" * 64
    sidecar_path(other).write_text(json.dumps(side))
    with pytest.raises(UnsupportedOptionError, match="not the same model .weights"):
        evaluate([known.artifact, other], folder)
    with pytest.raises(UnsupportedOptionError, match="--model test_lsnet_distill"):
        evaluate([known.artifact], folder, model="test_lsnet_distill")


def test_known_answers_of_pytorch_alone(known: Known, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    folder = known.synset_folder(tmp_path / "val")
    (folder / SYNSETS[known.labels[0]] / "broken.jpg").write_bytes(b"not a JPEG")
    code, out, err = run_main(["evaluate", "--test-model", TINY, "--img-size", str(TINY_SIZE),
                               "--weights", str(known.ckpt), "--images", str(folder), "--json"],
                              capsys)
    assert code == 0, err
    data = json.loads(out)
    [row] = data["scores"]
    assert row["runtime"] == "pytorch" and row["n_images"] == N == data["n_images"]
    assert [Path(p).name for p in data["skipped"]] == ["broken.jpg"] and "broken.jpg" in err
    assert (row["correct_top1"], row["correct_top5"]) == (N_TOP1, N_TOP1 + N_TOP5_ONLY)


def test_plain_folder_is_agreement_only(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["evaluate", "--test-model", TINY, "--img-size", str(TINY_SIZE),
                               "--weights", "random", "--images", str(calibration_dir()),
                               "--limit", "2", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["layout"] == "unlabelled" and not data["labelled"] and data["n_images"] == 2
    assert data["scores"][0]["top1"] is None and data["scores"][0]["correct_top5"] is None
    assert data["weights"].startswith("RANDOM")


def test_softmax_outputs_are_scored_in_logit_units() -> None:
    """A classifier artifact's runner returns log-probabilities: the same top classes, and a
    cosine with PyTorch's logits of 1 once the softmax's constant is removed."""
    logits = torch.randn(6, CLASSES, generator=torch.Generator().manual_seed(1),
                         dtype=torch.float64)
    reference, artifact = Tally("pytorch", None, "pytorch", "fp32", "logits"), Tally(
        "m.tflite", "m.tflite", "tflite", "int8", "log_probs")
    reference.add(logits.numpy(), None)
    artifact.add(*comparable_outputs(logits.log_softmax(-1).numpy(), logits, "log_probs"))
    labels = [int(i) for i in logits.argmax(-1)]
    score = artifact.score(labels, reference.top())
    assert score.correct_top1 == 6 and score.top1_agreement == 1.0 and score.top5_overlap == 1.0
    assert score.min_cosine == pytest.approx(1.0, abs=1e-9)
    assert reference.score(None, None).top1 is None


# -- the layouts, pure -----------------------------------------------------------------------


def test_parse_labels() -> None:
    text = "# comment\npath\tlabel\na b.jpg\t3\nc.JPEG 9\nd/e.png,0\n\n"
    assert parse_labels(text, "l.txt", 10) == [("a b.jpg", 3), ("c.JPEG", 9), ("d/e.png", 0)]
    for bad, match in [("a.jpg 10", "line 1: class index 10 is out of range"),
                       ("a.jpg -1", "out of range"), ("a.jpg x\nb.jpg 1", "line 1: .* not an "
                                                      "integer"),
                       ("a.jpg 1\nb.jpg two", "line 2: class index 'two' is not an integer"),
                       ("a.jpg 1\n./a.jpg 2", "already labelled on line 1"),
                       ("lonely", "line 1: expected"), ("# nothing\n", "labels no image")]:
        with pytest.raises(DatasetError, match=match):
            parse_labels(bad, "l.txt", 10)


def test_spread_is_round_robin_over_the_classes() -> None:
    labels = [0, 0, 0, 1, 1, 2]
    assert spread(labels, 6, 3) == [0, 3, 5]
    assert spread(labels, 6, 4) == [0, 1, 3, 5]
    assert spread(None, 6, 2) == [0, 1] and spread(labels, 6, None) == list(range(6))


def _photo(folder: Path, name: str = "a.png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(calibration_dir() / "skimage_chelsea.png", folder / name)


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not found"):
        read_dataset(tmp_path / "missing")
    with pytest.raises(ImageError, match="no image files"):
        read_dataset(tmp_path)
    _photo(tmp_path / "n00000001")
    with pytest.raises(DatasetError, match="1 class folders but the model has 10 classes"):
        read_dataset(tmp_path, num_classes=10)
    for name in SYNSETS[2:]:
        (tmp_path / name).mkdir()
    (tmp_path / "cats").mkdir()
    with pytest.raises(DatasetError, match="'cats' is not a WordNet synset id"):
        read_dataset(tmp_path, num_classes=10)
    shutil.rmtree(tmp_path / "cats")
    with pytest.raises(DatasetError, match="9 class folders"):
        read_dataset(tmp_path, num_classes=10)
    (tmp_path / SYNSETS[0]).mkdir()
    listed = read_dataset(tmp_path, num_classes=10)
    assert listed.labels == (1,) and listed.layout == "synsets"
    _photo(tmp_path)
    with pytest.raises(ImageError, match="both image files"):
        read_dataset(tmp_path, num_classes=10)


def test_imagenet_synsets_must_be_imagenet_1k(tmp_path: Path) -> None:
    for k in range(1000):
        (tmp_path / f"n{k + 1:08d}").mkdir()
    _photo(tmp_path / "n00000001")
    with pytest.raises(DatasetError, match="not ImageNet-1K's n01440764 .tench."):
        read_dataset(tmp_path, num_classes=1000)


def test_labels_file_naming_missing_files(tmp_path: Path) -> None:
    _photo(tmp_path)
    labels = tmp_path / "labels.txt"
    labels.write_text("a.png 1\nb.png 2\n")
    with pytest.raises(DatasetError, match="names 1 file.s. not in .*: b.png"):
        read_dataset(tmp_path, labels, num_classes=10)
    with pytest.raises(DatasetError, match="cannot read labels file"):
        read_dataset(tmp_path, tmp_path / "nope.txt", num_classes=10)


# -- the command line: one line, an exit code, no traceback -----------------------------------


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _photo(tmp_path / "flat")
    bad_labels = tmp_path / "labels.txt"
    bad_labels.write_text("a.png 12\n")
    tiny = ["--test-model", TINY, "--img-size", str(TINY_SIZE), "--weights", "random"]
    cases = [
        ([*tiny, "--images", str(tmp_path / "missing")], ImageError, "not found"),
        ([*tiny, "--images", str(tmp_path / "flat"), "--labels", str(bad_labels)],
         DatasetError, "class index 12 is out of range"),
        ([*tiny, "--images", str(tmp_path / "flat"), "--plot", str(tmp_path / "p.jpg")],
         UnsupportedOptionError, "--plot writes a PNG"),
        (["--images", str(tmp_path / "flat")], UnsupportedOptionError, "nothing to evaluate"),
    ]
    for args, error, text in cases:
        code, out, err = run_main(["evaluate", *args], capsys)
        lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
        assert code == EXIT_CODES.get(error, EXIT_CODES[ImageError]), (args, err)
        assert len(lines) == 1 and text in lines[0] and "Traceback" not in err, err
        assert out == ""
