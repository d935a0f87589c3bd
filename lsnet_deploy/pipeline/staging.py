"""Staging and all-or-nothing publishing of an artifact with its sidecar and companion files.

An export writes everything into a **staging folder** next to the destination,
``<folder>/.<artifact name>.lsnet-tmp-XXXXXXXX/``:

* ``new/``: the artifact, its companions (e.g. the ``.ort``) and, last, its sidecar, complete
  and validated before anything is published;
* ``scratch/``: the temporary files of the converters (Python's ``tempfile`` points there
  while the artifact is exported), so nothing is left in the system temp folder;
* ``READY``: written (atomically) once ``new/`` is complete: the list of files to publish,
  the sidecar last;
* ``old/``: what a ``--force`` export replaces, moved aside before the new files move in.

The staging folder holds an exclusive ``flock`` for as long as its export runs, so a stale
one (its process was killed, even by SIGKILL) is told from a live one by trying the lock.

**Publishing** (:meth:`Staging.commit`) runs under an exclusive lock of the destination folder
(so two exports racing for one name cannot both publish without ``--force``): it re-checks the
destination, writes ``READY``, moves the old files to ``old/``, the new ones into place (the
sidecar last) and removes the staging folder. Only renames within one folder happen after
``READY``: no disk space is needed, and a process killed in the middle leaves a staging folder
with ``READY`` that :func:`recover` completes (rolls forward) the next time anything is
exported into that folder; a staging folder without ``READY`` is removed (nothing of it was
published). So a reader never finds an artifact with another export's sidecar for longer than
until the next export into the folder, and never an artifact without its sidecar after a
failure of the export itself (disk full, an error, Ctrl-C, SIGTERM).

``--force`` replaces only lsnet-deploy's own artifacts (:func:`replaceable`): a file (or an
``.mlpackage`` folder) whose sidecar names it; never another folder, a symlink, or a file
without that sidecar.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import OutputError

try:  # POSIX; elsewhere staging works without the locks
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "STAGING_MARK",
    "Staging",
    "folder_lock",
    "is_staging_name",
    "output_error",
    "recover",
    "replaceable",
    "stage",
]

log = logging.getLogger(__name__)

STAGING_MARK = ".lsnet-tmp-"
"""In the name of every staging folder: ``.<artifact name>.lsnet-tmp-XXXXXXXX``."""
_READY = "READY"
_LEGACY = re.compile(r"^\..+\.(onnx|ort|tflite|mlpackage|mlmodel|pte)\.[a-z0-9_]{8}$")
"""Staging folders of lsnet-deploy before 0.2 (``.<artifact>.XXXXXXXX``, no lock)."""
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                  errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}


def is_staging_name(name: str) -> bool:
    """Whether a folder entry is a staging folder (today's or an older release's); readers of
    output folders skip it."""
    return name.startswith(".") and (STAGING_MARK in name or bool(_LEGACY.match(name)))


def output_error(e: OSError, where: Path) -> OutputError:
    """A one-line :class:`OutputError` for a file-system error at the output location."""
    what = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted (read-only or immutable?)",
        errno.EROFS: "read-only file system",
        errno.EEXIST: "a file is in the way",
        errno.ENOTDIR: "a path component is a file, not a folder",
        errno.EISDIR: "a folder is in the way",
        errno.ENAMETOOLONG: "the name is too long",
    }.get(e.errno or 0, e.strerror or str(e))
    culprit = e.filename if isinstance(e.filename, str) else where
    return OutputError(f"cannot write to the output location {culprit}: {what}; choose "
                       "another --output-dir or free it (nothing was published)")


def is_output_oserror(e: BaseException) -> OSError | None:
    """The :class:`OSError` behind ``e`` (itself or its causes) if it is one of the errors of
    an unusable output location (disk full, permissions, read-only, a file in the way)."""
    seen = 0
    cur: BaseException | None = e
    while cur is not None and seen < 8:
        if isinstance(cur, OSError) and cur.errno in _OUTPUT_ERRNOS:
            return cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


# -- locks -----------------------------------------------------------------------------------------

def _lock(fd: int, blocking: bool) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock of ``folder`` (``flock`` on the folder itself) for the block."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        _lock(fd, blocking=True)
        yield
    finally:
        os.close(fd)  # releases the lock


# -- recovery --------------------------------------------------------------------------------------

def _roll_forward(stg: Path, folder: Path) -> list[str]:
    """Move the remaining new files of a staging folder with ``READY`` into place (the old
    files aside first); idempotent."""
    names = json.loads((stg / _READY).read_text())["files"]
    old = stg / "old"
    old.mkdir(exist_ok=True)
    done = []
    for name in names:
        new, target = stg / "new" / name, folder / name
        if not os.path.lexists(new):
            continue
        if os.path.lexists(target):
            aside = old / name
            if os.path.lexists(aside):
                _remove(target)
            else:
                os.replace(target, aside)
        os.replace(new, target)
        done.append(name)
    return done


def recover(folder: Path) -> list[str]:
    """Deal with the staging folders that interrupted exports left in ``folder``: complete
    (roll forward) those whose files were all written (``READY``), remove the others; live
    ones (another export is running) are left alone. Returns one line per folder dealt with
    (also logged). Staging folders of older releases are reported, not touched."""
    notes: list[str] = []
    if not folder.is_dir():
        return notes
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(f"{STAGING_MARK}write-test-") and entry.is_file():
            with contextlib.suppress(OSError):  # a writability probe of a killed export
                entry.unlink()
            continue
        if not (entry.is_dir() and not entry.is_symlink() and is_staging_name(entry.name)):
            continue
        if STAGING_MARK not in entry.name:
            notes.append(f"left alone: {entry.name} (a temp folder of an older lsnet-deploy; "
                         "delete it if no export is running)")
            continue
        try:
            fd = os.open(entry, os.O_RDONLY)
        except OSError:
            continue
        try:
            if not _lock(fd, blocking=False):
                continue  # a live export
            with folder_lock(folder):
                if (entry / _READY).is_file():
                    done = _roll_forward(entry, folder)
                    notes.append(f"completed the interrupted publication of "
                                 f"{', '.join(done) or 'nothing left'} ({entry.name})")
                else:
                    notes.append(f"removed {entry.name}, left by an interrupted export")
                _remove(entry)
        finally:
            os.close(fd)
    for note in notes:
        log.warning("%s: %s", folder, note)
    return notes


# -- what --force may replace -----------------------------------------------------------------------

def replaceable(target: Path, artifact: Path) -> str | None:
    """Why ``target`` (the artifact itself, its sidecar or a companion) must not be replaced
    by ``--force``, or ``None`` if it is lsnet-deploy's own output for ``artifact``."""
    if not os.path.lexists(target):
        return None
    if target.is_symlink():
        return f"{target} is a symbolic link"
    sidecar = artifact.with_name(artifact.name + ".json")
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        record = None
    ours = isinstance(record, dict) and record.get("artifact") == artifact.name
    if not ours:
        return f"{target} is not an lsnet-deploy artifact (no sidecar {sidecar.name} naming it)"
    if target.is_dir() and not (target.suffix == ".mlpackage"
                                and (target / "Manifest.json").is_file()):
        return f"{target} is a folder"
    return None


