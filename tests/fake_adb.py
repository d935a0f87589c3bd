"""A fake ``adb`` for the Android benchmark tests: records every call, replays canned outputs.

:class:`FakeAdb` (test side) writes an executable ``adb`` script whose shebang is the test's
own Python, puts its folder first on ``PATH``, and keeps the state in one folder::

    scenario.json   what the fake phone(s) answer (see FakeAdb.scenario)
    calls.jsonl     one JSON list per adb invocation (its argv without "adb")
    device/SERIAL/  the simulated file system of each phone (pushed files land here)
    counters.json   how many times each replayed sequence has been read

:func:`main` (device side) is what the script runs. It behaves like adb for the commands the
package uses: ``devices``, ``-s SERIAL``, ``push``, ``pull``, ``shell getprop``, ``shell
dumpsys thermalservice``, the per-core frequency loop, ``chmod``, ``rm -f`` and the
``[taskset MASK] benchmark_model ... > REPORT 2>&1; echo lsnet-deploy-exit=$?`` line (it checks
that the binary was pushed and made executable and that ``--graph`` was pushed, then writes the
canned log to REPORT). Error texts are the real adb ones.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Any

STATE_ENV = "FAKE_ADB_STATE"
DATA = Path(__file__).resolve().parent / "data" / "benchmark_model"

UNAUTHORIZED = ("adb: device unauthorized.\n"
                "This adb server's $ADB_VENDOR_KEYS is not set\n"
                "Try 'adb kill-server' if that seems wrong.\n"
                "Otherwise check for a confirmation dialog on your device.\n")


# ----------------------------------------------------------------------------------------------
# test side
# ----------------------------------------------------------------------------------------------

class FakeAdb:
    """Install the fake adb into ``bin_dir`` with its state in ``state_dir``.

    ``scenario`` keys (all optional):

    - ``devices``: ``[[serial, state], ...]`` (default one authorized ``FAKE123``);
    - ``getprop``, ``cpufreq``: sample file names under ``tests/data/benchmark_model``;
    - ``thermal``: list of sample names replayed in order (the last repeats); ``[]`` = no
      thermal service (Android 9);
    - ``benchmarks``: ``[{"match": substring of the device command, "output": sample,
      "exit": code, "sleep": seconds}, ...]``, the first match wins; default ``current_xnnpack.txt``, exit 0;
    - ``noexec``: ``chmod`` has no effect (the binary then cannot execute).
    """

    def __init__(self, bin_dir: Path, state_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.state = state_dir
        bin_dir.mkdir(parents=True, exist_ok=True)
        state_dir.mkdir(parents=True, exist_ok=True)
        script = bin_dir / "adb"
        script.write_text(
            f"#!{sys.executable}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
            "from fake_adb import main\n"
            "sys.exit(main(sys.argv[1:]))\n"
        )
        script.chmod(0o755)
        self.scenario(devices=[["FAKE123", "device"]])

    def scenario(self, **kw: Any) -> None:
        """Replace the scenario (unnamed keys get their defaults)."""
        data = {"devices": [["FAKE123", "device"]], "getprop": "getprop_pixel7.txt",
                "cpufreq": "cpufreq_pixel7.txt", "thermal": ["dumpsys_thermalservice.txt"],
                "benchmarks": []}
        data.update(kw)
        (self.state / "scenario.json").write_text(json.dumps(data))

    def calls(self) -> list[list[str]]:
        """Every invocation so far, in order (argv without ``adb``)."""
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def shell_commands(self) -> list[str]:
        """The ``adb shell`` command strings, in order (``-s SERIAL`` dropped)."""
        out = []
        for argv in self.calls():
            args = _strip_serial(argv)[1]
            if args and args[0] == "shell":
                out.append(" ".join(args[1:]))
        return out

    def device_files(self, serial: str = "FAKE123") -> list[str]:
        """Files present on the fake phone (device paths)."""
        root = self.state / "device" / serial
        if not root.exists():
            return []
        return sorted("/" + p.relative_to(root).as_posix() for p in root.rglob("*")
                      if p.is_file())


# ----------------------------------------------------------------------------------------------
# device side
# ----------------------------------------------------------------------------------------------

def _strip_serial(argv: list[str]) -> tuple[str | None, list[str]]:
    if len(argv) >= 2 and argv[0] == "-s":
        return argv[1], argv[2:]
    return None, argv


def _sample(name: str) -> str:
    return (DATA / name).read_text()


def _next_in_sequence(state: Path, key: str, items: list[str]) -> str | None:
    if not items:
        return None
    counters_path = state / "counters.json"
    counters = json.loads(counters_path.read_text()) if counters_path.exists() else {}
    n = counters.get(key, 0)
    counters[key] = n + 1
    counters_path.write_text(json.dumps(counters))
    return items[min(n, len(items) - 1)]


def _on_device(root: Path, device_path: str) -> Path:
    return root / device_path.lstrip("/")


def _run_benchmark(root: Path, command: str, scenario: dict[str, Any]) -> tuple[str, int]:
    """Simulate ``[taskset M] BIN ARGS > REPORT 2>&1; echo lsnet-deploy-exit=$?``."""
    first, _, rest = command.partition(";")
    tokens = shlex.split(first)
    report = tokens[tokens.index(">") + 1]
    argv = tokens[: tokens.index(">")]
    if argv[0] == "taskset":
        argv = argv[2:]
    binary = _on_device(root, argv[0])
    flags = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
    if not binary.is_file():
        text, code = f"/system/bin/sh: {argv[0]}: inaccessible or not found\n", 127
    elif not binary.stat().st_mode & stat.S_IXUSR:
        text, code = f"/system/bin/sh: {argv[0]}: can't execute: Permission denied\n", 126
    elif not _on_device(root, flags.get("graph", "")).is_file():
        graph = flags.get("graph", "")
        text = (f"INFO: STARTING!\nERROR: Could not open '{graph}'.\n"
                f"ERROR: Failed to mmap model {graph}\nERROR: Benchmarking failed.\n")
        code = 1
    else:
        entry = next((b for b in scenario.get("benchmarks", []) if b["match"] in command),
                     {"output": "current_xnnpack.txt", "exit": 0})
        text, code = _sample(entry["output"]), int(entry.get("exit", 0))
        time.sleep(float(entry.get("sleep", 0)))  # a hung run
    target = _on_device(root, report)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    out = f"lsnet-deploy-exit={code}\n" if "lsnet-deploy-exit=" in rest else ""
    return out, 0


def _shell(root: Path, state: Path, command: str, scenario: dict[str, Any]) -> int:
    if command == "getprop":
        sys.stdout.write(_sample(scenario["getprop"]))
        return 0
    if command.startswith("dumpsys thermalservice"):
        name = _next_in_sequence(state, "thermal", scenario.get("thermal", []))
        if name is None:
            sys.stdout.write("Can't find service: thermalservice\n")
            return 0
        sys.stdout.write(_sample(name))
        return 0
    if command.startswith("for c in /sys/devices/system/cpu"):
        if scenario.get("cpufreq"):
            sys.stdout.write(_sample(scenario["cpufreq"]))
        return 0
    if command.startswith("chmod "):
        _, mode, path = shlex.split(command)
        target = _on_device(root, path)
        if not target.exists():
            sys.stdout.write(f"chmod: {path}: No such file or directory\n")
            return 1
        if not scenario.get("noexec"):
            target.chmod(int(mode, 8))
        return 0
    if command.startswith("rm -f "):
        for path in shlex.split(command)[2:]:
            _on_device(root, path).unlink(missing_ok=True)
        return 0
    if "benchmark_model" in command:
        out, code = _run_benchmark(root, command, scenario)
        sys.stdout.write(out)
        return code
    sys.stdout.write(f"/system/bin/sh: {command.split()[0]}: inaccessible or not found\n")
    return 127


def main(argv: list[str]) -> int:
    state = Path(os.environ[STATE_ENV])
    with open(state / "calls.jsonl", "a") as f:
        f.write(json.dumps(argv) + "\n")
    scenario = json.loads((state / "scenario.json").read_text())
    serial, args = _strip_serial(argv)
    if not args:
        sys.stderr.write("adb: usage: no command specified\n")
        return 1
    command = args[0]
    if command == "version":
        sys.stdout.write("Android Debug Bridge version 1.0.41\nVersion 34.0.5-10900879\n")
        return 0
    devices = [tuple(d) for d in scenario["devices"]]
    if command == "devices":
        lines = ["List of devices attached"] + [f"{s}\t{st}" for s, st in devices]
        sys.stdout.write("\n".join(lines) + "\n\n")
        return 0
    if serial is None:
        if not devices:
            sys.stderr.write("adb: no devices/emulators found\n")
            return 1
        if len(devices) > 1:
            sys.stderr.write("adb: more than one device/emulator\n")
            return 1
        serial, state_of = devices[0]
    else:
        state_of = dict(devices).get(serial)
        if state_of is None:
            sys.stderr.write(f"adb: device '{serial}' not found\n")
            return 1
    if state_of == "unauthorized":
        sys.stderr.write(UNAUTHORIZED)
        return 1
    if state_of == "offline":
        sys.stderr.write("adb: device offline\n")
        return 1
    root = state / "device" / serial
    root.mkdir(parents=True, exist_ok=True)
    if command == "push":
        local, remote = args[1], args[2]
        target = _on_device(root, remote)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)
        size = target.stat().st_size
        sys.stdout.write(f"{local}: 1 file pushed, 0 skipped. 25.1 MB/s ({size} bytes in "
                         "0.001s)\n")
        return 0
    if command == "pull":
        remote, local = args[1], args[2]
        source = _on_device(root, remote)
        if not source.is_file():
            sys.stderr.write(f"adb: error: failed to stat remote object '{remote}': No such "
                             "file or directory\n")
            return 1
        shutil.copyfile(source, local)
        sys.stdout.write(f"{remote}: 1 file pulled, 0 skipped. 0.4 MB/s ("
                         f"{source.stat().st_size} bytes in 0.004s)\n")
        return 0
    if command == "shell":
        return _shell(root, state, " ".join(args[1:]), scenario)
    sys.stderr.write(f"adb: unknown command {command}\n")
    return 1
