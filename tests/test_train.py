"""fusionlib.train: exact resume, atomic checkpoints, non-finite stop, step forms, DDP equivalence."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fusionlib import train as T
from fusionlib.train import (
    History,
    NonFiniteLossError,
    atomic_save,
    fit,
    load_checkpoint,
    loss_step,
    make_loader,
    sample_generator,
)

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- a tiny problem


class TinyFusion(nn.Module):
    """conv(2→4) → dropout → conv(4→1); dropout makes the global torch RNG matter for resume."""

    def __init__(self, p: float = 0.2):
        super().__init__()
        self.enc = nn.Conv2d(2, 4, 3, padding=1)
        self.drop = nn.Dropout(p)
        self.dec = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, ir, vi):
        return self.dec(self.drop(torch.relu(self.enc(torch.cat([ir, vi], 1)))))


class CropPairs(torch.utils.data.Dataset):
    """12×12 pairs, random 8×8 crops.

    ``mode="per_sample"``: the crop comes from ``sample_generator(seed, epoch, index)`` (the documented
    way); ``mode="global"``: from the global torch RNG (resumes exactly with num_workers=0 because fit
    restores that RNG).
    """

    def __init__(self, n: int = 10, mode: str = "per_sample", seed: int = 5):
        g = torch.Generator().manual_seed(123)
        self.ir, self.vi = torch.rand(n, 1, 12, 12, generator=g), torch.rand(n, 1, 12, 12, generator=g)
        self.mode, self.seed, self.epoch = mode, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.ir)

    def __getitem__(self, i):
        g = sample_generator(self.seed, self.epoch, i) if self.mode == "per_sample" else None
        y, x = torch.randint(0, 5, (2,), generator=g).tolist()
        return {"ir": self.ir[i, :, y:y + 8, x:x + 8], "vi": self.vi[i, :, y:y + 8, x:x + 8]}


def criterion(fused, ir, vi):
    target = torch.maximum(ir, vi)
    l_int = (fused - target).abs().mean()
    l_grad = (fused.diff(dim=-1) - target.diff(dim=-1)).abs().mean()
    return l_int + 0.5 * l_grad, {"int": l_int, "grad": l_grad}


def make_run(seed: int = 0, mode: str = "per_sample"):
    torch.manual_seed(seed)
    model = TinyFusion()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    loader = make_loader(CropPairs(mode=mode), batch_size=3, shuffle=True, seed=7)
    return model, opt, sched, loader


def run_fit(out_dir, epochs=4, callbacks=(), seed=0, mode="per_sample", **kw):
    model, opt, sched, loader = make_run(seed, mode)
    kw.setdefault("clip_grad_norm", 0.5)
    kw.setdefault("progress", False)
    hist = fit(model, criterion, loader, epochs=epochs, optimizer=opt, scheduler=sched, device="cpu",
               out_dir=out_dir, callbacks=callbacks, **kw)
    return model, opt, hist


def _no_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


class StopAt:
    """Interrupts a run at the end of ``epoch``: by raising (a crash) or by setting stop_training."""

    def __init__(self, epoch, how):
        self.epoch, self.how = epoch, how

    def on_epoch_end(self, state):
        if state.epoch == self.epoch:
            if self.how == "raise":
                raise KeyboardInterrupt("simulated interruption")
            state.stop_training = True


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("mode", ["per_sample", "global"])
@pytest.mark.parametrize("how", ["raise", "stop"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, mode, how):
    ref_model, ref_opt, ref_hist = run_fit(tmp_path / "ref", mode=mode)

    out = tmp_path / "run"
    if how == "raise":
        # raised in epoch 3's on_epoch_end: last.pt holds epoch 2, epoch 3 must be redone
        with pytest.raises(KeyboardInterrupt):
            run_fit(out, callbacks=[StopAt(3, how)], mode=mode)
        assert load_checkpoint(out / "last.pt")["epoch"] == 2
    else:
        _, _, part = run_fit(out, callbacks=[StopAt(2, how)], mode=mode)
        assert [r["epoch"] for r in part.epochs] == [1, 2]
    # a "new process": different initial weights, fresh optimiser and loader
    model, opt, hist = run_fit(out, seed=99, mode=mode)

    ref_sd, sd = ref_model.state_dict(), model.state_dict()
    assert all(torch.equal(ref_sd[k], sd[k]) for k in ref_sd)
    ref_state, state = ref_opt.state_dict()["state"], opt.state_dict()["state"]
    assert all(torch.equal(ref_state[i]["exp_avg_sq"], state[i]["exp_avg_sq"]) for i in ref_state)
    assert _no_seconds(hist.epochs) == _no_seconds(ref_hist.epochs)
    assert [r["lr"] for r in hist.epochs] == [1e-2, 1e-2, 5e-3, 5e-3]
    on_disk = json.loads((out / "history.json").read_text())
    assert _no_seconds(on_disk["epochs"]) == _no_seconds(ref_hist.epochs)


def test_resume_is_needed_for_equality(tmp_path):
    """Guard against a vacuous resume test: a fresh run from other weights does not match."""
    ref_model, _, _ = run_fit(tmp_path / "ref", epochs=2)
    model, _, _ = run_fit(tmp_path / "other", epochs=2, seed=99)
    assert not torch.equal(ref_model.enc.weight, model.enc.weight)
    again, _, _ = run_fit(tmp_path / "ref", epochs=2, resume=False)  # resume=False restarts from scratch
    assert torch.equal(again.enc.weight, ref_model.enc.weight)


def test_resume_when_already_complete_and_extension(tmp_path, capsys):
    m2, _, h2 = run_fit(tmp_path, epochs=2)
    m2b, _, h2b = run_fit(tmp_path, epochs=2)
    assert "nothing to do" in capsys.readouterr().out
    assert torch.equal(m2.dec.weight, m2b.dec.weight) and len(h2b) == 2
    _, _, h3 = run_fit(tmp_path, epochs=3)
    assert [r["epoch"] for r in h3.epochs] == [1, 2, 3]


# --------------------------------------------------------------------------- loader


def _batches(loader, epoch):
    loader.set_epoch(epoch)
    return [torch.cat([b["ir"].flatten(), b["vi"].flatten()]) for b in loader]


def test_make_loader_epoch_order_depends_only_on_seed_and_epoch():
    a = make_loader(CropPairs(), 3, seed=4)
    b = make_loader(CropPairs(), 3, seed=4)
    for e in (1, 2):
        _batches(a, e)
    ea, eb = _batches(a, 3), _batches(b, 3)
    assert all(torch.equal(x, y) for x, y in zip(ea, eb)) and len(ea) == 4
    assert not all(torch.equal(x, y) for x, y in zip(ea, _batches(b, 4)))
    c = make_loader(CropPairs(), 3, seed=5)
    assert not all(torch.equal(x, y) for x, y in zip(ea, _batches(c, 3)))


def test_make_loader_shards_like_distributed_sampler():
    ds = CropPairs(n=8)
    full = make_loader(ds, 4, seed=1, world_size=1, rank=0)
    shards = [make_loader(ds, 2, seed=1, world_size=2, rank=r) for r in range(2)]
    for ld in (full, *shards):
        ld.sampler.set_epoch(2)
    order = list(full.sampler)
    assert list(shards[0].sampler) == order[0::2] and list(shards[1].sampler) == order[1::2]


def test_make_loader_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(CropPairs(), 0)
    with pytest.raises(ValueError, match="rank=2"):
        make_loader(CropPairs(), 2, world_size=2, rank=2)
    with pytest.raises(ValueError, match="sampler"):
        make_loader(CropPairs(), 2, sampler=None)
    with pytest.raises(TypeError, match="map-style"):
        make_loader(iter([]), 2)


# --------------------------------------------------------------------------- failures


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def step(model, batch):
        calls["n"] += 1
        fused = model(batch["ir"], batch["vi"])
        loss, terms = criterion(fused, batch["ir"], batch["vi"])
        if calls["n"] == 6:  # epoch 2 (4 steps per epoch), second step
            terms["grad"] = terms["grad"] * float("nan")
            loss = loss + terms["grad"]
        return loss, terms

    model, opt, sched, loader = make_run()
    with pytest.raises(NonFiniteLossError) as info:
        fit(model, step, loader, epochs=3, optimizer=opt, device="cpu", out_dir=tmp_path, progress=False)
    err = info.value
    assert (err.epoch, err.step_in_epoch, err.step) == (2, 2, 6)
    assert math.isnan(err.loss) and math.isnan(err.terms["grad"]) and math.isfinite(err.terms["int"])
    msg = str(err)
    assert "epoch 2" in msg and "step 2" in msg and "grad=nan" in msg and "int=" in msg
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 4
    assert len(json.loads((tmp_path / "history.json").read_text())["epochs"]) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


class _Boom(RuntimeError):
    pass


def _crashing_save(obj, f, *a, **k):
    f.write(b"PK\x03\x04 half a checkpoint")
    raise _Boom("disk full (simulated)")


def test_atomic_save_keeps_previous_file_on_crash(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"w": torch.arange(3.0)}, path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _crashing_save)
    with pytest.raises(_Boom):
        atomic_save({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_crash_while_checkpointing_in_fit_leaves_last_pt_loadable(tmp_path, monkeypatch):
    run_fit(tmp_path, epochs=2)
    before = (tmp_path / "last.pt").read_bytes()
    monkeypatch.setattr(torch, "save", _crashing_save)
    with pytest.raises(_Boom):
        run_fit(tmp_path, epochs=3)
    monkeypatch.undo()
    assert (tmp_path / "last.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    _, _, hist = run_fit(tmp_path, epochs=3)  # and the run can still be resumed
    assert [r["epoch"] for r in hist.epochs] == [1, 2, 3]


def test_checkpoint_is_weights_only_and_complete(tmp_path):
    run_fit(tmp_path, epochs=1)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert {"model", "optimizers", "schedulers", "rng", "history", "epoch", "global_step",
            "callbacks", "extra", "meta"} <= set(ckpt)
    assert set(ckpt["rng"][0]) >= {"python", "numpy", "torch"}
    with pytest.raises(ValueError, match="not a fusionlib.train checkpoint"):
        torch.save({"model": {}}, tmp_path / "other.pt")
        load_checkpoint(tmp_path / "other.pt")


# --------------------------------------------------------------------------- API surface


def test_history_frame_json_and_printed_paths(tmp_path, capsys):
    _, _, hist = run_fit(tmp_path, epochs=2, record_steps=True)
    out = capsys.readouterr().out
    assert str(tmp_path / "last.pt") in out
    assert isinstance(hist, History) and len(hist) == 2
    assert set(hist.epochs[0]) == {"epoch", "loss", "int", "grad", "grad_norm", "lr", "seconds", "steps"}
    df = hist.to_frame()
    assert list(df["epoch"]) == [1, 2] and df["loss"].notna().all()
    steps = hist.to_frame(steps=True)
    assert len(steps) == 8 and list(steps["step"]) == list(range(1, 9))
    assert steps[steps.epoch == 1]["loss"].mean() == pytest.approx(hist.epochs[0]["loss"], rel=1e-12)
    assert json.loads((tmp_path / "history.json").read_text()) == json.loads(json.dumps(hist.state_dict()))


def test_step_forms_and_bad_outputs(tmp_path):
    model, opt, _, loader = make_run()
    mse = nn.MSELoss()

    class ModuleCriterion(nn.Module):
        def forward(self, fused, ir, vi):
            return mse(fused, ir)

    for fn in (ModuleCriterion(), lambda f, ir, vi: mse(f, vi), loss_step(criterion),
               lambda m, b: {"loss": mse(m(b["ir"], b["vi"]), b["ir"]), "aux": torch.tensor(1.0)}):
        h = fit(model, fn, loader, epochs=1, optimizer=opt, device="cpu", progress=False,
                max_steps_per_epoch=2)
        assert h.epochs[0]["steps"] == 2
    with pytest.raises(TypeError, match="scalar"):
        fit(model, lambda m, b: m(b["ir"], b["vi"]), loader, epochs=1, optimizer=opt, device="cpu",
            progress=False)
    with pytest.raises(ValueError, match="reserved"):
        fit(model, lambda m, b: (mse(m(b["ir"], b["vi"]), b["ir"]), {"lr": 1.0}), loader, epochs=1,
            optimizer=opt, device="cpu", progress=False)
    with pytest.raises(TypeError, match="neither"):
        fit(model, lambda a: a, loader, epochs=1, optimizer=opt, device="cpu", progress=False)
    with pytest.raises(KeyError, match="'ir' and 'vi'"):
        fit(model, criterion, [{"x": torch.zeros(1)}], epochs=1, optimizer=opt, device="cpu", progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, criterion, loader, epochs=0, optimizer=opt)
    with pytest.raises(TypeError, match="Optimizer"):
        fit(model, criterion, loader, epochs=1, optimizer="adam")


def test_two_optimisers_schedulers_and_extra_state(tmp_path):
    torch.manual_seed(0)
    model, aux = TinyFusion(p=0.0), nn.Conv2d(1, 1, 3, padding=1)
    opts = {"main": torch.optim.Adam(model.parameters(), 1e-2),
            "aux": torch.optim.Adam(aux.parameters(), 1e-2)}
    scheds = [torch.optim.lr_scheduler.MultiStepLR(opts["main"], [1], 0.5)]
    aux0, dec0 = aux.weight.clone(), model.dec.weight.clone()

    def step(m, b):
        fused = m(b["ir"], b["vi"])
        loss, terms = criterion(fused, b["ir"], b["vi"])
        l_aux = (aux(fused.detach()) - b["ir"]).pow(2).mean()
        return loss + l_aux, {**terms, "aux": l_aux}

    loader = make_loader(CropPairs(), 3, seed=1)
    h = fit(model, step, loader, epochs=2, optimizer=opts, scheduler=scheds, device="cpu", out_dir=tmp_path,
            progress=False, extra_state={"aux": aux})
    assert not torch.equal(aux.weight, aux0) and not torch.equal(model.dec.weight, dec0)
    assert [(r["lr_main"], r["lr_aux"]) for r in h.epochs] == [(1e-2, 1e-2), (5e-3, 1e-2)]
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert set(ckpt["optimizers"]) == {"main", "aux"}
    assert torch.equal(ckpt["extra"]["aux"]["weight"], aux.weight)
    with pytest.raises(ValueError, match="optimizers"):
        fit(model, step, loader, epochs=3, optimizer=opts["main"], device="cpu", out_dir=tmp_path,
            progress=False)


def test_callback_hooks_and_state(tmp_path):
    seen = []

    class Spy:
        def on_train_start(self, s):
            seen.append(("start", s.epoch, s.global_step, s.out_dir == tmp_path))

        def on_step_end(self, s):
            seen.append(("step", s.epoch, s.global_step, sorted(s.logs)))

        def on_epoch_end(self, s):
            seen.append(("epoch", s.epoch, s.global_step, s.epoch_logs["epoch"], len(s.history.epochs)))

        def on_train_end(self, s):
            seen.append(("end", s.epoch, s.global_step, s.is_main))

    run_fit(tmp_path, epochs=2, callbacks=[Spy()], max_steps_per_epoch=2)
    assert seen[0] == ("start", 0, 0, True)
    assert seen[1] == ("step", 1, 1, ["grad", "grad_norm", "int", "loss"])
    assert ("epoch", 1, 2, 1, 1) in seen and ("epoch", 2, 4, 2, 2) in seen
    assert seen[-1] == ("end", 2, 4, True)


def test_clip_grad_norm_caps_the_update(tmp_path):
    """With SGD(lr=1) and one step, the update's norm equals min(grad norm, max_norm)."""
    torch.manual_seed(0)
    model = TinyFusion(p=0.0)
    w0 = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    batch = next(iter(make_loader(CropPairs(), 3, seed=1)))
    h = fit(model, criterion, [batch], epochs=1, optimizer=opt, device="cpu", clip_grad_norm=1e-3,
            progress=False)
    moved = math.sqrt(sum(float((p.detach() - q).pow(2).sum()) for p, q in zip(model.parameters(), w0)))
    assert h.epochs[0]["grad_norm"] > 1e-3 and moved == pytest.approx(1e-3, rel=1e-4)


