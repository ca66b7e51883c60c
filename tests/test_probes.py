"""fusionlib.probes: forward-hook capture by module name, the Recorder, feature spectra."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fusionlib.probes import Recorder, capture, feature_spectrum, find_modules
from fusionlib.spectral import radial_psd


class _Pair(nn.Module):
    """Returns a tuple, like blocks that also return their attention."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 2.0, x.sum()


class _Block(nn.Module):
    """Channel attention through a softmax submodule, an Identity probe point, then an in-place ReLU."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(c, c, 1)
        self.attend = nn.Softmax(dim=-1)
        self.probe = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.proj(x).flatten(2)  # (B, C, HW)
        attn = self.attend(q @ q.transpose(1, 2) / (h * w))  # (B, C, C)
        y = (attn @ x.flatten(2)).view(b, c, h, w)
        y = self.probe(y)
        return torch.relu_(y)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Conv2d(1, 2, 1)  # applied to ir and to vi
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.blocks = nn.ModuleList([_Block(4), _Block(4)])
        self.pair = _Pair()
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.shared(ir)[:, :1], self.shared(vi)[:, :1]], dim=1)
        x = self.stem(x)
        for blk in self.blocks:
            x = blk(x)
        x, _ = self.pair(x)
        return self.head(x)


@pytest.fixture()
def net() -> _Net:
    torch.manual_seed(0)
    return _Net().eval()


@pytest.fixture()
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 1, 6, 6, generator=g), torch.rand(2, 1, 6, 6, generator=g)


def _no_hooks(model: nn.Module) -> bool:
    return all(len(m._forward_hooks) == 0 for m in model.modules())


def _manual(net: _Net, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same forward written out, keeping the intermediates."""
    with torch.no_grad():
        s_ir, s_vi = net.shared(ir), net.shared(vi)
        x = net.stem(torch.cat([s_ir[:, :1], s_vi[:, :1]], dim=1))
        out = {"shared.first": s_ir, "shared.last": s_vi, "stem": x}
        for i, blk in enumerate(net.blocks):
            b, c, h, w = x.shape
            q = blk.proj(x).flatten(2)
            attn = torch.softmax(q @ q.transpose(1, 2) / (h * w), dim=-1)
            y = (attn @ x.flatten(2)).view(b, c, h, w)
            out[f"blocks.{i}.attend"], out[f"blocks.{i}.probe"] = attn, y.clone()
            x = torch.relu(y)
        out["pair"] = x * 2.0
        out["head"] = net.head(x * 2.0)
    return out


def test_capture_matches_manual_forward(net, inputs):
    ref = _manual(net, *inputs)
    names = ["stem", "blocks.0.attend", "blocks.1.probe", "pair", "head"]
    got = capture(net, *inputs, names=names)
    assert list(got) == names
    for n in names:
        torch.testing.assert_close(got[n], ref[n])
    assert _no_hooks(net)


def test_capture_glob_pattern(net, inputs):
    got = capture(net, *inputs, names="*.attend")
    assert list(got) == ["blocks.0.attend", "blocks.1.attend"]
    for a in got.values():
        assert a.shape == (2, 4, 4)
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 4))
    assert _no_hooks(net)


def test_capture_is_a_copy_not_changed_by_later_inplace_ops(net, inputs):
    # blocks.*.probe is followed by relu_ in place; a detached view would lose its negatives.
    ref = _manual(net, *inputs)
    got = capture(net, *inputs, names=["blocks.0.probe"])["blocks.0.probe"]
    assert (ref["blocks.0.probe"] < 0).any()
    torch.testing.assert_close(got, ref["blocks.0.probe"])


def test_capture_tuple_output_gives_first_tensor(net, inputs):
    got = capture(net, *inputs, names="pair")["pair"]
    assert got.shape == (2, 4, 6, 6)


def test_capture_shared_module_call_index(net, inputs):
    ref = _manual(net, *inputs)
    last = capture(net, *inputs, names="shared")["shared"]
    first = capture(net, *inputs, names="shared", call=0)["shared"]
    torch.testing.assert_close(last, ref["shared.last"])
    torch.testing.assert_close(first, ref["shared.first"])
    with pytest.raises(IndexError, match="ran 2 time"):
        capture(net, *inputs, names="shared", call=5)


