"""The iPhone harness generator (Swift sources baked from templates) and the result importer."""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import fields
from pathlib import Path

import pytest

from lsnet_deploy.bench import ios
from lsnet_deploy.bench.ios import (
    COMPUTE_UNITS,
    HARNESS_FILES,
    SWIFT_COMPUTE_UNITS,
    harness,
    import_results,
    manual_result,
    normalize_compute_unit,
    parse_results,
    write_ios_harness,
)
from lsnet_deploy.bench.schema import BenchReport, BenchResult
from lsnet_deploy.errors import BenchmarkError, OutputError, UnsupportedOptionError
from lsnet_deploy.metadata import sidecar_path
from lsnet_deploy.sidecar import artifact_sha256

DATA = Path(__file__).parent / "data" / "ios"
SAMPLE_LOG = DATA / "xcodebuild_test.log"
FIELDS = {f.name for f in fields(BenchResult)}
# Apple's MLComputeUnits cases, written out here so a wrong template or table fails.
EXPECTED_SWIFT = {"CPU_ONLY": "cpuOnly", "CPU_AND_GPU": "cpuAndGPU",
                  "CPU_AND_NE": "cpuAndNeuralEngine", "ALL": "all"}


def make_mlpackage(folder: Path, name: str = "lsnet_t_fp16.mlpackage",
                   sidecar: dict | None = None) -> Path:
    """A stand-in ``.mlpackage`` folder with an lsnet-deploy sidecar next to it (``sidecar``:
    its ``metadata``; the package's digest is added, so the sidecar is trusted)."""
    pkg = folder / name
    (pkg / "Data").mkdir(parents=True)
    (pkg / "Manifest.json").write_text("{}")
    if sidecar is not None:
        record = {"precision": sidecar.get("precision"), "sha256": artifact_sha256(pkg),
                  "metadata": {"img_size": [224, 224], **sidecar}}
        sidecar_path(pkg).write_text(json.dumps(record))
    return pkg


@pytest.fixture
def mlpackage(tmp_path: Path) -> Path:
    return make_mlpackage(tmp_path / "my models",
                          sidecar={"variant": "lsnet_t", "precision": "fp16"})


def swift_let(source: str, name: str) -> str:
    match = re.search(rf"^\s*static let {name}(?:: [^=]+)? = (.+)$", source, re.MULTILINE)
    assert match, f"no 'static let {name}' in the Swift source"
    return match.group(1).strip()


def core_source(out: Path) -> str:
    return (out / "XCTest" / "LSNetBench.swift").read_text()


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# -- generator ---------------------------------------------------------------------------------


def test_generator_bakes_in_the_choices(mlpackage: Path, tmp_path: Path) -> None:
    out = tmp_path / "out dir" / "harness"  # spaces in both the model and the output path
    written = write_ios_harness(mlpackage, out, compute_units=("CPU_AND_NE", "ALL"),
                                runs=37, warmup=3)
    assert written == [out / rel for rel in HARNESS_FILES]
    assert sorted(snapshot(out)) == sorted(HARNESS_FILES)
    core = core_source(out)
    # model / precision come from the sidecar next to the package
    assert swift_let(core, "model") == '"lsnet_t"'
    assert swift_let(core, "precision") == '"fp16"'
    assert swift_let(core, "modelFileName") == '"lsnet_t_fp16.mlpackage"'
    assert swift_let(core, "modelPath") == json.dumps(str(mlpackage.resolve()))
    assert swift_let(core, "runs") == "37"
    assert swift_let(core, "warmup") == "3"
    assert swift_let(core, "computeUnits") == "[.cpuAndNeuralEngine, .all]"
    # one benchmark core, copied into the XCTest folder and the Swift package
    assert (out / "Sources" / "lsnet-bench" / "LSNetBench.swift").read_text() == core
    for rel in HARNESS_FILES:
        text = (out / rel).read_text()
        assert "{{" not in text and "}}" not in text, rel
    assert (out / "Package.swift").read_text().startswith("// swift-tools-version:5.7\n")
    readme = (out / "README.md").read_text()
    assert shlex.quote(str(mlpackage.resolve())) in readme
    assert shlex.quote(str(out.resolve())) in readme
    assert "--runs 37 --warmup 3 --compute-units cpuAndNeuralEngine,all" in readme
    assert "lsnet-deploy bench import log.txt" in readme
    assert "--model lsnet_t --precision fp16 --compute-units ALL" in readme
    tests = (out / "XCTest" / "LSNetBenchTests.swift").read_text()
    assert "class LSNetBenchTests: XCTestCase" in tests
    assert "3 warm-up + 37 timed predictions on\n    /// CPU_AND_NE, ALL." in tests