def test_bf16_is_ignored_with_a_warning_on_cpu():
    model, opt, _, loader = make_run()
    with pytest.warns(UserWarning, match="bf16"):
        fit(model, criterion, loader, epochs=1, optimizer=opt, device="cpu", bf16=True, progress=False,
            max_steps_per_epoch=1)


def test_resolve_device():
    assert T.resolve_device("cpu") == torch.device("cpu")
    assert T.resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="device"):
        T.resolve_device("gpu0")


def test_progress_bar_runs(tmp_path, capsys):
    run_fit(tmp_path, epochs=1, progress=True)
    assert "epoch 1/1" in capsys.readouterr().out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_fit_and_resume(tmp_path):
    torch.manual_seed(0)
    model = TinyFusion(p=0.0)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    loader = make_loader(CropPairs(), 3, seed=1)
    h = fit(model, criterion, loader, epochs=2, optimizer=opt, device="cuda", bf16=True, out_dir=tmp_path,
            progress=False)
    assert next(model.parameters()).is_cuda and all(math.isfinite(r["loss"]) for r in h.epochs)
    ckpt = load_checkpoint(tmp_path / "last.pt", map_location="cpu")
    assert "cuda" in ckpt["rng"][0] and not ckpt["model"]["enc.weight"].is_cuda
    h3 = fit(model, criterion, loader, epochs=3, optimizer=opt, device="cuda", bf16=True, out_dir=tmp_path,
             progress=False)
    assert [r["epoch"] for r in h3.epochs] == [1, 2, 3]


