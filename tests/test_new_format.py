"""The one-module claim: a format written as one module and registered with one line is
exported, validated and benchmarked through the CLI with no other file touched.

The toy format here is a saved ``torch.export`` program (``.pt2``): its module below is
everything a format needs (facts, export, metadata, runner, benchmark session). It lives in a temporary folder
and is registered by one line in a fresh interpreter, so nothing leaks into other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

TOY_MODULE = '''
"""A saved torch.export program, as a toy fifth format."""
import json, time
from pathlib import Path

import numpy as np
import torch

from lsnet_deploy.exporters.base import Capabilities, Exporter, ExportResult
from lsnet_deploy.exporters.inputs import example_input, graph_model
from lsnet_deploy.exporters.session import Session, random_input


class ToyExporter(Exporter):
    name = "pt2"
    suffixes = (".pt2",)
    runtime = "torch-export"
    extra = "toy"
    capabilities = Capabilities(precisions=("fp32",), dynamic_batch=False, image_input=True)

    def export(self, model, spec, out, task):
        module = graph_model(model, spec)
        with torch.no_grad():
            program = torch.export.export(module, (example_input(spec, task.options.batch),))
        torch.export.save(program, str(out))
        return ExportResult(details={"converter": "torch.export"})

    def embed_metadata(self, path, metadata):
        program = torch.export.load(str(path))
        torch.export.save(program, str(path), extra_files={"lsnet_deploy": json.dumps(metadata)})

    def read_metadata(self, path):
        files = {"lsnet_deploy": ""}
        torch.export.load(str(path), extra_files=files)
        return json.loads(files["lsnet_deploy"] or "{}")

    def runner(self, path, threads=None, accelerator=None):
        module = torch.export.load(str(path)).module()

        def run(x):
            with torch.no_grad():
                return module(torch.from_numpy(x)).numpy()
        return run

    def bench_session(self, path, threads, batch, accelerator=None):
        t0 = time.perf_counter()
        module = torch.export.load(str(path)).module()
        load_ms = (time.perf_counter() - t0) * 1e3
        x = torch.from_numpy(random_input([batch or 1, 3, 128, 128], np.float32,
                                          np.random.default_rng(0)))
        return Session(lambda: module(x), list(x.shape), batch or 1, load_ms)
'''

DRIVER = '''
import sys
import lsnet_deploy.exporters as registry
registry.REGISTRY["pt2"] = "toy_format:ToyExporter"  # the one registry line
from lsnet_deploy.cli import main
main(sys.argv[1:])
'''


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "toy_format.py").write_text(textwrap.dedent(TOY_MODULE))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", DRIVER, *args], check=False,
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)


def test_a_registered_module_is_a_format_of_every_command(tmp_path: Path) -> None:
    out = tmp_path / "out dir"  # a path with a space in it
    done = _cli(tmp_path, "export", "--format", "pt2", "--test-model", "test_lsnet",
                "--img-size", "128", "--weights", "random", "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    [artifact] = json.loads(done.stdout)["artifacts"]
    path = Path(artifact["path"])
    assert path == out / "test_lsnet" / "test_lsnet_128_fp32.pt2" and artifact["passed"]
    assert artifact["validation"]["max_abs_diff"] <= 1e-3
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar["format"] == "pt2" and sidecar["metadata"]["variant"] == "test_lsnet"

    checked = _cli(tmp_path, "validate", str(path), "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["passed"] is True

    timed = _cli(tmp_path, "bench", str(path), "--runs", "3", "--warmup", "1",
                 "-o", str(tmp_path / "bench"), "--json")
    assert timed.returncode == 0, timed.stderr
    [result] = json.loads(timed.stdout)["results"]
    assert result["runtime"] == "torch-export" and result["model"] == "test_lsnet"
    assert result["median_ms"] > 0

    listed = _cli(tmp_path, "export", "--help")
    assert "pt2" in listed.stdout
