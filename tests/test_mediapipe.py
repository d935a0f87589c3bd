"""The default LSNet-T ``.tflite`` (fp32 and ``--int8``) in the app-side client our users run:
MediaPipe Tasks' ``ImageClassifier`` (the same task API as Android, iOS and the web), fed the
held-out photos. MediaPipe reads the standard TFLite Metadata (normalization, labels) and runs
the model itself; its answers are compared with PyTorch's and with the LiteRT interpreter's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mediapipe as mp
import numpy as np
import pytest
import torch
from ai_edge_litert import schema_py_generated as schema
from apps_doc import check_tflite
from conftest import AppFiles
from mediapipe.tasks.python.core.base_options import BaseOptions
from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions
from reference_lsnet import load_reference

from lsnet_deploy.exporters.tflite import TfliteExporter
from lsnet_deploy.exporters.tflite_metadata import read_standard_metadata
from lsnet_deploy.fidelity import to_artifact_input
from lsnet_deploy.labels import imagenet_classes
from lsnet_deploy.pipeline.images import split_images
from lsnet_deploy.preprocess import Preprocess
from lsnet_deploy.spec import IOSpec

pytestmark = pytest.mark.slow

IMAGE = IOSpec(dtype="uint8", value_range="0..255", layout="NHWC")


@dataclass(frozen=True)
class Exported:
    fp32: Path
    int8: Path
    pixels: np.ndarray
    """The held-out photos as the artifacts take them: ``(N, 224, 224, 3)`` uint8 RGB."""
    probs: np.ndarray
    """PyTorch's softmax on those photos, from the independent reference implementation."""


@pytest.fixture(scope="module")
def exported(lsnet_t_app_files: AppFiles) -> Exported:
    # exported once per run (conftest.py; the aarch64 tests run the same INT8 file); an
    # export that misses its gate raises there
    fp32, int8 = lsnet_t_app_files.fp32, lsnet_t_app_files.int8
    assert fp32.is_file() and int8.is_file()
    ckpt = lsnet_t_app_files.checkpoint
    val = split_images(Preprocess(), need_calib=False).val
    assert val.shape[0] >= 8
    reference = load_reference("lsnet_t", torch.load(ckpt, weights_only=True)["model"])
    with torch.no_grad():
        logits = reference(val)
    assert logits.abs().max() > 0.5  # O(1) logits: the scores below mean something
    return Exported(fp32, int8, to_artifact_input(val, IMAGE),
                    torch.softmax(logits, -1).numpy())


def _classify(path: Path, pixels: np.ndarray) -> list[tuple[int, str, float]]:
    """MediaPipe's top-1 (index, category name, score) for each photo."""
    options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                     max_results=5)
    top = []
    with ImageClassifier.create_from_options(options) as classifier:
        for img in pixels:
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                  data=np.ascontiguousarray(img)))
            [head] = result.classifications
            assert len(head.categories) == 5
            scores = [c.score for c in head.categories]
            assert scores == sorted(scores, reverse=True)
            best = head.categories[0]
            top.append((best.index, best.category_name, best.score))
    return top


def _litert_probs(path: Path, pixels: np.ndarray) -> np.ndarray:
    run = TfliteExporter().runner(path)  # a classifier's runner gives log-probabilities
    return np.concatenate([np.exp(run(pixels[i : i + 1])) for i in range(len(pixels))])


def test_fp32_in_mediapipe_image_classifier(exported: Exported) -> None:
    """MediaPipe's top-1 is PyTorch's on every photo, its score PyTorch's softmax to 1e-3, its
    category names the ImageNet names."""
    names = imagenet_classes()
    top = _classify(exported.fp32, exported.pixels)
    expected = exported.probs.argmax(1)
    assert [i for i, _, _ in top] == expected.tolist()
    for (index, name, score), p in zip(top, exported.probs, strict=True):
        assert name == names[index]
        assert abs(score - p[index]) <= 1e-3, (name, score, p[index])


def test_int8_in_mediapipe_image_classifier(exported: Exported) -> None:
    """The default ``--int8`` (uint8 image in, integer body, float32 probabilities out):
    MediaPipe loads it as it is and agrees with the LiteRT interpreter photo by photo, so its
    top-1 agreement with PyTorch is LiteRT's INT8 agreement."""
    names = imagenet_classes()
    top = _classify(exported.int8, exported.pixels)
    litert = _litert_probs(exported.int8, exported.pixels)
    # photo by photo: MediaPipe's category is one of LiteRT's top scores (the INT8 softmax
    # output is quantized, so two classes can tie exactly; MediaPipe breaks ties its own way)
    ties = 0
    for (index, name, score), p in zip(top, litert, strict=True):
        assert name == names[index] and abs(score - p[index]) <= 1e-5
        assert p[index] >= p.max() - 1e-6, (index, p[index], int(p.argmax()), p.max())
        ties += int(index != int(p.argmax()))
    # photos whose top score LiteRT gives to two classes: the logits of these synthetic weights
    # are nearly flat, so their top two often fall on one int8 step (6 to 12 of 59, with the
    # export's thread count and graph); MediaPipe can only differ there. A degenerate output
    # (a constant, or a far too coarse logit scale) would tie on most photos.
    tied = sum(int((np.abs(p - p.max()) <= 1e-6).sum() > 1) for p in litert)
    assert ties <= tied <= len(top) // 3, (ties, tied)
    # so MediaPipe's top-1 agreement with PyTorch is LiteRT's INT8 agreement, up to the ties
    # (synthetic weights, whose top classes are close: docs/apps.md)
    agreement = np.mean(np.array([i for i, _, _ in top]) == exported.probs.argmax(1))
    assert abs(agreement - np.mean(litert.argmax(1) == exported.probs.argmax(1))) <= ties / len(top)


def test_app_form_of_the_default_artifacts(exported: Exported) -> None:
    """What MediaPipe relied on above, read from the files: uint8 image input, a float32
    probabilities output after a SOFTMAX, standard metadata with the 1000 labels; INT8 keeps an
    integer body (no float tensor but the boundary)."""
    for path in (exported.fp32, exported.int8):
        check_tflite(path)  # the names, types and shapes docs/apps.md gives app developers
        std = read_standard_metadata(path)
        [inp], [outp] = std["inputs"], std["outputs"]
        assert inp["name"] == "image" and inp["color_space"] == "RGB"
        assert inp["image_size"] == [224, 224] and (inp["mean"], inp["std"]) == ([0.0], [1.0])
        assert outp["name"] == "probabilities" and (outp["min"], outp["max"]) == ([0.0], [1.0])
        assert outp["labels"] == list(imagenet_classes())
        assert std["name"] == "LSNet-T" and std["license"].startswith("MIT")
    model = schema.Model.GetRootAs(exported.int8.read_bytes(), 0)
    graph = model.Subgraphs(0)
    types = [graph.Tensors(i).Type() for i in range(graph.TensorsLength())]
    floats = [graph.Tensors(i).Name().decode() for i, t in enumerate(types)
              if t == schema.TensorType.FLOAT32]
    # the pixels cast to float before the first QUANTIZE, the dequantized logits, the
    # probabilities: nothing else is float
    assert len(floats) == 3 and floats[1:] == ["logits", "probabilities"], floats
    assert types.count(schema.TensorType.INT8) > 100
    assert exported.int8.stat().st_size < 0.4 * exported.fp32.stat().st_size
