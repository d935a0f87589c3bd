"""The host latency harness: statistics, the timing loop, Ctrl-C, failures, foreign models,
the report folder, the paper-claims report and the ``bench`` / ``report`` commands."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from test_cli import run_main

from lsnet_deploy.bench import output as output_mod
from lsnet_deploy.bench.artifacts import describe_artifact
from lsnet_deploy.bench.claims import (
    PAPER_NOTE,
    build_claims,
    claims_markdown,
    collect_results,
    find_result_files,
)
from lsnet_deploy.bench.environment import collect_environment, mark_busy
from lsnet_deploy.bench.harness import BenchSettings, measure, run_benchmarks
from lsnet_deploy.bench.host import benchmark
from lsnet_deploy.bench.output import markdown_report, write_report_folder
from lsnet_deploy.bench.runtimes import Target, artifact_targets, open_session
from lsnet_deploy.bench.schema import SCHEMA, BenchReport, BenchResult, load_report
from lsnet_deploy.bench.timing import summarize
from lsnet_deploy.checkpoint import file_sha256
from lsnet_deploy.errors import BenchmarkError
from lsnet_deploy.metadata import sidecar_path

FAST = BenchSettings(threads=(1,), warmup=1, runs=3)


def foreign_onnx(path: Path, batch: int | str = 1, size: int = 32) -> Path:
    """A small non-LSNet ONNX classifier: Conv 3->8, ReLU, global pool, flatten."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3],
                           rng.standard_normal(8 * 27).astype(np.float32).tolist())
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "mobilenet_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


class _FailsOnCall(torch.nn.Module):
    """Raises ``error`` from call number ``after`` on (``KeyboardInterrupt``: a user pressing
    Ctrl-C); ``after=0`` never fails."""

    img_size = (32, 32)

    def __init__(self, after: int, error: BaseException | None = None) -> None:
        super().__init__()
        self.calls, self.after = 0, after
        self.error = error if error is not None else KeyboardInterrupt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.after and self.calls >= self.after:
            raise self.error
        return x.mean()


_OOM = RuntimeError("DefaultCPUAllocator: not enough memory\nmore detail")


# -- statistics and the timing loop ---------------------------------------------------------

def test_summarize_statistics() -> None:
    times = [float(v) for v in (7, 1, 10, 3, 5, 2, 9, 4, 8, 6)]
    s = summarize(times, warmup=4)
    assert (s.runs, s.warmup, s.min_ms, s.median_ms) == (10, 4, 1.0, 5.5)
    assert s.p90_ms == 9.0
    assert s.trimmed_mean_ms == pytest.approx(statistics.fmean([3, 4, 5, 6, 7, 8]))
    assert s.std_ms == pytest.approx(statistics.pstdev(times))
    # the trimmed mean ignores the outliers that drag the mean
    spiky = summarize([1.0] * 8 + [50.0, 60.0])
    assert spiky.trimmed_mean_ms == 1.0 and spiky.mean_ms > 10


def test_measure_honours_counts_and_minimum_time() -> None:
    calls = []

    def run() -> None:
        calls.append(1)
        time.sleep(0.01)

    timing = measure(run, BenchSettings(warmup=2, runs=3, min_time_s=0.1))
    assert timing.warmup_done == 2 and not timing.interrupted
    assert len(timing.times_ms) >= 8  # 3 runs were not enough to fill 0.1 s of 10 ms calls
    assert sum(timing.times_ms) >= 100 and len(calls) == 2 + len(timing.times_ms)
    assert timing.first_ms is not None and timing.first_ms >= 10


def test_ctrl_c_keeps_what_was_measured() -> None:
    settings = BenchSettings(warmup=2, runs=50)
    kept = Target("first", "pytorch-fused", "fp32", module=_FailsOnCall(after=10), img_size=(32, 32))
    never = Target("second", "pytorch-fused", "fp32", module=_FailsOnCall(after=0), img_size=(32, 32))
    report = run_benchmarks([kept, never], settings)
    assert report.interrupted
    [result] = report.results  # the second target never started
    # call 1 is the cold check of open_session, 2-3 warm up, 4..9 are timed
    assert result.model == "first" and result.runs == 6
    assert "interrupted after 6 timed runs" in (result.notes or "")
    assert never.module.calls == 0
    # fewer than MIN_PARTIAL_RUNS timed runs: nothing kept, still interrupted
    short = run_benchmarks([Target("x", "pytorch-fused", "fp32", module=_FailsOnCall(after=5),
                                   img_size=(32, 32))], settings)
    assert short.interrupted and short.results == []