# --------------------------------------------------------------------------- distributed


def _load_worker():
    spec = importlib.util.spec_from_file_location("_ddp_worker", REPO / "tests" / "_ddp_worker.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="torch.distributed with the gloo backend is not available in this build")
def test_ddp_matches_single_process(tmp_path):
    """torchrun, 2 CPU processes (gloo) × batch 2 == one process × batch 4 on the same sample order."""
    w = _load_worker()
    env = {k: v for k, v in os.environ.items() if k not in {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT"}}
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    if Path("/sys/class/net/lo").exists():
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "tests" / "_ddp_worker.py"), str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ranks = [torch.load(tmp_path / "ddp" / f"final_rank{r}.pt", weights_only=True) for r in range(2)]
    single, hist = w.train(tmp_path / "single", batch_size=2 * w.PER_RANK_BATCH, world_size=1, rank=0)
    ref = single.state_dict()
    for r in ranks:  # both replicas agree with each other and with the single process
        for k, v in ref.items():
            torch.testing.assert_close(r["model"][k], v, rtol=0, atol=1e-5)
        assert r["losses"] == pytest.approx([e["loss"] for e in hist.epochs], rel=1e-5)
    torch.manual_seed(0)
    init = w.TinyFusion().state_dict()
    assert not torch.allclose(init["enc.weight"], ref["enc.weight"], atol=1e-3)  # it did train
    ckpt = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ckpt["meta"]["world_size"] == 2 and len(ckpt["rng"]) == 2 and ckpt["global_step"] == 8


# --------------------------------------------------------------------------- resume inside an epoch, run identity


class StopAtStep:
    """Raises (a crash) after global step ``step``, inside an epoch."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated interruption inside an epoch")


@pytest.mark.parametrize("mode", ["per_sample", "global"])
def test_resume_inside_an_epoch_equals_uninterrupted(tmp_path, mode):
    # 10 samples, batch 3: 4 steps per epoch; checkpoints every 2 steps; crash after step 7 (epoch 2, step 3)
    ref_model, ref_opt, ref_hist = run_fit(tmp_path / "ref", mode=mode, record_steps=True)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_fit(out, callbacks=[StopAtStep(7)], mode=mode, checkpoint_every=2, record_steps=True)
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["partial"]["step_in_epoch"] == 2 and ckpt["global_step"] == 6
    model, opt, hist = run_fit(out, seed=99, mode=mode, checkpoint_every=2, record_steps=True)
    ref_sd, sd = ref_model.state_dict(), model.state_dict()
    assert all(torch.equal(ref_sd[k], sd[k]) for k in ref_sd)
    assert _no_seconds(hist.epochs) == _no_seconds(ref_hist.epochs)
    assert [s["step"] for s in hist.steps] == list(range(1, 17)), "each step recorded once"
    assert hist.steps == ref_hist.steps


def test_time_based_checkpoints_inside_an_epoch(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_fit(out, callbacks=[StopAtStep(3)], checkpoint_seconds=1e-9)  # due after every step
    assert load_checkpoint(out / "last.pt")["partial"]["step_in_epoch"] == 2  # step 3 crashed before its save
    with pytest.raises(ValueError, match="checkpoint_every"):
        run_fit(out, checkpoint_every=0)


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    from fusionlib.recipes import Recipe
    from fusionlib.train import ResumeMismatchError

    smoke, lab = Recipe(max_steps=4, lr=1e-2), Recipe(max_steps=500, lr=1e-2)
    run_fit(tmp_path, epochs=1, run={"method": "tiny", "profile": "smoke", "recipe": smoke})
    with pytest.raises(ResumeMismatchError) as e:
        run_fit(tmp_path, epochs=2, run={"method": "tiny", "profile": "lab", "recipe": lab})
    msg = str(e.value)
    assert "profile 'smoke'" in msg and "profile 'lab'" in msg and "recipe.max_steps" in msg
    assert str(tmp_path) in msg and "delete" in msg
    # the recipe's notes are not part of the identity; the same run resumes
    _, _, h = run_fit(tmp_path, epochs=2, run={"method": "tiny", "profile": "smoke",
                                               "recipe": dataclasses.replace(smoke, notes="edited")})
    assert [r["epoch"] for r in h.epochs] == [1, 2]
    # another model in the same folder is refused too
    torch.manual_seed(0)
    other = nn.Sequential(nn.Conv2d(2, 1, 1))
    with pytest.raises(ResumeMismatchError, match="model"):
        fit(other, lambda m, b: m(torch.cat([b["ir"], b["vi"]], 1)).mean(), make_run()[3], epochs=3,
            optimizer=torch.optim.SGD(other.parameters(), lr=0.1), device="cpu", out_dir=tmp_path, progress=False,
            run={"method": "tiny", "profile": "smoke", "recipe": smoke})


def test_resume_accepts_a_checkpoint_written_before_a_new_default_field(tmp_path):
    """A recipe field added later with default None (absent in the old record) is the same run."""
    run_fit(tmp_path, epochs=1, run={"method": "tiny", "recipe": {"lr": 0.01}})
    _, _, h = run_fit(tmp_path, epochs=2, run={"method": "tiny", "recipe": {"lr": 0.01, "model": None}})
    assert [r["epoch"] for r in h.epochs] == [1, 2]


def test_corrupt_checkpoint_and_stale_temporaries(tmp_path, capsys):
    run_fit(tmp_path, epochs=1)
    (tmp_path / ".last.pt.12345.tmp").write_bytes(b"half a checkpoint")  # a kill during the write
    run_fit(tmp_path, epochs=2)
    assert not list(tmp_path.glob(".*.tmp")) and "removed .last.pt.12345.tmp" in capsys.readouterr().out
    (tmp_path / "last.pt").write_bytes((tmp_path / "last.pt").read_bytes()[:100])  # truncated
    with pytest.raises(ValueError) as e:
        run_fit(tmp_path, epochs=3)
    msg = str(e.value)
    assert "last.pt" in msg and "damaged or truncated" in msg and "Delete it" in msg
    assert "weights_only=False" not in msg


def test_resume_extends_a_constant_lr_run_with_a_larger_budget(tmp_path, capsys):
    """A larger max_steps of a recipe without a schedule continues the checkpoint; a scheduled one is refused."""
    from fusionlib.recipes import Recipe
    from fusionlib.train import ResumeMismatchError

    short, longer = Recipe(max_steps=4, lr=1e-2), Recipe(max_steps=8, lr=1e-2)
    run_fit(tmp_path, epochs=1, run={"method": "tiny", "profile": "cpu", "recipe": short})
    _, _, h = run_fit(tmp_path, epochs=2, run={"method": "tiny", "profile": "cpu", "recipe": longer})
    assert [r["epoch"] for r in h.epochs] == [1, 2]
    assert "larger budget (recipe.max_steps 4 -> 8" in capsys.readouterr().out
    # a smaller budget, or a budget change of a scheduled recipe, is another run
    with pytest.raises(ResumeMismatchError, match="recipe.max_steps"):
        run_fit(tmp_path, epochs=3, run={"method": "tiny", "profile": "cpu", "recipe": short})
    sched = tmp_path / "sched"
    run_fit(sched, epochs=1, run={"method": "tiny", "recipe": dataclasses.replace(short, scheduler="cosine")})
    with pytest.raises(ResumeMismatchError, match="recipe.max_steps"):
        run_fit(sched, epochs=2, run={"method": "tiny", "recipe": dataclasses.replace(longer, scheduler="cosine")})
