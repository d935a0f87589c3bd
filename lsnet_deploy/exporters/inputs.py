"""What every converter is fed, whatever the format: the module to convert (with in-graph
normalization for image input), an example input of the spec's layout and dtype, and
calibration inputs in the artifact's own input format."""

from __future__ import annotations

import numpy as np
import torch

from ..channels_last import is_channels_last_form
from ..fidelity import to_artifact_input
from ..io_wrappers import ImageInput
from ..portable import to_portable_form
from ..spec import IOSpec

__all__ = ["batched", "calibration_inputs", "example_input", "graph_model"]


def graph_model(model: torch.nn.Module, spec: IOSpec, pad_in_conv: bool = True
                ) -> torch.nn.Module:
    """The module to export: the network in its portable form (rank <= 4, no GroupNorm or
    BatchNorm ops; with ``pad_in_conv`` SKA's padding inside a conv, no Pad op; a
    channels-last form is kept as it is), wrapped with in-graph normalization for image
    input."""
    if not is_channels_last_form(model):
        model = to_portable_form(model, pad_in_conv)
    if spec.value_range == "0..255":
        return ImageInput(model, spec.mean, spec.std).eval()
    return model


def example_input(spec: IOSpec, batch: int) -> torch.Tensor:
    """An example input ``(batch, 3, H, W)`` or ``(batch, H, W, 3)`` of the spec's layout and
    dtype (uint8 pixels, 0..255 floats or N(0, 1) normalized values)."""
    h, w = spec.img_size
    shape = (batch, 3, h, w) if spec.layout == "NCHW" else (batch, h, w, 3)
    if spec.dtype == "uint8":
        return torch.randint(0, 256, shape, dtype=torch.uint8)
    if spec.value_range == "0..255":
        return torch.rand(shape) * 255.0
    return torch.randn(shape)


def calibration_inputs(images: torch.Tensor, spec: IOSpec) -> list[np.ndarray]:
    """Calibration batches (one image each) in the artifact's input format: normalized float
    images ``(N, 3, H, W)`` are converted back to 0..255 (uint8 for uint8 inputs) for
    image-input graphs and laid out as the spec says."""
    return [to_artifact_input(images[i : i + 1], spec) for i in range(images.shape[0])]


def batched(tensors: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """Group one-image tensors into ``batch``-image tensors for a static-batch graph; the last
    group is filled up with images from the start (every image is seen at least once)."""
    if batch <= 1 or not tensors:
        return tensors
    padded = list(tensors)
    while len(padded) % batch:
        padded.append(tensors[len(padded) % len(tensors)])
    return [torch.cat(padded[i : i + batch]) for i in range(0, len(padded), batch)]
