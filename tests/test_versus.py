"""LSNet vs peers: the pairing and ratios of lsnet_deploy.bench.versus, peers exported through the
export pipeline, `bench --peer`, and the ONNX Runtime op profile (`bench profile`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsnet_deploy.bench.output import markdown_report
from lsnet_deploy.bench.schema import BenchReport, BenchResult
from lsnet_deploy.bench.versus import compare_with_peers, comparisons_markdown, model_cost
from lsnet_deploy.errors import UnsupportedOptionError
from lsnet_deploy.pipeline import ExportRequest, export, plan
from tests.test_cli import run_main

SHAPE = [1, 3, 224, 224]


def _result(model: str, runtime: str, ms: float, threads: int = 1,
            precision: str = "fp32") -> BenchResult:
    return BenchResult(model, runtime, precision, threads, 1, ms, runs=10, input_shape=SHAPE)


def test_model_costs_share_one_convention() -> None:
    t, mnv3 = model_cost("lsnet_t"), model_cost("mobilenetv3_large")
    assert t is not None and mnv3 is not None
    assert t.gmacs == pytest.approx(0.316, abs=0.002) and not t.peer and t.top1 == 74.9
    assert mnv3.gmacs == pytest.approx(0.217, abs=0.003) and mnv3.peer and mnv3.top1 == 75.2
    assert model_cost("lsnet_t_distill").title == "LSNet-T (distilled)"
    assert model_cost("my_model") is None  # a foreign artifact: no cost, no comparison
    half = model_cost("mobilenetv3_large", (112, 112))
    assert half is not None and half.gmacs < mnv3.gmacs / 3  # MACs at the measured size


def test_pairs_only_the_same_configuration() -> None:
    results = [
        _result("lsnet_t", "litert", 6.0), _result("mobilenetv3_large", "litert", 4.0),
        _result("lsnet_t", "litert", 3.5, threads=2),  # no peer at 2 threads
        _result("mobilenetv3_large", "onnxruntime", 3.9),  # no LSNet on this runtime
        _result("lsnet_t", "pytorch-unfused", 30.0),
        _result("mobilenetv3_large", "pytorch-fused", 9.0),
        _result("lsnet_t", "pytorch-fused", 20.0), _result("other", "litert", 1.0),
    ]
    got = compare_with_peers(results)
    assert [(c.runtime, c.threads) for c in got] == [("litert", 1), ("pytorch-fused", 1)]
    lite = got[0]
    assert lite.speed_ratio == pytest.approx(1.5)
    assert lite.mac_ratio == pytest.approx(0.3161 / 0.2166, rel=0.02)
    assert lite.per_mac_ratio == pytest.approx(1.5 / lite.mac_ratio)
    assert lite.to_dict()["model_ms_per_gmac"] == pytest.approx(6.0 / lite.model_gmacs)
    table = "\n".join(comparisons_markdown(got))
    assert "| 1.50 |" in table and "(costlier)" in table
    fast = compare_with_peers([_result("lsnet_t", "litert", 4.0),
                               _result("mobilenetv3_large", "litert", 4.0)])
    assert fast[0].per_mac_ratio < 1 and "(parity)" in comparisons_markdown(fast)[2]
    page = markdown_report(BenchReport(results, {}))
    assert "## LSNet vs peers" in page and "mobilenetv3_large" in page
    assert compare_with_peers([_result("lsnet_t", "litert", 6.0)]) == []


def test_peer_export_is_planned_like_lsnet(tmp_path: Path) -> None:
    [job] = plan(ExportRequest.build("mobilenetv3_large", "tflite", weights="random",
                                     output_dir=tmp_path))
    assert job.dest == tmp_path / "mobilenetv3_large" / "mobilenetv3_large_224_fp32.tflite"
    assert job.spec.value_range == "0..255" and job.labels_file is not None
    with pytest.raises(UnsupportedOptionError, match="use --weights random"):
        plan(ExportRequest.build("repvit_m0_9", "onnx", weights="official"))


def test_peer_exports_and_validates(tmp_path: Path) -> None:
    [artifact] = export("mobilenetv3_large", "onnx", weights="random", img_size=96,
                        output_dir=tmp_path)
    assert artifact.passed and artifact.validation["max_abs_diff"] < 1e-3
    sidecar = json.loads(Path(f"{artifact.path}.json").read_text())
    assert sidecar["metadata"]["variant"] == "mobilenetv3_large"
    assert sidecar["metadata"]["weights_kind"] == "random"
    assert "peer network" in sidecar["reparameterization"]["note"]


def test_cli_refuses_peer_with_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["export", "--model", "lsnet_s", "--peer", "mobilenetv3_large",
                             "--weights", "random"], capsys)
    assert code != 0 and "not both" in err and "Traceback" not in err
    code, _, err = run_main(["bench", "--peer", "resnet50"], capsys)
    assert code == 2 and "resnet50" in err
    code, _, err = run_main(["bench", "profile", "--peer", "mobilenetv3_large",
                             "--precision", "fp16"], capsys)
    assert code != 0 and "fp32, int8" in err


def test_profile_attributes_every_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["bench", "profile", "--test-model", "test_lsnet", "--peer",
                               "mobilenetv3_large", "--runtime", "onnxruntime", "--runs", "3",
                               "--json"], capsys)
    assert code == 0, err
    mine, peer = json.loads(out)["profiles"]
    groups = {g["name"]: g for g in mine["groups"]}
    assert {"ska", "ffn", "lkp_conv", "stem", "head"} <= set(groups)
    assert "unattributed" not in groups  # every kernel traced back to an LSNet op group
    assert sum(g["share"] for g in mine["groups"]) == pytest.approx(1.0)
    assert sum(g["ms"] for g in mine["groups"]) == pytest.approx(mine["total_ms"], rel=1e-6)
    assert peer["model"] == "mobilenetv3_large" and peer["groups"] == []
    kinds = {k["name"] for k in peer["kinds"]}
    assert any(k.startswith("conv dw") for k in kinds) and "conv 1x1" in kinds
    assert groups["ffn"]["gmacs"] > 0 and groups["ska"]["kernels"] > 9
    maps = {m["name"]: m for m in mine["maps"]}  # convolutions by output map size
    assert sum(m["gmacs"] for m in mine["maps"]) == pytest.approx(
        sum(k["gmacs"] for k in mine["kinds"]))
    assert any(name.startswith("conv 1x1 @ ") for name in maps)


def test_int8_profile_follows_the_nhwc_rewrites(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["bench", "profile", "--test-model", "test_lsnet", "--runtime",
                               "onnxruntime", "--precision", "int8", "--runs", "3", "--json"],
                              capsys)
    assert code == 0, err
    [mine] = json.loads(out)["profiles"]
    groups = {g["name"]: g for g in mine["groups"]}
    # int8 kernels are renamed (_token_N) and wrapped in transposes: still traced back
    assert groups.get("unattributed", {"share": 0.0})["share"] < 0.1, groups
    assert groups["layout"]["kernels"] > 0 and groups["ffn"]["gmacs"] > 0
    assert any(k["name"].startswith("int8 conv") and k["gmacs"] > 0 for k in mine["kinds"])


@pytest.mark.slow
def test_bench_lsnet_beside_a_peer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The acceptance command of the peers issue, on ONNX Runtime only (CI time)."""
    code, out, err = run_main(
        ["bench", "--model", "lsnet_t", "--peer", "mobilenetv3_large", "--weights", "random",
         "--runtime", "onnxruntime", "--threads", "1,2", "--runs", "3", "--warmup", "1",
         "--json", "-o", str(tmp_path / "r")], capsys)
    assert code in (0, 9), err  # INT8 of random weights may miss its gate: timed anyway
    report = json.loads(out)
    pairs = {(c["precision"], c["threads"]) for c in report["peer_comparisons"]}
    assert pairs == {("fp32", 1), ("fp32", 2), ("int8", 1), ("int8", 2)}
    for c in report["peer_comparisons"]:
        assert c["model"] == "lsnet_t" and c["peer"] == "mobilenetv3_large"
        assert c["speed_ratio"] == pytest.approx(c["model_ms"] / c["peer_ms"])
    assert "## LSNet vs peers" in (tmp_path / "r" / "results.md").read_text()
    code, out, _ = run_main(["report", str(tmp_path / "r")], capsys)
    assert code == 0 and "LSNet vs peers" in out and "per-MAC cost ratio" in out


@pytest.mark.slow
def test_litert_block_profile_adds_up(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["bench", "profile", "--test-model", "test_lsnet", "--runtime",
                               "litert", "--runs", "5", "--json"], capsys)
    assert code == 0, err
    [blocks] = json.loads(out)["litert_blocks"]
    groups = {g["name"]: g for g in blocks["groups"]}
    assert {"stem", "lkp", "ska", "ffn", "se", "repvgg_dw", "attention", "downsample"} <= set(
        groups)
    assert groups["ffn"]["kernels"] == 7 and groups["ska"]["kernels"] == 2  # test_lsnet blocks
    assert sum(g["ms"] for g in blocks["groups"]) == pytest.approx(blocks["whole_ms"])
    assert all(g["ms"] > 0 for n, g in groups.items() if not n.startswith("unaccounted"))
