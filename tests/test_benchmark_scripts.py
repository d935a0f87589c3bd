"""The docs-table scripts in benchmarks/ run end to end on the tiny variant and write the tables
docs/benchmarks.md shows (same header, one row per exported configuration, finite numbers).

Each script runs as the docs say, ``python benchmarks/<script>.py`` from the repository root,
in a subprocess with the test's environment (HF_HUB_OFFLINE, LSNET_DEPLOY_HOME).
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lsnet_deploy.bench.environment import cpu_name
from lsnet_deploy.preprocess import list_images

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
QUICK = ["--variants", "test_lsnet", "--img-size", "96", "--weights", "random"]
TIMING = ["--runs", "2", "--warmup", "1"]


def run_script(name: str, *args: str, out: Path | None = None) -> str:
    """Run ``benchmarks/<name>.py`` and return the Markdown it wrote (``out``, else stdout)."""
    cmd = [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *args]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd += ["--out", str(out)]
    proc = subprocess.run(cmd, check=False, cwd=REPO, env=dict(os.environ), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    if out is None:
        return proc.stdout
    assert proc.stdout == "", "with --out the table goes to the file only"
    return out.read_text()


def parse_table(markdown: str) -> tuple[str, list[str], list[dict[str, str]]]:
    """``(caption, header line, rows as column -> cell)`` of a report: a caption line, a blank
    line, then exactly one Markdown table."""
    lines = markdown.rstrip("\n").split("\n")
    caption, blank, header, separator, *body = lines
    assert caption.startswith("Machine: ") and blank == ""
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert separator == "|" + "---|" * len(columns)
    rows = []
    for line in body:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(columns), line
        rows.append(dict(zip(columns, cells, strict=True)))
    return caption, header, rows


def number(cell: str) -> float:
    """A table cell as a finite number (``100%`` -> 100.0)."""
    value = float(cell.rstrip("%"))
    assert math.isfinite(value), cell
    return value


def check_report(markdown: str, labels: list[str], label_column: str,
                 numeric: list[str], optional: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """The header is the one of the docs table, one row per label in order, ``numeric``
    columns finite, ``optional`` columns finite or ``-``."""
    caption, header, rows = parse_table(markdown)
    assert header in DOCS.read_text(), "the docs table has other columns than the script"
    assert "96x96" in caption
    assert [r[label_column] for r in rows] == labels
    for r in rows:
        assert r["variant"] == "test_lsnet"
        for column in numeric:
            number(r[column])
        for column in optional:
            if r[column] != "-":
                number(r[column])
    return rows


def test_report_scripts_left_the_package() -> None:
    for module in ("report", "tflite_report", "onnx_int8_report", "coreml_report", "ab_latency"):
        assert importlib.util.find_spec(f"lsnet_deploy.bench.{module}") is None
    assert cpu_name()


@pytest.mark.parametrize("name", ["onnx_int8_report", "tflite_report", "coreml_report",
                                  "ab_latency", "formulations", "int8_diagnosis",
                                  "int8_acceptance", "int8_ceiling", "int8_weight_rounding"])
def test_help(name: str) -> None:
    proc = subprocess.run([sys.executable, f"benchmarks/{name}.py", "--help"], check=False,
                          cwd=REPO, env=dict(os.environ), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--out" in proc.stdout
    timed = name in ("ab_latency", "formulations")
    assert ("--rounds" if timed else "--img-size") in proc.stdout


def test_int8_acceptance() -> None:
    # ONNX only (its INT8 export is the quick one), one family, a short interleaved timing
    markdown = run_script("int8_acceptance", *QUICK, "--families", "random-outliers",
                          "--formats", "onnx", "--rounds", "2", "--calls", "3")
    rows = check_report(markdown, ["test_lsnet"], "variant",
                        ["INT8 mean cos", "min cos", "INT8 MB", "fp32 MB", "fp32 ms",
                         "INT8 ms"])
    [row] = rows
    assert row["weights"] == "random-outliers" and row["format"] == "onnx"
    assert 0.8 < number(row["INT8 mean cos"]) <= 1.0  # equalized (0.59 with --no-equalize)
    assert number(row["INT8 MB"]) < number(row["fp32 MB"])
    assert row["speed-up"].endswith("x") and row["goals met"]


@pytest.mark.slow
def test_int8_diagnosis() -> None:
    markdown = run_script("int8_diagnosis", *QUICK)
    _caption, header, rows = parse_table(markdown)
    assert header in (REPO / "docs" / "int8.md").read_text(), "docs/int8.md has other columns"
    assert len(rows) == 2 * (6 + 4) and {r["variant"] for r in rows} == {"test_lsnet"}
    photos = {f.name for f in list_images(REPO / "calibration")}
    assert {r["worst photo"] for r in rows} <= photos
    by = {(r["weights"], r["graph"], r["activations"], r["calibration"]): r for r in rows}
    every = "minmax, ranges from every photo"
    for family in ("random", "random-outliers"):
        uint8 = number(by[family, "fused", "uint8", "minmax"]["mean cos"])
        wide = number(by[family, "fused", "int16 all", every]["mean cos"])
        assert 0 < uint8 < wide <= 1.0  # int16 activations are never worse than uint8 here
        # in int16, ranges that cover the held-out photos clip none of them: the worst photo
        # is never worse for it (the resolution lost to the wider ranges is negligible)
        clipped = number(by[family, "equalized", "int16 all", "minmax"]["min cos"])
        assert number(by[family, "equalized", "int16 all", every]["min cos"]) >= clipped - 1e-3


def _script_module(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ceiling_quantizes_where_onnx_runtime_does() -> None:
    ceiling = _script_module("int8_ceiling")
    x = torch.linspace(-1.0, 3.0, 1000).reshape(1, 10, 10, 10)
    q = ceiling._fake_quant(x, x.min(), x.max())
    assert q.unique().numel() <= 256 and (q == 0).any() and (q - x).abs().max() <= 2.0 / 255
    conv_a, conv_b = torch.nn.Conv2d(10, 10, 1), torch.nn.Conv2d(10, 10, 1)
    seen: list[tuple[int, tuple[int, ...], float]] = []

    def record(i: int, t: torch.Tensor) -> torch.Tensor:
        seen.append((i, tuple(t.shape), float(t.min())))
        return t

    with torch.no_grad(), ceiling._Quantize(record):
        y = torch.relu(conv_a(x))  # Conv + Relu: one quantizer, on the ReLU's output
        c = conv_b(y)
        assert c.shape == x.shape  # reading the shape does not quantize c
        z = c + y.reshape(1, 10, 10, 10)  # conv read by an add; a reshape is free
        w = torch.relu(c) * c  # read again: the same quantized c, not a new quantizer
    assert w.shape == z.shape == x.shape
    # ReLU, conv_b (when the add reads it), add, the second ReLU, the multiply
    assert [i for i, _, _ in seen] == [0, 1, 2, 3, 4]
    assert all(shape == (1, 10, 10, 10) for _, shape, _ in seen)
    assert seen[0][2] >= 0.0 and seen[3][2] >= 0.0  # ReLU outputs are never negative
    assert seen[1][2] < 0.0  # conv_b's output, quantized whole (not fused: it has two readers)


def test_int8_ceiling() -> None:
    markdown = run_script("int8_ceiling", *QUICK, "--families", "random")
    _caption, header, rows = parse_table(markdown)
    assert header in (REPO / "docs" / "int8.md").read_text(), "docs/int8.md has other columns"
    by = {(r["int8 weights"], r["activation ranges"], r["granularity"]): r for r in rows}
    assert len(rows) == len(by) == 8 and {r["variant"] for r in rows} == {"test_lsnet"}
    cos = {k: number(r["mean cos"]) for k, r in by.items()}
    assert all(0 < c <= 1.0 for c in cos.values())
    # the simulation stands for the artifact: its static row is ONNX Runtime's own number
    artifact = cos["yes", "ONNX Runtime's INT8 .onnx (the export, not simulated)", "tensor"]
    assert abs(cos["yes", "static min/max (calibration photos)", "tensor"] - artifact) < 0.005
    # each photo's own ranges beat static ones, one range per channel beats one per tensor
    oracle = cos["yes", "oracle min/max (each photo's own)", "tensor"]
    assert artifact < oracle < cos["yes", "oracle min/max (each photo's own)", "channel"]


def test_int8_weight_rounding() -> None:
    markdown = run_script("int8_weight_rounding", *QUICK, "--families", "random-outliers")
    _caption, header, rows = parse_table(markdown)
    assert header in (REPO / "docs" / "int8.md").read_text(), "docs/int8.md has other columns"
    by = {r["int8 weights"]: r for r in rows}
    assert len(rows) == 2 and set(by) == {"nearest", "gptq"}
    assert by["gptq"]["equalized"] == by["nearest"]["equalized"] == "yes"
    assert 0.9 < number(by["nearest"]["mean cos"]) < number(by["gptq"]["mean cos"]) <= 1.0
    assert number(by["gptq"]["output error"]) < number(by["nearest"]["output error"])


def test_onnx_int8_report() -> None:
    # no --targets: the auto mixed-precision rows are the slow ones; table on stdout
    markdown = run_script("onnx_int8_report", *QUICK, *TIMING, "--targets")
    rows = check_report(markdown, ["fp32", "int8 (full)"], "artifact",
                        ["MB", "mean cos", "min cos", "top-1 agree", "1 thread ms",
                         "2 threads ms"])
    assert number(rows[0]["mean cos"]) > 0.999


@pytest.mark.slow
def test_tflite_report(tmp_path: Path) -> None:
    # fp32 only, no auto row: every row is one litert-torch conversion (the slow part)
    markdown = run_script("tflite_report", *QUICK, *TIMING, "--precisions", "fp32",
                          "--auto-variants", out=tmp_path / "report dir" / "tflite.md")
    canonical, fp32 = check_report(
        markdown, ["fp32, canonical fused graph (before)", "fp32"], "artifact",
        ["MB", "TRANSPOSE ops", "ops", "max abs diff", "1 thread ms", "2 threads ms"],
        optional=("mean cos", "top-1 agree"))
    assert canonical["mean cos"] == "-" and number(fp32["mean cos"]) > 0.999
    assert number(fp32["TRANSPOSE ops"]) == 0  # the channels-last form has no layout transposes


def test_coreml_report(tmp_path: Path) -> None:
    # one fp16 package: the CoreML conversion is slow
    markdown = run_script("coreml_report", *QUICK, "--precisions", "fp16",
                          out=tmp_path / "report dir" / "coreml.md")
    [row] = check_report(markdown, ["fp16"], "precision", ["MB", "quantize ops", "max rank"],
                         optional=("W8A8 fake-quant mean cos",))
    assert row["run by"] in ("reference-executor", "coreml")
    assert number(row["mean cos"]) >= 0.999 and row["top-1 agree"] == "100%"
    assert row["conv/linear weights"].startswith("FLOAT16")


def test_ab_latency(tmp_path: Path) -> None:
    """Two ONNX files and one TFLite file, interleaved: each file's median, the second ONNX file
    against the first (its runtime and precision's baseline), the TFLite file its own
    baseline."""
    from lsnet_deploy.pipeline import export

    out = tmp_path / "ab dir"
    [onnx] = export("test_lsnet", "onnx", weights="random", img_size=96, output_dir=out)
    copy = out / "copy.onnx"
    copy.write_bytes(onnx.path.read_bytes())
    [tflite] = export("test_lsnet", "tflite", weights="random", img_size=96, output_dir=out)
    markdown = run_script("ab_latency", str(onnx.path), str(copy), str(tflite.path),
                          "--rounds", "3", "--calls", "2", "--warmup", "1", "--threads", "1", "2")
    caption, header, rows = parse_table(markdown)
    assert header in DOCS.read_text(), "the docs table has other columns than the script"
    assert "3 interleaved rounds of 2 timed calls" in caption
    assert [(Path(r["file"]).name, r["threads"]) for r in rows] == [
        (p.name, t) for t in ("1", "2") for p in (onnx.path, copy, tflite.path)]
    for r in rows:
        assert number(r["median ms"]) > 0 and r["calls"] == "6" and r["precision"] == "fp32"
    assert [r["vs baseline"] == "baseline" for r in rows] == [True, False, True] * 2
    for r in (rows[1], rows[4]):
        lo, hi = (float(v) for v in r["ratio range"].split("-"))
        assert 0 < lo <= number(r["vs baseline"]) <= hi  # no bound on a timing ratio
    _check_op_times(tflite.path)


def _check_op_times(path: Path) -> None:
    """``litert_op_times`` on a TFLite file some test exported: every op kind of the file,
    counted as in its op histogram, and the slowest ops with their shapes. The stem's PADs
    are timed with the convolutions they feed (XNNPACK folds them in); LKP's and SKA's PADs,
    read by slices, alone."""
    from lsnet_deploy.exporters.tflite_flatbuffer import op_histogram

    markdown = run_script("litert_op_times", str(path), "--calls", "2", "--top", "3")
    kinds_text, top_text = markdown.split("\n\nMachine: ")
    caption, _header, kinds = parse_table(kinds_text)
    histogram = dict(op_histogram(path))
    assert {r["op"]: int(r["count"]) for r in kinds} == histogram
    folded = _script_module("litert_op_times").folded_pads(path)
    assert 3 <= len(folded) < histogram["PAD"], folded  # the stem's three convs at least
    assert f"{len(folded)} PAD timed with the convolution it feeds" in caption
    assert sum(number(r["share"]) for r in kinds) == pytest.approx(100, abs=0.5)
    caption, _header, top = parse_table("Machine: " + top_text)
    assert "the 3 slowest single ops" in caption
    assert len(top) == 3 and all(number(r["ms"]) > 0 for r in top)
    assert number(top[0]["ms"]) >= number(top[-1]["ms"])


def test_formulations() -> None:
    """Every candidate formulation is equal to the fused model (the script refuses one that is
    not) and is timed against the shipped form."""
    markdown = run_script("formulations", "--variant", "test_lsnet", "--rounds", "1",
                          "--calls", "1", "--warmup", "0")
    caption, _, rows = parse_table(markdown)
    assert "test_lsnet, ONNX Runtime fp32" in caption
    assert [r["formulation"] for r in rows] == [
        "shipped", "ska_onehot_conv", "se_global_pool", "ffn_matmul"]
    assert rows[0]["vs baseline"] == "baseline"
    assert all(number(r["median ms"]) > 0 for r in rows)


def test_ska_int8_forms() -> None:
    """Both SKA forms are exported, validated and scored for each family (the candidate is
    checked equal to the shipped SKA before anything is exported)."""
    markdown = run_script("ska_int8_forms", "--variants", "test_lsnet", "--img-size", "96",
                          "--families", "random")
    _caption, header, rows = parse_table(markdown)
    assert header in (REPO / "docs" / "int8.md").read_text(), "docs/int8.md has other columns"
    assert [(r["SKA form"], r["requantized per SKA"]) for r in rows] == [
        ("chained adds (shipped)", "17"), ("one reduction", "2")]
    assert all(0.5 < number(r["mean cos"]) <= 1.0 for r in rows)


def test_one_reduction_ska_is_the_shipped_function() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from ska_int8_forms import check_equal, one_reduction

    check_equal()  # raises if the candidate computes something else
    from lsnet_deploy.portable import SKAPortable

    bn = torch.nn.BatchNorm2d(16).eval()
    ska = SKAPortable(16, 2, (5, 6), bn)
    x, w = torch.randn(1, 16, 5, 6), torch.randn(1, 9, 2, 30)
    assert not torch.allclose(one_reduction(ska, x, w), one_reduction(ska, x, w.flip(1)))


def test_litert_depthwise() -> None:
    """One row per LKP shape of the variant (7x7: one kernel, no delegate, row bands) and the
    3x3 / 5x5 reference rows of the first shape; every time positive."""
    markdown = run_script("litert_depthwise", "--variants", "test_lsnet", "--kernel-calls", "3")
    caption, _header, rows = parse_table(markdown)
    assert "test_lsnet" in caption
    sevens = [r for r in rows if r["kernel"] == "7x7"]
    assert len(sevens) >= 2 and [r["kernel"] for r in rows[len(sevens):]] == ["3x3", "5x5"]
    for r in sevens:
        ms = [number(r[c]) for c in ("XNNPACK ms", "LiteRT kernels (no delegate) ms",
                                     "XNNPACK, 3 row bands ms")]
        assert all(m > 0 for m in ms), r
        # the ratio is of the unrounded times; the cells are rounded to 0.001 ms
        assert number(r["bands vs one kernel"]) == pytest.approx(ms[2] / ms[0], rel=0.2, abs=0.01)
