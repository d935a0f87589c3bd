"""Acceptance: our LSNet equals an independent implementation of the official code.

For every variant, a checkpoint in the official format (``{'model': state_dict}``) with random
trained-looking weights loads strictly into both models, and the logits agree to <= 1e-4 max
abs on real photos, unfused and fused.
"""

from __future__ import annotations

import pytest
import torch

from conftest import OFFICIAL, TINY_SIZE
from lsnet_deploy import create_model
from lsnet_deploy.preprocess import Preprocess, load_folder
from lsnet_deploy.paths import calibration_dir
from reference_lsnet import load_reference

TOL = 1e-4


def _compare(variant: str, path, images: torch.Tensor) -> None:  # type: ignore[no-untyped-def]
    sd = torch.load(path, weights_only=True)["model"]
    reference = load_reference(variant, sd)  # strict=True inside, .eval() after loading
    with torch.no_grad():
        expected = reference(images)
        ours = create_model(variant, path, img_size=images.shape[-1])
        assert ours.state_dict().keys() == sd.keys()
        unfused = ours(images)
        ours_fused = create_model(variant, path, img_size=images.shape[-1], reparameterize=True)
        fused = ours_fused(images)
    assert expected.abs().max() < 20 and expected.std() > 0.2, "logits must be O(1)"
    assert (unfused - expected).abs().max().item() <= TOL
    assert (fused - expected).abs().max().item() <= TOL
    assert torch.equal(fused.argmax(-1), expected.argmax(-1))


@pytest.mark.parametrize("variant", ["test_lsnet", "test_lsnet_distill"])
def test_tiny_matches_reference(variant: str, make_checkpoint, tiny_images) -> None:  # type: ignore[no-untyped-def]
    _compare(variant, make_checkpoint(variant, img_size=TINY_SIZE, seed=11), tiny_images)


@pytest.mark.slow
@pytest.mark.parametrize("variant", OFFICIAL)
def test_official_variant_matches_reference(variant: str, make_checkpoint) -> None:  # type: ignore[no-untyped-def]
    images = load_folder(calibration_dir(), Preprocess(), limit=4).tensors
    _compare(variant, make_checkpoint(variant, seed=7), images)


def test_reference_has_the_upstream_stale_bias_bug_and_we_do_not(make_checkpoint, tiny_images) -> None:  # type: ignore[no-untyped-def]
    """Calling .eval() before loading weights leaves upstream with a zero attention bias."""
    from reference_lsnet import create_reference

    path = make_checkpoint("test_lsnet", img_size=TINY_SIZE, seed=4)
    sd = torch.load(path, weights_only=True)["model"]
    good = load_reference("test_lsnet", sd)
    stale = create_reference("test_lsnet").eval()
    stale.load_state_dict(sd)
    with torch.no_grad():
        assert (stale(tiny_images) - good(tiny_images)).abs().max() > 1e-3
        ours = create_model("test_lsnet", img_size=TINY_SIZE)
        ours.eval()
        ours.load_state_dict(sd)
        torch.testing.assert_close(ours(tiny_images), good(tiny_images), atol=TOL, rtol=0)
