"""Research run (issue 13, not adopted): LSNet's INT8 ``.tflite`` in one XNNPACK partition.

Usage (from the repository root, in the project's venv)::

    .venv/bin/python benchmarks/int8_libraries/tflite_one_partition.py OUT_DIR \
        [--model lsnet_t] [--weights random] [--shipped]

The shipped INT8 ``.tflite`` leaves 77 of LSNet-T's ops to LiteRT's own kernels, in 21
XNNPACK partitions (``export.xnnpack`` of its sidecar). XNNPACK (ai-edge-litert 2.3) takes
``FULLY_CONNECTED`` with runtime weights, ``BATCH_MATMUL``, ``SOFTMAX``, ``RELU`` and
``RSQRT`` in float only, and refuses GroupNorm's int8 ``ADD`` of the epsilon (the constant's
scale is far below the output's). This script exports the same model with two formulations
patched in (monkeypatched here; the package is not changed):

* **attention**: heads as a batch dimension, ``(B, heads, N, kd) @ (B, heads, kd, N)`` (one
  ``BATCH_MATMUL`` instead of a ``FULLY_CONNECTED`` per head), the ReLU of ``proj`` moved
  before the head merge (it commutes with the permutation), and the products, the bias add,
  the softmax and that ReLU left in float by the quantizer: XNNPACK runs them as one float
  island between a ``DEQUANTIZE`` and a ``QUANTIZE``;
* **GroupNorm**: the epsilon added by the variance convolution's bias (no ``ADD``) and the
  ``RSQRT`` left in float.

So the file is **not full integer**: those ops compute in float. ``--shipped`` exports the
shipped formulation for comparison. Both print ``export.xnnpack`` and the validation line;
time the two files with ``lsnet-deploy bench FILE FILE --runtime litert --threads 1``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
import torch.nn.functional as F

from lsnet_deploy import channels_last
from lsnet_deploy.quantize import tflite_int8

aten = torch.ops.aten
FLOAT_OPS = {("attention_core", op) for op in (aten.matmul.default, aten.softmax.int,
                                                aten._softmax.default, aten.add.Tensor,
                                                aten.relu.default)}
FLOAT_OPS |= {("lkp_groupnorm", aten.rsqrt.default)}


def attention_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """:class:`AttentionChannelsLast` with heads as a batch dimension (same function)."""
    b, _, h, w = x.shape
    n, heads, kd, d = h * w, self.num_heads, self.key_dim, self.d
    qkv = self.qkv(x)
    nk = self.nh_kd
    q, k, v = qkv[:, :nk], qkv[:, nk:2 * nk], qkv[:, 2 * nk:]
    q = self.dw(q).permute(0, 2, 3, 1).reshape(b, n, heads, kd).permute(0, 2, 1, 3)
    k = k.permute(0, 2, 3, 1).reshape(b, n, heads, kd).permute(0, 2, 3, 1)
    v = v.permute(0, 2, 3, 1).reshape(b, n, heads, d).permute(0, 2, 1, 3)
    out = torch.relu((q @ k + self.bias).softmax(dim=-1) @ v)  # proj[0] is this ReLU
    out = out.permute(0, 2, 1, 3).reshape(b, h, w, self.dh).permute(0, 3, 1, 2)
    return self.proj[1](out)


def groupnorm_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """:class:`TapMajorGroupNorm` with the epsilon in the variance convolution's bias."""
    eps = torch.full((self.tap_average.shape[0],), self.eps, dtype=x.dtype)
    mean = F.conv2d(x.mean((2, 3), keepdim=True), self.tap_average)
    d = x - mean
    var = F.conv2d((d * d).mean((2, 3), keepdim=True), self.tap_average, eps)
    return d * (torch.rsqrt(var) * self.weight) + self.bias


def patch() -> None:
    """The two formulations, and a quantizer that leaves :data:`FLOAT_OPS` unannotated."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    channels_last.AttentionChannelsLast.forward = attention_forward
    channels_last.TapMajorGroupNorm.forward = groupnorm_forward
    shipped = tflite_int8._quantizer_class

    def quantizer_class() -> type:
        base = shipped()

        class FloatIslands(base):  # type: ignore[misc, valid-type]
            def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
                for node in model.graph.nodes:
                    if node.op == "call_function" and \
                            (tflite_int8.node_group(node), node.target) in FLOAT_OPS:
                        node.meta["quantization_annotation"] = QuantizationAnnotation(
                            _annotated=True)  # marked done, so left in float
                return super().annotate(model)

        return FloatIslands

    tflite_int8._quantizer_class = quantizer_class


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--model", default="lsnet_t")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--shipped", action="store_true", help="the shipped formulation")
    args = ap.parse_args(argv)
    if not args.shipped:
        patch()
    import lsnet_deploy

    [art] = lsnet_deploy.export(args.model, "tflite", weights=args.weights, precision="int8",
                                output_dir=args.out_dir, force=True)
    print(art.path)
    print("xnnpack:", art.export_info["xnnpack"])
    print("validation:", art.validation["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
