"""Fault injection: what an export leaves behind when the disk fills up, the folder is not
usable, the process is interrupted (SIGINT, SIGTERM) or killed (SIGKILL, at every rename of the
publication), or two exports race for one file. The promise (lsnet_deploy.pipeline.staging):
an artifact is published with its sidecar or not at all, nothing stale stays after the next
export into the folder, and ``--force`` replaces only lsnet-deploy's own files.

The unit tests drive the staging module directly (milliseconds); the end-to-end ones run real
exports of the tiny model, in this process or as ``lsnet-deploy`` subprocesses (those are in
the slow tier, which CI runs).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_checkpoint

from lsnet_deploy.errors import OutputError
from lsnet_deploy.metadata import sidecar_path
from lsnet_deploy.pipeline import export
from lsnet_deploy.sidecar import artifact_sha256
from lsnet_deploy.pipeline.staging import STAGING_MARK, is_staging_name, recover, stage

TINY, SIZE = "test_lsnet", 96
NAME = f"{TINY}_{SIZE}_fp32.onnx"


def _staged(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if is_staging_name(p.name)) \
        if folder.exists() else []


def _write_new(staging, name: str, text: str) -> list[str]:  # type: ignore[no-untyped-def]
    (staging.new / name).write_text(text)
    (staging.new / f"{name}.json").write_text(json.dumps({"artifact": name, "text": text}))
    return [name, f"{name}.json"]


def _pair(folder: Path, name: str = NAME) -> tuple[str, str]:
    """(artifact text, the text its sidecar records): equal for a consistent pair."""
    return ((folder / name).read_text(),
            json.loads((folder / f"{name}.json").read_text())["text"])


# -- the staging module ---------------------------------------------------------------------

def test_commit_publishes_everything_and_leaves_no_staging(tmp_path: Path) -> None:
    dest = tmp_path / "out" / NAME
    with stage(dest) as staging:
        assert STAGING_MARK in staging.root.name and staging.root.parent == dest.parent
        staging.commit(_write_new(staging, NAME, "v1"), force=False)
    assert _pair(dest.parent) == ("v1", "v1") and _staged(dest.parent) == []


def test_an_error_before_commit_publishes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / NAME
    with pytest.raises(RuntimeError), stage(dest) as staging:
        _write_new(staging, NAME, "v1")
        raise RuntimeError("converter failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_race_lets_one_export_publish_and_refuses_the_other(tmp_path: Path) -> None:
    dest = tmp_path / NAME
    with stage(dest) as first, stage(dest) as second:
        names = _write_new(first, NAME, "first")
        _write_new(second, NAME, "second")
        first.commit(names, force=False)
        with pytest.raises(OutputError, match="written meanwhile by another export"):
            second.commit(names, force=False)
    assert _pair(tmp_path) == ("first", "first") and _staged(tmp_path) == []


def test_force_replaces_the_pair(tmp_path: Path) -> None:
    dest = tmp_path / NAME
    for text in ("v1", "v2"):
        with stage(dest) as staging:
            staging.commit(_write_new(staging, NAME, text), force=True)
    assert _pair(tmp_path) == ("v2", "v2")


@pytest.mark.parametrize("kind", ["folder", "foreign file", "symlink"])
def test_force_never_replaces_what_is_not_ours(tmp_path: Path, kind: str) -> None:
    dest = tmp_path / NAME
    if kind == "folder":
        dest.mkdir()
        (dest / "precious.txt").write_text("keep")
    elif kind == "foreign file":
        dest.write_text("someone else's model")
    else:
        (tmp_path / "elsewhere").write_text("x")
        dest.symlink_to(tmp_path / "elsewhere")
    with stage(dest) as staging, pytest.raises(OutputError, match="only lsnet-deploy's own"):
        staging.commit(_write_new(staging, NAME, "v1"), force=True)
    assert os.path.lexists(dest) and not sidecar_path(dest).exists()
    if kind == "folder":
        assert (dest / "precious.txt").read_text() == "keep"


def test_recover_removes_a_staging_folder_without_ready(tmp_path: Path) -> None:
    stale = tmp_path / f".{NAME}{STAGING_MARK}abcd1234"
    (stale / "new").mkdir(parents=True)
    (stale / "new" / NAME).write_text("half")
    (tmp_path / f"{STAGING_MARK}write-test-x").write_text("")
    [note] = recover(tmp_path)
    assert "interrupted export" in note and list(tmp_path.iterdir()) == []


def test_recover_completes_a_publication_with_ready(tmp_path: Path) -> None:
    (tmp_path / NAME).write_text("old")
    (tmp_path / f"{NAME}.json").write_text(json.dumps({"artifact": NAME, "text": "old"}))
    stale = tmp_path / f".{NAME}{STAGING_MARK}abcd1234"
    (stale / "new").mkdir(parents=True)
    (stale / "old").mkdir()
    names = []
    for name, text in ((NAME, "new"), (f"{NAME}.json", json.dumps({"artifact": NAME,
                                                                    "text": "new"}))):
        (stale / "new" / name).write_text(text)
        names.append(name)
    os.replace(tmp_path / NAME, stale / "old" / NAME)  # killed after moving one old file aside
    (stale / "READY").write_text(json.dumps({"files": names, "dest": NAME}))
    [note] = recover(tmp_path)
    assert "completed the interrupted publication" in note
    assert _pair(tmp_path) == ("new", "new") and _staged(tmp_path) == []


def test_recover_leaves_a_live_export_alone(tmp_path: Path) -> None:
    with stage(tmp_path / NAME) as staging:
        assert recover(tmp_path) == [] and staging.root.exists()
    assert _staged(tmp_path) == []


def test_converters_temporary_files_go_to_the_staging_folder(tmp_path: Path) -> None:
    import tempfile

    with stage(tmp_path / NAME) as staging, staging.temp_files_here():
        with tempfile.TemporaryDirectory() as scratch:
            assert Path(scratch).parent == staging.scratch
    assert tempfile.gettempdir() != str(staging.scratch)


# -- real exports, in this process -----------------------------------------------------------

@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt"), TINY, img_size=SIZE, seed=5)


def _export(ckpt: Path, out: Path, **kw):  # type: ignore[no-untyped-def]
    return export(TINY, "onnx", weights=ckpt, img_size=SIZE, output_dir=out, **kw)


def test_disk_full_while_the_sidecar_is_written_publishes_nothing(
        ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lsnet_deploy.pipeline.publish as publish

    def full(path: Path, data: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(publish, "write_json_atomic", full)
    with pytest.raises(OutputError, match="no space left on the device"):
        _export(ckpt, tmp_path / "out")
    # no artifact without its sidecar, no staging folder, no empty variant folder
    assert not (tmp_path / "out" / TINY).exists()


def test_an_unusable_output_location_is_an_output_error(ckpt: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / TINY).write_text("a file where the variant folder goes")
    with pytest.raises(OutputError, match="a file is in its place"):
        _export(ckpt, tmp_path / "out")
    import tempfile

    def read_only(*args: object, **kwargs: object) -> str:
        raise PermissionError(errno.EROFS, "Read-only file system", str(tmp_path / "ro"))

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    with pytest.raises(OutputError, match="read-only file system"):
        _export(ckpt, tmp_path / "ro")


def test_force_replaces_an_export_and_refuses_a_folder(ckpt: Path, tmp_path: Path) -> None:
    [first] = _export(ckpt, tmp_path)
    [second] = _export(ckpt, tmp_path, force=True)
    side = json.loads(sidecar_path(second.path).read_text())
    assert side["sha256"] == artifact_sha256(second.path) == second.sha256
    assert sorted(p.name for p in first.path.parent.iterdir()) == [NAME, f"{NAME}.json"]
    other = tmp_path / "other"
    (other / TINY / NAME).mkdir(parents=True)  # a folder at the artifact path
    with pytest.raises(OutputError, match="not an lsnet-deploy artifact"):
        _export(ckpt, other, force=True)
    assert (other / TINY / NAME).is_dir()


def test_a_dangling_symlink_is_not_replaced_silently(ckpt: Path, tmp_path: Path) -> None:
    (tmp_path / TINY).mkdir()
    (tmp_path / TINY / NAME).symlink_to(tmp_path / "missing")
    with pytest.raises(OutputError, match="dangling symbolic link"):
        _export(ckpt, tmp_path)


# -- real exports, as subprocesses -------------------------------------------------------------

KILLER = r"""
import os, signal, sys
from lsnet_deploy.pipeline import staging
kill_at = int(sys.argv[1])
calls = [0]
real_commit, real_replace = staging.Staging.commit, os.replace

