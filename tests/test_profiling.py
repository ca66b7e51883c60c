"""fusionlib.profiling: parameter counts, analytic FLOPs, meta-device counting, latency, memory."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn

from fusionlib import profiling as P


class _Tiny(nn.Module):
    """conv -> BN -> ReLU -> conv, a matmul-attention-like step, and a root-level parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(8, 1, 1, bias=False)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        f = self.stem(torch.cat([ir, vi], dim=1))  # (B, 8, H, W)
        q = f.flatten(2)  # (B, 8, HW)
        attn = torch.softmax(q @ q.transpose(1, 2), dim=-1)  # (B, 8, 8): bmm 8 x HW x 8
        f = (attn @ q).view_as(f) * self.scale
        return self.head(f)


def test_doctests():
    res = doctest.testmod(P, extraglobs={"torch": torch}, verbose=False)
    assert res.attempted > 0 and res.failed == 0


# --- parameters --------------------------------------------------------------------------------
def test_count_parameters_conv_and_sharing():
    assert P.count_parameters(nn.Conv2d(1, 8, 3, padding=1)) == 8 * 1 * 9 + 8
    assert P.count_parameters(nn.Conv2d(8, 16, 3, bias=False)) == 16 * 8 * 9
    shared = nn.Linear(4, 4)
    m = nn.Sequential(shared, nn.ReLU(), shared)  # the same weights used twice count once
    assert P.count_parameters(m) == 20
    m2 = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    m2[1].requires_grad_(False)
    assert P.count_parameters(m2) == 20 + 8
    assert P.count_parameters(m2, trainable_only=True) == 20


def test_parameter_table_sums_and_groups():
    model = _Tiny()
    total = P.count_parameters(model)
    assert total == (2 * 8 * 9 + 8) + 16 + 8 + 1 == 177
    t1 = P.parameter_table(model, depth=1)
    assert list(t1.columns) == ["module", "type", "params", "trainable", "share_%"]
    assert t1.set_index("module")["params"].to_dict() == {"stem": 168, "head": 8, "(root)": 1}
    assert t1["params"].sum() == total
    assert t1["share_%"].sum() == pytest.approx(100.0)
    assert t1.set_index("module").loc["stem", "type"] == "Sequential"
    t2 = P.parameter_table(model, depth=2)
    assert t2.set_index("module")["params"].to_dict() == {"stem.0": 152, "stem.1": 16, "head": 8, "(root)": 1}
    with pytest.raises(ValueError, match="depth"):
        P.parameter_table(model, depth=0)


def test_parameter_table_shared_counted_once():
    shared = nn.Linear(3, 3)
    m = nn.ModuleDict({"a": shared, "b": shared, "c": nn.Linear(3, 1)})
    t = P.parameter_table(m)
    assert t["params"].sum() == P.count_parameters(m) == 12 + 4


def test_format_helpers():
    text = P.format_parameter_table(_Tiny())
    lines = text.splitlines()
    assert lines[0].split() == ["module", "type", "params", "share"]
    assert lines[-1].split()[:2] == ["total", "177"]
    big = nn.Linear(1000, 100)
    assert "100,100" in P.format_parameter_table(big)
    assert P.format_count(9.204e9) == "9.20 G"
    assert P.format_count(72074) == "72.07 K"


# --- FLOPs -----------------------------------------------------------------------------------------
def test_conv_flops_analytic():
    # Conv2d(1, 8, 3, padding=1) on 16x16: 8 outputs x 9 taps x 256 pixels MACs; bias not counted
    r = P.count_flops(nn.Conv2d(1, 8, 3, padding=1), torch.rand(1, 1, 16, 16), by_op=True)
    assert r["flops"] == 2 * 8 * 9 * 256
    assert r["gmac"] == pytest.approx(8 * 9 * 256 / 1e9)
    assert r["gflops"] == pytest.approx(2 * r["gmac"])
    assert r["by_op"] == {"aten.convolution": 2 * 8 * 9 * 256}
    # stride 2, no padding, batch 3: output 7x7
    r2 = P.count_flops(nn.Conv2d(4, 6, 3, stride=2), torch.rand(3, 4, 16, 16))
    assert r2["flops"] == 2 * 3 * 6 * 4 * 9 * 7 * 7


