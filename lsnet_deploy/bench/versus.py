"""LSNet next to its peers: the same runtime, precision, threads and batch, side by side.

The claim a mobile engineer checks is "on my device, is LSNet faster than the backbone I use
now?". For every measured configuration that holds both an LSNet variant and a peer
(:mod:`lsnet_deploy.peers`: MobileNetV3-L, EfficientNet-B0, RepViT-M0.9), a
:class:`PeerComparison` gives both latencies, their MACs and

* ``speed_ratio`` = LSNet ms / peer ms (> 1: LSNet is slower);
* ``mac_ratio`` = LSNet GMACs / peer GMACs;
* ``per_mac_ratio`` = ``speed_ratio / mac_ratio``: LSNet's cost per MAC relative to the
  peer's (<= 1: LSNet costs no more per MAC than the peer, the parity goal of docs/performance.md).

MACs are counted by lsnet-deploy at the measured input size, in one convention for every model
(convolutions, linear layers, attention matmuls, SKA as a depthwise 3x3; normalizations,
activations and elementwise ops free): LSNet-T 0.316 G, MobileNetV3-L 0.22 G at 224. Top-1 is
the published ImageNet-1K number (the LSNet paper's, each peer's paper).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from .schema import BenchResult

__all__ = ["ModelCost", "PeerComparison", "compare_with_peers", "comparisons_markdown",
           "model_cost"]


@dataclass(frozen=True)
class ModelCost:
    """A model's MACs (G, one image of ``img_size``) and published top-1 (``None``: unknown)."""

    name: str
    title: str
    gmacs: float
    top1: float | None
    peer: bool


@lru_cache(maxsize=64)
def model_cost(name: str, img_size: tuple[int, int] = (224, 224)) -> ModelCost | None:
    """The cost of an LSNet variant or a peer at ``img_size``; ``None`` for any other model
    (a foreign artifact). Counting builds the network once (cached)."""
    from ..lsnet import VARIANTS
    from ..peers import PEERS, count_peer_macs, create_peer

    if name in PEERS:
        peer = PEERS[name]
        macs = count_peer_macs(create_peer(name), img_size)  # the deploy form
        return ModelCost(name, peer.title, macs / 1e9, peer.top1, True)
    if name in VARIANTS and VARIANTS[name].official:
        from ..flops import count_macs
        from ..lsnet import build_lsnet
        from ..zoo import zoo

        macs = count_macs(build_lsnet(name, img_size=img_size)).total
        entry = zoo().get(name)
        top1 = entry.paper.get("top1") if entry else None
        size = name.removeprefix("lsnet_").removesuffix("_distill").upper()
        title = f"LSNet-{size}" + (" (distilled)" if name.endswith("_distill") else "")
        return ModelCost(name, title, macs / 1e9, top1, False)
    return None


@dataclass(frozen=True)
class PeerComparison:
    """One LSNet result and one peer result of the same configuration."""

    device: str
    runtime: str
    precision: str
    threads: int | None
    accelerator: str | None
    batch: int
    model: str
    model_ms: float
    model_gmacs: float
    model_top1: float | None
    peer: str
    peer_ms: float
    peer_gmacs: float
    peer_top1: float | None

    @property
    def speed_ratio(self) -> float:
        """LSNet ms / peer ms (> 1: LSNet is slower)."""
        return self.model_ms / self.peer_ms

    @property
    def mac_ratio(self) -> float:
        """LSNet GMACs / peer GMACs."""
        return self.model_gmacs / self.peer_gmacs

    @property
    def per_mac_ratio(self) -> float:
        """LSNet's ms per GMAC over the peer's (<= 1: parity per MAC reached)."""
        return self.speed_ratio / self.mac_ratio

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model_ms_per_gmac": self.model_ms / self.model_gmacs,
                "peer_ms_per_gmac": self.peer_ms / self.peer_gmacs,
                "speed_ratio": self.speed_ratio, "mac_ratio": self.mac_ratio,
                "per_mac_ratio": self.per_mac_ratio}


def _config(r: BenchResult) -> tuple[Any, ...]:
    return (r.device, r.platform, r.runtime, r.precision, r.accelerator, r.threads, r.batch)


def _size(r: BenchResult) -> tuple[int, int]:
    """The image size of a result, from its input shape (NCHW or NHWC); 224 if unknown."""
    shape = [d for d in (r.input_shape or []) if isinstance(d, int)]
    if len(shape) == 4:
        h, w = (shape[2], shape[3]) if shape[1] == 3 else (shape[1], shape[2])
        return (h, w)
    return (224, 224)


def compare_with_peers(results: list[BenchResult]) -> list[PeerComparison]:
    """Every (LSNet, peer) pair measured in the same configuration (device, runtime,
    precision, accelerator, threads, batch), LSNet's PyTorch eager unfused form left out
    (peers are timed in their deploy form only)."""
    timed = [r for r in results if r.median_ms and r.runtime != "pytorch-unfused"]
    costs = {id(r): model_cost(r.model, _size(r)) for r in timed}
    out: list[PeerComparison] = []
    for r in timed:
        mine = costs[id(r)]
        if mine is None or mine.peer:
            continue
        for p in timed:
            theirs = costs[id(p)]
            if theirs is None or not theirs.peer or _config(p) != _config(r):
                continue
            out.append(PeerComparison(
                r.device, r.runtime, r.precision, r.threads, r.accelerator, r.batch,
                r.model, float(r.median_ms or 0.0), mine.gmacs, mine.top1,
                p.model, float(p.median_ms or 0.0), theirs.gmacs, theirs.top1))
    return sorted(out, key=lambda c: (c.device, c.runtime, c.precision, str(c.accelerator),
                                      c.threads or 0, c.batch, c.model, c.peer))


def _top1(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def comparisons_markdown(comparisons: list[PeerComparison]) -> list[str]:
    """The "LSNet vs peers" table (Markdown lines; ``[]`` when nothing compares)."""
    if not comparisons:
        return []
    lines = [
        "| device | runtime | precision | threads / units | batch | LSNet | ms | ms/GMAC | "
        "top-1 | peer | ms | ms/GMAC | top-1 | speed ratio (LSNet/peer ms) | MAC ratio | "
        "per-MAC cost ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        unit = c.accelerator or ("-" if c.threads is None else str(c.threads))
        verdict = "parity" if c.per_mac_ratio <= 1.0 else "costlier"
        lines.append(
            f"| {c.device} | {c.runtime} | {c.precision} | {unit} | {c.batch} | {c.model} | "
            f"{c.model_ms:.2f} | {c.model_ms / c.model_gmacs:.2f} | {_top1(c.model_top1)} | "
            f"{c.peer} | {c.peer_ms:.2f} | {c.peer_ms / c.peer_gmacs:.2f} | "
            f"{_top1(c.peer_top1)} | {c.speed_ratio:.2f} | {c.mac_ratio:.2f} | "
            f"{c.per_mac_ratio:.2f} ({verdict}) |")
    lines += ["", "speed ratio > 1: LSNet is slower than the peer; per-MAC cost ratio = speed "
              "ratio / MAC ratio, <= 1 when LSNet costs no more per MAC than the peer. MACs "
              "counted by lsnet-deploy at the measured size (one convention for all models); "
              "top-1: published ImageNet-1K. Peers have random weights: latency only."]
    return lines
