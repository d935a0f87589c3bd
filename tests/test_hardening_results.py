"""Issue 16, the artifact / result-file half: hostile result files and sidecars are typed
errors with one-line messages (never an internal error, never a silently wrong result).

1. malformed result files (``report``, ``bench import``): one validator, BenchmarkError (10)
   naming the file, the record and the field;
2. implausible numbers in result files: checked like ``--median-ms`` typed by hand;
3. tampered sidecars given to ``validate``: ArtifactError (12), the sidecar's input checked
   against the artifact's real input;
4. sha256 of the artifact against its sidecar, and ``--min-cosine`` range-checked up front;
5. ``bench`` ignores a sidecar that does not describe the file next to it;
6. hidden entries (staging folders) are skipped when a folder is walked.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_SIZE
from test_bench_host import FAST, foreign_onnx
from test_cli import run_main

from lsnet_deploy.bench.artifacts import describe_artifact, expand_artifacts
from lsnet_deploy.bench.claims import build_claims, collect_results, find_result_files
from lsnet_deploy.bench.host import benchmark
from lsnet_deploy.bench.ios import manual_result, parse_results
from lsnet_deploy.bench.schema import MAX_MS, BenchResult, load_report
from lsnet_deploy.checkpoint import file_sha256
from lsnet_deploy.errors import ArtifactError, BenchmarkError, UnsupportedOptionError
from lsnet_deploy.exporters import get_exporter
from lsnet_deploy.metadata import sidecar_path, to_native
from lsnet_deploy.pipeline import export, validate
from lsnet_deploy.fidelity import check_min_cosine
from lsnet_deploy.sidecar import artifact_sha256, load_sidecar, verify_sidecar

TINY = "test_lsnet"


def _good_result(**changes: Any) -> dict[str, Any]:
    return {**BenchResult("lsnet_t", "onnxruntime", "fp32", 1, 1, 4.2).to_dict(), **changes}


def _result_file(folder: Path, results: list[Any] | str, name: str = "results.json",
                 **extra: Any) -> Path:
    """A result file holding ``results`` (a string: the raw text of the file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(results, str):
        path.write_text(results)
    else:
        path.write_text(json.dumps({"schema": "lsnet-deploy.bench/1", "results": results,
                                    "environment": {}, **extra}))
    return path


def _one_line_error(code: int, err: str, expected_code: int, *needles: str) -> None:
    assert code == expected_code, err
    assert "internal error" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    flat = " ".join(err.split())  # rich wraps long lines
    for needle in needles:
        assert needle in flat, (needle, err)


# -- 1. malformed result files ----------------------------------------------------------------

DEEP = '{"results": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.mark.parametrize(("content", "needles"), [
    (DEEP, ["nested too deeply"]),
    ([_good_result(input_shape=5)], ["results[0]: input_shape must be a list", "got 5"]),
    ([_good_result(model=["lsnet_t"])], ["results[0]: model must be a non-empty string",
                                         "got a list"]),
    ([_good_result(model=7)], ["results[0]: model must be a non-empty string", "got 7"]),
    ([_good_result(), _good_result(threads="1")], ["results[1]: threads must be a positive"]),
    ([_good_result(batch=0)], ["results[0]: batch must be a positive integer"]),
    ([_good_result(device_info=[1])], ["results[0]: device_info must be an object"]),
    ([_good_result(platform="moon")], ["results[0]: unknown platform 'moon'"]),
    ('{"results": [{"model": "m", "median_ms": 1' + "0" * 5000 + "}]}",
     ["not a usable result file"]),
])
def test_malformed_result_files_name_file_record_and_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any,
        needles: list[str]) -> None:
    path = _result_file(tmp_path / "r", content)
    for argv in (["report", str(path)], ["bench", "import", str(path)]):
        code, _, err = run_main(argv, capsys)
        _one_line_error(code, err, 10, str(path), *needles)


