"""Android benchmarking over adb with TFLite's benchmark_model, against a fake adb.

The fake adb (``tests/fake_adb.py``) is an executable put first on ``PATH``: it records every
call and replays the samples in ``tests/data/benchmark_model`` (real output formats), so the
whole flow runs here without a phone: device selection, facts, push, chmod, the device command,
pull, parsing, cleanup, and every error path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fake_adb import DATA, STATE_ENV, FakeAdb

from lsnet_deploy.bench.android import (
    BENCHMARK_MODEL_ENV,
    BENCHMARK_MODEL_URL,
    MEDIAN_NOTE,
    AndroidOptions,
    device_info,
    failure_line,
    list_devices,
    parse_benchmark_output,
    parse_getprop,
    parse_thermalservice,
    run_android_bench,
)
from lsnet_deploy.bench.schema import BenchResult
from lsnet_deploy.checkpoint import file_sha256
from lsnet_deploy.errors import BenchmarkError, DeviceError
from lsnet_deploy.metadata import sidecar_path

REMOTE_BIN = "/data/local/tmp/benchmark_model"


def sample(name: str) -> str:
    return (DATA / name).read_text()


def elf(machine: int) -> bytes:
    """The first bytes of a 64-bit little-endian ELF file for ``machine`` (183 = aarch64)."""
    header = bytearray(64)
    header[:7] = b"\x7fELF\x02\x01\x01"
    header[16:18] = (2).to_bytes(2, "little")  # ET_EXEC
    header[18:20] = machine.to_bytes(2, "little")
    return bytes(header) + b"not really a program"


@pytest.fixture
def phone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeAdb:
    fake = FakeAdb(tmp_path / "fake bin", tmp_path / "adb state")
    monkeypatch.setenv("PATH", f"{fake.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv(STATE_ENV, str(fake.state))
    monkeypatch.delenv(BENCHMARK_MODEL_ENV, raising=False)
    return fake


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    path = tmp_path / "tools" / "android_aarch64_benchmark_model"
    path.parent.mkdir()
    path.write_bytes(elf(183))
    return path


def make_model(folder: Path, name: str, variant: str | None = "lsnet_t",
               precision: str = "fp32", input_shape: list | None = None) -> Path:
    """A stand-in .tflite (the fake phone never reads it) with an export sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    if variant is not None:
        shape = input_shape or [1, 224, 224, 3]
        meta = {"variant": variant, "precision": precision, "img_size": shape[1:3],
                "layout": "NHWC", "input_shape": shape, "dynamic_batch": shape[0] == "batch"}
        sidecar_path(path).write_text(json.dumps({"precision": precision, "metadata": meta,
                                                  "sha256": file_sha256(path)}))
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "my models", "lsnet_t fp32.tflite")  # spaces in the path


# ----------------------------------------------------------------------------------------------
# parsing
# ----------------------------------------------------------------------------------------------

def test_parse_current_format_xnnpack() -> None:
    out = parse_benchmark_output(sample("current_xnnpack.txt"))
    assert out.format == "current"
    assert out.ok
    assert out.init_ms == pytest.approx(71.406)
    assert out.first_ms == pytest.approx(13.874)
    assert out.warmup_avg_ms == pytest.approx(9.6714)
    assert out.inference_avg_ms == pytest.approx(9.03862)
    assert out.warmup is not None and out.warmup.count == 10
    assert out.warmup.max_ms == pytest.approx(13.874)
    inf = out.inference
    assert inf is not None
    assert (inf.count, inf.first_ms, inf.curr_ms) == (50, pytest.approx(9.087),
                                                      pytest.approx(8.912))
    assert (inf.min_ms, inf.max_ms) == (pytest.approx(8.804), pytest.approx(10.233))
    assert (inf.avg_ms, inf.std_ms) == (pytest.approx(9.03862), pytest.approx(0.254))
    assert inf.median_ms is None
    assert out.memory_init_mb == pytest.approx(58.3711)
    assert out.memory_overall_mb == pytest.approx(63.0156)
    assert out.memory_peak_mb == pytest.approx(66.4297)
    assert out.memory_mb == pytest.approx(66.4297)
    assert out.model_size_mb == pytest.approx(44.8721)
    assert out.delegate is not None and "completely executed" in out.delegate
    assert out.errors == ()


