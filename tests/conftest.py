"""Shared fixtures: tiny and real models with trained-looking weights, checkpoints in the
official format, and real calibration images."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def _thread_budget() -> int | None:
    """Threads per pytest-xdist worker: the cores shared out, at least 1 (``None``: not a
    worker). Every pool sized to the whole machine in every worker makes the pools spin for
    each other's cores: the suite took 75 min instead of 21-24 (docs/decisions.md, "Thread
    budget")."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if not os.environ.get("PYTEST_XDIST_WORKER") or workers < 1:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


_BUDGET = _thread_budget()
if _BUDGET is not None:  # before torch's import; inherited by the CLI subprocesses of tests
    os.environ.setdefault("OMP_NUM_THREADS", str(_BUDGET))
    os.environ.setdefault("LSNET_DEPLOY_THREADS", str(_BUDGET))

import pytest  # noqa: E402
import torch  # noqa: E402

from lsnet_deploy.lsnet import LSNet, build_lsnet  # noqa: E402
from lsnet_deploy.paths import calibration_dir  # noqa: E402
from lsnet_deploy.preprocess import Preprocess, load_folder  # noqa: E402
from lsnet_deploy.synthetic import init_trained_looking  # noqa: E402
from lsnet_deploy.threads import default_threads  # noqa: E402

if _BUDGET is not None:  # torch may already be imported by a plugin; a budget the user set wins
    torch.set_num_threads(default_threads() or _BUDGET)

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


def shared_once(factory: pytest.TempPathFactory, name: str,
                build: Callable[[Path], None]) -> Path:
    """A folder ``name`` that ``build`` fills once per test run, shared by the pytest-xdist
    workers (a file lock). A build that raised is not tried again: the other workers fail
    with its first line. For long exports that tests of different modules only read."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, failed = root / name, root / f"{name}.failed"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(f"building {name!r} failed in another worker: {failed.read_text()}")
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                build(folder)
            except BaseException as e:
                failed.write_text(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                raise
            (folder / ".built").touch()
    return folder


@dataclass(frozen=True)
class AppFiles:
    """LSNet-T's default ``.tflite`` files and the checkpoint they come from."""

    checkpoint: Path
    fp32: Path
    int8: Path


@pytest.fixture(scope="session")
def lsnet_t_app_files(tmp_path_factory: pytest.TempPathFactory) -> AppFiles:
    """LSNet-T (trained-looking weights, seed 11) exported as the default ``--format tflite``
    files, fp32 and ``--int8`` (uint8 image in, float32 probabilities out; 16 calibration
    photos, gate 0.97), once per run for the MediaPipe and aarch64 tests, in a folder whose
    path has a space. Read-only: a test that changes a file copies it first."""
    from lsnet_deploy.pipeline import export

    def build(folder: Path) -> None:
        ckpt = write_checkpoint(folder, "lsnet_t", seed=11)
        export("lsnet_t", "tflite", weights=ckpt, output_dir=folder / "export")
        # full INT8 of synthetic-weight LSNet-T lands at a mean cosine of ~0.98
        # (docs/int8.md); 16 calibration photos: PT2E calibration costs ~2 s a photo
        export("lsnet_t", "tflite", weights=ckpt, output_dir=folder / "export",
               precision="int8", min_cosine=0.97, calib_size=16)

    folder = shared_once(tmp_path_factory, "lsnet_t app files", build)
    files = folder / "export" / "lsnet_t"
    return AppFiles(folder / "lsnet_t.pth", files / "lsnet_t_224_fp32.tflite",
                    files / "lsnet_t_224_int8.tflite")


@pytest.fixture
def make_checkpoint(tmp_path: Path) -> Callable[..., Path]:
    """Write a checkpoint in the official format (``{'model': state_dict}``) and return it."""

    def make(variant: str, img_size: int = 224, seed: int = 0, name: str | None = None) -> Path:
        return write_checkpoint(tmp_path, variant, img_size, seed, name)

    return make


SLOW_INTEGRATION = frozenset({
    "tests/test_bench_android.py::test_cli_bench_android_writes_a_report",
    "tests/test_benchmark_scripts.py::test_coreml_report",
    "tests/test_benchmark_scripts.py::test_onnx_int8_report",
    "tests/test_checkpoint.py::test_non_square_checkpoint_round_trip",
    "tests/test_cli.py::test_console_script_end_to_end",
    "tests/test_cli.py::test_models_json",
    "tests/test_cli.py::test_predict_with_a_checkpoint",
    "tests/test_cli_package.py::test_every_module_imports_first_in_a_fresh_interpreter",
    "tests/test_evaluate.py::test_known_answers",
    "tests/test_export_coreml.py::test_tensor_input_classifier_and_targets",
    "tests/test_export_coreml.py::test_w8a8",
    "tests/test_export_coreml.py::test_w8a8_gate_fails_loudly",
    "tests/test_export_coreml.py::test_weight_precisions[fp32-FLOAT32]",
    "tests/test_export_coreml.py::test_weight_precisions[int8-INT8]",
    "tests/test_export_onnx.py::test_auto_mixed_precision_raises_fidelity",
    "tests/test_export_onnx.py::test_bad_calibration_folders",
    "tests/test_export_onnx.py::test_cli_export_json_and_validate",
    "tests/test_export_onnx.py::test_dynamic_batch_runs_at_1_3_8",
    "tests/test_export_onnx.py::test_existing_artifact_needs_force",
    "tests/test_export_onnx.py::test_failed_or_interrupted_export_leaves_nothing[failure0]",
    "tests/test_export_onnx.py::test_failed_or_interrupted_export_leaves_nothing[failure1]",
    "tests/test_export_onnx.py::test_image_input_takes_uint8_and_normalizes_inside",
    "tests/test_export_onnx.py::test_int8_exclude_groups_and_unknown_group",
    "tests/test_export_onnx.py::test_metadata_round_trip",
    "tests/test_export_onnx.py::test_quant_report_measures_every_group",
    "tests/test_export_onnx.py::test_static_batch",
    "tests/test_export_onnx.py::test_validate_reruns_from_the_sidecar_and_from_embedded_metadata",
    "tests/test_export_onnx.py::test_val_size_caps_the_validation_photos",
    "tests/test_export_onnx.py::test_validation_failure_keeps_the_artifact_marked_failed",
    "tests/test_export_tflite.py::test_auto_mixed_precision",
    "tests/test_export_tflite.py::test_fp16_export",
    "tests/test_export_tflite.py::test_int8_image_input",
    "tests/test_export_tflite.py::test_int8_io_types[float32]",
    "tests/test_export_tflite.py::test_int8_io_types[uint8]",
    "tests/test_export_tflite.py::test_int8_is_fully_integer",
    "tests/test_export_tflite.py::test_int8_static_batch_calibrates_in_batches",
    "tests/test_export_tflite.py::test_mixed_precision_keeps_groups_in_float",
    "tests/test_export_tflite.py::test_nchw_layout",
    "tests/test_export_tflite.py::test_tflite_quant_report",
    "tests/test_new_format.py::test_a_registered_module_is_a_format_of_every_command",
    "tests/test_rounding.py::test_quant_report_gives_each_group_with_gptq",
    "tests/test_zoo.py::test_offline_is_a_clear_error",
})
"""Integration tests of the unit files (each a converter run of 5 s or more, measured with
``pytest --durations=0``) that belong to the slow tier, so ``pytest -m "not slow"`` stays a
quick check of every layer with one export per format; CI runs them all."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid in SLOW_INTEGRATION:
            item.add_marker(pytest.mark.slow)
