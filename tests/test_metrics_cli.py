"""``python -m fusionlib.metrics`` on temporary folders: table, CSV, grey reading, clear errors."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fusionlib.metrics import evaluate
from fusionlib.metrics.cli import main, read_grey


def _save(path, arr):
    Image.fromarray(arr).save(path)


@pytest.fixture()
def folders(tmp_path):
    rng = np.random.default_rng(0)
    d = {k: tmp_path / k for k in ("fused", "ir", "vi")}
    for p in d.values():
        p.mkdir()
    for stem in ("0001", "0002", "0003"):
        a = rng.integers(0, 256, (48, 64), dtype=np.uint8)
        rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        f = rng.integers(0, 256, (48, 64), dtype=np.uint8)
        _save(d["ir"] / f"{stem}.png", a)
        _save(d["vi"] / f"{stem}.png", rgb)  # colour: read as BT.601 grey
        _save(d["fused"] / f"{stem}.png", f)
    return d


def _args(d, *extra):
    return ["--fused", str(d["fused"]), "--a", str(d["ir"]), "--b", str(d["vi"]), "--no-progress", *extra]


def test_read_grey_bt601_half_up(tmp_path):
    # (0, 0, 250) is an exact tie, 28.5 -> 29 (cv2's float path gives 28); (10, 5, 0) -> 5.925 -> 6
    rgb = np.array([[[0, 0, 250], [10, 5, 0], [1, 2, 16], [250, 250, 250]]], dtype=np.uint8)
    _save(tmp_path / "c.png", rgb)
    got = read_grey(tmp_path / "c.png")
    assert got.dtype == np.uint8 and got.shape == (1, 4)
    assert got.tolist() == [[29, 6, 3, 250]]  # (PIL's convert('L') gives 28 for the tie: fixed-point)
    _save(tmp_path / "g.png", rgb[..., 0])
    assert read_grey(tmp_path / "g.png").tolist() == [[0, 10, 1, 250]]  # one channel: as stored


def test_table_and_csv(folders, tmp_path, capsys):
    out_csv = tmp_path / "out" / "m.csv"
    args = _args(folders, "--preset", "cddfuse", "--metrics", "EN,VIFF,SSIM", "--csv", str(out_csv))
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "preset: cddfuse" in text and "3 image(s)" in text
    for name in ("EN", "VIFF", "SSIM"):
        assert f"  {name} " in text
    rows = list(csv.DictReader(open(out_csv)))
    assert [r["name"] for r in rows] == ["0001", "0002", "0003"]
    # the CSV holds exactly what evaluate() gives for the same grey arrays
    f, a, b = (torch.from_numpy(read_grey(folders[k] / "0002.png"))[None, None]
               for k in ("fused", "ir", "vi"))
    ref = evaluate(f, a, b, "cddfuse", ["EN", "VIFF", "SSIM"])
    for name in ("EN", "VIFF", "SSIM"):
        assert float(rows[1][name]) == pytest.approx(float(ref[name][0]), rel=1e-12)
    mean_en = np.mean([float(r["EN"]) for r in rows])
    assert f"{mean_en:.6g}" in text


def test_unmatched_names_are_listed(folders, capsys):
    (folders["vi"] / "0003.png").unlink()
    _save(folders["fused"] / "extra.png", np.zeros((48, 64), np.uint8))
    assert main(_args(folders)) == 2
    err = capsys.readouterr().err
    assert "unmatched names" in err
    assert "1 fused image(s) have no match in --a" in err and "extra.png" in err
    assert "2 fused image(s) have no match in --b" in err and "0003.png" in err


def test_size_mismatch_names_the_files_and_the_others_are_scored(folders, capsys):
    _save(folders["ir"] / "0002.png", np.zeros((40, 64), np.uint8))
    assert main(_args(folders, "--metrics", "EN")) == 1
    cap = capsys.readouterr()
    assert "0002: size mismatch" in cap.err and "0002.png 64x40" in cap.err and "64x48" in cap.err
    assert "1 of 3 image(s) could not be scored" in cap.err
    assert "2 image(s)" in cap.out, "the two good pairs are still in the table"


def test_bad_folder_and_metric(folders, tmp_path, capsys):
    bad = ["--fused", str(tmp_path / "nope"), "--a", str(folders["ir"]), "--b", str(folders["vi"])]
    assert main(bad) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(_args(folders, "--metrics", "EN,BOGUS")) == 2
    assert "metric 'BOGUS' is not defined in preset 'tang'" in capsys.readouterr().err


def test_module_entry_point(folders):
    r = subprocess.run(
        [sys.executable, "-m", "fusionlib.metrics", *_args(folders, "--metrics", "EN,SD")],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "preset: tang" in r.stdout and "  EN " in r.stdout