def replace(src, dst):
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)

def commit(self, names, force):
    staging.os.replace = replace  # only the renames of the publication
    try:
        real_commit(self, names, force)
    finally:
        staging.os.replace = real_replace

staging.Staging.commit = commit
from lsnet_deploy.cli.app import main
main(sys.argv[2:])
"""


def _cli(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["export", "--test-model", TINY, "--img-size", str(SIZE), "--weights", str(ckpt),
            "--format", "onnx", "--output-dir", str(out), *extra]


def _temp_left(tmp: Path) -> list[str]:
    """What a subprocess left in its system temp folder, but ONNX Runtime's telemetry session
    file ``.ses`` (written when onnxruntime is imported, not a temporary file)."""
    return sorted(p.name for p in tmp.iterdir() if p.name != ".ses")


def _env(tmp: Path) -> dict[str, str]:
    tmp.mkdir(exist_ok=True)
    return dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(Path(__file__).parent.parent))


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [1, 2, 3, 4, 5])
def test_sigkill_at_each_rename_then_the_next_export_completes_it(
        ckpt: Path, tmp_path: Path, kill_at: int) -> None:
    """The renames of a --force publication: READY in place (1), the old artifact aside (2),
    the new one in (3), the old sidecar aside (4), the new one in (5). Killed before each,
    the folder is made consistent by the next export into it: before READY the old pair
    stays, from READY on the new pair is completed; nothing stale remains."""
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    [old] = _export(ckpt, out)
    other = write_checkpoint(tmp_path, TINY, img_size=SIZE, seed=6)  # another artifact
    proc = subprocess.run([sys.executable, "-c", KILLER, str(kill_at),
                           *_cli(other, out, "--force")], env=_env(tmp), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    folder = out / TINY
    assert len(_staged(folder)) == 1  # what the killed export left
    notes = recover(folder)
    assert len(notes) == 1 and _staged(folder) == []
    side = json.loads(sidecar_path(folder / NAME).read_text())
    assert side["sha256"] == artifact_sha256(folder / NAME)  # artifact and sidecar match
    assert (side["sha256"] == old.sha256) == (kill_at == 1)
    assert sorted(p.name for p in folder.iterdir()) == [NAME, f"{NAME}.json"]
    assert _temp_left(tmp) == []  # nothing in the system temp folder


def _wait_for_staging(folder: Path, proc: subprocess.Popen[str], timeout: float = 300,
                      inside: str | None = None) -> None:
    """Return once a staging folder is in ``folder`` (and, with ``inside``, a path matching
    that glob pattern is inside it: polled every 10 ms, a step of the tiny model's export
    lasts some 100 ms)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        staged = _staged(folder)
        if staged and (inside is None or any((folder / staged[0]).glob(inside))):
            return
        time.sleep(0.05 if inside is None else 0.01)
    raise AssertionError(f"no staging folder{' with ' + inside if inside else ''} appeared "
                         f"(exit {proc.poll()})")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_signal_during_the_export_leaves_nothing_stale(ckpt: Path, tmp_path: Path,
                                                         sig: signal.Signals) -> None:
    """The signal lands while ONNX Runtime calibrates (its scratch folder exists): a long native
    step, the common case. Not earlier: a KeyboardInterrupt raised while a native extension
    module is being imported (torch.onnx loads onnxscript's torchlib lazily) can abort CPython
    (exit -6), which leaves the staging folder as a SIGKILL does (docs/decisions.md,
    "Hardening"); the SIGKILL case below checks that the next export recovers it."""
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    cmd = [sys.executable, "-m", "lsnet_deploy.cli", *_cli(ckpt, out, "--int8")]
    proc = subprocess.Popen(cmd, env=_env(tmp), stderr=subprocess.PIPE, text=True)
    _wait_for_staging(out / TINY, proc, inside="scratch/ort.quant.*")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    expected = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGKILL: -signal.SIGKILL}[sig]
    assert proc.returncode == expected, err[-2000:]
    if sig != signal.SIGKILL:  # handled: clean-up ran, one line says so
        assert err.strip().splitlines()[-1] == (
            "interrupted (SIGTERM)" if sig == signal.SIGTERM else "interrupted")
        assert "Traceback" not in err
        assert not (out / TINY).exists()
    else:  # killed: the staging folder stays until the next export into the folder
        assert len(_staged(out / TINY)) == 1
        [art] = _export(ckpt, out)  # recovers, then exports
        assert _staged(out / TINY) == [] and art.passed
    assert _temp_left(tmp) == []  # converters' temp files were in the staging folder


@pytest.mark.slow
def test_two_racing_exports_never_both_publish(ckpt: Path, tmp_path: Path) -> None:
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    cmd = [sys.executable, "-m", "lsnet_deploy.cli", *_cli(ckpt, out)]
    procs = [subprocess.Popen(cmd, env=_env(tmp), stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read() if p.stderr else "") for p in procs]
    # the second to publish (or, if it planned after the first had published, to plan) is
    # refused: without --force an existing artifact is never replaced
    assert sorted(code for code, _ in results) == [0, 7], results
    [err] = [e for code, e in results if code == 7]
    assert "already exists" in err and "Traceback" not in err
    folder = out / TINY
    side = json.loads(sidecar_path(folder / NAME).read_text())
    assert side["sha256"] == artifact_sha256(folder / NAME) and _staged(folder) == []