def test_explicit_labels_need_no_sidecar_and_are_escaped(tmp_path: Path) -> None:
    pkg = make_mlpackage(tmp_path, "net.mlpackage")  # no sidecar
    out = tmp_path / "h"
    write_ios_harness(pkg, out, model='my "net" \\ v2', precision="int8",
                      compute_units=("cpuOnly",), runs=1, warmup=0)
    core = core_source(out)
    assert swift_let(core, "model") == r'"my \"net\" \\ v2"'
    assert swift_let(core, "precision") == '"int8"'
    assert swift_let(core, "computeUnits") == "[.cpuOnly]"
    assert swift_let(core, "warmup") == "0"


def test_labels_default_from_the_file_name_without_sidecar(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    from lsnet_deploy.bench import artifacts

    # the stand-in package is no real Core ML model: skip coremltools' slow import
    from types import SimpleNamespace

    monkeypatch.setattr(artifacts, "get_exporter",
                        lambda fmt: SimpleNamespace(read_metadata=lambda path: {}))
    pkg = make_mlpackage(tmp_path, "custom_w8a8.mlpackage")
    write_ios_harness(pkg, tmp_path / "h")
    core = core_source(tmp_path / "h")
    assert swift_let(core, "model") == '"custom_w8a8"'
    assert swift_let(core, "precision") == '"w8a8"'
    assert swift_let(core, "runs") == "100"
    assert swift_let(core, "warmup") == "10"
    assert swift_let(core, "computeUnits") == "[.cpuOnly, .cpuAndGPU, .cpuAndNeuralEngine, .all]"


def test_refuses_to_overwrite_without_force(mlpackage: Path, tmp_path: Path) -> None:
    out = tmp_path / "h"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    write_ios_harness(mlpackage, out, runs=5)
    before = snapshot(out)
    with pytest.raises(OutputError, match="--force"):
        write_ios_harness(mlpackage, out, runs=9)
    assert snapshot(out) == before
    write_ios_harness(mlpackage, out, runs=9, force=True)
    assert swift_let(core_source(out), "runs") == "9"
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == sorted(["h", "my models"])


def test_one_existing_file_is_enough_to_refuse(mlpackage: Path, tmp_path: Path) -> None:
    out = tmp_path / "h"
    (out / "Sources" / "lsnet-bench").mkdir(parents=True)
    (out / "Sources" / "lsnet-bench" / "main.swift").write_text("// my own tool\n")
    with pytest.raises(OutputError, match="main.swift"):
        write_ios_harness(mlpackage, out)
    assert snapshot(out) == {"Sources/lsnet-bench/main.swift": "// my own tool\n"}


def test_an_error_while_writing_leaves_nothing(mlpackage: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = harness._write_file
    calls = []

    def failing(path: Path, text: str) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(path, text)

    monkeypatch.setattr(harness, "_write_file", failing)
    out = tmp_path / "new" / "deeper" / "h"
    with pytest.raises(OutputError, match="nothing was changed"):
        write_ios_harness(mlpackage, out)
    assert len(calls) == 3
    assert not (tmp_path / "new").exists()  # the parents it created are gone too
    assert sorted(os.listdir(tmp_path)) == ["my models"]


def test_an_error_while_replacing_restores_the_old_files(mlpackage: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    out = tmp_path / "h"
    write_ios_harness(mlpackage, out, runs=5)
    before = snapshot(out)
    real = os.replace
    calls = []

    def failing(src: Path, dst: Path) -> None:
        calls.append(dst)
        if len(calls) == 6:  # 2 per file (backup, move in): fails on the third file
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OutputError, match="nothing was changed"):
        write_ios_harness(mlpackage, out, runs=9, force=True)
    monkeypatch.undo()
    assert len(calls) > 6  # the rollback moved files back
    assert snapshot(out) == before
    assert sorted(os.listdir(tmp_path)) == ["h", "my models"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"runs": 0}, UnsupportedOptionError, "runs"),
        ({"runs": 2.5}, UnsupportedOptionError, "runs"),
        ({"warmup": -1}, UnsupportedOptionError, "warmup"),
        ({"compute_units": ()}, UnsupportedOptionError, "no compute unit"),
        ({"compute_units": ("ALL", "all")}, UnsupportedOptionError, "twice"),
        ({"compute_units": ("GPU",)}, UnsupportedOptionError, "unknown compute unit 'GPU'"),
        ({"precision": "fp8"}, UnsupportedOptionError, "precision 'fp8'"),
        ({"model": " "}, UnsupportedOptionError, "model"),
        ({"model": "a\nb"}, UnsupportedOptionError, "control character"),
    ],
)
def test_generator_rejects_bad_options(mlpackage: Path, tmp_path: Path, kwargs: dict,
                                       error: type[Exception], match: str) -> None:
    out = tmp_path / "h"
    with pytest.raises(error, match=match):
        write_ios_harness(mlpackage, out, **kwargs)
    assert not out.exists()