def test_parse_current_format_gpu_partial_delegation() -> None:
    out = parse_benchmark_output(sample("current_gpu_partial.txt"))
    assert out.ok and out.format == "current"
    assert out.init_ms == pytest.approx(1841.22)
    assert out.first_ms == pytest.approx(31.544)
    assert out.avg_ms == pytest.approx(7.25406)
    assert out.memory_peak_mb is None
    assert out.memory_mb == pytest.approx(185.102)  # the overall delta when not monitored
    assert out.delegate is not None and "partially executed" in out.delegate
    assert "w/ 4 delegate kernels" in out.delegate


def test_parse_legacy_format() -> None:
    out = parse_benchmark_output(sample("legacy_format.txt"))
    assert out.format == "legacy"
    assert out.ok
    assert out.init_ms == pytest.approx(24.118)
    assert out.warmup_avg_ms == pytest.approx(21.9647)
    assert out.inference_avg_ms == pytest.approx(21.4032)
    assert out.first_ms == pytest.approx(26.408)  # no "First inference": warm-up's first=
    assert out.inference is not None and out.inference.count == 50
    assert out.inference.std_ms == pytest.approx(0.402)
    assert out.memory_init_mb == pytest.approx(3.05469)
    assert out.memory_overall_mb == pytest.approx(21.5195)
    assert out.memory_peak_mb is None
    assert out.model_size_mb == pytest.approx(17.3405)


def test_parse_reads_keys_not_positions() -> None:
    text = (
        "count=7 std=100 avg=2000 max=2500 min=1500 curr=1900 first=2500\n"
        "Timings (microseconds): count=99 first=1 curr=1 min=1 max=1 avg=1 std=1\n"
        "std=50 avg=1000 count=40 min=900 first=1100 max=1300 curr=950\n"
        "Inference timings in us: Inference (avg): 1000, Warmup (avg): 2000, "
        "First inference: 2500, Init: 3000\n"
        "Memory footprint delta from the start of the tool (MB): overall=9.5 init=2.25\n"
    )
    out = parse_benchmark_output(text)
    assert out.warmup is not None and out.warmup.count == 7
    assert out.warmup.avg_ms == pytest.approx(2.0)
    inf = out.inference
    assert inf is not None
    assert (inf.count, inf.avg_ms, inf.std_ms, inf.min_ms, inf.max_ms, inf.first_ms) == (
        40, pytest.approx(1.0), pytest.approx(0.05), pytest.approx(0.9), pytest.approx(1.3),
        pytest.approx(1.1))
    assert out.init_ms == pytest.approx(3.0)
    assert out.first_ms == pytest.approx(2.5)
    assert out.warmup_avg_ms == pytest.approx(2.0)
    assert out.inference_avg_ms == pytest.approx(1.0)
    assert (out.memory_init_mb, out.memory_overall_mb) == (2.25, 9.5)


def test_parse_uses_a_median_when_a_build_prints_one() -> None:
    out = parse_benchmark_output("count=5 avg=1000\ncount=10 avg=2000 median=1800 std=3\n")
    assert out.inference is not None and out.inference.median_ms == pytest.approx(1.8)


@pytest.mark.parametrize("name, expected", [
    ("failed_xnnpack.txt", "ERROR: Failed to apply XNNPACK delegate."),
    ("failed_allocate.txt", "ERROR: Failed to allocate tensors!"),
    ("failed_op_version.txt",
     "ERROR: Didn't find op for builtin opcode 'GELU' version '2'."),
])
def test_parse_failed_runs(name: str, expected: str) -> None:
    text = sample(name)
    out = parse_benchmark_output(text)
    assert not out.ok
    assert out.inference is None and out.avg_ms is None and out.format is None
    assert out.errors
    why = failure_line(text)
    assert why.startswith(expected)
    assert "Benchmarking failed" not in why
    if name == "failed_op_version.txt":  # root cause and the last failure, one line
        assert why.endswith(" / Failed to initialize the interpreter")