# -- staging -----------------------------------------------------------------------------------------

@dataclass
class Staging:
    """The staging folder of one artifact (see the module docstring). ``new`` is where the
    export writes; :meth:`commit` publishes."""

    root: Path
    dest: Path
    fd: int

    @property
    def new(self) -> Path:
        return self.root / "new"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    @contextlib.contextmanager
    def temp_files_here(self) -> Iterator[None]:
        """Python's ``tempfile`` (and so the converters' temporary files) in ``scratch/`` for
        the block. Environment variables that libraries set to a folder inside ``scratch/``
        meanwhile (PyTorch Inductor remembers its cache folder in
        ``TORCHINDUCTOR_CACHE_DIR``) are restored afterwards, so nothing later in the process
        writes into the removed staging folder."""
        saved = tempfile.tempdir
        env = dict(os.environ)
        tempfile.tempdir = str(self.scratch)
        try:
            yield
        finally:
            tempfile.tempdir = saved
            inside = str(self.scratch)
            for key, value in list(os.environ.items()):
                if value.startswith(inside) and env.get(key) != value:
                    if key in env:
                        os.environ[key] = env[key]
                    else:
                        del os.environ[key]

    def commit(self, names: list[str], force: bool) -> None:
        """Publish ``names`` (files in ``new/``, the sidecar last) into the destination folder:
        all of them or, on an error before the first rename, none."""
        folder = self.dest.parent
        targets = [folder / n for n in names]
        with folder_lock(folder):
            existing = [t for t in targets if os.path.lexists(t)]
            if existing and not force:
                raise OutputError(f"{existing[0]} already exists (written meanwhile by another "
                                  "export?); pass --force to overwrite it")
            for t in existing:
                why = replaceable(t, self.dest)
                if why:
                    raise OutputError(f"--force replaces only lsnet-deploy's own artifacts: "
                                      f"{why}; move it away first")
            ready = self.root / (_READY + ".tmp")
            with open(ready, "w") as f:
                json.dump({"files": names, "dest": self.dest.name}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(ready, self.root / _READY)
            _roll_forward(self.root, folder)
        _remove(self.root)


@contextlib.contextmanager
def stage(dest: Path) -> Iterator[Staging]:
    """A staging folder for ``dest`` (created next to it, locked while the block runs, removed
    afterwards whatever happens); stale staging folders of the destination folder are dealt
    with first (:func:`recover`). File-system errors become :class:`OutputError`."""
    folder = dest.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        recover(folder)
        root = Path(tempfile.mkdtemp(prefix=f".{dest.name}{STAGING_MARK}", dir=folder))
    except FileExistsError as e:
        raise OutputError(f"cannot create the output folder {folder}: a file named "
                          f"{Path(e.filename or folder).name} is in the way") from e
    except OSError as e:
        raise output_error(e, folder) from e
    fd = os.open(root, os.O_RDONLY)
    _lock(fd, blocking=True)
    staging = Staging(root, dest, fd)
    try:
        staging.new.mkdir()
        staging.scratch.mkdir()
        yield staging
    finally:
        try:
            if root.exists():
                _remove(root)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
