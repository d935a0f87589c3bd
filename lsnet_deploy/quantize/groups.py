"""LSNet op groups: the unit of INT8 mixed precision, shared by every backend.

Every op of an exported graph is assigned to the LSNet structure it implements, from the
PyTorch module path that produced it (ONNX node scopes, FX ``nn_module_stack``). Module paths
are those of the *fused* model (a fused RepVGGDW is the Conv2d ``blocksN.i.mixer``), or of its
channels-last form (:mod:`lsnet_deploy.channels_last`), which keeps the same sub-module names.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["COMPUTE_GROUPS", "GROUPS", "group_of_scope"]

GROUPS: dict[str, str] = {
    "stem": "the three stride-2 3x3 convolutions of the stem",
    "downsample": "stride-2 depthwise 3x3 + 1x1 convolutions between stages",
    "repvgg_dw": "the fused RepVGG depthwise 3x3 token mixer of even blocks",
    "se": "squeeze-excite (mean, two 1x1 convs, sigmoid gate, multiply)",
    "lkp_conv": "LKP convolutions (1x1, dw 7x7, 1x1, 1x1 to 9C/8)",
    "lkp_groupnorm": "LKP GroupNorm over the dynamic kernels",
    "ska": "SKA: pad, nine shifted slices, per-pixel multiply, sum, and the BN after it",
    "attention_proj": "attention qkv / q-dw / output 1x1 convolutions",
    "attention_core": "attention matmuls, bias add and softmax",
    "ffn": "FFN 1x1 convolutions (C -> 2C -> C)",
    "residual": "residual additions",
    "head": "global average pool and the classifier",
}
"""Op groups of an LSNet graph and what each holds."""


def group_of_scope(scopes: Sequence[str], op_type: str = "") -> str | None:
    """Map the PyTorch module scopes of an op (outermost first, e.g. ``['', 'blocks3',
    'blocks3.5', 'blocks3.5.mixer', 'blocks3.5.mixer.lkp', 'blocks3.5.mixer.lkp.norm', ...]``)
    and its op type (ONNX spelling: ``Add`` for additions) to an op group, or ``None`` if the scopes say nothing. Module paths
    are those of the *fused* model (a fused RepVGGDW is the Conv2d ``blocksN.i.mixer``)."""
    path = ""
    for s in scopes:
        if s and "." in s or s in ("patch_embed", "head", "head_dist") or s.startswith("blocks"):
            path = s if len(s) > len(path) else path
    if not path:
        return None
    parts = path.split(".")
    if parts[0] == "patch_embed":
        return "stem"
    if parts[0] in ("head", "head_dist"):
        return "head"
    if not parts[0].startswith("blocks") or len(parts) < 2:
        return None
    if len(parts) == 2 or (len(parts) == 3 and parts[2] in ("c", "bn")):
        # blocksN.i with no sub-module: the fused downsample convs (Blocks have no own ops)
        return "downsample"
    sub = parts[2:]
    if sub[0] == "se":
        return "se"
    if sub[0] == "ffn":
        return "residual" if len(sub) == 1 and op_type == "Add" else "ffn"
    if sub[0] == "mixer":
        rest = sub[1:]
        if not rest:  # the mixer's own op: LSConv / Residual(Attention) add, or fused RepVGG conv
            return "residual" if op_type == "Add" else "repvgg_dw"
        if rest[0] == "lkp":
            return "lkp_groupnorm" if len(rest) > 1 and rest[1] == "norm" else "lkp_conv"
        if rest[0] in ("ska", "bn"):
            return "ska"
        if rest[0] in ("conv", "conv1"):
            return "repvgg_dw"
        if rest[0] == "m":
            if len(rest) > 1 and rest[1] in ("qkv", "dw", "proj"):
                return "attention_proj"
            return "attention_core"
    return None


COMPUTE_GROUPS = frozenset({"ffn", "lkp_conv", "repvgg_dw", "attention_proj", "downsample", "stem"})
"""Groups holding the convolutions (almost all MACs): kept in float only as a last resort."""
