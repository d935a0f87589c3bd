"""Facts about the phone and the binary that will run on it: the device record (model, SoC,
Android version, ABIs, CPU frequencies, thermal state) read over adb, the local
``benchmark_model`` resolved (``--benchmark-binary`` or ``$LSNET_DEPLOY_BENCHMARK_MODEL``) and
checked against the device's ABIs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import BenchmarkError
from .adb import Adb
from .options import BENCHMARK_MODEL_ENV, BENCHMARK_MODEL_URL, AndroidOptions
from .parse import big_cores_mask, parse_cpu_freqs, parse_getprop, parse_thermalservice

__all__ = ["check_binary_abi", "collect_device_info", "device_info", "resolve_binary", "thermal"]

# ELF e_machine values and the Android ABIs that can run them.
_ELF_MACHINES = {3: "x86", 40: "arm", 62: "x86-64", 183: "aarch64"}
_ABI_MACHINES = {"arm64-v8a": 183, "armeabi-v7a": 40, "armeabi": 40, "x86": 3, "x86_64": 62}


# ----------------------------------------------------------------------------------------------
# The device
# ----------------------------------------------------------------------------------------------

def collect_device_info(adb: Adb) -> dict[str, Any]:
    """The facts of the device ``adb`` targets (the keys of :func:`device_info`)."""
    props = parse_getprop(adb.shell("getprop"))
    soc = props.get("ro.soc.model") or props.get("ro.board.platform") or props.get(
        "ro.hardware")
    sdk = props.get("ro.build.version.sdk", "")
    freqs = parse_cpu_freqs(adb.shell(
        "for c in /sys/devices/system/cpu/cpu[0-9]*; do "
        "echo ${c##*/} $(cat $c/cpufreq/cpuinfo_max_freq 2>/dev/null); done", check=False))
    return {
        "serial": adb.serial,
        "model": props.get("ro.product.model"),
        "manufacturer": props.get("ro.product.manufacturer"),
        "soc": soc,
        "soc_manufacturer": props.get("ro.soc.manufacturer"),
        "android_version": props.get("ro.build.version.release"),
        "sdk": int(sdk) if sdk.isdigit() else None,
        "abi": props.get("ro.product.cpu.abi"),
        "abilist": props.get("ro.product.cpu.abilist"),
        "cpu_max_freq_mhz": {f"cpu{c}": freqs[c] // 1000 for c in sorted(freqs)} or None,
        "big_cores_mask": big_cores_mask(freqs),
        "thermal": thermal(adb),
    }


def thermal(adb: Adb) -> dict[str, Any] | None:
    """The device's thermal state now (:func:`parse_thermalservice`; ``None`` without one)."""
    proc = adb.run("shell", "dumpsys thermalservice", check=False)
    return parse_thermalservice(proc.stdout) if proc.returncode == 0 else None


def device_info(options: AndroidOptions) -> dict[str, Any]:
    """Facts about the phone ``options`` selects.

    Keys: ``serial``, ``model``, ``manufacturer``, ``soc`` (``ro.soc.model``, else
    ``ro.board.platform``, else ``ro.hardware``), ``soc_manufacturer``, ``android_version``,
    ``sdk``, ``abi``, ``abilist``, ``cpu_max_freq_mhz`` (``{"cpu0": 1803, ...}``, online
    cores), ``big_cores_mask`` (hex mask of the cores faster than the slowest cluster, a
    ``--taskset`` candidate) and ``thermal`` (:func:`parse_thermalservice`, ``None`` before
    Android 10).
    Missing properties are ``None``.
    """
    adb = Adb(options)
    adb.select(options.serial)
    return collect_device_info(adb)


# ----------------------------------------------------------------------------------------------
# The binary
# ----------------------------------------------------------------------------------------------

def resolve_binary(options: AndroidOptions) -> Path:
    """The local ``benchmark_model``: ``--benchmark-binary``, else
    ``$LSNET_DEPLOY_BENCHMARK_MODEL``; :class:`BenchmarkError` (naming where to download it)
    when neither is given, the file is missing or it is not an ELF executable."""
    binary = options.benchmark_binary
    origin = "--benchmark-binary"
    if binary is None:
        env = os.environ.get(BENCHMARK_MODEL_ENV)
        if not env:
            raise BenchmarkError(
                "no benchmark_model binary: download TFLite's prebuilt nightly for Android "
                f"arm64 ({BENCHMARK_MODEL_URL}) and pass --benchmark-binary PATH or set "
                f"{BENCHMARK_MODEL_ENV}"
            )
        binary, origin = Path(env), f"${BENCHMARK_MODEL_ENV}"
    binary = Path(binary).expanduser()
    if not binary.is_file():
        raise BenchmarkError(
            f"benchmark_model not found at {binary} ({origin}): download it from "
            f"{BENCHMARK_MODEL_URL}"
        )
    if _elf_machine(binary) is None:
        raise BenchmarkError(
            f"{binary} is not an ELF executable: pass the benchmark_model binary itself "
            f"({BENCHMARK_MODEL_URL})"
        )
    return binary


def _elf_machine(path: Path) -> int | None:
    """ELF ``e_machine`` of ``path``, ``None`` if it is not an ELF file."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def check_binary_abi(binary: Path, info: dict[str, Any]) -> None:
    """The binary must be built for one of the device's ABIs (``ro.product.cpu.abilist``)."""
    machine = _elf_machine(binary)
    abis = [a.strip() for a in (info.get("abilist") or info.get("abi") or "").split(",")
            if a.strip()]
    runnable = {_ABI_MACHINES[a] for a in abis if a in _ABI_MACHINES}
    if machine is not None and runnable and machine not in runnable:
        built = _ELF_MACHINES.get(machine, f"machine {machine}")
        raise BenchmarkError(
            f"{binary} is built for {built} but the device's ABIs are {', '.join(abis)}: "
            f"use the matching Android build of benchmark_model ({BENCHMARK_MODEL_URL})"
        )

