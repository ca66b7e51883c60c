"""The shipped networks: weights/MANIFEST.json against the files, and where a command finds its weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fusionlib import weights as W
from fusionlib.fuse import main as fuse_main
from fusionlib.methods import get_method
from fusionlib.models import create_model

REQUIRED = {"file", "sha256", "bytes", "notebook", "profile", "recipe", "steps", "seed", "started", "device",
            "wall_seconds", "commit", "metrics", "data_terms", "config", "parameters"}


def test_shipped_files_match_the_manifest():
    """Every listed file is there with its sha256; every weights/*.pt is listed; records are complete."""
    assert W.check_manifest() == []
    man = W.load_manifest()
    for method, rec in man["weights"].items():
        assert method in W.SHIPPED, f"{method} is shipped but not in fusionlib.weights.SHIPPED"
        assert REQUIRED <= set(rec), f"{method}: the manifest record lacks {sorted(REQUIRED - set(rec))}"
        assert rec["bytes"] == (W.WEIGHTS_DIR / rec["file"]).stat().st_size
        assert rec["profile"] == W.SHIPPED[method].profile
        assert set(rec["metrics"]) == set(W.EVAL_SETS)


def test_shipped_networks_load_as_their_configuration():
    """Each shipped file loads (tensors only) into the configuration its record names, at that parameter count."""
    for method, rec in W.load_manifest()["weights"].items():
        model = W.shipped_model(method)
        assert model is not None
        assert sum(p.numel() for p in model.parameters()) == rec["parameters"]
        if rec["config"] != get_method(method).model:
            assert rec["narrow"], f"{method}: a {rec['config']} network must be labelled narrow"
            assert "narrow" in W.shipped_label(method)


def test_shipped_weights_total_size_is_light():
    total = sum(p.stat().st_size for p in W.WEIGHTS_DIR.glob("*.pt")) if W.WEIGHTS_DIR.is_dir() else 0
    assert total <= 30 * 2**20, f"weights/ holds {total / 2**20:.1f} MB, the budget is 30 MB"


def _fake_shipped(tmp_path: Path, method: str = "tinyfuse") -> Path:
    d = tmp_path / "shipped"
    d.mkdir()
    net = create_model(get_method(method).model)
    torch.save(net.state_dict(), d / f"{method}.pt")
    rec = {"file": f"{method}.pt", "sha256": W.sha256(d / f"{method}.pt"), "profile": "lab", "steps": 3,
           "device": "cpu", "config": get_method(method).model, "parameters": 1, "narrow": "", "wall_seconds": 6.0,
           "started": "2026-12-07T12:00:00", "commit": "0" * 40, "seed": 0}
    (d / W.MANIFEST).write_text(json.dumps({"schema": 1, "weights": {method: rec}}))
    return d


def test_check_manifest_names_a_changed_a_missing_and_an_unlisted_file(tmp_path):
    d = _fake_shipped(tmp_path)
    assert W.check_manifest(d) == []
    (d / "tinyfuse.pt").write_bytes(b"changed")
    torch.save({}, d / "stray.pt")
    problems = W.check_manifest(d)
    assert any("tinyfuse" in p and "sha256" in p for p in problems)
    assert any("stray.pt" in p and "not listed" in p for p in problems)
    (d / "tinyfuse.pt").unlink()
    assert any("missing" in p for p in W.check_manifest(d))


def test_a_notebook_run_wins_over_the_shipped_file_and_says_so(tmp_path):
    d = _fake_shipped(tmp_path)
    path, where = W.resolve_weights("tinyfuse", tmp_path / "runs", d)
    assert path == d / "tinyfuse.pt" and where.startswith("shipped")
    run = tmp_path / "runs" / "00_foundations"
    run.mkdir(parents=True)
    torch.save(create_model("tinyfuse").state_dict(), run / "weights.pt")
    path, where = W.resolve_weights("tinyfuse", tmp_path / "runs", d)
    assert path == run / "weights.pt" and "00_foundations run" in where
    assert W.resolve_weights("tinyfuse", tmp_path / "none", tmp_path / "empty")[0] is None


def test_network_for_uses_the_shipped_network_only_at_smoke(tmp_path):
    d = _fake_shipped(tmp_path)
    own = create_model("tinyfuse")
    net, label = W.network_for("tinyfuse", own, "smoke", d)
    assert net is not own and label.startswith("shipped")
    assert W.network_for("tinyfuse", own, "lab", d)[0] is own
    net, label = W.network_for("tinyfuse", own, "smoke", tmp_path / "empty")
    assert net is own and "smoke" in label


def test_pick_network_labels_and_records_what_it_shows(tmp_path, capsys):
    d = _fake_shipped(tmp_path)
    own = create_model("tinyfuse").train()
    picked = W.pick_network("tinyfuse", own, "smoke", own_short="this run", weights_dir=d, where="§9")
    out = capsys.readouterr().out
    assert picked.shipped and picked.model is not own and not picked.model.training
    assert picked.short.startswith("shipped, lab recipe,") and picked.record["file"] == "tinyfuse.pt"
    assert "weights/tinyfuse.pt" in out and f"the network §9 show: {picked.label}" in out
    mine = W.pick_network("tinyfuse", own, "lab", own_short="this run", weights_dir=d)
    assert not mine.shipped and mine.model is own and mine.short == "this run" and mine.record is None


def test_fuse_without_weights_uses_the_shipped_file(tmp_path, capsys):
    from PIL import Image

    d = _fake_shipped(tmp_path)
    for sub in ("ir", "vi"):
        (tmp_path / sub).mkdir()
        Image.new("L", (16, 12), 100).save(tmp_path / sub / "a.png")
    assert fuse_main(["--method", "tinyfuse", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi"),
                      "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "none"), "--shipped", str(d),
                      "--quiet"]) == 0
    assert "weights: shipped" in capsys.readouterr().out
    assert (tmp_path / "out" / "a.png").is_file()


def test_train_rejects_an_unknown_method(capsys):
    with pytest.raises(SystemExit):
        W.main(["train", "nope"])
    assert "not a shipped network" in capsys.readouterr().err


def test_the_readme_block_lists_each_shipped_network_beside_average_fusion():
    from fusionlib.report import shipped_markdown

    man = {"average_fusion": {"msrs": {"pairs": 22, "VIF": 0.5, "Qabf": 0.4}},
           "weights": {"lkc_funet": {"metrics": {"msrs": {"pairs": 22, "VIF": 0.7, "Qabf": 0.5}}, "profile": "cpu",
                                     "steps": 300, "device": "cpu (x86_64, 2 threads)", "wall_seconds": 600,
                                     "config": "lkc_funet_narrow", "parameters": 2_727_730, "narrow": "narrow",
                                     "evaluation": "every bundled test pair"}}}
    md = shipped_markdown(man)
    assert "| Average | rule | 0.500 | 0.400 |" in md
    assert "LKC-FUNet (narrow `lkc_funet_narrow`, 2.7 M params) | cpu, 300 steps, cpu, 10 min | 0.700 | 0.500 |" in md