def test_generator_rejects_bad_model_files(tmp_path: Path) -> None:
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"")
    with pytest.raises(UnsupportedOptionError, match=r"\.mlpackage"):
        write_ios_harness(onnx, tmp_path / "h", model="m", precision="fp32")
    with pytest.raises(BenchmarkError, match="no such file"):
        write_ios_harness(tmp_path / "missing.mlpackage", tmp_path / "h", model="m",
                          precision="fp32")
    with pytest.raises(OutputError, match="not a folder"):
        write_ios_harness(make_mlpackage(tmp_path), onnx, model="m", precision="fp32")
    assert not (tmp_path / "h").exists()


# -- the Swift source against the schema ------------------------------------------------------


def rendered_core(tmp_path: Path) -> str:
    pkg = make_mlpackage(tmp_path, "m.mlpackage")
    write_ios_harness(pkg, tmp_path / "h", model="m", precision="fp16")
    return core_source(tmp_path / "h")


def test_swift_result_keys_are_the_schema_fields(tmp_path: Path) -> None:
    core = rendered_core(tmp_path)
    block = re.search(r"// BEGIN RESULT KEYS.*?\n(.*?)// END RESULT KEYS", core, re.DOTALL)
    assert block, "result dictionary markers missing from LSNetBench.swift"
    keys = re.findall(r'^\s*"(\w+)":', block.group(1), re.MULTILINE)
    assert len(keys) == len(set(keys))
    assert set(keys) == FIELDS
    # fixed values the schema gives an iPhone result
    for key, value in {"runtime": '"coreml"', "threads": "NSNull()", "batch": "1",
                       "source": '"ios-harness"', "accelerator": "unit.rawValue"}.items():
        assert re.search(rf'"{key}": {re.escape(value)},', block.group(1)), key