def test_failure_line_without_error_lines() -> None:
    text = "STARTING!\nXNNPACK delegate created.\nFailed to apply XNNPACK delegate.\n" \
           "Benchmarking failed.\n"
    assert failure_line(text) == "Failed to apply XNNPACK delegate."
    assert failure_line("Segmentation fault\n") == "Segmentation fault"
    assert failure_line("") == "(no output)"


def test_parse_thermalservice() -> None:
    cool = parse_thermalservice(sample("dumpsys_thermalservice.txt"))
    assert cool == {"status": 0, "label": "NONE", "cpu_max_c": 38.625, "battery_c": 30.1,
                    "skin_c": 32.452}  # the HAL's current readings, not the cached ones
    hot = parse_thermalservice(sample("dumpsys_thermalservice_hot.txt"))
    assert hot is not None
    assert (hot["status"], hot["label"], hot["cpu_max_c"]) == (2, "MODERATE", 71.25)
    assert parse_thermalservice("Can't find service: thermalservice\n") is None
    assert parse_thermalservice("Thermal Status: 4\n") == {
        "status": 4, "label": "CRITICAL", "cpu_max_c": None, "battery_c": None, "skin_c": None}


def test_parse_getprop_and_devices() -> None:
    props = parse_getprop(sample("getprop_pixel7.txt"))
    assert props["ro.product.model"] == "Pixel 7"
    assert props["ro.soc.model"] == "GS201"
    assert props["ro.build.fingerprint"].startswith("google/panther/panther:14/")
    text = ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
            "List of devices attached\n28031FDH2000AB\tdevice\nemulator-5554\toffline\n"
            "R58M\tunauthorized\n\n")
    assert list_devices(text) == [("28031FDH2000AB", "device"), ("emulator-5554", "offline"),
                                  ("R58M", "unauthorized")]
    assert list_devices("List of devices attached\n\n") == []


# ----------------------------------------------------------------------------------------------
# options
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [
    ({"taskset": "xyz"}, "hex CPU mask"),
    ({"taskset": "0"}, "hex CPU mask"),
    ({"use_gpu": True, "use_nnapi": True}, "at most one"),
    ({"threads": ()}, "threads"),
    ({"threads": (0,)}, "threads"),
    ({"runs": 0}, "runs"),
    ({"warmup_runs": -1}, "warmup_runs"),
])
def test_options_are_validated(kw: dict, match: str) -> None:
    with pytest.raises(BenchmarkError, match=match):
        AndroidOptions(**kw)


def test_options_accelerator_and_threads() -> None:
    assert AndroidOptions().accelerator == "cpu"
    assert AndroidOptions(use_gpu=True).accelerator == "gpu"
    assert AndroidOptions(use_nnapi=True).accelerator == "nnapi"
    assert AndroidOptions(use_xnnpack=True).accelerator == "xnnpack"
    assert AndroidOptions(threads=[4, 1]).threads == (4, 1)  # type: ignore[arg-type]
    assert AndroidOptions(taskset="0xF0").taskset == "0xF0"


# ----------------------------------------------------------------------------------------------
# the whole flow
# ----------------------------------------------------------------------------------------------