def test_a_target_failing_mid_run_does_not_lose_the_others() -> None:
    ok = Target("ok", "pytorch-fused", "fp32", module=_FailsOnCall(after=0), img_size=(32, 32))
    broken = Target("broken", "pytorch-fused", "fp32", module=_FailsOnCall(after=5, error=_OOM), img_size=(32, 32))
    cold = Target("cold", "pytorch-fused", "fp32", module=_FailsOnCall(after=1, error=_OOM), img_size=(32, 32))
    report = run_benchmarks([broken, cold, ok], FAST)
    assert [r.model for r in report.results] == ["ok"] and not report.interrupted
    errors = {f["model"]: f["error"] for f in report.failures}
    assert errors["broken"] == "RuntimeError: DefaultCPUAllocator: not enough memory"
    assert "cold: pytorch-fused fails to run it" in errors["cold"]


def test_first_ms_is_the_cold_call(tmp_path: Path) -> None:
    report = benchmark(artifacts=[foreign_onnx(tmp_path / "m.onnx")], settings=FAST)
    [r] = report.results
    assert r.first_ms is not None and r.first_ms > 0 and r.warmup == 1


def test_settings_are_validated() -> None:
    with pytest.raises(BenchmarkError, match="--runs"):
        BenchSettings(runs=0)
    with pytest.raises(BenchmarkError, match="--threads"):
        BenchSettings(threads=(0,))
    paper = BenchSettings.paper_throughput((2,))
    assert paper.throughput and paper.batch == 64 and paper.warmup_s == 5 and paper.min_time_s == 10


# -- foreign models, batch handling, failures -----------------------------------------------

def test_foreign_onnx_model_is_labelled_and_timed(tmp_path: Path) -> None:
    path = foreign_onnx(tmp_path / "mobilenet v3.onnx")
    info = describe_artifact(path)
    assert (info.fmt, info.model, info.precision, info.from_sidecar) == (
        "onnx", "mobilenet v3", "fp32", False)
    report = benchmark(artifacts=[path], settings=FAST)
    [r] = report.results
    assert (r.model, r.runtime, r.precision, r.batch, r.input_shape) == (
        "mobilenet v3", "onnxruntime", "fp32", 1, [1, 3, 32, 32])
    assert r.runs == 3 and r.median_ms > 0 and r.load_ms and r.load_ms > 0
    assert r.artifact == str(path) and report.failures == []


def test_batch_and_dynamic_dimensions(tmp_path: Path) -> None:
    dynamic = foreign_onnx(tmp_path / "dyn.onnx", batch="N")
    session = open_session(artifact_targets(dynamic)[0], threads=1, batch=4)
    assert session.input_shape == [4, 3, 32, 32] and session.batch == 4
    static = foreign_onnx(tmp_path / "static.onnx", batch=1)
    with pytest.raises(BenchmarkError, match="fixed batch of 1, not 4"):
        open_session(artifact_targets(static)[0], threads=1, batch=4)


def test_sidecar_labels_an_lsnet_artifact(tmp_path: Path) -> None:
    path = foreign_onnx(tmp_path / "lsnet_t_224_int8.onnx")
    sidecar_path(path).write_text(json.dumps({
        "precision": "int8", "sha256": file_sha256(path),
        "metadata": {"variant": "lsnet_t", "img_size": [224, 224]},
        "validation": {"mean_cosine": 0.9771}}))
    info = describe_artifact(path)
    assert (info.model, info.precision, info.from_sidecar, info.mean_cosine) == (
        "lsnet_t", "int8", True, 0.9771)
    assert artifact_targets(path)[0].notes == "cosine vs PyTorch 0.9771"


