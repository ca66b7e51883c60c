"""fusionlib.layers: LayerNorm2d, SE / ResSE, Restormer MDTA / GDFN / RestormerBlock."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from fusionlib.layers import GDFN, MDTA, SE, LayerNorm2d, ResSE, RestormerBlock, channel_attention


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --- LayerNorm2d ---------------------------------------------------------------------------------------
def _restormer_ln(x, weight, bias):
    # Restormer's formula written out: per pixel over channels, population variance, eps 1e-5
    mu = x.mean(1, keepdim=True)
    var = x.var(1, keepdim=True, unbiased=False)
    y = (x - mu) / torch.sqrt(var + 1e-5) if bias is not None else x / torch.sqrt(var + 1e-5)
    y = y * weight[:, None, None]
    return y + bias[:, None, None] if bias is not None else y


@pytest.mark.parametrize("kind", ["WithBias", "BiasFree"])
def test_layernorm2d_matches_restormer_formula(kind):
    torch.manual_seed(0)
    ln = LayerNorm2d(6, kind)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        if ln.bias is not None:
            ln.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    torch.testing.assert_close(ln(x), _restormer_ln(x, ln.weight, ln.bias), atol=1e-5, rtol=1e-5)
    assert n_params(ln) == (6 if kind == "BiasFree" else 12)


def test_layernorm2d_errors():
    with pytest.raises(ValueError, match="LayerNorm_type"):
        LayerNorm2d(4, "withbias")
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        LayerNorm2d(4)(torch.rand(1, 3, 4, 4))


def test_layernorm2d_gradcheck():
    ln = LayerNorm2d(3).double()
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ln, (x,), fast_mode=True)


# --- SE, ResSE ---------------------------------------------------------------------------------------
def test_se_gates_channels_in_unit_interval():
    torch.manual_seed(0)
    se = SE(32, reduction=16)
    assert se.fc[0].out_features == 2 and se.fc[0].bias is None
    x = torch.rand(2, 32, 6, 6) + 0.1
    ratio = se(x) / x  # the gate, constant over pixels
    assert ((ratio > 0) & (ratio < 1)).all()
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-6)
    assert SE(8, reduction=16).fc[0].out_features == 1  # tiny widths still build


def test_resse_shares_one_prelu_and_counts():
    m = ResSE(1, 48)  # SIBA's stem
    assert n_params(m) == 21_649
    assert sum(isinstance(s, torch.nn.PReLU) for s in m.modules()) == 1 and m.act.weight.numel() == 1
    # the single slope is applied twice: changing it changes both activations
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        m.act.weight.fill_(0.0)
        y = m(x)
        manual = F.relu(m.se(m.conv2(F.relu(m.conv1(x)))) + m.res_conv(x))
    torch.testing.assert_close(y, manual)
    assert isinstance(ResSE(8, 8).res_conv, torch.nn.Identity)
    assert isinstance(ResSE(8, 1, use_se=False).se, torch.nn.Identity)


# --- Restormer ---------------------------------------------------------------------------------------
def _naive_mdta(m: MDTA, x: torch.Tensor) -> torch.Tensor:
    """Per-head loop with explicit normalisation (the equation, slowly)."""
    q, k, v = m.qkv_dwconv(m.qkv(x)).chunk(3, dim=1)
    b, c, h, w = x.shape
    d = c // m.num_heads
    outs = []
    for i in range(m.num_heads):
        qi, ki, vi = (t[:, i * d:(i + 1) * d].reshape(b, d, h * w) for t in (q, k, v))
        qi = qi / qi.norm(dim=-1, keepdim=True)
        ki = ki / ki.norm(dim=-1, keepdim=True)
        a = torch.softmax(qi @ ki.transpose(1, 2) * m.temperature[i], dim=-1)
        outs.append((a @ vi).reshape(b, d, h, w))
    return m.project_out(torch.cat(outs, dim=1))


def test_mdta_equals_naive_loop_and_softmax_is_hookable():
    torch.manual_seed(0)
    m = MDTA(dim=8, num_heads=2)
    with torch.no_grad():
        m.temperature.uniform_(0.5, 2.0)
    x = torch.randn(2, 8, 5, 6)
    maps = []
    m.attend.register_forward_hook(lambda mod, i, o: maps.append(o))
    torch.testing.assert_close(m(x), _naive_mdta(m, x), atol=1e-5, rtol=1e-5)
    assert maps[0].shape == (2, 2, 4, 4)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 2, 4))


def test_channel_attention_is_global_over_pixels():
    # the (C/h x C/h) map sums over all pixels, so permuting pixels of q, k, v permutes the output only
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 3, 5) for _ in range(3))
    args = dict(num_heads=2, temperature=torch.ones(2, 1, 1), attend=torch.nn.Softmax(-1))
    perm = torch.randperm(15)

    def shuffle(t):
        return rearrange(rearrange(t, "b c h w -> b c (h w)")[..., perm], "b c (h w) -> b c h w", h=3)

    out = channel_attention(q, k, v, **args)
    torch.testing.assert_close(channel_attention(shuffle(q), shuffle(k), shuffle(v), **args), shuffle(out))


def test_mdta_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        MDTA(dim=10, num_heads=4)


def test_gdfn_width_and_counts():
    g = GDFN(dim=48, ffn_expansion_factor=1.0)
    assert g.project_in.out_channels == 96 and g.project_out.in_channels == 48
    assert n_params(g) == 96 * 48 + 96 * 9 + 48 * 48
    assert GDFN(dim=48, ffn_expansion_factor=2.66).project_out.in_channels == 127  # int(48 * 2.66)


def test_restormer_block_counts_and_residual():
    blk = RestormerBlock(dim=48, num_heads=8, ffn_expansion_factor=1.0, bias=False, LayerNorm_type="WithBias")
    assert n_params(blk) == 18_488  # SIBA's self-attention block (notebooks/released_code.md §SIBA)
    # zero output projections make the block the identity (both branches are residual)
    with torch.no_grad():
        blk.attn.project_out.weight.zero_()
        blk.ffn.project_out.weight.zero_()
    x = torch.randn(1, 48, 4, 4)
    torch.testing.assert_close(blk(x), x)


def test_restormer_block_gradcheck():
    torch.manual_seed(0)
    blk = RestormerBlock(dim=4, num_heads=2, ffn_expansion_factor=1.0).double()
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(blk, (x,), fast_mode=True)
