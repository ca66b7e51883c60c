"""The fuse command and the methods registry: right pixels, colour back, clear errors, nothing overwritten."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fusionlib.data import read_image
from fusionlib.fuse import find_pairs, fuse_pairs, main
from fusionlib.methods import METHODS, Fuser, get_method, list_methods, load_model, register_method
from fusionlib.models import create_model

REPO = Path(__file__).resolve().parents[1]
MSRS = REPO / "data" / "msrs_mini" / "test"


def _pairs(tmp: Path, n: int = 3, size=(40, 52), colour: bool = True) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    ir, vi = tmp / "ir", tmp / "vi"
    ir.mkdir()
    vi.mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(ir / f"p{i}.png")
        gray = rng.integers(40, 216, size)
        # mildly saturated colour, so that putting a brighter Y back rarely leaves the RGB gamut
        img = np.clip(gray[..., None] + rng.integers(-25, 26, (*size, 3)), 0, 255) if colour else gray
        Image.fromarray(img.astype(np.uint8)).save(vi / f"p{i}.png")
    return ir, vi


def test_max_rule_fuses_luma_and_restores_colour(tmp_path):
    ir, vi = _pairs(tmp_path)
    assert main(["--method", "max", "--ir", str(ir), "--vi", str(vi), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    for i in range(3):
        out = read_image(tmp_path / "out" / f"p{i}.png", "raw")
        assert out.shape == (3, 40, 52), "colour visible image -> RGB output at full size"
        want = torch.maximum(read_image(ir / f"p{i}.png", "gray"), read_image(vi / f"p{i}.png", "y"))
        got = read_image(tmp_path / "out" / f"p{i}.png", "y")
        # 8-bit RGB round trip of a clamped colour: within a few grey levels, mostly within one
        assert (got - want).abs().mean() < 1.5 / 255
        vi_rgb = read_image(vi / f"p{i}.png", "rgb")
        cb_in = (vi_rgb[2] - read_image(vi / f"p{i}.png", "y")[0])
        cb_out = (out[2] - got[0])
        assert torch.corrcoef(torch.stack([cb_in.flatten(), cb_out.flatten()]))[0, 1] > 0.9, "chroma not restored"


def test_gray_pairs_give_gray_output(tmp_path):
    ir, vi = _pairs(tmp_path, n=1, colour=False)
    main(["--method", "average", "--ir", str(ir), "--vi", str(vi), "--out", str(tmp_path / "o"), "--quiet"])
    assert read_image(tmp_path / "o" / "p0.png", "raw").shape[0] == 1


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, capsys):
    ir, vi = _pairs(tmp_path, n=2)
    out = tmp_path / "out"
    out.mkdir()
    Image.fromarray(np.zeros((40, 52), np.uint8)).save(out / "p0.png")
    main(["--method", "max", "--ir", str(ir), "--vi", str(vi), "--out", str(out), "--quiet"])
    assert "kept 1 existing" in capsys.readouterr().out
    assert read_image(out / "p0.png", "raw").max() == 0, "an existing output was overwritten"
    main(["--method", "max", "--ir", str(ir), "--vi", str(vi), "--out", str(out), "--quiet", "--overwrite"])
    assert read_image(out / "p0.png", "raw").max() > 0
    assert not list(out.glob(".*tmp*")), "temporary files left behind"


def test_unmatched_and_size_mismatch_errors_name_the_files(tmp_path, capsys):
    ir, vi = _pairs(tmp_path, n=2)
    Image.fromarray(np.zeros((40, 52), np.uint8)).save(ir / "lonely.png")
    assert main(["--method", "max", "--ir", str(ir), "--vi", str(vi), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "lonely.png" in err and "no partner" in err and "--ignore-unmatched" in err
    assert main(["--method", "max", "--ir", str(ir), "--vi", str(vi), "--out", str(tmp_path / "o"), "--quiet",
                 "--ignore-unmatched"]) == 0
    Image.fromarray(np.zeros((30, 52), np.uint8)).save(vi / "lonely.png")
    assert main(["--method", "max", "--ir", str(ir), "--vi", str(vi), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "size mismatch" in err and "lonely.png" in err and "(30, 52)" in err


def test_network_needs_weights_and_rejects_foreign_ones(tmp_path, capsys):
    ir, vi = _pairs(tmp_path, n=1)
    assert main(["--method", "tinyfuse", "--ir", str(ir), "--vi", str(vi), "--out", str(tmp_path / "o"),
                 "--runs", str(tmp_path / "none"), "--shipped", str(tmp_path / "no_weights")]) == 2
    assert "needs trained weights" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    torch.save({"foo.weight": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="does not hold tinyfuse weights"):
        load_model("tinyfuse", bad)
    with pytest.raises(KeyError, match="known: "):
        get_method("nope")


def test_padding_to_a_multiple_is_cropped_back_and_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    net = create_model("tinyfuse")
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    register_method(dataclasses.replace(get_method("tinyfuse"), name="_tiny8", multiple=8))
    try:
        fuser = Fuser("_tiny8", tmp_path / "weights.pt")
        ir, vi = torch.rand(2, 1, 37, 45), torch.rand(2, 1, 37, 45)
        out = fuser(ir, vi)
        assert out.shape == (2, 1, 37, 45)
        # away from the padded border the result is the network's own output
        with torch.no_grad():
            ref = net.eval()(ir, vi).clamp(0, 1)
        torch.testing.assert_close(out[..., :30, :38], ref[..., :30, :38], atol=1e-5, rtol=0)
        # {"model": state_dict} as in last.pt loads too
        torch.save({"model": net.state_dict(), "epoch": 3}, tmp_path / "last.pt")
        assert isinstance(load_model("tinyfuse", tmp_path / "last.pt"), torch.nn.Module)
    finally:
        METHODS.pop("_tiny8")


def test_batching_by_size_gives_the_same_images(tmp_path):
    ir, vi = _pairs(tmp_path, n=3)
    torch.manual_seed(0)
    torch.save(create_model("tinyfuse").state_dict(), tmp_path / "w.pt")
    f = Fuser("tinyfuse", tmp_path / "w.pt")
    pairs = find_pairs(ir, vi)
    one = fuse_pairs(f, pairs, tmp_path / "b1", batch_size=1, progress=False)
    three = fuse_pairs(f, pairs, tmp_path / "b3", batch_size=3, progress=False)
    assert len(one.written) == len(three.written) == 3 and three.forward_seconds > 0
    for p in one.written:
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(tmp_path / "b3" / p.name)))


def test_registry_lists_rules_and_networks():
    assert {"average", "max"} <= set(list_methods(trainable=False))
    assert {"siba", "rpfnet", "tinyfuse"} <= set(list_methods(trainable=True))


def test_released_siba_through_the_fuse_command_matches_the_authors_output(tmp_path, shared):
    """The whole path (read RGB, Y, pad, network, colour back, 8-bit) against the authors' test output."""
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    Image.open(MSRS / "ir" / "00004N.png").crop((0, 0, 128, 128)).save(tmp_path / "ir" / "00004N.png")
    Image.open(MSRS / "vi" / "00004N.png").crop((0, 0, 128, 128)).save(tmp_path / "vi" / "00004N.png")
    assert main(["--method", "siba", "--weights", str(shared / "golden/siba/SIBA_epoch60.pth"), "--ir",
                 str(tmp_path / "ir"), "--vi", str(tmp_path / "vi"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    got = read_image(tmp_path / "out" / "00004N.png", "y")[0]
    want = torch.from_numpy(np.load(shared / "golden/siba/crop128/msrs_00004N_out_clamped.npy"))[0, 0]
    diff = (got - want).abs()
    assert float(diff.mean()) < 0.5 / 255 and float(diff.max()) < 2.5 / 255, "beyond 8-bit colour round-trip error"


def test_report_renders_tables_with_provenance_and_rewrites_only_the_block(tmp_path):
    from fusionlib.report import END, START, results_markdown, update_readme

    res = {"meta": {"profile": "smoke", "device": "cpu", "seed": 0, "written": "2026-11-24T21:00:00"},
           "budget": {"n_eval": 2, "eval_crop": [96, 128]},
           "weights": {"siba": "trained here at smoke (3 s)"},
           "tables": {"msrs/tang": {"SIBA": {"EN": 6.5, "SSIM": 0.71}, "Max": {"EN": 6.1, "SSIM": 0.69}}}}
    md = results_markdown(res)
    assert "profile **smoke**" in md and "trained here at smoke" in md
    assert "| SIBA | 6.500 | 0.710 |" in md and "| method | EN | SSIM |" in md
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\noutro\n")
    assert update_readme(readme, md) is True
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert update_readme(readme, md) is False
    with pytest.raises(ValueError, match="no 'tables'"):
        results_markdown({"meta": {}})


def test_report_adds_paper_rows_only_under_their_preset():
    from fusionlib.report import results_markdown

    res = {"meta": {}, "tables": {"msrs/tang": {"SIBA": {"VIF": 0.9, "SSIM": 0.7}},
                                  "msrs/cddfuse": {"SIBA": {"VIF": 1.8, "SSIM": 1.4}}},
           "paper_reported": {"entries": [{"method": "siba", "title": "SIBA", "dataset": "msrs", "test_pairs": 361,
                                           "values_paper_names": {"VIF": 1.061, "MS-SSIM": 0.975, "SSIM": 0.981},
                                           "presets": {"VIF": "tang", "MS-SSIM": "tang", "SSIM": None}}]}}
    md = results_markdown(res, sets=("msrs",))
    assert "| SIBA (paper, 361 pairs) | 1.061 |  |" in md and "compare in kind only" in md
    assert "(paper" not in results_markdown(res, sets=("msrs",), preset="cddfuse")