def test_a_broken_artifact_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    good = foreign_onnx(tmp_path / "good.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    report = benchmark(artifacts=[bad, good], settings=FAST)
    assert [r.model for r in report.results] == ["good"]
    [failure] = report.failures
    assert failure["artifact"] == str(bad) and "ONNX Runtime cannot load it" in failure["error"]


def test_unknown_files_and_coreml_off_macos_fail_early(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="not a model file"):
        benchmark(artifacts=[tmp_path / "x.txt"])
    with pytest.raises(BenchmarkError, match="no such file"):
        benchmark(artifacts=[tmp_path / "missing.tflite"])
    with pytest.raises(BenchmarkError, match="nothing to benchmark"):
        benchmark()
    if os.uname().sysname != "Darwin":
        pkg = tmp_path / "m.mlpackage"
        pkg.mkdir()
        with pytest.raises(BenchmarkError, match="run only on macOS"):
            benchmark(artifacts=[pkg])


def test_an_export_that_fails_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    from lsnet_deploy import pipeline
    from lsnet_deploy.errors import MissingDependencyError

    def no_backend(*_a: object, **_k: object) -> None:
        raise MissingDependencyError("LiteRT is not installed: pip install 'lsnet-deploy[tflite]'")

    monkeypatch.setattr(pipeline, "export", no_backend)
    report = benchmark(["test_lsnet"], weights="random", runtimes=["pytorch", "litert"],
                       settings=FAST)
    assert [r.runtime for r in report.results] == ["pytorch-unfused", "pytorch-fused"]
    assert [(f["runtime"], f["precision"]) for f in report.failures] == [
        ("litert", "fp32"), ("litert", "int8")]
    assert report.failures[0]["error"].startswith("export: LiteRT is not installed")


def test_tiny_lsnet_in_pytorch_unfused_and_fused() -> None:
    report = benchmark(["test_lsnet"], weights="random", runtimes=["pytorch"],
                       settings=BenchSettings(threads=(1, 2), warmup=1, runs=2))
    rows = [(r.runtime, r.threads) for r in report.results]
    assert rows == [("pytorch-unfused", 1), ("pytorch-unfused", 2), ("pytorch-fused", 1),
                    ("pytorch-fused", 2)]
    assert all(r.notes == "RANDOM weights" and r.input_shape == [1, 3, 224, 224]
               for r in report.results)
    assert torch.get_num_threads() == report.environment["torch_default_threads"]


# -- environment, report folder ----------------------------------------------------------------

def test_environment_records_machine_and_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (3.5, 1.0, 0.5))
    env = collect_environment([1, 2], runs=5)
    assert env["threads"] == [1, 2] and env["cores"] == os.cpu_count()
    assert env["load_avg_before"] == [3.5, 1.0, 0.5] and env["settings"] == {"runs": 5}
    assert "onnxruntime" in env["versions"] and "torch" in env["versions"]
    mark_busy(env)
    assert env["busy"] is (3.5 > 0.75 * (os.cpu_count() or 1))
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert mark_busy(collect_environment([1]))["busy"] is False


def _results() -> list[BenchResult]:
    return [
        BenchResult("lsnet_t", "litert", "int8", 1, 1, 2.21, p90_ms=2.26, trimmed_mean_ms=2.2,
                    runs=50),
        BenchResult("lsnet_t", "litert", "fp32", 1, 1, 4.58, p90_ms=4.66, runs=50,
                    notes="cosine vs PyTorch 1.0000"),
        BenchResult("mobilenet_v3", "litert", "fp32", 1, 1, 3.10, p90_ms=3.2, runs=50),
        BenchResult("lsnet_t", "litert", "int8", 4, 1, 9.8, platform="android",
                    device="Pixel 8", accelerator="xnnpack", source="benchmark_model"),
    ]