def test_full_flow_xnnpack_taskset(phone: FakeAdb, binary: Path, model: Path) -> None:
    messages: list[str] = []
    options = AndroidOptions(benchmark_binary=binary, threads=(1, 4), use_xnnpack=True,
                             taskset="f0", runs=50, warmup_runs=10)
    report = run_android_bench([model], options, progress=messages.append)
    results = report.results
    assert not report.interrupted and report.failures == [] and report.aborted_by is None
    env = report.environment  # the machine driving the phone, never judged busy
    assert env["settings"] == {"runs": 50, "warmup": 10, "android": True}
    assert env["busy"] is False and "load_avg_after" in env

    assert [r.threads for r in results] == [1, 4]
    r = results[0]
    assert isinstance(r, BenchResult)
    assert (r.model, r.precision, r.runtime, r.platform, r.source) == (
        "lsnet_t", "fp32", "litert", "android", "benchmark_model")
    assert (r.device, r.accelerator, r.batch, r.input_shape) == (
        "Pixel 7", "xnnpack", 1, [1, 224, 224, 3])
    assert r.median_ms == pytest.approx(9.03862) and r.mean_ms == pytest.approx(9.03862)
    assert r.std_ms == pytest.approx(0.254) and r.min_ms == pytest.approx(8.804)
    assert r.first_ms == pytest.approx(13.874) and r.load_ms == pytest.approx(71.406)
    assert r.memory_mb == pytest.approx(66.4297)
    assert (r.runs, r.warmup, r.p90_ms, r.trimmed_mean_ms) == (50, 10, None, None)
    assert r.artifact == str(model)
    assert r.notes is not None and MEDIAN_NOTE in r.notes
    info = r.device_info
    assert (info["serial"], info["model"], info["manufacturer"]) == ("FAKE123", "Pixel 7",
                                                                     "Google")
    assert (info["soc"], info["soc_manufacturer"]) == ("GS201", "Google")
    assert (info["android_version"], info["sdk"], info["abi"]) == ("14", 34, "arm64-v8a")
    assert info["thermal"] == {"status": 0, "label": "NONE", "cpu_max_c": 38.625,
                               "battery_c": 30.1, "skin_c": 32.452}
    assert info["thermal_after"]["label"] == "NONE"
    assert info["big_cores_mask"] == "f0"
    kept = Path(info["benchmark_log"])
    assert kept.read_text() == sample("current_xnnpack.txt")  # the pulled report is kept
    assert results[1].device_info["benchmark_log"] != info["benchmark_log"]

    calls = phone.calls()
    assert calls[0] == ["devices"]
    assert all(c[:2] == ["-s", "FAKE123"] for c in calls[1:])
    pushes = [c[2:] for c in calls if c[2:3] == ["push"]]
    assert pushes[0] == ["push", str(binary), REMOTE_BIN]
    assert len(pushes) == 2  # binary and model, once each for two runs
    assert pushes[1][1] == str(model)
    remote_model = pushes[1][2]
    assert remote_model.startswith("/data/local/tmp/") and " " not in remote_model
    shell = phone.shell_commands()
    assert f"chmod 755 {REMOTE_BIN}" in shell
    runs = [c for c in shell if "benchmark_model --graph" in c]
    assert len(runs) == 2
    for cmd, threads in zip(runs, (1, 4), strict=True):
        assert cmd.startswith(f"taskset f0 {REMOTE_BIN} --graph={remote_model} ")
        for flag in (f"--num_threads={threads}", "--num_runs=50", "--min_secs=0",
                     "--warmup_runs=10", "--warmup_min_secs=0", "--use_xnnpack=true"):
            assert flag in cmd.split()
        assert "--use_gpu=true" not in cmd and "--use_nnapi=true" not in cmd
        assert "> /data/local/tmp/" in cmd and "2>&1" in cmd
    assert r.device_info["benchmark_command"] == runs[0]
    pulls = [c[2:] for c in calls if c[2:3] == ["pull"]]
    assert len(pulls) == 2 and pulls[0][2] == str(kept)
    assert shell[-1].startswith("rm -f ") and remote_model in shell[-1]
    assert phone.device_files() == [REMOTE_BIN]  # models and reports removed, binary kept
    assert any("Pixel 7" in m for m in messages)
    assert any("[2/2]" in m and "ms avg" in m for m in messages)


