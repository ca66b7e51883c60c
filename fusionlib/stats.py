"""Paired statistics for comparing two fusion methods image by image.

Published fusion tables compare means; two methods evaluated on the same images are paired
samples, so the right question is whether the per-image differences are centred away from 0.
This module gives:

* :func:`paired_test`: one metric, one pair of methods. Shapiro-Wilk on the differences decides
  between the paired t-test (differences look normal) and the Wilcoxon signed-rank test;
* :func:`compare_methods`: every metric at once, Holm-Bonferroni across the comparisons, as a
  tidy :class:`pandas.DataFrame`;
* :func:`holm_bonferroni`: the step-down adjustment on its own;
* :func:`improvement_rates`: the image x metric matrix of signed relative improvements of a
  method over a baseline (LKC-FUNet §4.3 shows such a heat map), centred on 0 = no change,
  with :func:`plot_improvement_heatmap` to draw it with a diverging colour map centred at 0.

Inputs are per-image score tables: ``DataFrame`` (rows = images, columns = metrics) or
``{metric: sequence}``; the CSV written by ``python -m fusionlib.metrics --csv`` loads directly
with ``pd.read_csv(path, index_col="name")``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

__all__ = [
    "paired_test",
    "compare_methods",
    "holm_bonferroni",
    "improvement_rates",
    "plot_improvement_heatmap",
]

Scores = pd.DataFrame | Mapping[str, Sequence[float]]


def _as_frame(scores: Scores, name: str) -> pd.DataFrame:
    if isinstance(scores, pd.DataFrame):
        return scores
    if isinstance(scores, Mapping):
        return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in scores.items()})
    raise TypeError(
        f"{name}: expected a pandas DataFrame or a {{metric: values}} mapping, got {type(scores).__name__}"
    )


def _align(method: Scores, baseline: Scores) -> tuple[pd.DataFrame, pd.DataFrame]:
    m, b = _as_frame(method, "method"), _as_frame(baseline, "baseline")
    if not m.index.equals(b.index):
        only_m = m.index.difference(b.index)
        only_b = b.index.difference(m.index)
        if len(only_m) or len(only_b):
            raise ValueError(
                "method and baseline are not scored on the same images: "
                f"{len(only_m)} only in method (e.g. {list(only_m[:3])}), "
                f"{len(only_b)} only in baseline (e.g. {list(only_b[:3])})"
            )
        b = b.loc[m.index]
    return m, b


def holm_bonferroni(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control); NaN entries stay NaN.

    ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) p_(j))`` over the sorted valid p-values.

    Examples:
        >>> holm_bonferroni([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    pv = p[ok]
    m = pv.size
    if m == 0:
        return out
    order = np.argsort(pv, kind="mergesort")
    adj = np.minimum(1.0, (m - np.arange(m)) * pv[order])
    adj = np.maximum.accumulate(adj)
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


def paired_test(
    method: Sequence[float], baseline: Sequence[float], *, alpha_normality: float = 0.05
) -> dict[str, Any]:
    """Paired comparison of two methods' scores on the same images.

    Differences ``d = method - baseline`` (pairs with a NaN are dropped and counted). If
    Shapiro-Wilk does not reject normality of ``d`` at ``alpha_normality`` the paired t-test
    (``scipy.stats.ttest_rel``) is used, otherwise the Wilcoxon signed-rank test
    (``scipy.stats.wilcoxon``, zero differences dropped). Needs at least 3 pairs.

    Returns a dict: ``test``, ``statistic``, ``p``, ``n``, ``n_dropped``, ``mean_diff``,
    ``median_diff``, ``shapiro_p``, ``effect`` (Cohen's d_z for the t-test, matched-pairs
    rank-biserial r for Wilcoxon).

    Raises:
        ValueError: different lengths, or fewer than 3 complete pairs.
    """
    x = np.asarray(method, dtype=float)
    y = np.asarray(baseline, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"method and baseline must be 1-D of equal length, got {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    d = x[keep] - y[keep]
    n = int(d.size)
    if n < 3:
        raise ValueError(f"need at least 3 complete image pairs for a paired test, got {n}")
    res: dict[str, Any] = dict(
        n=n, n_dropped=int((~keep).sum()), mean_diff=float(d.mean()), median_diff=float(np.median(d))
    )
    if np.all(d == d[0]):
        # no spread: Shapiro is undefined; a constant non-zero shift is as significant as it gets
        res.update(test="none (constant difference)", statistic=math.nan, shapiro_p=math.nan, effect=math.nan,
                   p=1.0 if d[0] == 0 else 0.0)
        return res
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy warns for n > 5000
        sw_p = float(sps.shapiro(d).pvalue)
    res["shapiro_p"] = sw_p
    if sw_p > alpha_normality:
        t = sps.ttest_rel(x[keep], y[keep])
        sd = d.std(ddof=1)
        res.update(test="paired t", statistic=float(t.statistic), p=float(t.pvalue),
                   effect=float(d.mean() / sd) if sd > 0 else math.nan)
    else:
        nz = d[d != 0]
        if nz.size == 0:
            res.update(test="wilcoxon", statistic=math.nan, p=1.0, effect=0.0)
            return res
        w = sps.wilcoxon(nz)
        ranks = sps.rankdata(np.abs(nz))
        r_plus, r_minus = ranks[nz > 0].sum(), ranks[nz < 0].sum()
        res.update(test="wilcoxon", statistic=float(w.statistic), p=float(w.pvalue),
                   effect=float((r_plus - r_minus) / ranks.sum()))
    return res


Direction = Mapping[str, bool] | Callable[[str], bool] | None


def _direction(metrics: Iterable[str], higher_is_better: Direction) -> dict[str, bool]:
    if higher_is_better is None:
        from fusionlib.metrics import higher_is_better as hib

        def default(m: str) -> bool:
            try:
                return hib(m)
            except ValueError:
                return True

        higher_is_better = default
    if callable(higher_is_better):
        return {m: bool(higher_is_better(m)) for m in metrics}
    return {m: bool(higher_is_better.get(m, True)) for m in metrics}


def compare_methods(
    method: Scores,
    baseline: Scores,
    metrics: Sequence[str] | None = None,
    *,
    higher_is_better: Mapping[str, bool] | Callable[[str], bool] | None = None,
    alpha: float = 0.05,
    alpha_normality: float = 0.05,
) -> pd.DataFrame:
    """Paired tests of ``method`` against ``baseline`` for every metric, Holm-Bonferroni adjusted.

    Args:
        method, baseline: per-image scores, same images (same index) in both.
        metrics: columns to test (default: the columns the two tables share, in method's order).
        higher_is_better: per-metric direction (default: :func:`fusionlib.metrics.higher_is_better`
            of the Tang preset, i.e. Nabf and MSE lower-is-better, unknown names higher-is-better).
        alpha: family-wise level for the ``significant`` column (after Holm).

    Returns:
        One row per metric: ``metric, n, test, statistic, p, p_holm, significant, mean_method,
        mean_baseline, mean_diff, median_diff, effect, shapiro_p, better`` where ``better`` is
        ``"method"``, ``"baseline"`` or ``"-"`` (not significant), taking the direction into account.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> base = {"EN": rng.normal(6, 0.3, 30), "Nabf": rng.normal(0.05, 0.01, 30)}
        >>> meth = {"EN": base["EN"] + 0.2 + rng.normal(0, 0.05, 30),
        ...         "Nabf": base["Nabf"] - 0.01 + rng.normal(0, 0.002, 30)}
        >>> compare_methods(meth, base)[["metric", "significant", "better"]].values.tolist()
        [['EN', True, 'method'], ['Nabf', True, 'method']]
    """
    m, b = _align(method, baseline)
    if metrics is None:
        metrics = [c for c in m.columns if c in b.columns]
    missing = [c for c in metrics if c not in m.columns or c not in b.columns]
    if missing:
        raise ValueError(f"metrics missing from the score tables: {missing}")
    direction = _direction(metrics, higher_is_better)
    rows = []
    for name in metrics:
        r = paired_test(m[name].to_numpy(float), b[name].to_numpy(float), alpha_normality=alpha_normality)
        r.update(metric=name, mean_method=float(np.nanmean(m[name])),
                 mean_baseline=float(np.nanmean(b[name])))
        rows.append(r)
    df = pd.DataFrame(rows)
    df["p_holm"] = holm_bonferroni(df["p"].to_numpy())
    df["significant"] = df["p_holm"] <= alpha
    sign = np.where([direction[k] for k in df["metric"]], 1.0, -1.0) * np.sign(df["mean_diff"].to_numpy())
    winner = np.where(sign > 0, "method", np.where(sign < 0, "baseline", "-"))
    df["better"] = np.where(~df["significant"], "-", winner)
    cols = ["metric", "n", "test", "statistic", "p", "p_holm", "significant", "mean_method", "mean_baseline",
            "mean_diff", "median_diff", "effect", "shapiro_p", "better", "n_dropped"]
    return df[cols]


def improvement_rates(
    method: Scores,
    baseline: Scores,
    metrics: Sequence[str] | None = None,
    *,
    higher_is_better: Mapping[str, bool] | Callable[[str], bool] | None = None,
    center: Literal["zero", "mean", "median"] = "zero",
    percent: bool = True,
) -> pd.DataFrame:
    """Signed relative improvement of ``method`` over ``baseline``, per image and metric.

    Returns an ``(images, metrics)`` DataFrame.

    ``rate = s (method - baseline) / |baseline|`` (x100 with ``percent``), ``s = +1`` for
    higher-is-better metrics and ``-1`` otherwise, so a positive value is always an improvement
    and 0 is "no change". This is a per-image relative change, **not** LKC-FUNet's Fig. 12 statistic:
    the paper defines r as the share of samples that improve and plots r_c = (r - 0.5) x 2 in [-1, 1]
    (§4.3: "0.44 indicates improvement in 72% of samples"); notebook 03 computes r_c itself.
    ``center="mean"``/``"median"`` additionally
    subtracts each metric's mean/median over the images, to show which images gain more than
    usual. A zero baseline gives NaN.

    Examples:
        >>> r = improvement_rates({"EN": [6.0, 5.0]}, {"EN": [5.0, 5.0]})
        >>> r["EN"].tolist()
        [20.0, 0.0]
    """
    m, b = _align(method, baseline)
    if metrics is None:
        metrics = [c for c in m.columns if c in b.columns]
    direction = _direction(metrics, higher_is_better)
    out = {}
    for name in metrics:
        x = m[name].to_numpy(float)
        y = b[name].to_numpy(float)
        s = 1.0 if direction[name] else -1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(y != 0, s * (x - y) / np.abs(y), np.nan)
        out[name] = r * (100.0 if percent else 1.0)
    df = pd.DataFrame(out, index=m.index)
    if center == "mean":
        df = df - df.mean()
    elif center == "median":
        df = df - df.median()
    elif center != "zero":
        raise ValueError(f"center must be 'zero', 'mean' or 'median', got {center!r}")
    return df


def plot_improvement_heatmap(
    ax, rates: pd.DataFrame, *, vmax: float | None = None, annot: bool = False, **kwargs
):
    """Draw :func:`improvement_rates` output on ``ax`` with seaborn, diverging colours centred at 0.

    ``vmax`` defaults to the 98th percentile of ``|rate|`` (robust to a few huge ratios).
    Returns the axes.
    """
    import seaborn as sns

    vals = np.abs(rates.to_numpy(float))
    vals = vals[np.isfinite(vals)]
    if vmax is None:
        vmax = float(np.percentile(vals, 98)) if vals.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
    sns.heatmap(rates, ax=ax, cmap=kwargs.pop("cmap", "RdBu_r"), center=0.0, vmin=-vmax, vmax=vmax,
                annot=annot, cbar_kws=kwargs.pop("cbar_kws", {"label": "improvement (%)"}), **kwargs)
    ax.set_xlabel("metric")
    ax.set_ylabel("image")
    return ax
