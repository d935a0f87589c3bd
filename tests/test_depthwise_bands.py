"""Large depthwise convolutions as row bands (the TFLite form of LKP's 7x7): the same function,
bands of at most 25 taps, and only where a kernel is larger."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import TINY_SIZE, trained_looking
from lsnet_deploy.channels_last import to_channels_last_form
from lsnet_deploy.depthwise_bands import (
    MAX_FAST_TAPS,
    BandedDepthwise,
    band_rows,
    banded_if_large,
)
from lsnet_deploy.reparam import reparameterize


@pytest.mark.parametrize("kh,kw,expected", [
    (7, 7, [(0, 3), (3, 5), (5, 7)]),
    (9, 9, [(0, 2), (2, 4), (4, 6), (6, 8), (8, 9)]),
    (5, 5, [(0, 5)]),
    (11, 3, [(0, 6), (6, 11)]),
])
def test_band_rows_cover_the_kernel_in_small_bands(kh: int, kw: int,
                                                   expected: list[tuple[int, int]]) -> None:
    rows = band_rows(kh, kw)
    assert rows == expected
    assert all((r1 - r0) * kw <= MAX_FAST_TAPS for r0, r1 in rows)


@pytest.mark.parametrize("k,pad,shape", [(7, 3, (2, 12, 9, 11)), (7, 3, (1, 12, 4, 4)),
                                         (9, 4, (1, 6, 10, 7)), (7, 1, (1, 6, 9, 9)),
                                         (7, 0, (1, 6, 9, 8))])
def test_banded_depthwise_equals_the_conv(k: int, pad: int, shape: tuple[int, ...]) -> None:
    c = shape[1]
    conv = nn.Conv2d(c, c, k, padding=pad, groups=c).eval()
    with torch.no_grad():
        conv.bias.uniform_(-2.0, 2.0)
    x = torch.randn(shape) * 3.0
    banded = BandedDepthwise(conv)
    assert len(banded.rows) > 1
    got, want = banded(x), conv(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_banded_depthwise_without_bias() -> None:
    conv = nn.Conv2d(4, 4, 7, padding=3, groups=4, bias=False).eval()
    x = torch.randn(1, 4, 8, 8)
    assert torch.allclose(BandedDepthwise(conv)(x), conv(x), atol=1e-5)


@pytest.mark.parametrize("conv", [
    nn.Conv2d(8, 8, 3, padding=1, groups=8),             # 9 taps: already fast
    nn.Conv2d(8, 8, 5, padding=2, groups=8),             # 25 taps
    nn.Conv2d(8, 8, 7, padding=3, groups=8, stride=2),   # strided
    nn.Conv2d(8, 8, 7, padding=3, groups=4),             # not depthwise
    nn.Conv2d(8, 8, 7, padding="same", groups=8),        # padding given as a string
], ids=["3x3", "5x5", "stride2", "grouped", "same"])
def test_other_convs_are_kept(conv: nn.Conv2d) -> None:
    assert banded_if_large(conv) is conv


def test_the_channels_last_form_bands_every_lkp_7x7() -> None:
    model = trained_looking("test_lsnet", img_size=TINY_SIZE)
    reparameterize(model, None)
    form = to_channels_last_form(model)
    lkps = [m for n, m in form.named_modules() if n.endswith(".lkp")]
    assert lkps and all(isinstance(m.cv2, BandedDepthwise) for m in lkps)
    assert not [n for n, m in form.named_modules()
                if isinstance(m, nn.Conv2d) and m.groups > 1
                and m.kernel_size[0] * m.kernel_size[1] > MAX_FAST_TAPS]


def test_bands_can_be_turned_off() -> None:
    """``bands=False`` (the TFLite exporter's choice for GPTQ-rounded weights) keeps LKP's 7x7
    as one convolution."""
    model = trained_looking("test_lsnet", img_size=TINY_SIZE)
    reparameterize(model, None)
    form = to_channels_last_form(model, bands=False)
    lkps = [m for n, m in form.named_modules() if n.endswith(".lkp")]
    assert lkps and all(isinstance(m.cv2, nn.Conv2d) and m.cv2.kernel_size == (7, 7)
                        for m in lkps)