def test_swift_compute_unit_names_map_to_mlcomputeunits(tmp_path: Path) -> None:
    core = rendered_core(tmp_path)
    enum = re.search(r"enum LSNetComputeUnit: String, CaseIterable \{(.*?)\n\}", core, re.DOTALL)
    assert enum
    raw = dict(re.findall(r'case (\w+) = "(\w+)"', enum.group(1)))  # swift case -> our name
    to_ml = dict(re.findall(r"case \.(\w+): return \.(\w+)", enum.group(1)))
    assert {ours: to_ml[case] for case, ours in raw.items()} == EXPECTED_SWIFT
    assert SWIFT_COMPUTE_UNITS == EXPECTED_SWIFT
    assert set(EXPECTED_SWIFT) == set(COMPUTE_UNITS)


def test_compute_unit_names_agree_with_the_mac_runner() -> None:
    from lsnet_deploy.bench import runtimes

    assert COMPUTE_UNITS == runtimes.COMPUTE_UNITS


def test_swift_device_info_and_clock(tmp_path: Path) -> None:
    core = rendered_core(tmp_path)
    for state in ("nominal", "fair", "serious", "critical"):
        assert f'case .{state}: return "{state}"' in core
    assert "ProcessInfo.processInfo.thermalState" in core
    assert "DispatchTime.now().uptimeNanoseconds" in core  # monotonic
    assert "MLModel.compileModel(at: modelURL)" in core
    assert "kCVPixelFormatType_32BGRA" in core and "MLMultiArray(shape:" in core
    assert ".sortedKeys" in core
    # the marker the importer looks for is the one the harness prints
    assert swift_let(core, "marker") == f'"{ios.RESULT_MARKER}"'


@pytest.mark.parametrize(
    ("name", "unit"),
    [("ALL", "ALL"), ("all", "ALL"), ("cpu_and_ne", "CPU_AND_NE"),
     ("cpuAndNeuralEngine", "CPU_AND_NE"), (" CPU-ONLY ", "CPU_ONLY"), ("cpuAndGPU", "CPU_AND_GPU")],
)
def test_normalize_compute_unit(name: str, unit: str) -> None:
    assert normalize_compute_unit(name) == unit


# -- importer ----------------------------------------------------------------------------------


def test_import_xcode_console_log() -> None:
    results = import_results([SAMPLE_LOG])
    assert [r.accelerator for r in results] == ["ALL", "CPU_AND_NE"]
    assert [r.median_ms for r in results] == [1.1874, 1.0217]
    first = results[0]
    assert (first.model, first.runtime, first.precision, first.platform, first.device,
            first.source) == ("lsnet_t", "coreml", "fp16", "ios", "iPhone16,1", "ios-harness")
    assert first.threads is None and first.batch == 1 and first.runs == 100
    assert first.input_shape == [1, 3, 224, 224]
    assert results[1].device_info["thermal_state"] == "fair"


def test_sample_log_lines_carry_every_schema_field() -> None:
    lines = [line for line in SAMPLE_LOG.read_text().splitlines()
             if line.startswith("LSNET_BENCH_RESULT ")]
    assert len(lines) == 2
    for line in lines:
        assert set(json.loads(line.split(" ", 1)[1])) == FIELDS


def result(**kw: object) -> BenchResult:
    """An iPhone harness result; ``kw`` overrides fields."""
    base: dict[str, object] = {
        "model": "lsnet_t", "runtime": "coreml", "precision": "fp16", "threads": None,
        "batch": 1, "median_ms": 1.5, "platform": "ios", "device": "iPhone15,2",
        "accelerator": "ALL", "source": "ios-harness",
    }
    return BenchResult(**{**base, **kw})  # type: ignore[arg-type]


def test_import_report_json(tmp_path: Path) -> None:
    report = BenchReport([result(), result(accelerator="CPU_ONLY", median_ms=4.0)],
                         {"host": "mac"})
    path = tmp_path / "results.json"
    path.write_text(json.dumps(report.to_dict(), indent=2))
    assert import_results([path]) == report.results


