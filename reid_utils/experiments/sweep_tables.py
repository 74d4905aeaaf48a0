"""Tables of the aggregation experiments: Table 2, the methods, training diagnostics, the claim (Sec. 4.4).

From the long result rows of ``reid_utils.experiments.corruption_sweep`` (metrics in
[0, 1]): our Table 2 (:func:`table2_wide`) and beside the paper's MARS values
(:func:`table2_side_by_side`, read by ``reid_utils.paper``), one level's methods
(:func:`methods_table`), training cost, convergence and collapse diagnostics of the
training histories, and the paper's claim as numbers (:func:`claim_check`: does the
learned method degrade more gracefully than the best top-t%?). Tables are in percent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from reid_utils.eval.bootstrap import seed_summary
from reid_utils.paper import paper_results, paper_table2

__all__ = [
    "as_percent",
    "table2_wide",
    "table2_side_by_side",
    "methods_table",
    "training_cost",
    "convergence_table",
    "collapse_check",
    "sweep_collapse",
    "claim_numbers",
    "claim_check",
    "chosen_t",
    "table2_seeds",
    "level_gaps",
    "mark_collapsed",
]

_METHOD_ORDER = {"mean": 0, "topt-e": 1, "topt-te": 2, "learned": 3}


def as_percent(results: pd.DataFrame, metrics: Sequence[str] = ("mAP", "rank1")) -> pd.DataFrame:
    """Our long results with the metrics in percent (the paper's unit)."""
    out = results.copy()
    for m in metrics:
        out[m] = 100 * out[m]
    return out


def _sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    keys = [df.index.get_level_values("method").map(_METHOD_ORDER), df.index.get_level_values("t").fillna(-1)]
    order = np.lexsort(keys[::-1])
    return df.iloc[order]


def table2_wide(results: pd.DataFrame, metrics: Sequence[str] = ("mAP", "rank1")) -> pd.DataFrame:
    """Our Table 2: rows (method, t), columns (metric, M_c^max), in percent.

    Args:
        results: long results of ``run_sweep`` (metrics in [0, 1]).
    """
    long = results.melt(
        id_vars=["method", "t", "Mc_max"], value_vars=list(metrics), var_name="metric", value_name="value"
    )
    long["value"] *= 100
    wide = long.pivot_table(index=["method", "t"], columns=["metric", "Mc_max"], values="value", dropna=False)
    wide = wide.dropna(how="all")
    wide = wide.reindex(columns=[c for m in metrics for c in wide.columns if c[0] == m])
    return _sort_rows(wide)


def table2_side_by_side(results: pd.DataFrame, metric: str = "mAP", paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """One metric of Table 2, ours (synthetic benchmark) beside the paper's (MARS).

    Rows (method, t, source), columns M_c^max; values in percent. ``source`` is
    ``"ours (synthetic)"`` or ``"paper (MARS)"``; rows the paper does not have (the
    mean-feature reference) appear for ours only, and levels we did not run are left out.

    Args:
        results: long results (metrics in [0, 1]).
        metric: ``"mAP"`` or ``"rank1"``.
        paper: the paper's long Table 2 (default ``reid_utils.paper.paper_table2()``).
    """
    paper = paper_table2() if paper is None else paper
    ours = results.assign(value=100 * results[metric], source="ours (synthetic)")
    ref = paper[paper["metric"] == metric].assign(source="paper (MARS)")
    ref = ref[ref["Mc_max"].isin(ours["Mc_max"].unique())]
    both = pd.concat(
        [ours[["method", "t", "Mc_max", "value", "source"]], ref[["method", "t", "Mc_max", "value", "source"]]],
        ignore_index=True,
    )
    wide = both.pivot_table(index=["method", "t", "source"], columns="Mc_max", values="value", dropna=False).dropna(
        how="all"
    )
    wide.columns.name = f"{metric} (%) at M_c^max ="
    src = wide.index.get_level_values("source").map({"ours (synthetic)": 0, "paper (MARS)": 1})
    keys = [wide.index.get_level_values("method").map(_METHOD_ORDER), wide.index.get_level_values("t").fillna(-1), src]
    return wide.iloc[np.lexsort(keys[::-1])]


def methods_table(results: pd.DataFrame, t_show: Iterable[float] | None = None) -> pd.DataFrame:
    """mAP / rank-1 (percent, with their 95 % intervals when the rows have them) of one
    level's methods, indexed by a readable label.

    Args:
        results: one level's rows (``LevelResult.rows``).
        t_show: top-t%-eval rows to keep (default: all).
    """
    r = results
    if t_show is not None:
        r = r[(r["method"] != "topt-e") | r["t"].isin([float(t) for t in t_show])]
    labels = [m + ("" if np.isnan(t) else f" t={t:g}%") for m, t in zip(r["method"], r["t"])]
    cols = [c for c in ("mAP", "mAP_lo", "mAP_hi", "rank1", "rank1_lo", "rank1_hi") if c in r]
    return as_percent(r, cols).assign(method=labels).set_index("method")[cols]


def training_cost(results: pd.DataFrame) -> pd.DataFrame:
    """Training wall time (s) per level and method (one value per trained model; 0: reused)."""
    r = results[results["method"] != "mean"].copy()
    r["model"] = np.where(r["method"] == "topt-te", r["method"] + " t=" + r["t"].map("{:g}".format), r["method"])
    return r.groupby(["Mc_max", "model"])["train_seconds"].first().unstack("model")


def convergence_table(histories: dict, parts: int = 5) -> pd.DataFrame:
    """Mean training loss per ``parts``-th of each run: has the loss flattened?

    Args:
        histories: ``{label: history DataFrame}`` (``iteration``, ``loss``).
        parts: number of equal consecutive blocks of iterations.

    Returns:
        DataFrame, one row per block (index: last iteration of the block), one column per
        label, plus a last row ``"change, last block (%)"``: the relative change of the
        mean loss from the second-to-last to the last block (a flattened curve has a
        change of a few percent, within the batch-to-batch noise).
    """
    cols = {}
    for label, h in histories.items():
        n = len(h)
        if n < parts:
            raise ValueError(f"histories[{label!r}]: {n} iterations, fewer than parts={parts}")
        block = np.minimum(np.arange(n) * parts // n, parts - 1)
        means = h.groupby(block)["loss"].mean()
        means.index = h.groupby(block)["iteration"].max().to_numpy()
        change = 100 * (means.iloc[-1] - means.iloc[-2]) / abs(means.iloc[-2])
        cols[label] = pd.concat([means, pd.Series({"change, last block (%)": change})])
    out = pd.DataFrame(cols)
    out.index.name = "mean loss up to iteration"
    return out


def collapse_check(histories: dict, margin: float, last: float = 0.2, tol: float = 0.01) -> pd.DataFrame:
    """Has a training run collapsed (every sequence equally similar) instead of converged?

    A flat loss can mean either. The batch-hard triplet loss has a trivial stationary point
    where all similarities are equal: the loss then sits at exactly the margin (weak
    features: the hardest negative starts out more similar than the hardest positive for
    nearly every anchor). Flagged when, over the last ``last`` fraction of the run, the mean
    loss is within ``tol * margin`` of the margin and the mined positive and negative
    similarities are within ``tol`` of each other.

    Args:
        histories: ``{label: history DataFrame}``.
        margin: the triplet margin of the runs.

    Returns:
        DataFrame, one row per label: ``loss``, ``hard_pos_sim``, ``hard_neg_sim`` (means
        over the end of the run) and ``collapsed``.
    """
    rows = {}
    for label, h in histories.items():
        end = h.iloc[-max(1, int(round(last * len(h)))) :]
        loss, pos, neg = (float(end[c].mean()) for c in ("loss", "hard_pos_sim", "hard_neg_sim"))
        rows[label] = {
            "loss": loss,
            "hard_pos_sim": pos,
            "hard_neg_sim": neg,
            "collapsed": bool(abs(loss - margin) <= tol * margin and abs(pos - neg) <= tol),
        }
    return pd.DataFrame(rows).T


def sweep_collapse(sweep, margin: float) -> pd.DataFrame:
    """:func:`collapse_check` of every model trained in a sweep.

    Args:
        sweep: a ``SweepResult`` (its levels' ``histories()``).
        margin: the triplet margin (``cfg.agg.margin``).

    Returns:
        DataFrame indexed by (Mc_max, model label) with the columns of :func:`collapse_check`.
    """
    out = [collapse_check(lv.histories(), margin).assign(Mc_max=int(mc)) for mc, lv in sweep.levels.items()]
    df = pd.concat(out)
    df.index.name = "model"
    return df.reset_index().set_index(["Mc_max", "model"])


def claim_numbers(results: pd.DataFrame, metric: str = "mAP") -> dict:
    """The numbers behind the paper's claim, from long results *in percent*.

    The claim (Sec. 4.4): comparable to top-t% at low corruption, and clearly better at
    high corruption (M_c^max = 7: learned 69.9 vs the best top-t%-eval 49.3 mAP). Compared
    at the lowest (``lo``) and highest (``hi``) level present: the learned method against
    the best top-t% row of *either* variant at that level (an oracle choice of t and
    variant, as in the paper's text).

    Returns:
        dict: ``metric``, ``lo``, ``hi``, ``learned_lo``/``_hi``, ``best_topt_lo``/``_hi``
        (percent), ``best_label_lo``/``_hi`` (which top-t row), ``gap_lo``/``_hi`` (learned
        minus best top-t), ``drop_learned``, ``drop_topt`` (points lost from lo to hi) and
        ``holds`` (learned ahead at hi *and* it lost fewer points; False when lo == hi).
    """
    levels = sorted(results["Mc_max"].unique())
    lo, hi = int(levels[0]), int(levels[-1])
    learned = results[results["method"] == "learned"].set_index("Mc_max")[metric]
    sub = results[results["method"].isin(["topt-e", "topt-te"])]
    best = sub.loc[sub.groupby("Mc_max")[metric].idxmax()].set_index("Mc_max")
    out = {"metric": metric, "lo": lo, "hi": hi}
    for name, mc in (("lo", lo), ("hi", hi)):
        out[f"learned_{name}"] = float(learned[mc])
        out[f"best_topt_{name}"] = float(best.loc[mc, metric])
        out[f"best_label_{name}"] = f"{best.loc[mc, 'method']} t={best.loc[mc, 't']:g}%"
    out["gap_lo"] = out["learned_lo"] - out["best_topt_lo"]
    out["gap_hi"] = out["learned_hi"] - out["best_topt_hi"]
    out["drop_learned"] = out["learned_lo"] - out["learned_hi"]
    out["drop_topt"] = out["best_topt_lo"] - out["best_topt_hi"]
    out["holds"] = bool(out["gap_hi"] > 0 and out["drop_learned"] < out["drop_topt"]) and lo != hi
    return out


def claim_check(results: pd.DataFrame, metric: str = "mAP", paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Does the learned method degrade more gracefully than the best top-t%? Ours and the paper's.

    Args:
        results: our long results (``metric`` in [0, 1]).
        metric: ``"mAP"`` or ``"rank1"``.
        paper: the paper's results in percent (default ``reid_utils.paper.paper_results()``),
            compared at the levels of ``results``.

    Returns:
        DataFrame indexed by ``source`` (``"ours"``, ``"paper (MARS)"``; the latter only
        when the paper has any of our levels), columns of :func:`claim_numbers`.
    """
    ref = paper_results() if paper is None else paper
    ref = ref[ref["Mc_max"].isin(results["Mc_max"].unique())]
    rows = {"ours": claim_numbers(as_percent(results, [metric]), metric)}
    if len(ref):
        rows["paper (MARS)"] = claim_numbers(ref, metric)
    out = pd.DataFrame.from_records(list(rows.values()), index=pd.Index(list(rows), name="source"))
    return out


def chosen_t(results: pd.DataFrame, val_results: pd.DataFrame, metric: str = "mAP") -> pd.DataFrame:
    """top-t%'s t chosen on the validation identities beside the t chosen on the test queries.

    The paper reports the best t per level as measured on the test set (an oracle choice);
    here t is also chosen where it should be, on the held-out validation identities
    (``reid_utils.data.validation``), and both are reported on the test set.

    Args:
        results: test rows of ``run_sweep`` (``SweepResult.rows``; metrics in [0, 1], with
            ``<metric>_lo`` / ``_hi`` intervals).
        val_results: the validation rows (``SweepResult.val_rows``).
        metric: the metric t is chosen by and reported in.

    Returns:
        DataFrame indexed by (``Mc_max``, ``method``: ``topt-e`` / ``topt-te``), columns
        ``t_val``, ``<metric>_val_t`` (test value at t_val, percent) with ``_lo`` / ``_hi``,
        ``t_test``, ``<metric>_test_t`` (the oracle's test value, percent).
    """
    rows = []
    for (mc, method), val in val_results[val_results["method"].isin(["topt-e", "topt-te"])].groupby(
        ["Mc_max", "method"]
    ):
        test = results[(results["Mc_max"] == mc) & (results["method"] == method)].set_index("t")
        t_val = float(val.loc[val[metric].idxmax(), "t"])
        t_test = float(test[metric].idxmax())
        rows.append(
            {
                "Mc_max": int(mc),
                "method": method,
                "t_val": t_val,
                f"{metric}_val_t": 100 * float(test.loc[t_val, metric]),
                f"{metric}_val_t_lo": 100 * float(test.loc[t_val, f"{metric}_lo"]),
                f"{metric}_val_t_hi": 100 * float(test.loc[t_val, f"{metric}_hi"]),
                "t_test": t_test,
                f"{metric}_test_t": 100 * float(test.loc[t_test, metric]),
            }
        )
    return pd.DataFrame(rows).set_index(["Mc_max", "method"])


def _paper_rows(rows: pd.DataFrame, val_rows: pd.DataFrame | None, metric: str) -> pd.DataFrame:
    """One seed's Table 2 rows as the paper reports them: learned, mean feature, and the
    best top-t%-eval / top-t%-train-eval with t chosen on the test queries (the paper's
    practice) and, when there is a validation set, on the validation identities."""
    out = []
    for name in ("learned", "mean"):
        r = rows[rows["method"] == name]
        out += [{"row": name, "Mc_max": int(mc), metric: 100 * float(v)} for mc, v in zip(r["Mc_max"], r[metric])]
    if val_rows is not None and len(val_rows):
        ch = chosen_t(rows, val_rows, metric).reset_index()
        for c in ch.itertuples():
            out.append({"row": f"{c.method} best t (test)", "Mc_max": c.Mc_max, metric: getattr(c, f"{metric}_test_t")})
            out.append(
                {"row": f"{c.method} t chosen on val", "Mc_max": c.Mc_max, metric: getattr(c, f"{metric}_val_t")}
            )
    else:
        sub = rows[rows["method"].isin(["topt-e", "topt-te"])]
        for (mc, method), r in sub.groupby(["Mc_max", "method"]):
            out.append({"row": f"{method} best t (test)", "Mc_max": int(mc), metric: 100 * float(r[metric].max())})
    return pd.DataFrame(out)


def table2_seeds(rows: pd.DataFrame, val_rows: pd.DataFrame | None = None, metric: str = "mAP") -> pd.DataFrame:
    """Table 2's main rows over training seeds: mean and sd (ddof 1) per level, in percent.

    Args:
        rows, val_rows: test and validation rows of several seeds (a ``seed`` column;
            ``experiments.seed_sweep``).
        metric: ``"mAP"`` or ``"rank1"``.

    Returns:
        DataFrame indexed by row (``learned``, ``mean``, ``topt-e best t (test)``,
        ``topt-e t chosen on val``, ...), columns (``mean`` / ``sd`` / ``n``, M_c^max).
    """
    parts = []
    for seed, r in rows.groupby("seed"):
        v = None if val_rows is None or not len(val_rows) else val_rows[val_rows["seed"] == seed]
        parts.append(_paper_rows(r, v, metric).assign(seed=seed))
    long = pd.concat(parts, ignore_index=True)
    stats = seed_summary(long, ["row", "Mc_max"], value=metric).set_index(["row", "Mc_max"])
    out = stats[["mean", "sd", "n"]].unstack("Mc_max")
    order = {"learned": 0, "mean": 1}
    return out.loc[sorted(out.index, key=lambda r: (order.get(r, 2), r))]


def level_gaps(level_result, reference: str = "learned", n_boot: int = 1000, metric: str = "mAP") -> pd.DataFrame:
    """Paired 95 % intervals of ``reference`` minus every other row of one level (test set).

    The rows' per-query values (``LevelResult.per_query``) are resampled by query identity
    with the same resamples for every row (``reid_utils.eval.bootstrap.paired_differences``).

    Returns:
        DataFrame indexed by the other row's label: ``difference``, ``lo``, ``hi`` (percent)
        and ``excludes_zero``; ``Mc_max`` as a column.
    """
    from reid_utils.eval.bootstrap import paired_differences

    pq = level_result.per_query["test"]
    d = paired_differences(pq["per_query"], pq["pids"], reference=reference, n_boot=n_boot, seed=level_result.level)
    d = d[d["metric"] == metric].set_index("method")  # rows: other - reference
    out = pd.DataFrame(
        {"difference": -100 * d["difference"], "lo": -100 * d["hi"], "hi": -100 * d["lo"]}, index=d.index
    )
    out["excludes_zero"] = d["excludes_zero"]
    out.index.name = f"{reference} minus"
    return out.assign(Mc_max=level_result.level)


def mark_collapsed(table: pd.DataFrame, collapsed_labels, mark: str = " (collapsed)") -> pd.DataFrame:
    """``table`` with the index labels of collapsed models suffixed by ``mark``.

    Args:
        table: indexed by a model label or by (method, t) (Table 2's rows).
        collapsed_labels: labels (``"topt-te t=50"``) of the models ``collapse_check`` flagged.
    """
    bad = set(collapsed_labels)
    if not bad:
        return table

    def label(ix):
        if isinstance(ix, tuple) and len(ix) >= 2:
            m, t = ix[0], ix[1]
            no_t = m in ("topt-e", "learned", "mean") or t is None or (isinstance(t, float) and np.isnan(t))
            name = m if no_t else f"{m} t={t:g}"  # top-t%-eval: one model for every t
            return (ix[0] + mark,) + tuple(ix[1:]) if name in bad else ix
        return f"{ix}{mark}" if ix in bad else ix

    out = table.copy()
    labels = [label(ix) for ix in table.index]
    if isinstance(table.index, pd.MultiIndex):
        out.index = pd.MultiIndex.from_tuples(labels, names=table.index.names)
    else:
        out.index = pd.Index(labels, name=table.index.name)
    return out