def test_unknown_name_raises_with_close_matches(net, inputs):
    with pytest.raises(KeyError) as e:
        capture(net, *inputs, names=["stem", "attend"])
    msg = str(e.value)
    assert "blocks.0.attend" in msg and "'*.attend'" in msg
    with pytest.raises(KeyError, match="blocks.1.probe"):
        capture(net, *inputs, names="blocks.1.prob")
    with pytest.raises(KeyError, match="matches no submodule"):
        capture(net, *inputs, names="*.nothing")
    assert _no_hooks(net)


def test_hooks_removed_when_forward_raises(net):
    bad = torch.rand(1, 3, 6, 6)  # wrong channel count for `shared`
    with pytest.raises(RuntimeError):
        capture(net, bad, bad, names="*")
    assert _no_hooks(net)
    with pytest.raises(RuntimeError):
        with Recorder(net, ["stem", "head"]):
            net(bad, bad)
    assert _no_hooks(net)


def test_strict_reports_modules_that_did_not_run(inputs):
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Conv2d(1, 1, 1)
            self.unused = nn.Conv2d(1, 1, 1)

        def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
            return self.used(ir + vi)

    m = Branchy()
    with pytest.raises(RuntimeError, match="unused"):
        capture(m, *inputs, names="*")
    got = capture(m, *inputs, names="*", strict=False)
    assert list(got) == ["used"]
    assert _no_hooks(m)


def test_detach_false_keeps_the_graph(net, inputs):
    got = capture(net, *inputs, names="stem", detach=False)["stem"]
    assert got.requires_grad
    got.sum().backward()
    assert net.stem.weight.grad is not None
    d = capture(net, *inputs, names="stem")["stem"]
    assert not d.requires_grad


def test_recorder_across_calls(net, inputs):
    rec = Recorder(net, ["blocks.0.attend", "head"])
    with rec:
        assert rec.attached and len(net.head._forward_hooks) == 1
        for _ in range(3):
            net(*inputs)
        with pytest.raises(RuntimeError, match="already attached"):
            rec.attach()
    assert not rec.attached and _no_hooks(net)
    assert len(rec["head"]) == 3 and len(rec["blocks.0.attend"]) == 3
    assert rec.stacked("head").shape == (3, 2, 1, 6, 6)
    ref = _manual(net, *inputs)
    torch.testing.assert_close(rec.last()["blocks.0.attend"], ref["blocks.0.attend"])
    net(*inputs)  # detached: nothing more is recorded
    assert len(rec["head"]) == 3
    rec.clear()
    assert rec["head"] == []
    with pytest.raises(KeyError, match="recorded names"):
        rec["stem"]
    rec.remove()  # idempotent


def test_find_modules(net):
    assert list(find_modules(net, "blocks.*.proj")) == ["blocks.0.proj", "blocks.1.proj"]
    assert find_modules(net, "")[""] is net
    with pytest.raises(ValueError):
        find_modules(net, [])


def test_feature_spectrum_averages_radial_psd_over_channels():
    torch.manual_seed(0)
    f = torch.rand(2, 3, 16, 16)
    freqs, psd = feature_spectrum(f)
    rf, rp = radial_psd(f)
    torch.testing.assert_close(freqs, rf)
    assert psd.shape == (2, 8)
    torch.testing.assert_close(psd, rp.mean(dim=1))
    _, p3 = feature_spectrum(f[0])
    torch.testing.assert_close(p3, psd[0])
    _, pn = feature_spectrum(f * 100, normalize=True)
    torch.testing.assert_close(pn.sum(-1), torch.ones(2))


def test_feature_spectrum_tells_smooth_from_busy():
    x = torch.arange(32.0)
    smooth = torch.cos(2 * torch.pi * 2 * x / 32).expand(1, 2, 32, 32)
    busy = torch.cos(2 * torch.pi * 12 * x / 32).expand(1, 2, 32, 32)
    f, ps = feature_spectrum(smooth, normalize=True)
    _, pb = feature_spectrum(busy, normalize=True)
    assert f[ps[0].argmax()] < 0.1 < f[pb[0].argmax()]


def test_feature_spectrum_bad_input():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        feature_spectrum(torch.rand(8, 8))
    with pytest.raises(TypeError):
        feature_spectrum([[1.0]])
