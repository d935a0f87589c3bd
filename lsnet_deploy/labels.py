"""ImageNet-1K class names (index -> short human-readable name), shipped as package data."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

__all__ = ["imagenet_classes"]


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1K class names in index order (WordNet short names, spaces not
    underscores; the two duplicated names are disambiguated: 'crane (bird)' / 'crane
    (machine)', 'maillot' / 'maillot (tank suit)')."""
    text = resources.files("lsnet_deploy").joinpath("data/imagenet_classes.txt").read_text()
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:  # pragma: no cover - guards the data file
        raise RuntimeError(f"imagenet_classes.txt holds {len(names)} names, expected 1000")
    return names
