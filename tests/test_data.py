"""fusionlib.data: reading, colour split, paired datasets, bundled sets, layout and manifest checks."""

from __future__ import annotations

import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fusionlib import data
from fusionlib.data import FusionDataError

# Documented pair counts (data/README.md and the SOURCE.md files).
EXPECTED = {
    ("msrs", "test"): 22,
    ("msrs", "train"): 4,
    ("tno", "test"): 20,
    ("roadscene", "test"): 20,
    ("roadscene", "train"): 200,
    ("llvip", "test"): 12,
    ("llvip", "train"): 32,
    ("m3fd", "test"): 1,
    ("harvard_ct", "test"): 10,
    ("harvard_pet", "test"): 10,
    ("harvard_spect", "test"): 10,
    ("harvard_ct", "train"): 11,
    ("harvard_pet", "train"): 22,
    ("harvard_spect", "train"): 63,
}


# --- helpers ---------------------------------------------------------------------------------------
def _png16(path: Path, arr: np.ndarray, colour_type: int) -> Path:
    """Write a 16-bit PNG by hand (Pillow cannot write 16-bit colour): colour_type 0 gray, 2 RGB."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(tag + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    return path


def _pair_dirs(tmp: Path, n: int = 3, size=(40, 48), a="ir", b="vi", ext_b=".png") -> Path:
    """A tiny dataset root with ``n`` pairs: gray A, RGB B, values depending on position."""
    rng = np.random.default_rng(0)
    (tmp / a).mkdir(parents=True, exist_ok=True)
    (tmp / b).mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(tmp / a / f"{k:02d}.png")
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(tmp / b / f"{k:02d}{ext_b}")
    return tmp


# --- bundled sets --------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "split"), sorted(EXPECTED))
def test_bundled_counts(name, split):
    ds = data.bundled(name, split)
    assert len(ds) == EXPECTED[(name, split)]
    assert data.list_bundled()[name]["splits"][split] == EXPECTED[(name, split)]
    assert len(set(ds.names)) == len(ds)


def test_list_bundled_covers_every_set():
    assert {(n, s) for n, info in data.list_bundled().items() for s in info["splits"]} == set(EXPECTED)
    assert "non-commercial" in data.list_bundled()["llvip"]["licence"].lower()


@pytest.mark.parametrize("name", ["msrs", "tno", "roadscene", "llvip", "m3fd", "harvard_pet"])
def test_bundled_sample_shapes_and_range(name):
    ds = data.bundled(name, "test")
    s = ds[0]
    H, W = s["size"]
    assert s["ir"].shape == (1, H, W) and s["vi"].shape == (1, H, W) and s["vi_cbcr"].shape == (2, H, W)
    assert s["box"] == (0, 0, H, W)
    for k in ("ir", "vi", "vi_cbcr"):
        assert s[k].dtype == torch.float32
        assert 0.0 <= float(s[k].min()) and float(s[k].max()) <= 1.0
    assert s["name"] == ds.names[0] and s["ir"].std() > 0.01 and s["vi"].std() > 0.01


def test_colour_vs_gray_partner():
    tno = data.bundled("tno", names=["01"])[0]  # vi stored RGB with 3 equal channels -> neutral chroma
    assert torch.allclose(tno["vi_cbcr"], torch.full_like(tno["vi_cbcr"], 0.5), atol=1e-6)
    msrs = data.bundled("msrs", names=["00055D"])[0]  # a day scene in colour
    assert float((msrs["vi_cbcr"] - 0.5).abs().max()) > 0.05
    pet = data.bundled("harvard_pet")[0]  # pseudo-colour PET
    assert float((pet["vi_cbcr"] - 0.5).abs().max()) > 0.05


def test_sample_matches_read_image_and_pil_luma(repo):
    ds = data.bundled("msrs", names=["00004N"])
    s = ds[0]
    vi_rgb = data.read_image(ds.pairs[0].b, "rgb")
    assert torch.allclose(s["vi"], data.read_image(ds.pairs[0].b, "y"), atol=1e-6)
    assert torch.allclose(data.merge_luma(s["vi"], s["vi_cbcr"]), vi_rgb, atol=1e-5)
    pil_l = np.asarray(Image.open(ds.pairs[0].b).convert("L"), dtype=np.float32) / 255
    assert float((s["vi"][0] - torch.from_numpy(pil_l)).abs().max()) <= 0.5 / 255 + 1e-5
    assert torch.equal(s["ir"], data.read_image(ds.pairs[0].a))


def test_bundled_errors(monkeypatch, tmp_path):
    with pytest.raises(FusionDataError, match="unknown bundled set 'nope'"):
        data.bundled("nope")
    with pytest.raises(FusionDataError, match="splits"):
        data.bundled("tno", "train")
    monkeypatch.setenv("FUSIONLIB_DATA", str(tmp_path / "absent"))
    with pytest.raises(FusionDataError, match="FUSIONLIB_DATA"):
        data.get_data_dir()
    assert data.get_data_dir(data.DATA_DIR) == data.DATA_DIR


def test_bundled_concat_siba_recipe():
    ds = data.bundled_concat("msrs", "roadscene", crop=128, mode="train", min_border=10, seed=0)
    assert len(ds) == 4 + 200 and ds.mode == "train"
    batch = next(iter(data.pair_loader(ds, batch_size=4, seed=0)))
    assert batch["ir"].shape == (4, 1, 128, 128) and batch["vi_cbcr"].shape == (4, 2, 128, 128)
    assert len(batch["name"]) == 4
    ds.set_epoch(3)
    assert all(d.epoch == 3 for d in ds.datasets)


def test_repeated_crops_paper_mix():
    ds = data.bundled_concat(("msrs", "train", 3), "roadscene", crop=64, mode="train", min_border=10, seed=0,
                             cache=True)
    assert len(ds) == 3 * 4 + 200 and ds.names[:5] == ["00556D", "00633D", "00881N", "01023N", "00556D"]
    plain = data.bundled("msrs", "train", crop=64, mode="train", min_border=10, seed=0)
    rep = ds.datasets[0]
    assert rep[0]["box"] == plain[0]["box"]  # draw 0 is the unrepeated crop
    boxes = [rep[k * 4]["box"] for k in range(3)]  # three draws of 00556D in one epoch
    assert len(set(boxes)) == 3 and all(rep[k * 4]["name"] == "00556D" for k in range(3))
    assert rep[4]["box"] == rep[4]["box"]  # a draw is a function of (seed, epoch, name, draw)
    ds.set_epoch(2)
    assert rep.dataset.epoch == 2 and rep[4]["box"] != boxes[1]
    assert ds.datasets[0].dataset._cache is not None and len(rep.dataset._cache) <= 4  # one cache
    with pytest.raises(data.FusionDataError, match="times"):
        data.RepeatedCrops(plain, 0)
    with pytest.raises(data.FusionDataError, match="train mode with a crop"):
        data.RepeatedCrops(data.bundled("msrs", "train"), 2)


def test_recipe_dataset_repeat_suffix():
    from fusionlib.recipes import Recipe, _dataset_spec, recipe_dataset

    assert _dataset_spec("msrs/train*270") == ("msrs", "train", 270)
    assert _dataset_spec("roadscene") == ("roadscene", "train", 1)
    with pytest.raises(ValueError, match="whole number"):
        _dataset_spec("msrs/train*x")
    ds = recipe_dataset(Recipe(datasets=("msrs/train*5", "roadscene/train"), crop_size=32, crop_border=10, max_steps=1))
    assert len(ds) == 20 + 200


# --- crops, flips, determinism, cache --------------------------------------------------------------
def test_train_crop_size_determinism_and_box():
    kw = dict(crop=(64, 96), mode="train", seed=7, names=["11", "13"])
    a, b = data.bundled("harvard_ct", **kw), data.bundled("harvard_ct", **kw)
    s1, s2 = a[0], b[0]
    assert s1["ir"].shape == (1, 64, 96) and s1["vi_cbcr"].shape == (2, 64, 96)
    assert torch.equal(s1["ir"], s2["ir"]) and s1["box"] == s2["box"]
    assert a[0]["box"] == s1["box"]  # a pure function of (seed, epoch, name)
    full = data.bundled("harvard_ct", names=["11"])[0]
    t, l, h, w = s1["box"]
    assert torch.equal(s1["ir"], full["ir"][:, t : t + h, l : l + w])
    boxes = set()
    for e in range(6):
        a.set_epoch(e)
        boxes.add(a[0]["box"])
    assert len(boxes) > 1
    c = data.bundled("harvard_ct", **{**kw, "seed": 8})
    assert c[0]["box"] != s1["box"] or c[1]["box"] != a[1]["box"]


def test_global_rng_when_no_seed():
    ds = data.bundled("harvard_ct", crop=32, mode="train", names=["11"])
    torch.manual_seed(0)
    first = [ds[0]["box"] for _ in range(4)]
    torch.manual_seed(0)
    assert [ds[0]["box"] for _ in range(4)] == first
    assert len(set(first)) > 1


def test_min_border_and_flips(tmp_path):
    root = _pair_dirs(tmp_path, n=1, size=(40, 44))
    kw = dict(crop=16, mode="train", min_border=10, hflip=True, vflip=True, seed=1)
    ds = data.PairedImageDataset(root, "tno", **kw)
    full = data.PairedImageDataset(root, "tno")[0]["ir"]
    flips = set()
    for e in range(40):
        ds.set_epoch(e)
        s = ds[0]
        t, l, h, w = s["box"]
        assert 10 <= t <= 40 - 16 - 10 and 10 <= l <= 44 - 16 - 10
        win = full[:, t : t + h, l : l + w]
        cands = {
            (fh, fv): win.flip([-1] * fh + [-2] * fv) if (fh or fv) else win for fh in (0, 1) for fv in (0, 1)
        }
        match = [k for k, v in cands.items() if torch.equal(v, s["ir"])]
        assert match
        flips.update(match)
    assert len(flips) == 4
    with pytest.raises(FusionDataError, match=r"00\.png"):
        data.PairedImageDataset(root, "tno", crop=24, mode="train", min_border=10)


def test_test_mode_centre_crop_and_cache():
    ds = data.bundled("msrs", names=["00004N"], crop=100, cache=True)
    s = ds[0]
    assert s["box"] == ((480 - 100) // 2, (640 - 100) // 2, 100, 100)
    assert 0 in ds._cache and torch.equal(ds[0]["vi"], s["vi"])


def test_crop_larger_than_images_names_file():
    with pytest.raises(FusionDataError, match=r"FLIR_\w+\.jpg"):
        data.bundled("roadscene", "train", crop=256, mode="train")
    with pytest.warns(UserWarning, match="skipping"):
        ds = data.bundled("roadscene", "train", crop=256, mode="train", skip_small=True)
    assert 0 < len(ds) < 200 and all(min(p.size) >= 256 for p in ds.pairs)


def test_collate_pairs_refuses_mixed_sizes():
    ds = data.bundled("roadscene", names=["FLIR_00211", "FLIR_01130"])
    with pytest.raises(FusionDataError, match="FLIR_00211"):
        data.collate_pairs([ds[0], ds[1]])
    b = data.collate_pairs([ds[0]])
    assert b["ir"].shape[:2] == (1, 1) and b["size"] == [ds[0]["size"]]


# --- reading: bit depth, modes -----------------------------------------------------------------------
def test_read_8bit_vs_16bit(tmp_path):
    v16 = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1365).astype(np.uint16)
    Image.fromarray(v16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    x = data.read_image(tmp_path / "g16.png")
    assert x.shape == (1, 6, 8) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.from_numpy(v16.astype(np.float32) / 65535), atol=1e-7)
    assert data.image_info(tmp_path / "g16.png").bit_depth == 16
    v8 = (v16 >> 8).astype(np.uint8)
    Image.fromarray(v8).save(tmp_path / "g8.png")
    y = data.read_image(tmp_path / "g8.png")
    assert torch.allclose(y[0], torch.from_numpy(v8.astype(np.float32) / 255), atol=1e-7)
    assert data.image_info(tmp_path / "g8.png").bit_depth == 8
    assert float((x - y).abs().max()) < 1 / 255  # same picture, two depths
    with pytest.raises(FusionDataError, match="g16.png.*16-bit|16-bit.*g16.png"):
        data.read_image(tmp_path / "g16.png", allow_16bit=False)
    assert data.read_image(tmp_path / "g8.png", allow_16bit=False).shape == (1, 6, 8)


def test_read_16bit_rgb_warns_and_keeps_high_byte(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    p = _png16(tmp_path / "rgb16.png", rgb, colour_type=2)
    with pytest.warns(UserWarning, match="8 bits per channel"):
        x = data.read_image(p, "rgb")
    assert torch.allclose(x, torch.from_numpy((rgb >> 8).transpose(2, 0, 1).astype(np.float32) / 255))
    with pytest.raises(FusionDataError, match="rgb16.png"):
        data.read_image(p, allow_16bit=False)
    g = _png16(tmp_path / "gray16.png", rgb[..., 0], colour_type=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.allclose(data.read_image(g)[0], torch.from_numpy(rgb[..., 0] / 65535).float())


def test_read_modes_rgba_palette_la(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (6, 5, 1), dtype=np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], -1)).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    x = data.read_image(tmp_path / "rgba.png", "rgb")  # alpha dropped, not composited
    assert torch.equal(x, data.read_image(tmp_path / "rgb.png", "rgb"))
    luma = x[:1] * 0.299 + x[1:2] * 0.587 + x[2:] * 0.114
    assert torch.allclose(data.read_image(tmp_path / "rgba.png", "gray"), luma)
    assert data.read_image(tmp_path / "rgba.png", "raw").shape == (3, 6, 5)

    pal = Image.fromarray(rgb).quantize(colors=4)
    pal.save(tmp_path / "pal.png")
    assert Image.open(tmp_path / "pal.png").mode == "P"
    expected = np.asarray(pal.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
    assert torch.allclose(data.read_image(tmp_path / "pal.png", "rgb"), torch.from_numpy(expected))

    g = rgb[..., 0]
    Image.fromarray(np.stack([g, alpha[..., 0]], -1), mode="LA").save(tmp_path / "la.png")
    la = data.read_image(tmp_path / "la.png", "raw")
    assert la.shape == (1, 6, 5) and torch.allclose(la[0], torch.from_numpy(g / 255).float())
    rgb3 = data.read_image(tmp_path / "la.png", "rgb")
    assert rgb3.shape == (3, 6, 5) and torch.equal(rgb3[0], rgb3[2])
    with pytest.raises(FusionDataError, match="read mode"):
        data.read_image(tmp_path / "la.png", "hsv")


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FusionDataError, match="not found.*missing.png"):
        data.read_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(FusionDataError, match="junk.png"):
        data.read_image(tmp_path / "junk.png")
    good = _png16(tmp_path / "t.png", np.zeros((64, 64), np.uint16), 0).read_bytes()
    (tmp_path / "trunc.png").write_bytes(good[:-40])
    with pytest.raises(FusionDataError, match="trunc.png"):
        data.read_image(tmp_path / "trunc.png")
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(FusionDataError, match="unsupported image mode 'F'.*float.tif"):
        data.read_image(tmp_path / "float.tif")
    assert issubclass(FusionDataError, ValueError)


def test_save_image_round_trip(tmp_path):
    x = torch.rand(3, 9, 11)
    p = data.save_image(x, tmp_path / "sub" / "x.png")
    assert float((data.read_image(p, "rgb") - x).abs().max()) <= 0.5 / 255 + 1e-6
    g = torch.rand(1, 1, 5, 6) * 1.4 - 0.2  # out of range -> clamped
    back = data.read_image(data.save_image(g, tmp_path / "g.png"), "raw")
    assert back.shape == (1, 5, 6) and float((back - g[0].clamp(0, 1)).abs().max()) <= 0.5 / 255 + 1e-6
    with pytest.raises(FusionDataError, match="shape"):
        data.save_image(torch.rand(2, 4, 4), tmp_path / "bad.png")


def test_split_merge_luma():
    rgb = torch.rand(2, 3, 8, 8)
    y, cbcr = data.split_luma(rgb)
    assert y.shape == (2, 1, 8, 8) and cbcr.shape == (2, 2, 8, 8)
    assert torch.allclose(y[:, 0], 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2], atol=1e-6)
    assert torch.allclose(data.merge_luma(y, cbcr), rgb, atol=1e-5)
    gy, gc = data.split_luma(torch.rand(1, 8, 8))
    assert gy.shape == (1, 8, 8) and torch.all(gc == 0.5)
    with pytest.raises(ValueError, match="cbcr"):
        data.merge_luma(y, cbcr[:, :1])


# --- dataset errors ----------------------------------------------------------------------------------
def test_matching_across_extensions_and_natural_order(tmp_path):
    root = _pair_dirs(tmp_path, n=3, ext_b=".jpg")
    for k in (2, 10):
        Image.new("L", (48, 40)).save(root / "ir" / f"{k}.png")
        Image.new("RGB", (48, 40)).save(root / "vi" / f"{k}.bmp")
    (root / "vi" / "Thumbs.db").write_bytes(b"x")
    ds = data.PairedImageDataset(root, "tno")
    assert ds.names == ["00", "01", "02", "2", "10"]
    assert ds.by_name("10")["vi"].shape == (1, 40, 48)
    custom = data.PairedImageDataset(root, data.Layout("mine", a="ir", b="vi"), limit=2)
    assert len(custom) == 2


def test_missing_partner_is_named(tmp_path):
    root = _pair_dirs(tmp_path)
    (root / "vi" / "01.png").unlink()
    with pytest.raises(FusionDataError, match=r"1 image\(s\) in .*ir have no partner .*vi: 01.png"):
        data.PairedImageDataset(root, "tno")


def test_size_mismatch_names_both_files(tmp_path):
    root = _pair_dirs(tmp_path)
    Image.new("RGB", (30, 20)).save(root / "vi" / "02.png")
    with pytest.raises(FusionDataError, match=r"ir/02.png is 40x48 but .*vi/02.png is 20x30"):
        data.PairedImageDataset(root, "tno")


def test_unreadable_file_in_dataset(tmp_path):
    root = _pair_dirs(tmp_path)
    (root / "ir" / "01.png").write_bytes(b"garbage")
    with pytest.raises(FusionDataError, match=r"ir/01.png"):
        data.PairedImageDataset(root, "tno")


def test_empty_missing_folder_unknown_layout_split_names(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    with pytest.raises(FusionDataError, match=r"empty folder: .*ir"):
        data.PairedImageDataset(tmp_path, "tno")
    with pytest.raises(FusionDataError, match=r"cropinfrared.*not found"):
        data.PairedImageDataset(tmp_path, "roadscene")
    with pytest.raises(FusionDataError, match="unknown layout 'msrs2'.*msrs"):
        data.PairedImageDataset(tmp_path, "msrs2")
    with pytest.raises(FusionDataError, match="split"):
        data.PairedImageDataset(tmp_path, "msrs")
    with pytest.raises(FusionDataError, match="unknown split 'val'"):
        data.PairedImageDataset(tmp_path, "llvip", "val")
    with pytest.raises(FusionDataError, match="dataset root not found"):
        data.PairedImageDataset(tmp_path / "nowhere", "tno")
    root = _pair_dirs(tmp_path / "ok")
    with pytest.raises(FusionDataError, match="not found as pairs.*zz"):
        data.PairedImageDataset(root, "tno", names=["00", "zz"])
    Image.new("L", (48, 40)).save(root / "ir" / "00.jpg")
    with pytest.raises(FusionDataError, match=r"duplicate.*00\.(png|jpg) & 00\.(png|jpg)"):
        data.PairedImageDataset(root, "tno")


# --- layout and manifest checks ----------------------------------------------------------------------
def test_check_layout(tmp_path, repo):
    rep = data.check_layout(repo / "data" / "msrs_mini", "msrs")
    assert rep.ok and rep.pairs == {"train": 4, "test": 22}
    root = _pair_dirs(tmp_path / "LLVIP", a="infrared/train", b="visible/train")
    (root / "visible" / "train" / "02.png").unlink()
    rep = data.check_layout(root, "llvip")
    assert not rep.ok and rep.pairs["train"] == 2
    text = str(rep)
    assert "02.png" in text and "infrared/test" in text.replace("\\", "/")  # orphan and missing split named
    with pytest.raises(FusionDataError, match="02.png"):
        data.check_layout(root, "llvip", strict=True)
    assert data.check_layout(root, "llvip", "test").splits[0].missing_dirs
    assert not data.check_layout(tmp_path / "absent", "tno").ok


def test_manifest_passes_on_bundle_and_detects_changes(tmp_path, repo):
    assert data.verify_manifest(repo / "data") == []
    lines = (repo / "data" / "MANIFEST.sha256").read_text().splitlines()
    picked = [ln for ln in lines if ln.strip()][:2]
    for ln in picked:
        rel = ln.split(maxsplit=1)[1]
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / "data" / rel, tmp_path / rel)
    (tmp_path / "MANIFEST.sha256").write_text("\n".join(picked) + "\n")
    assert data.verify_manifest(tmp_path) == []
    rel0 = picked[0].split(maxsplit=1)[1]
    with open(tmp_path / rel0, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    rel1 = picked[1].split(maxsplit=1)[1]
    (tmp_path / rel1).unlink()
    problems = data.verify_manifest(tmp_path)
    assert len(problems) == 2
    assert "checksum mismatch" in problems[0] and Path(rel0).name in problems[0]
    assert "missing file" in problems[1] and Path(rel1).name in problems[1]
    with pytest.raises(FusionDataError, match="manifest not found"):
        data.verify_manifest(tmp_path / "nothing")


def test_read_image_lanczos_half_matches_pillow_file_resize(repo, tmp_path):
    """``scale=0.5`` is what resizing the file with Pillow's Lanczos and re-reading it gives (M3FD, SIBA)."""
    src = next((repo / "data" / "m3fd_sample" / "vi").iterdir())
    with Image.open(src) as im:
        w, h = im.size
        im.convert("RGB").resize((w // 2, h // 2), Image.LANCZOS).save(tmp_path / "half.png")
    ours = data.read_image(src, "y", scale=0.5)
    assert ours.shape == (1, h // 2, w // 2)
    assert torch.equal(ours, data.read_image(tmp_path / "half.png", "y"))
    g16 = np.full((6, 8, 1), 40000, np.uint16)
    assert data.resize_lanczos(g16, 0.5).shape == (3, 4, 1) and int(data.resize_lanczos(g16, 0.5)[0, 0, 0]) == 40000
    with pytest.raises(FusionDataError, match="positive"):
        data.resize_lanczos(g16, 0.0)
