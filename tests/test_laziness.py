"""fusionlib.laziness: exact Frobenius deltas, frozen blocks, block assignment, resume of the curves."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from fusionlib.laziness import LazinessTracker, block_norms, resolve_blocks, summarise
from fusionlib.train import fit, make_loader, sample_generator


class TwoStream(nn.Module):
    """Named functional blocks, as a paper model would declare them."""

    def __init__(self):
        super().__init__()
        self.enc_ir = nn.Conv2d(1, 3, 3, padding=1)
        self.enc_vi = nn.Conv2d(1, 3, 3, padding=1)
        self.fuse = nn.Conv2d(6, 3, 1)
        self.dec = nn.Conv2d(3, 1, 3, padding=1)
        self.scale = nn.Parameter(torch.ones(1))

    def laziness_blocks(self):
        return {"encoder": ["enc_ir.", "enc_vi."], "fusion": ["fuse"], "decoder": ["dec", "scale"]}

    def forward(self, ir, vi):
        f = torch.cat([torch.relu(self.enc_ir(ir)), torch.relu(self.enc_vi(vi))], 1)
        return self.scale * self.dec(torch.relu(self.fuse(f)))


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n=9):
        g = torch.Generator().manual_seed(0)
        self.ir, self.vi = torch.rand(n, 1, 10, 10, generator=g), torch.rand(n, 1, 10, 10, generator=g)
        self.epoch = 0

    def set_epoch(self, e):
        self.epoch = e

    def __len__(self):
        return len(self.ir)

    def __getitem__(self, i):
        y, x = torch.randint(0, 3, (2,), generator=sample_generator(1, self.epoch, i)).tolist()
        return {"ir": self.ir[i, :, y:y + 8, x:x + 8], "vi": self.vi[i, :, y:y + 8, x:x + 8]}


def criterion(fused, ir, vi):
    return (fused - torch.maximum(ir, vi)).abs().mean()


# --------------------------------------------------------------------------- the measure itself


def test_hand_computed_frobenius_norms():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(1.0)  # block "0": six ones, ‖W‖_F = √6
        net[1].weight.fill_(2.0)
        net[1].bias.zero_()     # block "1": (2, 2, 0), ‖W‖_F = √8
    tr = LazinessTracker(net)
    tr.snapshot()
    with torch.no_grad():
        net[0].weight[1, 0] += 3.0
        net[0].bias[0] -= 4.0   # ΔW has entries 3 and −4 in two different tensors: ‖ΔW‖_F = 5
    recs = {r["block"]: r for r in tr.record(epoch=1)}
    assert recs["0"]["delta"] == 5.0
    assert recs["0"]["prev_norm"] == math.sqrt(6.0)
    assert recs["0"]["relative"] == 5.0 / math.sqrt(6.0)
    assert recs["0"]["weight_norm"] == math.sqrt(1 + 1 + 16 + 1 + 9 + 1)  # weight (1,1,4,1), bias (−3,1)
    assert recs["1"]["delta"] == 0.0 and recs["1"]["relative"] == 0.0
    # the next epoch measures from the new snapshot
    with torch.no_grad():
        net[1].bias += 0.5
    recs2 = {r["block"]: r for r in tr.record(epoch=2)}
    assert recs2["0"]["delta"] == 0.0 and recs2["1"]["delta"] == 0.5
    assert recs2["1"]["relative"] == 0.5 / math.sqrt(8.0)
    assert [r["epoch"] for r in tr.records] == [1, 1, 2, 2]


def test_zero_norm_block_relative_is_inf_and_block_norms():
    net = nn.Sequential(nn.Linear(1, 1, bias=False))
    nn.init.zeros_(net[0].weight)
    tr = LazinessTracker(net)
    tr.snapshot()
    with torch.no_grad():
        net[0].weight += 1.0
    assert tr.record(1)[0]["relative"] == math.inf
    w = {"a": torch.tensor([3.0]), "b": torch.tensor([[4.0]])}
    assert block_norms(w, {"x": ["a", "b"]}) == {"x": 5.0}


def test_frozen_block_has_zero_delta_under_fit(tmp_path):
    torch.manual_seed(0)
    model = TwoStream()
    for p in model.fuse.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    tr = LazinessTracker()  # takes state.model in on_train_start
    fit(model, criterion, make_loader(Pairs(), 3, seed=2), epochs=3, optimizer=opt, device="cpu",
        callbacks=[tr], progress=False)
    df = tr.to_frame()
    assert list(df.columns) == ["epoch", "block", "delta", "relative", "weight_norm", "prev_norm"]
    assert len(df) == 9 and set(df.block) == {"encoder", "fusion", "decoder"}
    assert (df[df.block == "fusion"]["delta"] == 0.0).all()
    assert (df[df.block != "fusion"]["delta"] > 0).all()
    # the curve is consistent with itself: each epoch starts where the last one ended
    enc = df[df.block == "encoder"].reset_index()
    assert enc["prev_norm"][1:].tolist() == enc["weight_norm"][:-1].tolist()


def test_every_n_steps_records():
    torch.manual_seed(0)
    model = TwoStream()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tr = LazinessTracker(model, every=2)
    fit(model, criterion, make_loader(Pairs(), 3, seed=2), epochs=2, optimizer=opt, device="cpu",
        callbacks=[tr], progress=False)  # 3 steps per epoch → records at global steps 2, 4, 6
    st = tr.to_frame(steps=True)
    assert sorted(set(st.step)) == [2, 4, 6] and st[st.step == 4].epoch.unique().tolist() == [2]
    with pytest.raises(ValueError, match="every"):
        LazinessTracker(model, every=0)


# --------------------------------------------------------------------------- block assignment


def test_blocks_from_model_method_argument_and_default():
    model = TwoStream()
    assert resolve_blocks(model) == {
        "encoder": ["enc_ir.weight", "enc_ir.bias", "enc_vi.weight", "enc_vi.bias"],
        "fusion": ["fuse.weight", "fuse.bias"],
        "decoder": ["dec.weight", "dec.bias", "scale"],
    }
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 1, 3))
    assert list(resolve_blocks(net)) == ["0", "2"]  # top-level children with parameters
    # other= collects what no prefix claims
    blocks = {"e": ["enc_ir", "enc_vi"], "f": ["fuse"], "d": ["dec"]}
    assert resolve_blocks(model, blocks, other="rest")["rest"] == ["scale"]
    plain = TwoStream()
    plain.laziness_blocks = None  # no method: top-level children + "other" for the root parameter
    assert resolve_blocks(plain)["other"] == ["scale"]


def test_bad_block_assignments_are_named():
    model = TwoStream()
    with pytest.raises(ValueError, match=r"no block.*'scale'"):
        resolve_blocks(model, {"e": ["enc_ir", "enc_vi"], "f": ["fuse"], "d": ["dec"]})
    with pytest.raises(ValueError, match=r"more than one block: fuse.weight in \['f', 'g'\]"):
        resolve_blocks(model, {"e": ["enc_ir", "enc_vi"], "f": ["fuse"], "g": ["fuse.weight"],
                               "d": ["dec", "scale"]})
    with pytest.raises(ValueError, match=r"match no parameter.*'encoder_ir'"):
        resolve_blocks(model, {"e": ["encoder_ir"]}, other="other")
    with pytest.raises(TypeError, match="dict"):
        resolve_blocks(model, ["enc_ir"])
    # "enc" does not swallow "enc_ir" (prefixes are module paths, not raw string prefixes)
    with pytest.raises(ValueError, match="match no parameter"):
        resolve_blocks(model, {"e": ["enc"]}, other="other")


def test_ddp_style_module_prefix_is_stripped():
    model = TwoStream()
    wrapped = nn.DataParallel(model)  # names start with "module." like DistributedDataParallel's
    assert next(iter(dict(wrapped.named_parameters()))).startswith("module.")
    tr = LazinessTracker(wrapped)
    assert tr.blocks == resolve_blocks(model)
    assert resolve_blocks(wrapped, {"all": ["module.enc_ir", "enc_vi", "fuse", "dec", "scale"]})["all"][0] \
        == "enc_ir.weight"
    with torch.no_grad():
        model.dec.bias.fill_(0.5)  # exact in float32, so the delta is exactly 2
    tr.snapshot()
    with torch.no_grad():
        model.dec.bias += 2.0
    recs = {r["block"]: r["delta"] for r in tr.record(1)}
    assert recs == {"encoder": 0.0, "fusion": 0.0, "decoder": 2.0}


# --------------------------------------------------------------------------- persistence and summary


def _train(out_dir, epochs, callbacks, seed=0):
    torch.manual_seed(seed)
    model = TwoStream()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    fit(model, criterion, make_loader(Pairs(), 3, seed=2), epochs=epochs, optimizer=opt, device="cpu",
        out_dir=out_dir, callbacks=callbacks, progress=False)
    return model


class _StopAt:
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, state):
        if state.epoch == self.epoch:
            state.stop_training = True


def test_records_survive_resume(tmp_path):
    ref = LazinessTracker(every=2)
    _train(tmp_path / "ref", 4, [ref])
    first = LazinessTracker(every=2)
    _train(tmp_path / "run", 4, [first, _StopAt(2)])
    assert sorted({r["epoch"] for r in first.records}) == [1, 2]
    resumed = LazinessTracker(every=2)  # a fresh process: new tracker, new model with other weights
    _train(tmp_path / "run", 4, [resumed], seed=5)
    assert resumed.records == ref.records          # epoch 3's delta is measured from epoch 2's weights
    assert resumed.step_records == ref.step_records
    assert [r["epoch"] for r in resumed.records] == [e for e in (1, 2, 3, 4) for _ in range(3)]


def test_state_dict_round_trips_through_weights_only_load():
    model = TwoStream()
    tr = LazinessTracker(model)
    tr.snapshot()
    with torch.no_grad():
        model.fuse.weight += 1.0
    tr.record(1)
    buf = io.BytesIO()
    torch.save(tr.state_dict(), buf)
    buf.seek(0)
    back = LazinessTracker(model)
    back.load_state_dict(torch.load(buf, weights_only=True))
    assert back.records == tr.records
    with torch.no_grad():
        model.fuse.weight += 1.0
    assert back.record(2) == tr.record(2)
    other = LazinessTracker(nn.Sequential(nn.Linear(1, 1)))
    with pytest.raises(ValueError, match="blocks"):
        other.load_state_dict(tr.state_dict())


def test_summarise():
    recs = [{"epoch": e, "block": b, "relative": r}
            for e, (enc, dec) in enumerate([(0.1, 0.1), (0.02, 0.1), (0.001, 0.05), (0.0, 0.2)], 1)
            for b, r in (("enc", enc), ("dec", dec))]
    assert summarise(recs, 0.01) == {"enc": 0.5, "dec": 1.0}
    assert summarise(recs, 0.1) == {"enc": 0.0, "dec": 0.25}
    import pandas as pd

    assert summarise(pd.DataFrame(recs), 0.01) == {"enc": 0.5, "dec": 1.0}
    with pytest.raises(KeyError, match="relative"):
        summarise([{"block": "enc"}], 0.1)


def test_plot_draws_one_line_per_block():
    import matplotlib

    matplotlib.use("Agg")
    model = TwoStream()
    tr = LazinessTracker(model)
    tr.snapshot()
    for e in (1, 2):
        with torch.no_grad():
            model.dec.weight.mul_(1.1)
        tr.record(e)
    fig = tr.plot()
    ax = fig.axes[0]
    data_lines = [ln for ln in ax.lines if len(ln.get_xdata()) > 0]
    assert len(data_lines) == 3 and ax.get_xlabel() == "epoch"


def test_laziness_section_records_summary_and_last_epoch(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from fusionlib.nb import laziness_section

    recs = [{"epoch": e, "block": b, "relative": r, "absolute": r}
            for e in (1, 2, 3) for b, r in (("enc", 0.01 / e), ("head", 1e-4))]
    results: dict = {}
    laziness_section(recs, tmp_path, results)
    assert results["laziness_fraction_above_1e-3"] == {"enc": 1.0, "head": 0.0}
    assert results["laziness_last_relative"] == {"enc": 0.01 / 3, "head": 1e-4}
    assert (tmp_path / "laziness_rel.png").is_file()