def test_malformed_report_level_fields(tmp_path: Path) -> None:
    cases = [({"interrupted": "no"}, "'interrupted' must be true or false"),
             ({"environment": {"settings": 3}}, "environment: settings must be an object"),
             ({"failures": [[1]]}, "failures[0] must be an object")]
    for extra, match in cases:
        path = _result_file(tmp_path / "r", [_good_result()], **extra)
        with pytest.raises(BenchmarkError, match=re.escape(match)):
            load_report(path)


def test_deeply_nested_lines_are_named() -> None:
    deep = "[" * 50_000 + "]" * 50_000
    with pytest.raises(BenchmarkError, match=r"log:2: JSON nested too deeply"):
        parse_results(f"noise\nLSNET_BENCH_RESULT {{\"x\": {deep}}}\n", "log")
    good = json.dumps(_good_result())
    with pytest.raises(BenchmarkError, match=r"lines:2: JSON nested too deeply"):
        parse_results(f"{good}\n{{\"x\": {deep}}}\n", "lines")
    with pytest.raises(BenchmarkError, match=r"whole: JSON nested too deeply"):
        parse_results(f"{{\"x\": {deep}}}", "whole")
    with pytest.raises(BenchmarkError, match=r"log:1: device_info must be an object nested"):
        nested: Any = {}
        for _ in range(40):
            nested = {"a": nested}
        parse_results("LSNET_BENCH_RESULT " + json.dumps(_good_result(device_info=nested)),
                      "log")


# -- 2. implausible numbers -------------------------------------------------------------------

@pytest.mark.parametrize(("median", "needle"), [
    ("-3.0", "must be positive"), ("NaN", "must be a finite number"),
    ("1e308", "is implausibly large"), ("0", "must be positive"), ("true", "must be a number"),
])
def test_imported_numbers_are_checked_like_typed_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], median: str, needle: str) -> None:
    record = json.dumps(_good_result(model="lsnet_t")).replace('"median_ms": 4.2',
                                                               f'"median_ms": {median}')
    path = _result_file(tmp_path / "r", f'{{"results": [{record}]}}')
    for argv in (["report", str(path)], ["bench", "import", str(path)]):
        code, out, err = run_main(argv, capsys)
        _one_line_error(code, err, 10, str(path), "results[0]: median_ms", needle)
        assert "fastest" not in out
    # the same number typed by hand is refused the same way
    value = {"true": True}.get(median, None)
    typed = value if value is not None else float(median)
    with pytest.raises(UnsupportedOptionError, match=f"--median-ms {needle}"):
        manual_result(model="lsnet_t", device="iPhone", median_ms=typed, accelerator="ALL")


def test_every_number_field_is_bounded(tmp_path: Path) -> None:
    for key, value, needle in [("p90_ms", -1.0, "must be positive"),
                               ("std_ms", -0.5, "must not be negative"),
                               ("load_ms", MAX_MS * 2, "is implausibly large"),
                               ("throughput_img_s", 0.0, "must be positive"),
                               ("memory_mb", 1e300, "is implausibly large"),
                               ("runs", 0, "runs must be an integer >= 1")]:
        with pytest.raises(BenchmarkError, match=f"{key} {needle}" if key != "runs" else needle):
            BenchResult.from_dict(_good_result(**{key: value}), "f: results[0]")
    assert BenchResult.from_dict(_good_result(std_ms=0.0, memory_mb=0.0)).std_ms == 0.0


def test_cli_typed_number_has_an_upper_bound(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["bench", "import", "--device", "iPhone", "--model", "lsnet_t",
                             "--median-ms", "1e308", "--compute-units", "ALL"], capsys)
    _one_line_error(code, err, 2, "--median-ms is implausibly large")


# -- a real tiny export, copied for every test that tampers with it -------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny ONNX export (test_lsnet, random weights) with its sidecar."""
    out = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("LSNET_DEPLOY_HOME", str(tmp_path_factory.mktemp("home")))
        [art] = export(TINY, "onnx", weights=None, img_size=TINY_SIZE, output_dir=out)
    return art.path