def test_import_single_object_and_json_lines(tmp_path: Path) -> None:
    single = tmp_path / "one.json"
    single.write_text(json.dumps(result().to_dict(), indent=2))
    lines = tmp_path / "many.jsonl"
    lines.write_text(json.dumps(result(median_ms=2.0).to_dict()) + "\n\n"
                     + json.dumps(result(median_ms=3.0).to_dict()) + "\n")
    got = import_results([single, lines])
    assert [r.median_ms for r in got] == [1.5, 2.0, 3.0]
    assert got[0] == result()


def test_malformed_result_line_names_file_and_line(tmp_path: Path) -> None:
    lines = SAMPLE_LOG.read_text().splitlines()
    index = max(i for i, line in enumerate(lines) if line.startswith("LSNET_BENCH_RESULT"))
    lines[index] = lines[index][:200]  # cut off mid-object, as a bad copy would
    path = tmp_path / "log with space.txt"
    path.write_text("\n".join(lines))
    with pytest.raises(BenchmarkError, match=re.escape(f"{path}:{index + 1}: malformed")):
        import_results([path])


def test_result_line_with_a_missing_key_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text('noise\nLSNET_BENCH_RESULT {"model": "lsnet_t", "runtime": "coreml"}\n')
    with pytest.raises(BenchmarkError, match=re.escape(f"{path}:2: missing key(s)")):
        import_results([path])


def test_unknown_runtime_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    bad = dict(result().to_dict(), runtime="tensorrt")
    path.write_text("x\ny\nLSNET_BENCH_RESULT " + json.dumps(bad) + "\n")
    with pytest.raises(BenchmarkError, match=re.escape(f"{path}:3: unknown runtime")):
        import_results([path])


@pytest.mark.parametrize("content", ["", "  \n\n\t\n"])
def test_empty_file_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.txt"
    path.write_text(content)
    with pytest.raises(BenchmarkError, match=re.escape(f"{path}: empty file")):
        import_results([path])


def test_log_without_results_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text("\n".join(line for line in SAMPLE_LOG.read_text().splitlines()
                              if "LSNET_BENCH_RESULT" not in line))
    with pytest.raises(BenchmarkError, match=re.escape(f"{path}:1: no LSNET_BENCH_RESULT")):
        import_results([path])


def test_marker_not_followed_by_an_object_is_noise() -> None:
    text = ('LSNetBench.swift:109: static let marker = "LSNET_BENCH_RESULT"\n'
            "[app] LSNET_BENCH_RESULT " + json.dumps(result().to_dict()) + " trailing\r\n")
    assert parse_results(text, "log") == [result()]


def test_the_same_line_twice_is_kept_once() -> None:
    line = "LSNET_BENCH_RESULT " + json.dumps(result().to_dict())
    other = "LSNET_BENCH_RESULT " + json.dumps(result(median_ms=2.0).to_dict())
    text = f"{line}\n{other}\n{line}"
    assert parse_results(text, "log") == [result(), result(median_ms=2.0)]


def test_import_file_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="no such file"):
        import_results([tmp_path / "nope.txt"])
    with pytest.raises(BenchmarkError, match="no result file"):
        import_results([])
    with pytest.raises(BenchmarkError, match="is a folder"):
        import_results([tmp_path])
    (tmp_path / "bin.dat").write_bytes(b"\xff\xfe\x00LSNET")
    with pytest.raises(BenchmarkError, match="not a UTF-8 text file"):
        import_results([tmp_path / "bin.dat"])


# -- manual results ----------------------------------------------------------------------------


