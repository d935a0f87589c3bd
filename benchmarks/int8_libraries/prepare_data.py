"""Data of the INT8 library comparison (README.md beside this file), into /tmp/libcmp.

Run from the repository root with the project's venv::

    .venv/bin/python benchmarks/int8_libraries/prepare_data.py

Writes calib.npy / val.npy (the default image set's calibration and held-out photos, normalized
NCHW) and, per model, fp32.onnx (the fused model), pre.onnx (after ONNX Runtime's
quant_pre_process) and reference_logits.npy (the unfused PyTorch model's logits on val.npy).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from lsnet_deploy.api import create_model
from lsnet_deploy.exporters.base import ExportOptions
from lsnet_deploy.exporters.onnx import prepare_int8
from lsnet_deploy.pipeline.images import split_images
from lsnet_deploy.preprocess import Preprocess
from lsnet_deploy.reparam import reparameterize
from lsnet_deploy.spec import IOSpec

ROOT = Path("/tmp/libcmp")


def main() -> None:
    images = split_images(Preprocess())
    assert images.calib is not None
    ROOT.mkdir(exist_ok=True)
    np.save(ROOT / "calib.npy", images.calib.numpy())
    np.save(ROOT / "val.npy", images.val.numpy())
    spec = IOSpec(img_size=(224, 224))
    for variant in ("lsnet_t", "lsnet_b"):
        for weights in ("random", "random-outliers"):
            model = create_model(variant, weights)
            with torch.no_grad():
                reference = model(images.val).numpy()
            fused = copy.deepcopy(model)
            reparameterize(fused, None)
            folder = ROOT / f"{variant}_{weights}"
            folder.mkdir(exist_ok=True)
            prepare_int8(fused, spec, folder, ExportOptions(precision="int8"))
            np.save(folder / "reference_logits.npy", reference)
            print(folder, flush=True)


if __name__ == "__main__":
    main()
