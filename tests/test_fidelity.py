"""Comparing a classifier artifact's log-probabilities with PyTorch: in logit units, so the
metrics and gates are those of a logits artifact (``fidelity.comparable_outputs``); and the
reduced-precision gates themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lsnet_deploy.fidelity import comparable_outputs, compare_logits


def _logits(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 1000, generator=g, dtype=torch.float64) * 2 + 1


def test_log_probs_compare_like_the_logits_they_come_from() -> None:
    ref = _logits(0)
    noisy = ref + 0.3 * _logits(1)  # an artifact off by noise
    want = compare_logits(noisy.numpy(), ref.numpy(), "int8", "x")
    a, r = comparable_outputs(torch.log_softmax(noisy, -1).numpy(), ref, "log_probs")
    got = compare_logits(a, r, "int8", "x")
    assert np.testing.assert_allclose(r, ref.numpy()) is None
    # within the constant part of the error, which no softmax output can show
    assert abs(got.mean_cosine - want.mean_cosine) < 5e-3 and got.mean_cosine < 0.99
    assert got.top1_agreement == want.top1_agreement
    # fp32: an exact classifier passes the 1e-3 gate, a slightly wrong one does not
    exact, r = comparable_outputs(torch.log_softmax(ref, -1).numpy(), ref, "log_probs")
    assert compare_logits(exact, r, "fp32", "x").max_abs_diff < 1e-9
    off, r = comparable_outputs(torch.log_softmax(ref + 0.01 * _logits(2), -1).numpy(), ref,
                                "log_probs")
    assert not compare_logits(off, r, "fp32", "x").passed


def test_unrelated_log_probs_fail() -> None:
    """The cosine of two raw log-probability vectors is near 1 for unrelated models (the
    log-sum-exp dominates): the comparison must not be fooled."""
    ref, other = _logits(0), _logits(3)
    raw = compare_logits(torch.log_softmax(other, -1).numpy(),
                         torch.log_softmax(ref, -1).numpy(), "int8", "x")
    assert raw.mean_cosine > 0.8  # what comparing log-probabilities would have said
    a, r = comparable_outputs(torch.log_softmax(other, -1).numpy(), ref, "log_probs")
    assert compare_logits(a, r, "int8", "x").mean_cosine < 0.5


def test_underflowed_probabilities_count_as_equal_when_pytorch_is_lower() -> None:
    """fp16 softmax: probabilities below 2^-25 come back as the floor; where PyTorch's value is
    lower still the artifact is right, where it is higher the artifact is wrong."""
    ref = _logits(0) * 4  # confident: many log-probabilities below the fp16 floor
    floor = np.log(2.0**-25)
    lp = np.maximum(torch.log_softmax(ref, -1).numpy(), floor)
    assert (lp == floor).sum() > 100
    a, r = comparable_outputs(lp, ref, "log_probs")
    assert compare_logits(a, r, "fp16", "x").max_abs_diff < 1e-9
    wrong = lp.copy()
    top = np.argsort(-lp[0])[5]
    wrong[0, top] = floor  # a class PyTorch gives a real probability, lost
    a, r = comparable_outputs(wrong, ref, "log_probs")
    assert compare_logits(a, r, "fp16", "x").max_abs_diff > 1.0


def test_logits_pass_through() -> None:
    ref = _logits(0)
    a, r = comparable_outputs(ref.numpy() + 1, ref, "logits")
    assert np.all(a == ref.numpy() + 1) and np.all(r == ref.numpy())


def test_a_photo_gate_fails_on_the_worst_photo_alone() -> None:
    """``min_photo_cosine``: a mean that passes does not hide one photo far off."""
    ref = np.random.default_rng(1).normal(size=(8, 20))
    out = ref.copy()
    out[3] = -ref[3]  # one photo's logits reversed: cosine -1; the other seven exact
    mean = compare_logits(out, ref, "int8", "x", min_cosine=0.5)
    assert mean.passed and mean.gate == "mean cosine >= 0.5"
    assert mean.mean_cosine == pytest.approx(0.75) and mean.min_cosine == pytest.approx(-1)
    both = compare_logits(out, ref, "int8", "x", min_cosine=0.5, min_photo_cosine=0.9)
    assert not both.passed and both.gate == "mean cosine >= 0.5, every photo >= 0.9"
    assert "every photo >= 0.9" in both.summary()
    names = [f"p{i}.jpg" for i in range(8)]
    named = compare_logits(out, ref, "int8", "x", 0.5, 0.9, names)
    assert named.worst_photo == "p3.jpg" and "min -1.00000 (p3.jpg)" in named.summary()
    assert both.worst_photo is None and compare_logits(out, ref, "int8", "x",
                                                       names=names[:7]).worst_photo is None
    out[3] = ref[3]
    assert compare_logits(out, ref, "int8", "x", 0.5, 0.9).passed
    # fp32 keeps its own gate (max |diff|); a photo gate there has no meaning
    assert compare_logits(ref, ref, "fp32", "x", min_photo_cosine=0.9).gate == "max|diff| <= 0.001"