def test_flow_cpu_default_gpu_and_legacy(phone: FakeAdb, binary: Path, tmp_path: Path) -> None:
    fp16 = make_model(tmp_path / "m", "lsnet_t_fp16.tflite", precision="fp16",
                      input_shape=["batch", 224, 224, 3])
    old = make_model(tmp_path / "m", "lsnet_s_int8.tflite", variant=None)  # no sidecar
    phone.scenario(benchmarks=[{"match": "lsnet_s_int8", "output": "legacy_format.txt"},
                               {"match": "lsnet_t_fp16", "output": "current_gpu_partial.txt"}])
    cpu = run_android_bench([old], AndroidOptions(benchmark_binary=binary)).results
    assert len(cpu) == 1
    c = cpu[0]
    assert (c.model, c.precision, c.accelerator, c.batch, c.threads) == (
        "lsnet_s_int8", "int8", "cpu", 1, 1)  # label and precision from the file name
    assert c.median_ms == pytest.approx(21.4032) and c.first_ms == pytest.approx(26.408)
    assert c.memory_mb == pytest.approx(21.5195)
    cmd = next(s for s in phone.shell_commands() if "--graph" in s)
    assert cmd.startswith(REMOTE_BIN)  # no taskset
    assert not any(f.startswith("--use_") for f in cmd.split())

    gpu = run_android_bench([fp16],
                            AndroidOptions(benchmark_binary=binary, use_gpu=True)).results
    g = gpu[0]
    assert (g.model, g.precision, g.accelerator, g.batch) == ("lsnet_t", "fp16", "gpu", 1)
    assert g.input_shape == [1, 224, 224, 3]  # dynamic batch runs with 1
    assert g.load_ms == pytest.approx(1841.22) and g.memory_mb == pytest.approx(185.102)
    assert g.notes is not None and "partially executed by the delegate" in g.notes
    assert "footprint delta" in g.notes
    assert "--use_gpu=true" in [s for s in phone.shell_commands() if "--graph" in s][-1]


def test_batch_from_sidecar(phone: FakeAdb, binary: Path, tmp_path: Path) -> None:
    b2 = make_model(tmp_path, "lsnet_t_b2.tflite", input_shape=[2, 224, 224, 3])
    (r,) = run_android_bench([b2], AndroidOptions(benchmark_binary=binary)).results
    assert r.batch == 2 and r.input_shape == [2, 224, 224, 3]


def test_serial_selects_one_of_several(phone: FakeAdb, binary: Path, model: Path) -> None:
    phone.scenario(devices=[["AAA", "device"], ["BBB", "device"]])
    results = run_android_bench([model], AndroidOptions(benchmark_binary=binary,
                                                         serial="BBB")).results
    assert results[0].device_info["serial"] == "BBB"
    assert all(c[:2] == ["-s", "BBB"] for c in phone.calls()[1:])
    assert phone.device_files("BBB") == [REMOTE_BIN]
    assert phone.device_files("AAA") == []


def test_thermal_after_run_and_old_android(phone: FakeAdb, binary: Path, model: Path) -> None:
    phone.scenario(thermal=["dumpsys_thermalservice.txt", "dumpsys_thermalservice.txt",
                            "dumpsys_thermalservice_hot.txt"])
    (r,) = run_android_bench([model], AndroidOptions(benchmark_binary=binary)).results
    assert r.device_info["thermal"]["status"] == 0
    assert r.device_info["thermal_after"]["label"] == "MODERATE"
    assert r.notes is not None and "thermal status MODERATE" in r.notes

    phone.scenario(getprop="getprop_android9.txt", thermal=[], cpufreq=None)
    info = device_info(AndroidOptions())
    assert info["thermal"] is None
    assert (info["model"], info["soc"], info["sdk"]) == ("ONEPLUS A6003", "sdm845", 28)
    assert info["soc_manufacturer"] is None and info["cpu_max_freq_mhz"] is None


def test_device_info(phone: FakeAdb) -> None:
    info = device_info(AndroidOptions())
    assert info["serial"] == "FAKE123"
    assert info["cpu_max_freq_mhz"] == {"cpu0": 1803, "cpu1": 1803, "cpu2": 1803, "cpu3": 1803,
                                        "cpu4": 2348, "cpu5": 2348, "cpu6": 2850, "cpu7": 2850}
    assert info["big_cores_mask"] == "f0"
    assert info["abilist"] == "arm64-v8a,armeabi-v7a,armeabi"


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------

