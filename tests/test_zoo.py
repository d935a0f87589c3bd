"""The zoo manifest and the (real) Hugging Face download path, exercised offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lsnet_deploy import create_model
from lsnet_deploy.errors import CheckpointError, UnknownVariantError, WeightsUnavailableError
from lsnet_deploy.zoo import cached_checkpoint, fetch_checkpoint, zoo, zoo_entry

VARIANTS = ["lsnet_t", "lsnet_t_distill", "lsnet_s", "lsnet_s_distill", "lsnet_b", "lsnet_b_distill"]


def test_manifest_lists_the_six_official_files() -> None:
    entries = zoo()
    assert sorted(entries) == sorted(VARIANTS)
    for name, e in entries.items():
        assert e.repo_id == "jameslahm/lsnet" and e.filename == f"{name}.pth"
        assert e.url.endswith(f"/resolve/main/{name}.pth")
        assert e.input_size == 224 and e.crop_pct == 0.9 and e.interpolation == "bicubic"
        assert e.mean == (0.485, 0.456, 0.406) and e.std == (0.229, 0.224, 0.225)
        assert 70 < e.paper["top1"] < 85
    assert zoo_entry("lsnet_t").paper["top1"] == 74.9
    assert zoo_entry("lsnet_b_distill").paper["top1"] == 81.6
    with pytest.raises(UnknownVariantError):
        zoo_entry("test_lsnet")


def test_offline_is_a_clear_error() -> None:
    assert cached_checkpoint("lsnet_t") is None
    with pytest.raises(WeightsUnavailableError, match="--weights PATH.*--weights random"):
        fetch_checkpoint("lsnet_t")
    with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE"):
        create_model("lsnet_t", "official")


def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the Hub were reachable (the downloads themselves are faked)."""
    import lsnet_deploy.zoo as zoo_mod

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(zoo_mod, "hub_unreachable", lambda *a, **k: None)


def test_no_network_is_found_fast_and_said_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    import huggingface_hub

    import lsnet_deploy.zoo as zoo_mod

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    start = time.monotonic()  # TEST-NET-1: never answers
    assert "no network?" in (zoo_mod.hub_unreachable("https://192.0.2.1", timeout=0.5) or "")
    assert time.monotonic() - start < 3
    with socket.socket() as server:  # a listening port: reachable
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert zoo_mod.hub_unreachable(f"http://127.0.0.1:{server.getsockname()[1]}") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # only the proxy can tell
    assert zoo_mod.hub_unreachable("https://192.0.2.1", timeout=0.5) is None
    monkeypatch.delenv("HTTPS_PROXY")

    def never(**_: object) -> str:
        raise AssertionError("no download is attempted without a network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", never)
    monkeypatch.setattr(zoo_mod, "hub_unreachable", lambda *a, **k: "huggingface.co is "
                        "unreachable (Name or service not known); no network?")
    with pytest.raises(WeightsUnavailableError, match="no network.*--weights random"):
        fetch_checkpoint("lsnet_t")


def test_download_goes_through_hf_hub_and_is_cached(
    monkeypatch: pytest.MonkeyPatch, make_checkpoint
) -> None:  # type: ignore[no-untyped-def]
    import huggingface_hub

    source = make_checkpoint("lsnet_t")
    calls: list[dict[str, str]] = []

    def fake_download(repo_id: str, filename: str, local_dir: str, **_: object) -> str:
        calls.append({"repo_id": repo_id, "filename": filename})
        target = Path(local_dir) / filename
        target.write_bytes(source.read_bytes())
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    _online(monkeypatch)
    path = fetch_checkpoint("lsnet_t")
    assert calls == [{"repo_id": "jameslahm/lsnet", "filename": "lsnet_t.pth"}]
    assert cached_checkpoint("lsnet_t") == path
    model = create_model("lsnet_t", "official")  # served from the cache: no second download
    assert len(calls) == 1 and model.weights_source.kind == "official"
    ref = torch.load(source, weights_only=True)["model"]
    torch.testing.assert_close(model.state_dict()["head.l.weight"], ref["head.l.weight"])


def test_sha256_mismatch_removes_the_download(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import huggingface_hub

    import lsnet_deploy.zoo as zoo_mod

    def fake_download(repo_id: str, filename: str, local_dir: str, **_: object) -> str:
        target = Path(local_dir) / filename
        target.write_bytes(b"tampered")
        return str(target)

    entry = dataclasses.replace(zoo_entry("lsnet_t"), sha256="0" * 64)
    monkeypatch.setattr(zoo_mod, "zoo_entry", lambda v: entry)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    _online(monkeypatch)
    with pytest.raises(CheckpointError, match="does not match the manifest"):
        fetch_checkpoint("lsnet_t")
    assert cached_checkpoint("lsnet_t") is None


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["lsnet_t", "lsnet_s_distill", "lsnet_b"])
def test_manifest_counts_are_the_counted_ones(variant: str) -> None:
    """``models`` reads parameters and MACs from the manifest (no model built): they must be
    what building and fusing the variant gives (the other variants share these blocks)."""
    from lsnet_deploy.describe import variant_counts

    assert zoo_entry(variant).counts == variant_counts(variant)


def test_every_manifest_entry_has_its_counts() -> None:
    for name, entry in zoo().items():
        assert entry.counts is not None and set(entry.counts) == {
            "params", "params_fused", "macs", "macs_paper_convention"}, name
        assert entry.counts["params_fused"] < entry.counts["params"]
