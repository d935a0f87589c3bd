"""The adb transport: find the adb binary, run adb commands against one device with a
timeout, choose that device, and turn adb's failure messages into
:class:`~lsnet_deploy.errors.DeviceError` messages that say what to do."""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from ...errors import DeviceError
from .options import AndroidOptions
from .parse import list_devices

__all__ = ["Adb"]

log = logging.getLogger(__name__)

_ADB_HELP = "https://developer.android.com/tools/releases/platform-tools"


def _state_error(serial: str, state: str) -> DeviceError:
    if state == "unauthorized":
        return DeviceError(
            f"device {serial} is unauthorized: unlock the phone and accept the 'Allow USB "
            "debugging?' prompt (or revoke USB debugging authorizations and replug), then retry"
        )
    if state == "offline":
        return DeviceError(
            f"device {serial} is offline: replug the USB cable or run 'adb reconnect', then retry"
        )
    if state.startswith("no permissions"):
        return DeviceError(
            f"no permission to use device {serial}: set up udev rules for adb (or add your "
            "user to the plugdev group) and replug"
        )
    return DeviceError(
        f"device {serial} is in state '{state}', not 'device': boot it normally and retry"
    )


def _adb_error(stderr: str, what: str, serial: str | None) -> DeviceError:
    """Map an adb failure message to an actionable :class:`DeviceError`."""
    text = stderr.strip()
    low = text.lower()
    who = serial or "the device"
    if "no devices/emulators found" in low:
        return DeviceError(
            "no Android device attached: connect a phone with USB debugging enabled "
            "('adb devices' must list it as 'device')"
        )
    if "unauthorized" in low:
        return _state_error(who, "unauthorized")
    if "more than one device" in low:
        return DeviceError("more than one device attached: pass --serial ID")
    if "offline" in low:
        return _state_error(who, "offline")
    if re.search(r"device '.*' not found", low):
        return DeviceError(f"device {who} not found: check 'adb devices' and --serial")
    last = text.splitlines()[-1] if text else "no message"
    return DeviceError(f"adb {what} failed: {last}")


def _resolve_adb(adb: str) -> str:
    if os.sep in adb or (os.altsep and os.altsep in adb):
        if Path(adb).is_file():
            return adb
        raise DeviceError(f"adb not found at {adb}: install Android platform-tools ({_ADB_HELP})")
    found = shutil.which(adb)
    if found is None:
        raise DeviceError(
            f"{adb} not found on PATH: install Android platform-tools ({_ADB_HELP}) and put "
            "adb on PATH"
        )
    return found


class Adb:
    """Runs adb commands against one device with a timeout; errors become DeviceError."""

    def __init__(self, options: AndroidOptions) -> None:
        self.exe = _resolve_adb(options.adb)
        self.timeout_s = options.timeout_s
        self.serial: str | None = None

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [self.exe] + (["-s", self.serial] if self.serial else []) + list(args)
        what = " ".join(args[:2])
        what = what if len(what) <= 60 else what[:57] + "..."
        log.debug("run: %s", shlex.join(argv))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                                  timeout=self.timeout_s, check=False)
        except FileNotFoundError:
            raise DeviceError(
                f"adb not found ({self.exe}): install Android platform-tools ({_ADB_HELP})"
            ) from None
        except subprocess.TimeoutExpired:
            raise DeviceError(
                f"adb {what} timed out after {self.timeout_s:g} s: check the device, or raise "
                "the timeout"
            ) from None
        if check and proc.returncode != 0:
            raise _adb_error(proc.stderr or proc.stdout, what, self.serial)
        return proc

    def shell(self, command: str, check: bool = True) -> str:
        return self.run("shell", command, check=check).stdout

    def select(self, serial: str | None) -> str:
        """Choose the device (``serial`` or the only one) and target it from now on."""
        entries = list_devices(self.run("devices").stdout)
        listing = ", ".join(f"{s} [{st}]" for s, st in entries) or "none"
        if serial is not None:
            states = dict(entries)
            if serial not in states:
                raise DeviceError(f"device {serial} is not attached (adb devices: {listing})")
            state = states[serial]
        elif not entries:
            raise DeviceError(
                "no Android device attached: connect a phone with USB debugging enabled "
                "('adb devices' must list it as 'device')"
            )
        elif len(entries) > 1:
            raise DeviceError(f"{len(entries)} devices attached ({listing}): pass --serial ID")
        else:
            serial, state = entries[0]
        if state != "device":
            raise _state_error(serial, state)
        self.serial = serial
        return serial

