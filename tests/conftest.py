"""Shared fixtures: tiny and real models with trained-looking weights, checkpoints in the
official format, and real calibration images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lsnet_deploy.lsnet import LSNet, build_lsnet
from lsnet_deploy.paths import calibration_dir
from lsnet_deploy.preprocess import Preprocess, load_folder
from lsnet_deploy.synthetic import init_trained_looking

REPO = Path(__file__).resolve().parent.parent
OFFICIAL = ["lsnet_t", "lsnet_t_distill", "lsnet_s", "lsnet_s_distill", "lsnet_b", "lsnet_b_distill"]
TINY_SIZE = 128  # test_lsnet: stage-4 grid 2x2


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never touch the network or the repository's models/ folder from a test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LSNET_DEPLOY_HOME", str(tmp_path_factory.mktemp("home")))
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def real_images() -> torch.Tensor:
    """8 calibration photos at 224, ``(8, 3, 224, 224)`` normalized."""
    return load_folder(calibration_dir(), Preprocess(), limit=8).tensors


@pytest.fixture(scope="session")
def tiny_images() -> torch.Tensor:
    """6 calibration photos at 128 (the tiny test config's size)."""
    return load_folder(calibration_dir(), Preprocess.for_size(TINY_SIZE), limit=6).tensors


def trained_looking(variant: str, img_size: int = 224, seed: int = 0) -> LSNet:
    """A model of ``variant`` with synthetic trained-looking weights (eval mode)."""
    return init_trained_looking(build_lsnet(variant, img_size=img_size), seed=seed)


def write_checkpoint(folder: Path, variant: str, img_size: int = 224, seed: int = 0,
                     name: str | None = None) -> Path:
    """Write a trained-looking checkpoint in the official format (``{'model': state_dict}``)
    into ``folder`` and return its path."""
    model = trained_looking(variant, img_size=img_size, seed=seed)
    path = folder / (name or f"{variant}.pth")
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture
def make_checkpoint(tmp_path: Path) -> Callable[..., Path]:
    """Write a checkpoint in the official format (``{'model': state_dict}``) and return it."""

    def make(variant: str, img_size: int = 224, seed: int = 0, name: str | None = None) -> Path:
        return write_checkpoint(tmp_path, variant, img_size, seed, name)

    return make