def test_linear_and_matmul_flops():
    assert P.count_flops(nn.Linear(10, 5), torch.rand(4, 10))["flops"] == 2 * 4 * 10 * 5
    hw = 6 * 6
    conv = 2 * 8 * 2 * 9 * hw
    bmm = 2 * (8 * hw * 8) * 2  # q q^T and attn q
    head = 2 * 1 * 8 * hw
    r = P.count_flops(_Tiny(), torch.rand(1, 1, 6, 6), torch.rand(1, 1, 6, 6), by_op=True, by_module=True)
    assert r["flops"] == conv + bmm + head
    assert r["by_op"]["aten.bmm"] == bmm
    assert r["by_module"]["_Tiny.head"] == head


def test_meta_counting_equals_real_and_leaves_model_alone():
    model = _Tiny()  # training mode: a real pass updates the BN statistics, a meta pass must not
    x = torch.rand(2, 1, 12, 12)
    real = P.count_flops(model, x, x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    meta = P.count_flops(model, x, x, meta=True)
    sizes = P.count_flops(model, torch.Size([2, 1, 12, 12]), torch.Size([2, 1, 12, 12]), meta=True)
    assert real["flops"] == meta["flops"] == sizes["flops"] > 0
    for k, v in model.state_dict().items():  # still on CPU, BN statistics untouched by the meta pass
        assert v.device.type == "cpu"
        torch.testing.assert_close(v, before[k])
    with torch.device("meta"):
        on_meta = _Tiny()
    size = torch.Size([2, 1, 12, 12])
    assert P.count_flops(on_meta, size, size)["flops"] == real["flops"]
    assert P.count_parameters(on_meta) == P.count_parameters(model)


# --- latency and memory ------------------------------------------------------------------------------
def test_measure_latency_keys_and_values():
    model = nn.Conv2d(1, 4, 3, padding=1)
    r = P.measure_latency(model, torch.rand(3, 1, 16, 16), warmup=1, repeats=4)
    assert {"median_s", "min_s", "mean_s", "runs_s", "fps", "batch", "device", "threads"} <= r.keys()
    assert len(r["runs_s"]) == 4 and all(t > 0 for t in r["runs_s"])
    assert 0 < r["min_s"] <= r["median_s"] <= max(r["runs_s"])
    assert r["fps"] == pytest.approx(3 / r["median_s"])
    assert r["device"] == "cpu"
    with pytest.raises(ValueError, match="repeats"):
        P.measure_latency(model, torch.rand(1, 1, 8, 8), repeats=0)
    with torch.device("meta"):
        meta_model = nn.Conv2d(1, 1, 3)
    with pytest.raises(ValueError, match="meta"):
        P.measure_latency(meta_model, torch.Size([1, 1, 8, 8]))


def test_measure_latency_autocast_runs_in_that_dtype_and_reports_it():
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            seen.append(y.dtype)
            return y

    model = Probe()
    r = P.measure_latency(model, torch.rand(1, 1, 8, 8), warmup=0, repeats=2, autocast=torch.bfloat16)
    assert seen == [torch.bfloat16, torch.bfloat16] and r["dtype"] == "bfloat16" and r["synchronised"]
    assert model.conv.weight.dtype == torch.float32  # autocast leaves the weights alone
    seen.clear()
    r = P.measure_latency(model, torch.rand(1, 1, 8, 8), warmup=0, repeats=1, sync=False)
    assert seen == [torch.float32] and r["dtype"] == "float32" and r["synchronised"] is False


def test_peak_memory_cpu_is_none():
    assert P.peak_memory(lambda: torch.ones(1000), device="cpu") is None
    assert "CPU" in P.CPU_MEMORY_NOTE


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_peak_memory_cuda():
    n = 1 << 20  # 4 MiB of float32
    peak = P.peak_memory(lambda: torch.ones(n, device="cuda"), device="cuda", relative=True)
    assert peak >= 4 * n


def test_profile_model_summary():
    model = _Tiny().eval()
    x = torch.rand(1, 1, 8, 8)
    r = P.profile_model(model, (x, x), warmup=0, repeats=2)
    assert r["params"] == P.count_parameters(model)
    assert r["flops"] == P.count_flops(model, x, x)["flops"]
    assert r["gflops"] == pytest.approx(2 * r["gmac"])
    assert r["median_s"] > 0 and r["fps"] > 0
    assert r["input_shapes"] == [(1, 1, 8, 8), (1, 1, 8, 8)]
    if r["device"] == "cpu":
        assert r["peak_memory_bytes"] is None and r["peak_memory_note"] == P.CPU_MEMORY_NOTE
    with torch.device("meta"):
        big = _Tiny()
    rm = P.profile_model(big, (torch.Size([1, 1, 8, 8]),) * 2)
    assert rm["flops"] == r["flops"] and rm["median_s"] is None
