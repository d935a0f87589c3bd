"""SKA: the export formulation against a naive loop written from the formula."""

from __future__ import annotations

import pytest
import torch

from lsnet_deploy.ska import SKA, ska
from reference_lsnet import ska_naive_loop as naive_ska  # the formula, written as loops


@pytest.mark.parametrize("shape", [(2, 16, 5, 4), (1, 24, 3, 3), (1, 8, 1, 6)])
def test_ska_matches_naive_loop(shape: tuple[int, int, int, int]) -> None:
    b, c, h, w = shape
    x = torch.randn(b, c, h, w, dtype=torch.float64)
    weights = torch.randn(b, c // 8, 9, h, w, dtype=torch.float64)
    torch.testing.assert_close(ska(x, weights), naive_ska(x, weights), atol=1e-10, rtol=0)


def test_ska_uses_tiled_groups_not_interleaved() -> None:
    """Channel c must use weight group c % G; the c // 8 mapping moves the result."""
    x = torch.randn(1, 16, 4, 4, dtype=torch.float64)
    w = torch.randn(1, 2, 9, 4, 4, dtype=torch.float64)
    ours = ska(x, w)
    tiled = torch.cat([w[:, c % 2 : c % 2 + 1] for c in range(16)], dim=1)
    interleaved = torch.cat([w[:, c // 8 : c // 8 + 1] for c in range(16)], dim=1)
    # a per-channel weight tensor (G == C) makes the mapping explicit in the naive loop
    torch.testing.assert_close(ours, naive_ska(x, tiled))
    assert (ours - naive_ska(x, interleaved)).abs().max() > 1e-2


def test_ska_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="multiple"):
        ska(torch.randn(1, 12, 3, 3), torch.randn(1, 5, 9, 3, 3))
    with pytest.raises(ValueError, match="K\\*K"):
        ska(torch.randn(1, 16, 3, 3), torch.randn(1, 2, 8, 3, 3))


def test_ska_export_graph_stays_within_rank_5_without_repeat_or_unfold() -> None:
    """Core ML rejects rank > 5 tensors; litert-torch cannot convert channel repeat."""
    x = torch.randn(2, 32, 6, 6)
    w = torch.randn(2, 4, 9, 6, 6)
    program = torch.export.export(SKA(), (x, w))
    targets = []
    for node in program.graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            assert val.dim() <= 5, f"{node.name} has rank {val.dim()}"
        if node.op == "call_function":
            targets.append(str(node.target))
    assert not any("repeat" in t or "unfold" in t or "im2col" in t for t in targets), targets