def test_report_folder_round_trips(tmp_path: Path) -> None:
    env = {"cpu": "Test CPU", "cores": 2, "timestamp": "2026-11-25T00:00:00+00:00",
           "settings": {"warmup": 10, "runs": 50}}
    report = BenchReport(_results(), env, failures=[
        {"model": "x", "runtime": "litert", "precision": "fp32", "threads": 1, "error": "boom"}])
    folder = write_report_folder(report, tmp_path / "run 1")
    assert sorted(p.name for p in folder.iterdir()) == ["latency.png", "results.json",
                                                        "results.md"]
    data = json.loads((folder / "results.json").read_text())
    assert data["schema"] == SCHEMA and set(data) >= {"results", "environment", "failures"}
    first = data["results"][0]
    assert {"model", "runtime", "precision", "threads", "batch", "median_ms", "p90_ms",
            "trimmed_mean_ms"} <= set(first)
    again = load_report(folder / "results.json")
    assert again.results == report.results and again.failures == report.failures
    md = (folder / "results.md").read_text()
    assert "| lsnet_t | litert | int8 | - | 1 | 1 | 2.21 | 2.26 | 2.20 |" in md
    assert "Test CPU, 2 cores" in md and "x / litert / fp32 (threads 1): boom" in md
    assert "| host | cosine vs PyTorch 1.0000 |" in md
    png = (folder / "latency.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_existing_report_is_not_overwritten_and_no_matplotlib_keeps_numbers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lsnet_deploy.errors import MissingDependencyError, OutputError

    folder = write_report_folder(BenchReport(_results(), {}), tmp_path / "r", chart=False)
    with pytest.raises(OutputError, match="already holds a benchmark report"):
        write_report_folder(BenchReport(_results()[:1], {}), folder)
    assert len(load_report(folder / "results.json").results) == 4
    write_report_folder(BenchReport(_results()[:1], {}), folder, update=True)
    assert len(load_report(folder / "results.json").results) == 1

    def no_matplotlib(*_a: object, **_k: object) -> bool:
        raise MissingDependencyError("the chart needs matplotlib")

    monkeypatch.setattr(output_mod, "write_chart", no_matplotlib)
    plain = write_report_folder(BenchReport(_results(), {}), tmp_path / "plain")
    assert sorted(p.name for p in plain.iterdir()) == ["results.json", "results.md"]


def test_report_folder_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_chart(*_a: object, **_k: object) -> bool:
        raise RuntimeError("disk full")

    monkeypatch.setattr(output_mod, "write_chart", broken_chart)
    with pytest.raises(RuntimeError):
        write_report_folder(BenchReport(_results(), {}), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temporary one


def test_default_report_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    monkeypatch.setattr(output_mod, "default_export_dir", lambda: tmp_path)
    now = dt.datetime(2026, 11, 25, 1, 2, 3, tzinfo=dt.timezone.utc)
    first = output_mod.default_report_dir(now)
    assert first == tmp_path / "bench" / "20261125-010203"
    first.mkdir(parents=True)
    assert output_mod.default_report_dir(now).name == "20261125-010203-2"


def test_markdown_marks_interrupted_and_busy() -> None:
    md = markdown_report(BenchReport(_results()[:1], {"busy": True, "cpu": "c"}, True))
    assert "Interrupted (Ctrl-C)" in md and "BUSY" in md
    host = {"settings": {"warmup": 10, "warmup_s": 0.0, "runs": 50, "min_time_s": 0.0}}
    assert "Method: latency; warm-up 10 calls" in markdown_report(BenchReport([], host))
    imported = {"settings": {"imported": ["log.txt"]}}
    assert "Method" not in markdown_report(BenchReport([], imported))


def test_configurations_differ_by_input_size() -> None:
    a = BenchResult("lsnet_t", "litert", "fp32", 1, 1, 4.0, input_shape=[1, 224, 224, 3])
    b = BenchResult("lsnet_t", "litert", "fp32", 1, 1, 6.0, input_shape=[1, 288, 288, 3])
    assert a.key != b.key


def test_schema_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match=r"results\[0\]: missing key\(s\) median_ms"):
        BenchReport.from_dict({"results": [{"model": "m", "runtime": "r", "precision": "p"}]})
    with pytest.raises(BenchmarkError, match="median_ms must be a number"):
        BenchResult.from_dict({"model": "m", "runtime": "onnxruntime", "precision": "fp32",
                               "median_ms": "fast"})
    with pytest.raises(BenchmarkError, match="unknown runtime 'r'"):
        BenchResult.from_dict({"model": "m", "runtime": "r", "precision": "fp32",
                               "median_ms": 1.0})
    bad = tmp_path / "r.json"
    bad.write_text("{not json")
    with pytest.raises(BenchmarkError, match="not readable JSON"):
        load_report(bad)


# -- the paper-claims report -------------------------------------------------------------------

def test_claims_put_the_paper_beside_our_numbers() -> None:
    claims = {c.variant: c for c in build_claims(_results())}
    t = claims["lsnet_t"]
    assert (t.paper_params_m, t.paper_gmacs, t.paper_gpu_img_s, t.paper_top1,
            t.paper_top1_distill) == (11.4, 0.3, 14708, 74.9, 76.1)
    assert t.params_m == pytest.approx(11.4, abs=0.1) and t.gmacs == pytest.approx(0.3, abs=0.05)
    assert t.fastest_host is not None and t.fastest_host.median_ms == 2.21
    assert t.fastest_phone is not None and t.fastest_phone.device == "Pixel 8"
    assert claims["lsnet_b"].fastest_host is None
    md = claims_markdown(list(claims.values()), _results())
    assert PAPER_NOTE in md and "no CPU or mobile latency" in md
    assert "| lsnet_t | 11.4 / 11.4 | 0.3 / 0.3" in md and "14,708" in md and "74.9 (76.1)" in md
    assert "2.21 ms (litert, int8, 1 thread)" in md and "on Pixel 8" in md
    lines = md.splitlines()
    # the foreign model sits beside LSNet on the same runtime and precision
    fp32 = [i for i, line in enumerate(lines) if "| litert | fp32 | 1 |" in line]
    assert len(fp32) == 2 and fp32[1] == fp32[0] + 1
    assert "mobilenet_v3" in lines[fp32[1]] and "lsnet_t" in lines[fp32[0]]


def test_collect_results_latest_wins_and_hosts_stay_apart(tmp_path: Path) -> None:
    def write(name: str, stamp: str, cpu: str, median: float) -> Path:
        report = BenchReport([BenchResult("lsnet_t", "litert", "fp32", 1, 1, median)],
                             {"timestamp": stamp, "cpu": cpu, "cores": 2})
        return write_report_folder(report, tmp_path / name, chart=False)

    write("a", "2026-11-24T00:00:00", "CPU A", 9.0)
    write("b", "2026-11-25T00:00:00", "CPU A", 5.0)
    write("c", "2026-11-20T00:00:00", "CPU B", 7.0)
    files = find_result_files([tmp_path])
    assert len(files) == 3
    results = collect_results(files)
    by_device = {r.device: r.median_ms for r in results}
    assert by_device == {"host: CPU A, 2 cores": 5.0, "host: CPU B, 2 cores": 7.0}
    with pytest.raises(BenchmarkError, match="no such result file"):
        find_result_files([tmp_path / "nope"])


# -- the commands ------------------------------------------------------------------------------

def test_cli_bench_files_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = foreign_onnx(tmp_path / "resnet.onnx")
    out_dir = tmp_path / "report dir"
    code, out, err = run_main(["bench", str(model), "--runs", "3", "--warmup", "1",
                               "--threads", "1,2", "-o", str(out_dir), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert [(r["model"], r["threads"]) for r in data["results"]] == [("resnet", 1), ("resnet", 2)]
    assert data["environment"]["threads"] == [1, 2] and "load_avg_after" in data["environment"]
    assert data["report_dir"] == str(out_dir) and (out_dir / "latency.png").is_file()
    # the same through the explicit subcommand, as a table
    code, out, _ = run_main(["bench", "host", str(model), "--runs", "2", "--warmup", "0",
                             "-o", str(tmp_path / "second")], capsys)
    assert code == 0 and "resnet" in out and "onnxruntime" in out and "report:" in out


def test_cli_bench_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["bench", str(tmp_path / "m.txt")], capsys)
    assert code == 10 and "not a model file" in err and "Traceback" not in err
    code, _, err = run_main(["bench", "--threads", "1,x", str(tmp_path / "m.onnx")], capsys)
    assert code == 2 and "comma-separated integers" in err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    good = foreign_onnx(tmp_path / "good.onnx")
    code, out, err = run_main(["bench", str(bad), str(good), "--runs", "2", "--warmup", "0",
                               "-o", str(tmp_path / "r")], capsys)
    assert code == 10 and "1 configuration(s) failed" in err and "good" in out
    assert load_report(tmp_path / "r" / "results.json").results[0].model == "good"
    # the same folder again: refused before anything is measured
    code, _, err = run_main(["bench", str(good), "-o", str(tmp_path / "r")], capsys)
    assert code == 7 and "already holds a benchmark report" in err
    code, _, err = run_main(["bench", str(good), "--warmup-seconds", "-1"], capsys)
    assert code == 2
    if os.uname().sysname != "Darwin":
        code, _, err = run_main(["bench", "coreml", str(tmp_path / "x.mlpackage")], capsys)
        assert code == 10 and "needs macOS" in err


def test_cli_throughput_honours_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = foreign_onnx(tmp_path / "dyn.onnx", batch="N")
    code, out, err = run_main(["bench", str(model), "--throughput", "--batch", "4", "--runs", "7",
                               "--warmup-seconds", "0", "--min-seconds", "0", "--threads", "1",
                               "-o", str(tmp_path / "t"), "--json"], capsys)
    assert code == 0, err
    [r] = json.loads(out)["results"]
    assert r["runs"] == 7 and r["batch"] == 4 and r["input_shape"] == [4, 3, 32, 32]
    assert r["throughput_img_s"] == pytest.approx(4 / (r["mean_ms"] / 1e3))


def test_import_of_another_machines_report_keeps_its_cpu(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    pi = write_report_folder(BenchReport(_results()[:2], {"cpu": "Cortex-A76", "cores": 4}),
                             tmp_path / "pi", chart=False)
    mine = BenchReport([BenchResult("lsnet_t", "litert", "int8", 1, 1, 2.0)],
                       {"cpu": "AMD EPYC", "cores": 2}, failures=[{"error": "old"}])
    laptop = write_report_folder(mine, tmp_path / "laptop", chart=False)
    code, _, err = run_main(["bench", "import", str(pi / "results.json"), "--into", str(laptop)],
                            capsys)
    assert code == 0, err  # the folder's old failure is not this command's
    merged = load_report(laptop / "results.json")
    assert [(r.device, r.median_ms) for r in merged.results] == [
        ("host", 2.0), ("host: Cortex-A76, 4 cores", 2.21), ("host: Cortex-A76, 4 cores", 4.58)]
    assert merged.results[1].device_info["environment"]["cpu"] == "Cortex-A76"
    devices = {r.device for r in collect_results([laptop / "results.json"])}
    assert devices == {"host: AMD EPYC, 2 cores", "host: Cortex-A76, 4 cores"}


def test_cli_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_report_folder(BenchReport(_results(), {"cpu": "Test CPU", "cores": 2}),
                        tmp_path / "r", chart=False)
    page = tmp_path / "claims.md"
    code, out, err = run_main(["report", str(tmp_path), "--output", str(page)], capsys)
    assert code == 0, err
    text = page.read_text()
    assert "no CPU or mobile latency" in text and "host: Test CPU, 2 cores" in text
    code, out, _ = run_main(["report", str(tmp_path), "--json"], capsys)
    data = json.loads(out)
    assert [c["variant"] for c in data["claims"]] == ["lsnet_t", "lsnet_s", "lsnet_b"]
    assert len(data["results"]) == 4
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, _ = run_main(["report", str(empty)], capsys)
    assert code == 0 and "No benchmark results found" in out


def test_cli_report_keeps_the_caveats_and_pipes_as_markdown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Synthetic weights and a busy machine stay visible next to the numbers they qualify,
    and piped (not a terminal) the page is the Markdown itself, one table row per line."""
    results = [BenchResult("lsnet_t", "litert", "fp32", 1, 1, 4.58, p90_ms=4.66, runs=50,
                           notes="RANDOM weights; cosine vs PyTorch 1.0000")]
    env = {"cpu": "Test CPU", "cores": 2, "busy": True,
           "timestamp": "2026-11-25T00:00:00+00:00"}
    write_report_folder(BenchReport(results, env), tmp_path / "r", chart=False)
    code, out, err = run_main(["report", str(tmp_path)], capsys)
    assert code == 0, err
    [fastest] = [line for line in out.splitlines() if line.startswith("| lsnet_t |")]
    assert "4.58 ms" in fastest and "[RANDOM weights; machine was BUSY]" in fastest
    [row] = [line for line in out.splitlines() if line.startswith("| host: Test CPU")]
    assert row.endswith("| RANDOM weights; cosine vs PyTorch 1.0000; machine was BUSY |")


# -- a real variant from a checkpoint file ----------------------------------------------------
# LSNet-T in every host runtime (ONNX Runtime and LiteRT, fp32 and INT8, exported on the fly) is
# the README's bench line: tests/test_docs_commands.py runs it and checks its report
# (_check_bench_report); here the checkpoint-file path, in PyTorch alone (no export)

@pytest.mark.slow
def test_bench_lsnet_t_from_a_checkpoint_file(make_checkpoint, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = make_checkpoint("lsnet_t")
    out_dir = tmp_path / "bench out"
    code, out, err = run_main(["bench", "--model", "lsnet_t", "--weights", str(ckpt),
                               "--runtime", "pytorch", "--runs", "3", "--warmup", "1",
                               "-o", str(out_dir), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    rows = [(r["runtime"], r["precision"]) for r in data["results"]]
    assert rows == [("pytorch-unfused", "fp32"), ("pytorch-fused", "fp32")]
    assert all(r["model"] == "lsnet_t" and r["threads"] == 1 and r["runs"] == 3
               and r["median_ms"] > 0 and "file weights" in r["notes"]
               and "RANDOM" not in r["notes"] for r in data["results"])
    assert (out_dir / "results.md").read_text().count("| lsnet_t |") == 2
    code, out, _ = run_main(["report", str(out_dir)], capsys)
    assert code == 0 and "no CPU or mobile latency" in out and "pytorch-fused" in out
