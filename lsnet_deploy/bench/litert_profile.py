"""Where the time goes in LiteRT: each block of the network converted and timed on its own.

LiteRT's Python interpreter has no op profiler (``benchmark_model --enable_op_profiling`` is a
separate native tool), so the profile is built from the blocks instead: one forward pass of the
model (the form the TFLite exporter converts: the channels-last LSNet, or a peer's deploy form)
records every unit's inputs; each unit is converted with litert-torch alone, with NHWC input and
output like inside the whole graph, and timed in the LiteRT interpreter (XNNPACK, ``threads``),
median of ``runs`` calls. Identical units (same class, input and weight shapes) are converted
once and counted as often as they occur.

Units of an LSNet: ``stem``; per block its token mixer (``repvgg_dw``, ``ls_conv`` = LKP + SKA,
of which ``lkp`` is timed alone and ``ska`` is the difference, ``attention``), ``se`` and
``ffn``; the stride-2 ``downsample`` convolutions; ``head`` is the whole model minus the units
(pooling, classifier, and the per-graph overheads). Units of a peer: each entry of its
``features`` (the stem convolution, every inverted-residual / RepViT block by kind, the last
convolution). The whole model is timed too; ``unaccounted`` is whole minus the units' sum
(LSNet: the head; negative when isolated units run slower than inside one graph).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BenchmarkError
from ..lsnet import LSNet
from .profile import Share

__all__ = ["BlockProfile", "block_profile_markdown", "profile_litert_blocks"]


@dataclass
class BlockProfile:
    """LiteRT fp32 times by unit group (``ms`` per run: unit median x count) and the whole."""

    model: str
    threads: int
    runs: int
    whole_ms: float
    groups: list[Share]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "threads": self.threads, "runs": self.runs,
                "whole_ms": self.whole_ms, "groups": [vars(s) for s in self.groups]}


def _lsnet_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    units: list[tuple[str, nn.Module]] = [("stem", model.patch_embed)]
    for stage in (model.blocks1, model.blocks2, model.blocks3, model.blocks4):
        for block in stage:
            if not hasattr(block, "mixer"):
                units.append(("downsample", block))
                continue
            mixer = block.mixer
            if hasattr(mixer, "lkp"):
                units += [("ls_conv", mixer), ("lkp", mixer.lkp)]
            elif hasattr(mixer, "m"):
                units.append(("attention", mixer))
            else:
                units.append(("repvgg_dw", mixer))
            if not isinstance(block.se, nn.Identity):
                units.append(("se", block.se))
            units.append(("ffn", block.ffn))
    return units


def _peer_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    units = []
    for i, unit in enumerate(model.features):
        kind = type(unit).__name__
        if any("Squeeze" in type(m).__name__ for m in unit.modules()):
            kind += " + SE"
        units.append(("stem" if i == 0 else kind, unit))
    return units


def _record_inputs(model: nn.Module, units: list[tuple[str, nn.Module]], x: torch.Tensor
                   ) -> dict[int, tuple[torch.Tensor, ...]]:
    seen: dict[int, tuple[torch.Tensor, ...]] = {}
    hooks = [m.register_forward_pre_hook(
        lambda mod, args: seen.setdefault(id(mod), tuple(a.detach() for a in args)))
        for _, m in units]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _time_tflite(path: Path, threads: int, runs: int) -> float:
    """Median ms of ``runs`` calls, loaded as ``bench`` loads a ``.tflite`` (fixed random
    inputs), after ``max(3, runs // 5)`` warm-up calls."""
    from ..exporters import get_exporter
    from .harness import time_callable

    session = get_exporter("tflite").bench_session(path, threads, None)
    try:
        return time_callable(session.run, runs=runs, warmup=max(3, runs // 5)).median_ms
    finally:
        session.close()


def _convert(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path) -> None:
    import litert_torch

    nhwc_in = [i for i, a in enumerate(args) if a.dim() == 4]
    with torch.no_grad():
        out = module(*args)
    wrapped = litert_torch.to_channel_last_io(
        module, args=nhwc_in, outputs=[0] if out.dim() == 4 else None).eval()
    sample = tuple(a.permute(0, 2, 3, 1).contiguous() if i in nhwc_in else a
                   for i, a in enumerate(args))
    litert_torch.convert(wrapped, sample).export(str(path))


def profile_litert_blocks(name: str, *, threads: int = 1, runs: int = 50, img_size: int = 224,
                          progress: Any = None) -> BlockProfile:
    """Time LSNet variant or peer ``name`` block by block in LiteRT fp32 (module doc)."""
    from ..exporters.tflite import convertible_module
    from ..spec import IOSpec
    from .profile import _build

    model = _build(name, img_size)
    if isinstance(model, LSNet):
        from ..channels_last import to_channels_last_form

        model = to_channels_last_form(model)
        units = _lsnet_units(model)
    else:
        units = _peer_units(model)
    x = torch.randn(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
    inputs = _record_inputs(model, units, x)
    ms_of: dict[tuple[Any, ...], float] = {}
    totals: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="lsnet-litert-profile-") as tmp:
        whole = Path(tmp) / "whole.tflite"
        import litert_torch

        spec = IOSpec(img_size=(img_size, img_size), layout="NHWC")
        litert_torch.convert(convertible_module(model, spec),
                             (x.permute(0, 2, 3, 1).contiguous(),)).export(str(whole))
        whole_ms = _time_tflite(whole, threads, runs)
        for k, (group, unit) in enumerate(units):
            args = inputs.get(id(unit))
            if args is None:
                raise BenchmarkError(f"{name}: unit {k} ({group}) never ran in the forward pass")
            key = (group, type(unit).__name__, tuple(tuple(a.shape) for a in args),
                   tuple(tuple(p.shape) for p in unit.parameters()))
            if key not in ms_of:
                if progress is not None:
                    progress(f"{name}: timing {group} {tuple(args[0].shape)} in LiteRT")
                path = Path(tmp) / f"unit{k}.tflite"
                _convert(unit, args, path)
                ms_of[key] = _time_tflite(path, threads, runs)
            totals[group] += ms_of[key]
            counts[group] += 1
    if "ls_conv" in totals:  # SKA (+ its BN and the residual add) = LSConv - LKP
        totals["ska"] = totals.pop("ls_conv") - totals["lkp"]
        counts["ska"] = counts.pop("ls_conv")
    totals["unaccounted (head, graph overhead)"] = whole_ms - sum(totals.values())
    counts["unaccounted (head, graph overhead)"] = 0
    groups = sorted((Share(g, v, v / whole_ms, counts[g]) for g, v in totals.items()),
                    key=lambda s: -s.ms)
    return BlockProfile(name, threads, runs, whole_ms, groups)


def block_profile_markdown(profiles: list[BlockProfile]) -> str:
    """The block profiles as Markdown tables (``kernels`` column: how many units)."""
    lines: list[str] = []
    for p in profiles:
        lines += [f"### {p.model}, LiteRT fp32 (XNNPACK), {p.threads} thread"
                  f"{'s' * (p.threads != 1)}: whole model {p.whole_ms:.2f} ms (median of "
                  f"{p.runs})", "", "| unit group | ms | share of whole | units |",
                  "|---|---|---|---|"]
        lines += [f"| {s.name} | {s.ms:.3f} | {100 * s.share:.1f}% | {s.kernels or '-'} |"
                  for s in p.groups]
        lines.append("")
    return "\n".join(lines)