def test_manual_result() -> None:
    r = manual_result(model="lsnet_t", device="iPhone 15 Pro", median_ms=1.23, precision="fp16",
                      accelerator="cpuAndNeuralEngine", notes="Xcode performance report")
    assert (r.model, r.device, r.median_ms, r.precision, r.runtime, r.accelerator, r.platform,
            r.source, r.threads, r.batch) == ("lsnet_t", "iPhone 15 Pro", 1.23, "fp16", "coreml",
                                              "CPU_AND_NE", "ios", "manual", None, 1)
    assert r.p90_ms is None and r.runs is None
    assert BenchResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    android = manual_result(model="lsnet_t", device="Pixel 8", median_ms=3, runtime="litert",
                            accelerator="gpu", platform="android")
    assert android.accelerator == "gpu" and android.median_ms == 3.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"median_ms": 0}, "--median-ms"),
        ({"median_ms": -1.0}, "--median-ms"),
        ({"median_ms": float("nan")}, "--median-ms"),
        ({"median_ms": float("inf")}, "--median-ms"),
        ({"median_ms": True}, "--median-ms"),
        ({"median_ms": "1.2"}, "--median-ms"),
        ({"accelerator": None}, "--compute-units"),
        ({"accelerator": "GPU"}, "unknown compute unit"),
        ({"precision": "fp8"}, "--precision"),
        ({"runtime": "tensorrt"}, "--runtime"),
        ({"platform": "watchos"}, "--platform"),
        ({"model": ""}, "--model"),
        ({"device": "  "}, "--device"),
    ],
)
def test_manual_result_validation(kwargs: dict, match: str) -> None:
    base = {"model": "lsnet_t", "device": "iPhone 15 Pro", "median_ms": 1.2, "accelerator": "ALL"}
    with pytest.raises(UnsupportedOptionError, match=match):
        manual_result(**{**base, **kwargs})


# -- the commands ------------------------------------------------------------------------------


def test_cli_ios_harness_then_import(mlpackage: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from test_cli import run_main

    from lsnet_deploy.bench import output
    from lsnet_deploy.bench.schema import load_report

    monkeypatch.setattr(output, "default_export_dir", lambda: tmp_path / "export")

    harness = tmp_path / "iphone harness"
    code, out, err = run_main(["bench", "ios-harness", str(mlpackage), "-o", str(harness),
                               "--compute-units", "CPU_AND_NE,ALL", "--runs", "30"], capsys)
    assert code == 0, err
    assert (harness / "XCTest" / "LSNetBenchTests.swift").is_file() and "bench import" in out
    core = core_source(harness)
    assert swift_let(core, "runs") == "30" and ".cpuAndNeuralEngine" in core
    code, _, err = run_main(["bench", "ios-harness", str(mlpackage), "-o", str(harness)], capsys)
    assert code == 7 and "force" in err  # existing files are not overwritten

    report_dir = tmp_path / "phone report"
    code, out, err = run_main(["bench", "import", str(SAMPLE_LOG), "--into", str(report_dir)],
                              capsys)
    assert code == 10 and "not a report folder" in err
    code, out, err = run_main(["bench", "import", str(SAMPLE_LOG), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    folder = Path(data["report_dir"])
    assert folder.parent == tmp_path / "export" / "bench"
    assert [r["accelerator"] for r in data["results"]] == ["ALL", "CPU_AND_NE"]
    # a number read off Xcode's performance report joins the same folder
    code, _, err = run_main(["bench", "import", "--device", "iPhone 15 Pro", "--median-ms",
                             "1.31", "--model", "lsnet_t", "--precision", "int8",
                             "--compute-units", "CPU_AND_NE", "--into", str(folder)], capsys)
    assert code == 0, err
    report = load_report(folder / "results.json")
    assert [(r.device, r.source) for r in report.results] == [
        ("iPhone16,1", "ios-harness"), ("iPhone16,1", "ios-harness"),
        ("iPhone 15 Pro", "manual")]
    assert "| iPhone 15 Pro |" in (folder / "results.md").read_text()


def test_cli_import_needs_something(capsys: pytest.CaptureFixture[str]) -> None:
    from test_cli import run_main

    code, _, err = run_main(["bench", "import", "--median-ms", "1.2"], capsys)
    assert code == 2 and "--device, --median-ms and --model together" in err
    code, _, err = run_main(["bench", "import"], capsys)
    assert code == 2 and "nothing to import" in err