def test_adb_missing(binary: Path, model: Path, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(DeviceError, match="adb not found on PATH.*platform-tools"):
        run_android_bench([model], AndroidOptions(benchmark_binary=binary))
    with pytest.raises(DeviceError, match="adb not found at"):
        device_info(AndroidOptions(adb=str(tmp_path / "nowhere" / "adb")))


@pytest.mark.parametrize("devices, serial, match", [
    ([], None, "no Android device attached"),
    ([["R58M", "unauthorized"]], None, "R58M is unauthorized.*USB debugging"),
    ([["emulator-5554", "offline"]], None, "emulator-5554 is offline"),
    ([["AAA", "device"], ["BBB", "unauthorized"]], None,
     r"2 devices attached \(AAA \[device\], BBB \[unauthorized\]\): pass --serial"),
    ([["AAA", "device"]], "ZZZ", r"device ZZZ is not attached \(adb devices: AAA \[device\]\)"),
    ([["AAA", "device"], ["BBB", "unauthorized"]], "BBB", "BBB is unauthorized"),
])
def test_device_errors(phone: FakeAdb, binary: Path, model: Path, devices: list,
                       serial: str | None, match: str) -> None:
    phone.scenario(devices=devices)
    with pytest.raises(DeviceError, match=match):
        run_android_bench([model], AndroidOptions(benchmark_binary=binary, serial=serial))
    assert not any("push" in c for c in phone.calls())


def test_adb_error_messages_are_mapped(phone: FakeAdb, binary: Path, model: Path) -> None:
    # adb itself says "unauthorized" on a command even if 'adb devices' was fine a moment ago
    phone.scenario(devices=[["R58M", "unauthorized"]])
    from lsnet_deploy.bench.android.adb import Adb

    adb = Adb(AndroidOptions())
    with pytest.raises(DeviceError, match="unauthorized: unlock the phone"):
        adb.shell("getprop")
    phone.scenario(devices=[])
    with pytest.raises(DeviceError, match="no Android device attached"):
        adb.shell("getprop")


@pytest.mark.parametrize("output, code, expected", [
    ("failed_xnnpack.txt", 1,
     r"\(exit 1, xnnpack, 4 thread\(s\)\): ERROR: Failed to apply XNNPACK delegate\."),
    ("failed_allocate.txt", 1, "ERROR: Failed to allocate tensors!"),
    ("failed_op_version.txt", 0, "Didn't find op for builtin opcode 'GELU'"),  # parse catches it
])
def test_model_fails_on_device(phone: FakeAdb, binary: Path, model: Path, output: str,
                               code: int, expected: str) -> None:
    phone.scenario(benchmarks=[{"match": "--graph", "output": output, "exit": code}])
    options = AndroidOptions(benchmark_binary=binary, threads=(4,), use_xnnpack=True)
    with pytest.raises(DeviceError, match=expected) as info:
        run_android_bench([model], options)
    message = str(info.value)
    assert "benchmark_model failed on FAKE123 for lsnet_t fp32.tflite" in message
    assert "\n" not in message
    kept = Path(message.rsplit("[full log: ", 1)[1].rstrip("]"))
    assert kept.read_text() == sample(output)
    assert phone.shell_commands()[-1].startswith("rm -f ")  # cleanup ran anyway
    assert phone.device_files() == [REMOTE_BIN]  # nothing measured: raised, not reported


def test_results_before_a_failure_are_kept_in_the_report(phone: FakeAdb, binary: Path,
                                                         tmp_path: Path) -> None:
    good = make_model(tmp_path, "lsnet_t_fp32.tflite")
    bad = make_model(tmp_path, "lsnet_t_w8a8.tflite", precision="w8a8")
    phone.scenario(benchmarks=[{"match": "w8a8", "output": "failed_xnnpack.txt", "exit": 1}])
    report = run_android_bench([good, bad],
                               AndroidOptions(benchmark_binary=binary, threads=(1, 2)))
    assert [(r.precision, r.threads) for r in report.results] == [("fp32", 1), ("fp32", 2)]
    error = report.aborted_by
    assert isinstance(error, DeviceError) and "lsnet_t_w8a8.tflite" in str(error)
    assert report.failures == [{"model": "lsnet_t", "runtime": "litert", "precision": "w8a8",
                                "threads": 1, "artifact": str(bad), "error": str(error)}]
    assert not report.interrupted
    assert "aborted_by" not in report.to_dict()  # the error is the run's, not the file's
    assert phone.device_files() == [REMOTE_BIN]


def _interrupt_run(monkeypatch: pytest.MonkeyPatch, at: int) -> None:
    """Ctrl-C at the start of run number ``at`` (1-based)."""
    from lsnet_deploy.bench.android import run

    real = run._run_one

    def run_one(phone, model, threads, index):  # type: ignore[no-untyped-def]
        if index == at:
            raise KeyboardInterrupt
        return real(phone, model, threads, index)

    monkeypatch.setattr(run, "_run_one", run_one)


def test_ctrl_c_returns_the_results_so_far(phone: FakeAdb, binary: Path, model: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _interrupt_run(monkeypatch, at=2)
    report = run_android_bench([model], AndroidOptions(benchmark_binary=binary, threads=(1, 2)))
    assert report.interrupted and report.aborted_by is None and report.failures == []
    assert [r.threads for r in report.results] == [1]
    assert phone.device_files() == [REMOTE_BIN]
    _interrupt_run(monkeypatch, at=1)  # nothing measured yet: Ctrl-C goes through
    with pytest.raises(KeyboardInterrupt):
        run_android_bench([model], AndroidOptions(benchmark_binary=binary))
    assert phone.device_files() == [REMOTE_BIN]


def test_hung_run_times_out(phone: FakeAdb, binary: Path, model: Path) -> None:
    phone.scenario(benchmarks=[{"match": "--graph", "output": "current_xnnpack.txt",
                                "sleep": 30}])
    with pytest.raises(DeviceError, match=r"adb shell .* timed out after 1.5 s"):
        run_android_bench([model], AndroidOptions(benchmark_binary=binary, timeout_s=1.5))
    assert phone.shell_commands()[-1].startswith("rm -f ")


def test_binary_that_cannot_execute_on_device(phone: FakeAdb, binary: Path,
                                             model: Path) -> None:
    phone.scenario(noexec=True)  # chmod has no effect, as on a noexec mount
    with pytest.raises(DeviceError, match=r"\(exit 126, cpu, 1 thread\(s\)\): .*can't execute: "
                                          "Permission denied"):
        run_android_bench([model], AndroidOptions(benchmark_binary=binary))


def test_binary_missing(phone: FakeAdb, model: Path, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BenchmarkError, match="--benchmark-binary") as info:
        run_android_bench([model], AndroidOptions())
    assert BENCHMARK_MODEL_URL in str(info.value) and BENCHMARK_MODEL_ENV in str(info.value)
    assert not isinstance(info.value, DeviceError)
    with pytest.raises(BenchmarkError, match="benchmark_model not found at .*--benchmark-binary"):
        run_android_bench([model], AndroidOptions(benchmark_binary=tmp_path / "nope"))
    monkeypatch.setenv(BENCHMARK_MODEL_ENV, str(tmp_path / "gone"))
    with pytest.raises(BenchmarkError, match=rf"\${BENCHMARK_MODEL_ENV}"):
        run_android_bench([model], AndroidOptions())
    assert phone.calls() == []  # local problems fail before any adb call


def test_binary_from_environment(phone: FakeAdb, binary: Path, model: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BENCHMARK_MODEL_ENV, str(binary))
    (r,) = run_android_bench([model], AndroidOptions()).results
    assert r.median_ms == pytest.approx(9.03862)
    assert ["push", str(binary), REMOTE_BIN] in [c[2:] for c in phone.calls()]


def test_binary_for_the_wrong_abi(phone: FakeAdb, model: Path, tmp_path: Path) -> None:
    x86 = tmp_path / "linux_x86-64_benchmark_model"
    x86.write_bytes(elf(62))
    with pytest.raises(BenchmarkError, match="built for x86-64 but the device's ABIs are "
                                             "arm64-v8a"):
        run_android_bench([model], AndroidOptions(benchmark_binary=x86))
    script = tmp_path / "benchmark_model.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    before = len(phone.calls())
    with pytest.raises(BenchmarkError, match="not an ELF executable"):
        run_android_bench([model], AndroidOptions(benchmark_binary=script))
    assert len(phone.calls()) == before  # found out locally
    arm32 = tmp_path / "android_arm_benchmark_model"
    arm32.write_bytes(elf(40))  # 32-bit arm runs on an arm64 phone with armeabi-v7a
    (r,) = run_android_bench([model], AndroidOptions(benchmark_binary=arm32)).results
    assert r.runs == 50
    assert not any(c[2:3] == ["push"] and c[3] in (str(x86), str(script)) for c in phone.calls())


def test_model_problems(phone: FakeAdb, binary: Path, tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="no such model file"):
        run_android_bench([tmp_path / "missing.tflite"], AndroidOptions(benchmark_binary=binary))
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(BenchmarkError, match=r"TFLite models \(.tflite\) only"):
        run_android_bench([onnx], AndroidOptions(benchmark_binary=binary))
    with pytest.raises(BenchmarkError, match="no model given"):
        run_android_bench([], AndroidOptions(benchmark_binary=binary))
    assert phone.calls() == []


# ----------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------

def test_cli_bench_android_writes_a_report(phone: FakeAdb, binary: Path, model: Path,
                                           tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from test_cli import run_main

    from lsnet_deploy.bench.schema import load_report

    out_dir = tmp_path / "android report"
    code, out, err = run_main(["bench", "android", "--tflite", str(model), "--benchmark-binary",
                               str(binary), "--threads", "1,4", "--use-xnnpack", "--taskset",
                               "f0", "--runs", "50", "-o", str(out_dir), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert [(r["device"], r["threads"], r["accelerator"]) for r in data["results"]] == [
        ("Pixel 7", 1, "xnnpack"), ("Pixel 7", 4, "xnnpack")]
    report = load_report(out_dir / "results.json")
    assert report.results[0].median_ms == pytest.approx(9.03862)
    assert "| Pixel 7 |" in (out_dir / "results.md").read_text()
    assert (out_dir / "latency.png").is_file()
    # the paper-claims report puts the phone number in the "fastest phone" column
    page = tmp_path / "claims.md"
    code, _, _ = run_main(["report", str(out_dir), "--output", str(page)], capsys)
    assert code == 0
    assert "9.04 ms (litert, fp32, xnnpack, 1 thread on Pixel 7)" in page.read_text()


def test_cli_bench_android_errors_keep_partial_results(
        phone: FakeAdb, binary: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from test_cli import run_main

    from lsnet_deploy.bench.schema import load_report

    good = make_model(tmp_path, "lsnet_t_fp32.tflite")
    bad = make_model(tmp_path, "lsnet_t_int8.tflite", precision="int8")
    phone.scenario(benchmarks=[{"match": "int8", "output": "failed_xnnpack.txt", "exit": 1}])
    out_dir = tmp_path / "partial"
    code, _, err = run_main(["bench", "android", "--tflite", str(good), "--tflite", str(bad),
                             "--benchmark-binary", str(binary), "-o", str(out_dir)], capsys)
    assert code == 11 and "benchmark_model failed" in err and "Traceback" not in err
    assert "kept 1 result(s)" in err
    report = load_report(out_dir / "results.json")
    assert [r.precision for r in report.results] == ["fp32"]
    assert "benchmark_model failed" in report.failures[0]["error"]
    phone.scenario(devices=[])
    code, _, err = run_main(["bench", "android", "--tflite", str(good), "--benchmark-binary",
                             str(binary), "-o", str(tmp_path / "none")], capsys)
    assert code == 11 and "no" in err.lower() and not (tmp_path / "none").exists()


def test_cli_bench_android_ctrl_c_keeps_partial_results(
        phone: FakeAdb, binary: Path, model: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from test_cli import run_main

    from lsnet_deploy.bench.schema import load_report

    _interrupt_run(monkeypatch, at=2)
    out_dir = tmp_path / "interrupted"
    code, _, err = run_main(["bench", "android", "--tflite", str(model), "--benchmark-binary",
                             str(binary), "--threads", "1,2", "-o", str(out_dir)], capsys)
    assert code == 130 and "Traceback" not in err
    assert "kept 1 result(s) measured before the interruption" in err
    report = load_report(out_dir / "results.json")
    assert report.interrupted and [r.threads for r in report.results] == [1]
