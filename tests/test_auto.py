"""The greedy mixed-precision search of ``--int8-exclude auto`` (``quantize/auto.py``), on a
synthetic setup whose answers are known: each quantized group adds a known error to the
logits, so the cosine of every configuration, and so each step of the search, follow."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from lsnet_deploy.quantize.auto import QuantSetup, auto_exclude, sensitivity

rng = np.random.default_rng(0)
REFERENCE = rng.normal(size=(16, 50))
NOISE = {g: rng.normal(size=REFERENCE.shape) for g in ("ska", "residual", "ffn", "head")}
HARM = {"ska": 0.30, "residual": 0.10, "ffn": 0.05, "head": 0.01}
"""How far each group, quantized, moves the logits (a multiple of a random direction)."""


@dataclass(frozen=True)
class Config:
    exclude: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    int16: tuple[str, ...] = ()


calls: list[Config] = []


def _logits(config: Config) -> np.ndarray:
    calls.append(config)
    quantized = [g for g in HARM if g not in config.exclude
                 and (config.only is None or g in config.only)]
    # int16 activations: 1/16 of the group's 8-bit error (not zero: its int8 weights remain)
    harm = {g: h / 16 if g in config.int16 else h for g, h in HARM.items()}
    return REFERENCE + sum((harm[g] * NOISE[g] for g in quantized), np.zeros_like(REFERENCE))


SETUP = QuantSetup(_logits, {g: 3 for g in HARM}, REFERENCE)


def _cos(config: Config) -> float:
    a, b = _logits(config), REFERENCE
    return float(np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def test_a_gate_already_met_searches_nothing() -> None:
    calls.clear()
    exclude, report = auto_exclude(SETUP, 0.9, Config())
    assert exclude == () and report["steps"] == [] and report["sensitivity"] == []
    assert len(calls) == 1  # the baseline alone
    assert report["reached"] and abs(report["full_int8_cosine"] - _cos(Config())) < 1e-9


def test_the_search_keeps_the_most_damaging_groups_in_float_until_the_gate() -> None:
    full = _cos(Config())
    target = _cos(Config(exclude=("ska", "residual"))) - 1e-9
    assert full < target < 1
    exclude, report = auto_exclude(SETUP, target, Config())
    # ska then residual: the lowest 'only' cosine first; ffn and head were not needed
    assert exclude == ("ska", "residual")
    assert [s["exclude"] for s in report["steps"]] == ["ska", "residual"]
    assert report["reached"] and report["steps"][-1]["cosine"] >= target
    assert {r["group"] for r in report["sensitivity"]} == set(HARM)


def test_cheap_groups_are_kept_in_float_before_convolutions() -> None:
    """``ffn`` (convolutions: most of the MACs) moves the logits 5x more than ``head``, yet
    ``head`` is kept in float first: a compute group only as a last resort."""
    after_two = _cos(Config(exclude=("ska", "residual")))
    with_head = _cos(Config(exclude=("ska", "residual", "head")))
    assert after_two < with_head < _cos(Config(exclude=("ska", "residual", "ffn")))
    exclude, report = auto_exclude(SETUP, (after_two + with_head) / 2, Config())
    assert exclude == ("ska", "residual", "head") and report["reached"]


def test_an_unreachable_gate_keeps_every_group_in_float_and_says_so() -> None:
    exclude, report = auto_exclude(SETUP, 1.5, Config())
    assert set(exclude) == set(HARM) and not report["reached"]


def test_sensitivity_measures_each_group_alone_and_left_out() -> None:
    baseline, rows = sensitivity(SETUP, Config())
    by = {r.group: r for r in rows}
    assert by["ska"].only_cosine < by["head"].only_cosine  # ska alone hurts most
    assert by["ska"].without_cosine > by["head"].without_cosine  # leaving it out helps most
    assert baseline["full_int8_cosine"] < min(r.without_cosine for r in rows)


def test_the_int16_search_carries_groups_in_int16_and_never_drops_them_to_float() -> None:
    """``--int8-int16 auto``: the same order, but each chosen group joins ``int16`` (still
    quantized: its error shrinks, it does not vanish); a group the user keeps in float is
    not chosen again."""
    target = _cos(Config(int16=("ska", "residual"))) - 1e-9
    assert _cos(Config(int16=("ska",))) < target < _cos(Config(exclude=("ska", "residual")))
    carried, report = auto_exclude(SETUP, target, Config(), carry="int16")
    assert carried == ("ska", "residual") and report["int16_groups"] == ["ska", "residual"]
    assert [s["int16"] for s in report["steps"]] == ["ska", "residual"]
    assert "excluded_groups" not in report and report["reached"]
    carried, report = auto_exclude(SETUP, target, Config(exclude=("ska",)), carry="int16")
    assert "ska" not in carried and carried[0] == "residual"
    # every group in int16 still leaves an error: a gate above it is out of reach in int16,
    # while float (every group out of the quantization) reaches it
    gate = (_cos(Config(int16=tuple(HARM))) + 1.0) / 2
    carried, report = auto_exclude(SETUP, gate, Config(), carry="int16")
    assert set(carried) == set(HARM) and not report["reached"]
    _, report = auto_exclude(SETUP, gate, Config())
    assert report["reached"]


def _worst(config: Config) -> float:
    a, b = _logits(config), REFERENCE
    return float(np.min(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def test_a_photo_gate_searches_on_when_the_mean_is_met() -> None:
    """``--min-photo-cosine``: the mean gate alone is met with everything quantized, but the
    worst photo is not; the search goes on, in the same order, until both are."""
    floor = _worst(Config(exclude=("ska", "residual"))) - 1e-9
    assert _worst(Config(exclude=("ska",))) < floor and _cos(Config()) > 0.9
    exclude, report = auto_exclude(SETUP, 0.9, Config(), min_photo_cosine=floor)
    assert exclude == ("ska", "residual") and report["reached"]
    assert report["target_cosine"] == 0.9 and report["target_photo_cosine"] == floor
    assert report["full_int8_min_cosine"] == pytest.approx(_worst(Config()))
    assert report["full_int8_min_cosine"] < floor
    assert [s["min_cosine"] for s in report["steps"]] == pytest.approx([
        _worst(Config(exclude=("ska",))), _worst(Config(exclude=("ska", "residual")))])
    # without it, the mean alone: nothing carried, and no photo target reported
    exclude, report = auto_exclude(SETUP, 0.9, Config())
    assert exclude == () and "target_photo_cosine" not in report