@pytest.fixture
def artifact(exported: Path, tmp_path: Path) -> Path:
    """A copy of the export (and its sidecar) in a folder of its own."""
    folder = tmp_path / "art dir"
    folder.mkdir()
    shutil.copy2(exported, folder / exported.name)
    shutil.copy2(sidecar_path(exported), sidecar_path(folder / exported.name))
    return folder / exported.name


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the reference model fails the test: every check must come before it."""
    from lsnet_deploy import api

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("validate built the model before refusing the artifact")

    monkeypatch.setattr(api, "create_model", refuse)


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    side = sidecar_path(path)
    data = json.loads(side.read_text())
    change(data)
    side.write_text(json.dumps(data))


def test_a_real_export_is_trusted(artifact: Path) -> None:
    sidecar = load_sidecar(artifact)
    assert sidecar is not None and sidecar.sha256 == file_sha256(artifact)
    verify_sidecar(artifact, sidecar, get_exporter("onnx"))
    info = describe_artifact(artifact)
    assert (info.model, info.precision, info.from_sidecar, info.ignored_sidecar) == (
        TINY, "fp32", True, None)
    assert info.input_shape == [1, 3, TINY_SIZE, TINY_SIZE]


# -- 3. tampered sidecars given to validate ------------------------------------------------

def _drop_metadata(d: dict[str, Any]) -> None:
    del d["metadata"]


def _set(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        for key in keys[:-1]:
            d = d[key]
        d[keys[-1]] = value
    return change


def _lie_about_size(d: dict[str, Any]) -> None:
    d["metadata"]["img_size"] = [256, 256]
    d["metadata"]["input_shape"] = [1, 3, 256, 256]


@pytest.mark.parametrize(("change", "needles"), [
    (_drop_metadata, ["no 'metadata' object"]),
    (_set("metadata", value=[1, 2]), ["a malformed 'metadata' object"]),
    (_set("metadata", "img_size", value=[128, 128, 3]),
     ["metadata: img_size must be [height, width]"]),
    (_set("metadata", "img_size", value="128"), ["img_size must be", "got '128'"]),
    (_set("metadata", "img_size", value=[256, 256]), ["input_shape must be [batch, 3, 256, 256]"]),
    (_set("metadata", "input_shape", value=[1, 3, 128]), ["input_shape must be"]),
    (_set("metadata", "mean", value=[0.5, "x", 0.5]), ["mean must be three numbers"]),
    (_set("metadata", "variant", value=["lsnet_t"]), ["variant must be a variant name"]),
    (_set("metadata", "dynamic_batch", value="no"), ["dynamic_batch must be true or false"]),
    (_set("export", value=3), ["export must be an object"]),
    (_lie_about_size, ["says img_size [256, 256]", "embedded metadata says [128, 128]"]),
    (_set("metadata", "variant", value="lsnet_b"), ["says variant 'lsnet_b'",
                                                    "embedded metadata says 'test_lsnet'"]),
    (_set("format", value="tflite"), ["describes a 'tflite' artifact, not onnx"]),
])
def test_tampered_sidecar_is_an_artifact_error(
        artifact: Path, no_work: None, capsys: pytest.CaptureFixture[str],
        change: Callable[[dict[str, Any]], None], needles: list[str]) -> None:
    _edit(artifact, change)
    code, _, err = run_main(["validate", str(artifact)], capsys)
    _one_line_error(code, err, 12, *needles, "re-export the artifact")


@pytest.mark.parametrize(("text", "needle"), [
    ("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object, not list"),
    ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    (b"\xff\xfe", "cannot read the sidecar"),
])
def test_unreadable_sidecar_is_an_artifact_error(artifact: Path, no_work: None,
                                                 text: str | bytes, needle: str) -> None:
    side = sidecar_path(artifact)
    side.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ArtifactError, match=needle):
        validate(artifact)


def _lying_onnx(folder: Path, claimed: int, real: int = 32) -> Path:
    """A small ONNX model taking ``real`` x ``real`` whose embedded lsnet-deploy metadata
    claims ``claimed`` x ``claimed`` (consistently, so only the real input can tell)."""
    path = foreign_onnx(folder / "liar.onnx", size=real)
    meta = {"variant": TINY, "precision": "fp32", "img_size": [claimed, claimed],
            "input_shape": [1, 3, claimed, claimed], "layout": "NCHW",
            "input_dtype": "float32", "dynamic_batch": False, "num_classes": 8,
            "weights_kind": "random"}
    get_exporter("onnx").embed_metadata(path, to_native(meta))
    return path


def test_metadata_is_checked_against_the_real_input(tmp_path: Path, no_work: None) -> None:
    path = _lying_onnx(tmp_path, claimed=64)
    with pytest.raises(ArtifactError, match=r"liar.onnx: its embedded metadata describes the "
                                            r"input \[1, 3, 64, 64\] but the artifact takes "
                                            r"\[1, 3, 32, 32\]"):
        validate(path)
    # a sidecar that agrees with the (lying) embedded metadata and the digest: still refused
    meta = {"variant": TINY, "precision": "fp32", "img_size": [64, 64],
            "input_shape": [1, 3, 64, 64], "layout": "NCHW", "dynamic_batch": False}
    sidecar_path(path).write_text(json.dumps({"sha256": file_sha256(path), "metadata": meta,
                                              "format": "onnx", "precision": "fp32"}))
    with pytest.raises(ArtifactError, match=r"liar.onnx.json describes the input \[1, 3, 64, "
                                            r"64\] but the artifact takes \[1, 3, 32, 32\]"):
        validate(path)


def test_embedded_metadata_is_checked_too(tmp_path: Path, no_work: None) -> None:
    path = foreign_onnx(tmp_path / "odd.onnx")
    get_exporter("onnx").embed_metadata(path, to_native({"variant": TINY, "img_size": 32}))
    with pytest.raises(ArtifactError, match="odd.onnx: embedded metadata: img_size must be"):
        validate(path)


# -- 4. sha256 and the gates ---------------------------------------------------------------

def test_swapped_artifact_with_edited_gate_is_refused(artifact: Path, no_work: None,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    foreign_onnx(artifact)  # another model written over the artifact
    _edit(artifact, _set("export", "min_cosine", value=-1))
    code, _, err = run_main(["validate", str(artifact)], capsys)
    _one_line_error(code, err, 12, "its sha256 differs from the one in", artifact.name)


@pytest.mark.parametrize(("key", "kind"), [("min_cosine", "a mean cosine"),
                                         ("min_photo_cosine", "a cosine")])
def test_edited_gate_on_the_real_artifact_is_refused(artifact: Path, no_work: None, key: str,
                                                     kind: str) -> None:
    _edit(artifact, _set("export", key, value=-1))
    flag = "--" + key.replace("_", "-")
    off = "; 0 turns the gate off" if key == "min_cosine" else ""
    with pytest.raises(ArtifactError, match=rf"export.{key} must be {kind} in \[0, 1\] "
                                            rf"\(e.g. 0.98{off}\), got -1; "
                                            rf"the sidecar was edited: .*, or pass {flag}$"):
        validate(artifact)
    _edit(artifact, _set("export", key, value="high"))
    with pytest.raises(ArtifactError, match=rf"export.{key} must be a number, got 'high'"):
        validate(artifact)


@pytest.mark.parametrize(("digest", "needle"), [
    (None, "sha256 must be 64 lowercase hex digits, got None"),
    ("abc", "sha256 must be 64 lowercase hex digits, got 'abc'"),
    ("", "no sha256 of"),
    ("0" * 64, "its sha256 differs"),
])
def test_sidecar_digest_is_required_for_a_file(artifact: Path, no_work: None,
                                               digest: str | None, needle: str) -> None:
    _edit(artifact, _set("sha256", value=digest))
    with pytest.raises(ArtifactError, match=needle):
        validate(artifact)


@pytest.mark.parametrize("value", ["-1", "-0.5", "2.0", "nan", "inf"])
def test_min_cosine_is_range_checked_up_front(artifact: Path, no_work: None, value: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["validate", str(artifact), "--min-cosine", value], capsys)
    _one_line_error(code, err, 2, "--min-cosine must be a mean cosine in [0, 1]")
    code, _, err = run_main(["validate", str(artifact), "--min-photo-cosine", value], capsys)
    _one_line_error(code, err, 2, "--min-photo-cosine must be a cosine in [0, 1]")


def test_check_min_cosine() -> None:
    assert check_min_cosine(None) is None and check_min_cosine(1) == 1.0
    assert check_min_cosine(0.98) == 0.98 and check_min_cosine(0) == 0.0  # 0: no gate
    for bad in (-0.01, -1.0, 1.0001, float("nan"), float("inf"), True, "0.9"):
        with pytest.raises(UnsupportedOptionError, match="min_cosine must be a mean cosine"):
            check_min_cosine(bad, "min_cosine")  # type: ignore[arg-type]


def _package(folder: Path) -> Path:
    pkg = folder / "m.mlpackage"
    (pkg / "Data" / "com.apple.CoreML").mkdir(parents=True)
    (pkg / "Manifest.json").write_text("{}")
    (pkg / "Data" / "com.apple.CoreML" / "weight.bin").write_bytes(b"\x01" * 64)
    return pkg


def test_folder_artifacts_have_a_digest_too(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    from lsnet_deploy.pipeline import publish

    assert publish.artifact_sha256 is artifact_sha256  # the digest written is the one checked
    meta = {"variant": TINY, "img_size": [TINY_SIZE, TINY_SIZE]}
    sidecar_path(pkg).write_text(json.dumps({"sha256": artifact_sha256(pkg), "metadata": meta}))
    exp = get_exporter("coreml")
    sidecar = load_sidecar(pkg)
    assert sidecar is not None
    verify_sidecar(pkg, sidecar, exp)  # the digest matches (the stand-in embeds nothing)
    (pkg / "Data" / "com.apple.CoreML" / "weight.bin").write_bytes(b"\x02" * 64)
    with pytest.raises(ArtifactError, match="m.mlpackage: its sha256 differs"):
        verify_sidecar(pkg, sidecar, exp)
    # an older sidecar without a folder digest: only the embedded metadata can vouch for it
    sidecar_path(pkg).write_text(json.dumps({"sha256": "", "metadata": meta}))
    with pytest.raises(ArtifactError, match="cannot be verified"):
        verify_sidecar(pkg, load_sidecar(pkg), exp)  # type: ignore[arg-type]


# -- 5. bench and report do not trust a copied sidecar ----------------------------------------

def test_copied_sidecar_does_not_label_another_model(exported: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    impostor = foreign_onnx(tmp_path / "lsnet_t_224_fp32.onnx")
    shutil.copy2(sidecar_path(exported), sidecar_path(impostor))
    info = describe_artifact(impostor)
    assert (info.model, info.from_sidecar, info.mean_cosine) == ("lsnet_t_224_fp32", False, None)
    assert info.ignored_sidecar is not None and "sha256 differs" in info.ignored_sidecar
    out_dir = tmp_path / "bench"
    code, out, err = run_main(["bench", str(impostor), "--runs", "2", "--warmup", "0",
                               "-o", str(out_dir), "--json"], capsys)
    assert code == 0, err
    assert "ignoring the sidecar of lsnet_t_224_fp32.onnx" in " ".join(err.split())
    [r] = json.loads(out)["results"]
    assert r["model"] == "lsnet_t_224_fp32" and "cosine vs PyTorch" not in (r["notes"] or "")
    assert "sidecar ignored" in r["notes"]
    claims = {c.variant: c for c in build_claims(collect_results(find_result_files([out_dir])))}
    assert claims["lsnet_t"].fastest_host_fp32 is None and claims["lsnet_t"].fastest_host is None


def test_corrupted_file_next_to_a_sidecar_is_not_an_lsnet_result(exported: Path,
                                                                 tmp_path: Path) -> None:
    broken = tmp_path / "lsnet_t_224_fp32.onnx"
    broken.write_bytes(b"not a model")
    shutil.copy2(sidecar_path(exported), sidecar_path(broken))
    report = benchmark(artifacts=[broken], settings=FAST)
    assert report.results == []
    [failure] = report.failures
    assert failure["model"] == "lsnet_t_224_fp32"


def test_malformed_sidecar_is_ignored_by_bench(artifact: Path) -> None:
    sidecar_path(artifact).write_text('{"metadata": 3}')
    info = describe_artifact(artifact)
    # described from the embedded metadata instead (the real export carries it)
    assert (info.model, info.from_sidecar) == (TINY, False)
    assert "malformed 'metadata'" in (info.ignored_sidecar or "")


# -- 6. hidden entries when walking folders ------------------------------------------------

@pytest.fixture
def staged_folder(artifact: Path) -> Iterator[Path]:
    """The artifact's folder with what killed exports leave: hidden staging folders holding
    copies of the artifact (old and new naming), and a hidden editor file."""
    folder = artifact.parent
    for stage in (f".{artifact.name}.ab12cd34", f".{artifact.name}.lsnet-tmp-x1y2z3w4/new"):
        (folder / stage).mkdir(parents=True)
        shutil.copy2(artifact, folder / stage / artifact.name)
    (folder / ".hidden.onnx").write_bytes(b"junk")
    sub = folder / "more"
    sub.mkdir()
    foreign_onnx(sub / "other.onnx")
    yield folder


def test_bench_skips_hidden_entries_of_a_folder(staged_folder: Path, artifact: Path) -> None:
    assert expand_artifacts([staged_folder]) == [staged_folder / "more" / "other.onnx", artifact]
    with pytest.raises(BenchmarkError, match="no model file in this folder"):
        expand_artifacts([staged_folder], (".tflite",))  # bench android: .tflite files only
    report = benchmark(artifacts=[staged_folder], settings=FAST)
    assert sorted(r.model for r in report.results) == ["other", TINY]
    assert report.failures == []
    empty = staged_folder / "nothing"
    (empty / ".staging").mkdir(parents=True)
    shutil.copy2(artifact, empty / ".staging" / artifact.name)
    with pytest.raises(BenchmarkError, match="no model file in this folder"):
        expand_artifacts([empty])


def test_report_skips_hidden_result_files(tmp_path: Path) -> None:
    good = _result_file(tmp_path / "run", [_good_result()])
    _result_file(tmp_path / ".run.tmp123", "{half written")  # a report being written
    _result_file(tmp_path / "run" / ".old", [_good_result(model=3)])
    assert find_result_files([tmp_path]) == [good]
    assert [r.model for r in collect_results([good])] == ["lsnet_t"]


def test_validate_refuses_a_folder(staged_folder: Path, capsys: pytest.CaptureFixture[str]
                                   ) -> None:
    code, _, err = run_main(["validate", str(staged_folder)], capsys)
    _one_line_error(code, err, 2, "is a folder, not an artifact")


def test_report_output_that_cannot_be_written(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = _result_file(tmp_path / "r", [_good_result()])
    code, _, err = run_main(["report", str(path), "--output", str(tmp_path / "no" / "x.md")],
                            capsys)
    _one_line_error(code, err, 7, "cannot write", "choose another --output")
