"""Bad inputs, faults and mistakes through the command-line entry points: a one-line error that names the
file or option and says what to do, a non-zero exit, and nothing lost or overwritten (issue #24)."""

from __future__ import annotations

import csv
import hashlib
import struct
import zlib
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from PIL import Image

from fusionlib.fuse import main as fuse_main
from fusionlib.methods import default_weights
from fusionlib.metrics import evaluate
from fusionlib.metrics.cli import main as metrics_main
from fusionlib.runner import main as runner_main
from test_fuse import _pairs  # noqa: E402  (tests/ is on sys.path: no __init__.py)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG whose header claims ``width x height`` grey pixels but whose data is a few bytes: what a
    decompression bomb (or a huge blank scan) looks like before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _fuse(ir, vi, out, *extra):
    return fuse_main(["--method", "max", "--ir", str(ir), "--vi", str(vi), "--out", str(out), "--quiet", *extra])


# --------------------------------------------------------------------------- fuse


@pytest.mark.parametrize("where", ["vi", "ir", "inside_vi"])
def test_fuse_never_writes_into_an_input_folder(tmp_path, capsys, where):
    ir, vi = _pairs(tmp_path)
    before = {"ir": _digest(ir), "vi": _digest(vi)}
    out = {"vi": vi, "ir": ir, "inside_vi": vi / "fused"}[where]
    assert _fuse(ir, vi, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert f"--out {out}" in err and "input folder" in err and "outside the inputs" in err
    assert {"ir": _digest(ir), "vi": _digest(vi)} == before, "a source image was changed"
    assert not (vi / "fused").exists()


def test_fuse_refuses_a_decompression_bomb_before_decoding(tmp_path, capsys):
    ir, vi = _pairs(tmp_path, n=1)
    _png_header_only(ir / "p0.png", 50000, 50000)
    Image.new("L", (52, 40)).save(vi / "p0.png")
    assert _fuse(ir, vi, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "p0.png" in err and "50000x50000" in err and "pixel budget" in err and "--max-pixels" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_fuse_pixel_budget_is_an_option(tmp_path, capsys):
    ir, vi = _pairs(tmp_path, n=1, size=(100, 120))
    assert _fuse(ir, vi, tmp_path / "o1", "--max-pixels", "10000") == 2  # 12,000 pixels: over
    assert "12000" in capsys.readouterr().err
    assert _fuse(ir, vi, tmp_path / "o2", "--max-pixels", "12000") == 0
    # 12000 x 12000 (144 MP) in a small file: refused by the default budget, no 5 GB allocation
    _png_header_only(ir / "p0.png", 12000, 12000)
    assert _fuse(ir, vi, tmp_path / "o3") == 2
    assert "144.0 megapixels" in capsys.readouterr().err


def test_fuse_output_that_is_a_file_or_cannot_be_created(tmp_path, capsys):
    ir, vi = _pairs(tmp_path, n=1)
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    assert _fuse(ir, vi, a_file) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert _fuse(ir, vi, a_file / "sub") == 2
    err = capsys.readouterr().err
    assert f"--out {a_file / 'sub'}: cannot create the folder" in err
    assert a_file.read_text() == "not a folder"


def test_fuse_bad_batch_and_max_pixels_are_usage_errors(tmp_path, capsys):
    ir, vi = _pairs(tmp_path, n=1)
    for opt, val in (("--batch", "-1"), ("--batch", "0"), ("--max-pixels", "-5")):
        with pytest.raises(SystemExit) as e:
            _fuse(ir, vi, tmp_path / "o", opt, val)
        assert e.value.code == 2
        assert opt in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_fuse_says_which_inference_path_it_took(tmp_path, capsys):
    from fusionlib.models import create_model

    ir, vi = _pairs(tmp_path, n=1)
    torch.manual_seed(0)
    torch.save(create_model("siba", dim=8, num_heads=2).state_dict(), tmp_path / "w.pt")
    # a narrow SIBA is not a registered configuration: the weights are refused with the reason
    assert fuse_main(["--method", "siba", "--weights", str(tmp_path / "w.pt"), "--ir", str(ir), "--vi", str(vi),
                      "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "does not hold siba weights" in capsys.readouterr().err
    torch.save(create_model("tinyfuse").state_dict(), tmp_path / "t.pt")
    assert fuse_main(["--method", "tinyfuse", "--weights", str(tmp_path / "t.pt"), "--ir", str(ir), "--vi",
                      str(vi), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert "inference path: readable (no fast path for this method)" in capsys.readouterr().out


def test_refused_weights_never_suggest_unsafe_loading(tmp_path, capsys):
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"w": Payload()}, tmp_path / "evil.pt")
    ir, vi = _pairs(tmp_path, n=1)
    assert fuse_main(["--method", "tinyfuse", "--weights", str(tmp_path / "evil.pt"), "--ir", str(ir), "--vi",
                      str(vi), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "evil.pt" in err and "more than tensors" in err
    assert "weights_only=False" not in err and "pwned" not in err


# --------------------------------------------------------------------------- metrics


@pytest.fixture()
def scored(tmp_path):
    rng = np.random.default_rng(1)
    d = {k: tmp_path / k for k in ("fused", "ir", "vi")}
    for p in d.values():
        p.mkdir()
    for stem in ("a1", "a2", "a3"):
        for k in d:
            Image.fromarray(rng.integers(0, 256, (48, 64), dtype=np.uint8)).save(d[k] / f"{stem}.png")
    return d


def _margs(d, *extra):
    return ["--fused", str(d["fused"]), "--a", str(d["ir"]), "--b", str(d["vi"]), "--no-progress", *extra]


def test_metrics_bad_csv_or_device_fail_before_any_work(scored, tmp_path, capsys):
    a_file = tmp_path / "plain"
    a_file.write_text("x")
    assert metrics_main(_margs(scored, "--csv", str(a_file / "out.csv"))) == 2
    err = capsys.readouterr().err
    assert "--csv" in err and "nothing was computed yet" in err
    assert metrics_main(_margs(scored, "--csv", str(tmp_path))) == 2  # a folder
    assert "--csv" in capsys.readouterr().err
    assert metrics_main(_margs(scored, "--device", "bogus")) == 2
    err = capsys.readouterr().err
    assert "--device 'bogus'" in err and "Traceback" not in err


def test_metrics_keeps_the_rows_before_a_bad_image(scored, tmp_path, capsys):
    (scored["fused"] / "a3.png").write_bytes(b"not a png at all")  # the last image is broken
    out = tmp_path / "rows.csv"
    assert metrics_main(_margs(scored, "--metrics", "EN,SD", "--csv", str(out))) == 1
    cap = capsys.readouterr()
    assert "a3" in cap.err and "could not be scored" in cap.err
    rows = list(csv.DictReader(open(out)))
    assert [r["name"] for r in rows] == ["a1", "a2"] and all(float(r["EN"]) > 0 for r in rows)


def test_metrics_interrupted_run_leaves_its_rows(scored, tmp_path, capsys, monkeypatch):
    import fusionlib.metrics.cli as cli

    calls = {"n": 0}
    real = cli.evaluate

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(cli, "evaluate", flaky)
    out = tmp_path / "rows.csv"
    with pytest.raises(KeyboardInterrupt):
        metrics_main(_margs(scored, "--metrics", "EN", "--csv", str(out)))
    assert "holds the 2 row(s) computed before the interruption" in capsys.readouterr().err
    assert [r["name"] for r in csv.DictReader(open(out))] == ["a1", "a2"]


def test_metrics_skips_hidden_files_and_bombs_are_named(scored, capsys):
    for k in ("fused", "ir", "vi"):
        Image.new("L", (64, 48)).save(scored[k] / ".a1.tmp.png")  # left by an interrupted fuse
        Image.new("L", (64, 48)).save(scored[k] / "._a2.png")      # macOS resource fork
    assert metrics_main(_margs(scored, "--metrics", "EN")) == 0
    assert "3 image(s)" in capsys.readouterr().out
    _png_header_only(scored["fused"] / "a2.png", 50000, 50000)
    assert metrics_main(_margs(scored, "--metrics", "EN")) == 1
    err = capsys.readouterr().err
    assert "a2.png" in err and "pixel budget" in err


def test_metrics_all_on_small_images_gives_nan_with_a_warning(scored, capsys):
    assert metrics_main(_margs(scored, "--preset", "cddfuse", "--metrics", "all")) == 0
    cap = capsys.readouterr()
    assert "MS_SSIM" in cap.out and "NaN" in cap.out
    assert "warning: a1:" in cap.err and "MS_SSIM" in cap.err and "too small" in cap.err


def test_infinite_psnr_comes_with_a_warning():
    x = torch.rand(1, 1, 32, 32)
    with pytest.warns(RuntimeWarning, match="PSNR.*equals both sources"):
        v = evaluate(x, x, x, "tang", ["PSNR"])
    assert torch.isinf(v["PSNR"]).all()
    black = torch.zeros(1, 1, 32, 32)
    with pytest.warns(RuntimeWarning, match="PSNR.*all black"):
        evaluate(black, x, x, "cddfuse", ["PSNR"])


# --------------------------------------------------------------------------- runner


def _notebook(folder: Path, name: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"\nout_dir = "."')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def test_runner_missing_folder_and_ignored_data_root(tmp_path, capsys):
    assert runner_main([str(tmp_path / "nope"), "--out", str(tmp_path / "runs")]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    _notebook(tmp_path / "nbs", "00_ok", "pass")
    assert runner_main([str(tmp_path / "nbs"), "--profile", "smoke", "--data-root", str(tmp_path)]) == 2
    assert "--data-root is read only at --profile paper" in capsys.readouterr().err


@pytest.mark.notebooks
def test_runner_reports_the_real_error_and_sets_old_results_aside(tmp_path, capsys):
    runs = tmp_path / "runs"
    stale = runs / "02_siba"  # a previous, successful run of the notebook that trains SIBA
    (stale / "train_smoke").mkdir(parents=True)
    (stale / "train_smoke" / "last.pt").write_bytes(b"checkpoint")
    (stale / "weights.pt").write_bytes(b"old weights")
    (stale / "results.json").write_text('{"old": 1}')
    assert default_weights("siba", runs) == stale / "weights.pt"
    _notebook(tmp_path / "nbs", "02_siba", 'raise ValueError("the crop is larger than the image")')
    assert runner_main([str(tmp_path / "nbs"), "--out", str(runs), "--profile", "smoke"]) == 1
    cap = capsys.readouterr()
    assert "ValueError: the crop is larger than the image" in cap.out and "cell" in cap.out
    assert "ValueError: the crop is larger than the image" in (stale / "FAILED.txt").read_text()
    assert not (stale / "results.json").exists() and not (stale / "weights.pt").exists()
    assert (stale / ".previous" / "weights.pt").read_bytes() == b"old weights", "the old run is kept aside"
    assert (stale / "train_smoke" / "last.pt").is_file(), "checkpoints stay for a resume"
    assert default_weights("siba", runs) is None
    # fuse says why it does not take that run's weights; with no shipped file either, it stops
    ir, vi = _pairs(tmp_path, n=1)
    assert fuse_main(["--method", "siba", "--runs", str(runs), "--ir", str(ir), "--vi", str(vi),
                      "--out", str(tmp_path / "o"), "--quiet", "--shipped", str(tmp_path / "no_weights")]) == 2
    cap = capsys.readouterr()
    assert "last 02_siba run failed" in cap.out and "needs trained weights" in cap.err


def test_a_raised_pixel_budget_does_not_outlive_the_command(tmp_path):
    from fusionlib.data import io

    ir, vi = _pairs(tmp_path, n=1)
    assert _fuse(ir, vi, tmp_path / "o", "--max-pixels", "100000000") == 0
    assert io.MAX_PIXELS == io.DEFAULT_MAX_PIXELS


def test_fuse_bogus_device_and_misplaced_mode(tmp_path, capsys):
    ir, vi = _pairs(tmp_path, n=1)
    assert _fuse(ir, vi, tmp_path / "o", "--device", "bogus") == 2
    err = capsys.readouterr().err
    assert "'bogus'" in err and "Traceback" not in err
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pt")
    assert fuse_main(["--method", "siba", "--mode", "eval", "--weights", str(tmp_path / "w.pt"), "--ir", str(ir),
                      "--vi", str(vi), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "--mode is RPFNet's BatchNorm mode" in capsys.readouterr().err
