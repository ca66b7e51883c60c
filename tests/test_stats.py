"""fusionlib.stats: test selection, Holm-Bonferroni, tidy comparison table, improvement rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from fusionlib.stats import (
    compare_methods,
    holm_bonferroni,
    improvement_rates,
    paired_test,
    plot_improvement_heatmap,
)


def test_holm_against_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm_bonferroni(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm_bonferroni([0.2, np.nan, 0.01])
    assert np.isnan(out[1]) and out[[0, 2]].tolist() == pytest.approx([0.2, 0.02])
    assert holm_bonferroni([0.9, 0.8]).tolist() == [1.0, 1.0]
    assert holm_bonferroni([]).size == 0


def test_normal_differences_use_the_paired_t_test():
    rng = np.random.default_rng(1)
    base = rng.normal(5, 1, 40)
    meth = base + rng.normal(0.3, 0.2, 40)
    r = paired_test(meth, base)
    assert r["test"] == "paired t" and r["shapiro_p"] > 0.05
    assert r["p"] == pytest.approx(sps.ttest_rel(meth, base).pvalue)
    assert r["effect"] == pytest.approx(np.mean(meth - base) / np.std(meth - base, ddof=1))


def test_skewed_differences_use_wilcoxon():
    rng = np.random.default_rng(2)
    base = rng.normal(5, 1, 40)
    meth = base + rng.exponential(0.5, 40) ** 3  # heavy right tail
    r = paired_test(meth, base)
    assert r["test"] == "wilcoxon" and r["shapiro_p"] <= 0.05
    assert r["p"] == pytest.approx(sps.wilcoxon(meth - base).pvalue)
    assert r["effect"] == pytest.approx(1.0)  # every difference positive: rank-biserial r = 1


def test_paired_test_input_checks_and_nan_pairs():
    with pytest.raises(ValueError, match="equal length"):
        paired_test([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 3 complete image pairs"):
        paired_test([1, np.nan, 3, 4], [1, 2, np.nan, 5])
    r = paired_test([1.0, 2.0, np.nan, 4.0, 5.5], [0.5, 2.5, 1.0, 3.0, 4.0])
    assert r["n"] == 4 and r["n_dropped"] == 1
    assert paired_test([1, 2, 3], [1, 2, 3])["p"] == 1.0


def _tables(n=30, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"img{i:02d}" for i in range(n)]
    base = pd.DataFrame(
        {"EN": rng.normal(6.5, 0.4, n), "SSIM": rng.normal(0.7, 0.05, n), "Nabf": rng.normal(0.05, 0.01, n)},
        index=pd.Index(names, name="name"),
    )
    meth = base.copy()
    meth["EN"] += 0.25 + rng.normal(0, 0.05, n)  # clearly better
    meth["SSIM"] += rng.normal(0, 0.02, n)  # no real change
    meth["Nabf"] += 0.01 + rng.normal(0, 0.002, n)  # more artefacts: worse (lower is better)
    return meth, base


def test_compare_methods_table():
    meth, base = _tables()
    df = compare_methods(meth, base)
    assert list(df["metric"]) == ["EN", "SSIM", "Nabf"]
    row = df.set_index("metric")
    assert row.loc["EN", "better"] == "method" and bool(row.loc["EN", "significant"])
    assert row.loc["Nabf", "better"] == "baseline" and bool(row.loc["Nabf", "significant"])
    assert row.loc["SSIM", "better"] == "-"
    assert np.allclose(df["p_holm"], holm_bonferroni(df["p"]))
    assert (df["p_holm"] >= df["p"]).all()
    # an explicit direction overrides the default
    flipped = compare_methods(meth, base, ["Nabf"], higher_is_better={"Nabf": True})
    assert flipped["better"].iloc[0] == "method"


def test_compare_methods_rejects_different_images():
    meth, base = _tables()
    with pytest.raises(ValueError, match="not scored on the same images"):
        compare_methods(meth.iloc[1:], base)
    # same images in another order are aligned, not rejected
    df1 = compare_methods(meth, base)
    df2 = compare_methods(meth.iloc[::-1], base)
    assert np.allclose(df1["p"], df2["p"])


def test_improvement_rates_signs_and_centering():
    meth = {"EN": [6.6, 6.0], "Nabf": [0.04, 0.06]}
    base = {"EN": [6.0, 6.0], "Nabf": [0.05, 0.05]}
    r = improvement_rates(meth, base)
    assert r["EN"].tolist() == pytest.approx([10.0, 0.0])
    assert r["Nabf"].tolist() == pytest.approx([20.0, -20.0])  # lower Nabf is an improvement
    c = improvement_rates(meth, base, center="mean")
    assert c.mean().abs().max() < 1e-12
    z = improvement_rates({"MI": [1.0, 2.0, 3.0]}, {"MI": [0.0, 1.0, 1.0]}, percent=False)
    assert np.isnan(z["MI"].iloc[0]) and z["MI"].iloc[1:].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="center"):
        improvement_rates(meth, base, center="max")


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # seaborn 0.13 internals
def test_plot_improvement_heatmap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meth, base = _tables(8)
    rates = improvement_rates(meth, base)
    fig, ax = plt.subplots()
    out = plot_improvement_heatmap(ax, rates)
    assert out is ax and ax.get_xlabel() == "metric"
    mesh = ax.collections[0]
    lo, hi = mesh.get_clim()
    assert lo == pytest.approx(-hi)  # centred at 0
    plt.close(fig)
