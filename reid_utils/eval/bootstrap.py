"""95 % intervals for mAP and rank-k (paper Sec. 4.1 metrics): a paired bootstrap over query identities.

mAP and rank-k are means of per-query values (AP, hit of the first true match within
rank k) over the queries :func:`reid_utils.eval.ranking.evaluate_rank` counts
(:func:`per_query_scores`). Their sampling uncertainty is estimated with the *cluster*
bootstrap (Davison & Hinkley, "Bootstrap Methods and their Application", 1997, Sec. 3.8;
Field & Welsh, JRSS B 69, 2007): draw as many identities as the query set has, with
replacement, each drawn identity bringing *all* its queries. Identities, not queries,
are resampled because the queries of one identity are correlated (same person, same
clothes, often the same hard gallery distractors); resampling single queries would treat
them as independent and give intervals that are too narrow.

The interval is the percentile interval (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, Ch. 13): the (1 - level)/2 and (1 + level)/2 quantiles of the B
resampled values. All methods are evaluated on the SAME resamples (a paired bootstrap,
as Koehn, EMNLP 2004, compares MT systems), so the interval of a difference is the
percentile interval of the per-resample differences: what is hard for both methods
cancels. A difference is called a difference only when its interval excludes zero.

Vectorised: a resample is a count vector ``c`` over the K identities, and its mean is
``(c @ S) / (c @ n)`` (S: per-identity sums of the per-query values, n: queries per
identity), so B resamples of every method and metric are one (B, K) @ (K, M) product.
Point estimates are plain means over the full query set, bit-identical to evaluate_rank's.
Across training seeds: :func:`seed_summary`; tiny formatters for tables at the end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reid_utils.eval.match_ranks import as_numpy, check_positive_int
from reid_utils.eval.ranking import evaluate_rank


@dataclass
class QueryScores:
    """Per-query scores of one distance matrix, over the queries the protocol counts.

    Attributes:
        values: ``{"mAP": (Qc,) AP, "rank1": (Qc,) 0/1 hit, ...}`` float64; the mean
            of ``values["mAP"]`` is evaluate_rank's mAP, that of ``values["rank1"]`` its CMC[0].
        pids: (Qc,) identities of the counted queries (the bootstrap's clusters).
        counted: (Q,) bool, which rows of the distance matrix are counted.
        protocol: the evaluate_rank protocol used.
    """

    values: dict[str, np.ndarray]
    pids: np.ndarray
    counted: np.ndarray
    protocol: str


def per_query_scores(
    distmat, q_pids, g_pids, q_camids, g_camids, protocol: str = "torchreid", ranks: Sequence[int] = (1,)
) -> QueryScores:
    """Per-query AP and rank-k hits under the conventions of :func:`evaluate_rank`.

    Junk, same-camera exclusion, ties and both protocols are evaluate_rank's own (this
    calls it). Queries without a true match are handled as its mAP does: dropped
    (``torchreid``) or kept with AP 0 and no hit (``mars_official``). For similarities
    pass ``reid_utils.eval.distances.similarity_to_distance(S)``.

    Args:
        distmat: (Q, G) distances (smaller = more similar); labels and ``protocol``
            as for :func:`evaluate_rank`.
        ranks: the k of the rank-k hits to return (metric names ``"rank{k}"``).

    Returns:
        :class:`QueryScores`.
    """
    ranks = [check_positive_int(k, "ranks") for k in ranks]
    res = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=1, protocol=protocol, return_details=True)
    c = res.counted
    first = res.first_match_rank[c]
    values = {"mAP": res.ap[c]}
    for k in ranks:
        values[f"rank{k}"] = ((first >= 1) & (first <= k)).astype(np.float64)
    return QueryScores(values=values, pids=as_numpy(q_pids, "q_pids")[c], counted=c, protocol=protocol)


# ----------------------------------------------------------------------------
# the bootstrap
# ----------------------------------------------------------------------------
def _check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise ValueError(f"level: expected a confidence level strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    return float(level)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)


def _value_columns(per_query: Mapping, num_queries: int) -> tuple[list[np.ndarray], list[tuple[str, str]]]:
    """The (Q,) float64 arrays of all (method, metric) columns, checked; and their names."""
    if not isinstance(per_query, Mapping) or not per_query:
        raise ValueError("per_query: expected a non-empty {method: {metric: (Q,) array}} mapping")
    metrics = None
    cols, names = [], []
    for method, scores in per_query.items():
        if not isinstance(scores, Mapping) or not scores:
            raise ValueError(f"per_query[{method!r}]: expected a non-empty {{metric: (Q,) array}} mapping")
        if metrics is None:
            metrics = list(scores)
        elif list(scores) != metrics:
            raise ValueError(f"per_query[{method!r}]: metrics {list(scores)} differ from the first method's {metrics}")
        for metric, v in scores.items():
            name = f"per_query[{method!r}][{metric!r}]"
            a = as_numpy(v, name)
            if a.ndim != 1 or a.shape[0] != num_queries:
                raise ValueError(f"{name}: expected shape ({num_queries},) (one value per query), got {a.shape}")
            if a.dtype == bool or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
                raise ValueError(f"{name}: expected real per-query values, got dtype {a.dtype}")
            if not np.isfinite(a).all():
                raise ValueError(
                    f"{name}: contains NaN or infinite values (drop queries the protocol skips: per_query_scores does)"
                )
            cols.append(a.astype(np.float64))
            names.append((method, metric))
    return cols, names


def _check_pids(query_pids) -> np.ndarray:
    p = as_numpy(query_pids, "query_pids")
    if p.ndim != 1 or p.shape[0] == 0:
        raise ValueError(f"query_pids: expected a non-empty 1-D array (one identity per query), got shape {p.shape}")
    if p.dtype.kind == "f" and np.isnan(p).any():
        raise ValueError("query_pids: contains NaN")
    return p


def bootstrap_replicates(per_query: Mapping, query_pids, n_boot: int = 1000, seed: int = 0):
    """Point estimates and B cluster-bootstrap replicates of every (method, metric) mean.

    Args:
        per_query: ``{method: {metric: (Q,) per-query values}}``, all methods over the
            same Q queries in the same order (e.g. ``QueryScores.values``).
        query_pids: (Q,) identity of each query (``QueryScores.pids``).
        n_boot: number of resamples B. seed: seeds ``numpy.random.default_rng``.

    Returns:
        ``(point, reps)``: a ``pd.Series`` and a (B, M) ``pd.DataFrame``, both indexed
        by the (method, metric) MultiIndex; ``point`` is each column's plain mean.
    """
    n_boot, seed = check_positive_int(n_boot, "n_boot"), _check_seed(seed)
    pids = _check_pids(query_pids)
    cols, names = _value_columns(per_query, len(pids))
    V = np.stack(cols, axis=1)  # (Q, M)
    ident, inv = np.unique(pids, return_inverse=True)
    K = len(ident)
    sums = np.zeros((K, V.shape[1]))
    np.add.at(sums, inv, V)  # (K, M) per-identity sums
    sizes = np.bincount(inv, minlength=K).astype(np.float64)  # (K,) queries per identity
    counts = np.random.default_rng(seed).multinomial(K, np.full(K, 1.0 / K), size=n_boot).astype(np.float64)
    reps = (counts @ sums) / (counts @ sizes)[:, None]  # (B, M); every identity has >= 1 query
    index = pd.MultiIndex.from_tuples(names, names=["method", "metric"])
    # 1-D means, summed in the same order as evaluate_rank's: bit-identical numbers
    point = pd.Series([c.mean() for c in cols], index=index)
    return point, pd.DataFrame(reps, columns=index)


def _percentiles(reps: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [a, 1.0 - a], axis=0)
    return lo, hi


def bootstrap_methods(
    per_query: Mapping, query_pids, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """Percentile intervals of every method's metrics, all from the same resamples.

    Args:
        per_query, query_pids, n_boot, seed: as for :func:`bootstrap_replicates`.
        level: confidence level in (0, 1).

    Returns:
        ``pd.DataFrame`` with columns ``method, metric, point, lo, hi`` (fractions, as
        evaluate_rank gives them), one row per (method, metric) in input order.
    """
    level = _check_level(level)
    point, reps = bootstrap_replicates(per_query, query_pids, n_boot, seed)
    lo, hi = _percentiles(reps.to_numpy(), level)
    out = point.rename("point").reset_index()
    out["lo"], out["hi"] = lo, hi
    return out


def paired_differences(
    per_query: Mapping,
    query_pids,
    reference: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Paired intervals of metric differences between methods (same resamples for both).

    Args:
        per_query, query_pids, n_boot, seed, level: as for :func:`bootstrap_methods`
            (the same arguments give the same resamples as it uses).
        reference: compare every other method with this one (``method - reference``);
            None: every pair ``a - b`` with ``a`` before ``b`` in ``per_query``.

    Returns:
        ``pd.DataFrame`` with columns ``method, versus, metric, difference, lo, hi,
        excludes_zero``; ``difference`` is the difference of the point estimates.
    """
    level = _check_level(level)
    point, reps = bootstrap_replicates(per_query, query_pids, n_boot, seed)  # checks per_query
    methods = list(per_query)
    if reference is not None and reference not in methods:
        raise ValueError(f"reference: {reference!r} is not a method of per_query ({methods})")
    if reference is None:
        pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1 :]]
    else:
        pairs = [(m, reference) for m in methods if m != reference]
    if not pairs:
        raise ValueError(f"per_query: need at least two methods to compare, got {methods}")
    metrics = list(per_query[methods[0]])
    rows, diffs = [], []
    for a, b in pairs:
        for m in metrics:
            rows.append({"method": a, "versus": b, "metric": m, "difference": point[(a, m)] - point[(b, m)]})
            diffs.append(reps[(a, m)].to_numpy() - reps[(b, m)].to_numpy())
    out = pd.DataFrame(rows)
    out["lo"], out["hi"] = _percentiles(np.stack(diffs, axis=1), level)
    out["excludes_zero"] = (out["lo"] > 0) | (out["hi"] < 0)
    return out


# ----------------------------------------------------------------------------
# seeds and formatting
# ----------------------------------------------------------------------------
def seed_summary(df: pd.DataFrame, by: Sequence[str] | str = (), value: str = "mAP") -> pd.DataFrame:
    """Mean, sample sd (ddof=1; NaN for one seed, not 0), n, min and max of ``value``
    across the rows (seeds) of each ``by`` group.

    Args:
        df: one row per (setting, seed), e.g. Table 2's long form.
        by: the columns naming a setting (``[]``: all rows form one group).
        value: the column to summarise.

    Returns:
        ``pd.DataFrame`` with the ``by`` columns and ``mean, sd, n, min, max``.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*by, value] if c not in df.columns]
    if missing:
        raise ValueError(f"df: missing columns {missing} (has {list(df.columns)})")
    v = pd.to_numeric(df[value], errors="coerce")
    if v.isna().any():
        raise ValueError(f"value: column {value!r} has {int(v.isna().sum())} missing or non-numeric entries")
    keys = [df[c] for c in by] if by else np.zeros(len(df), dtype=int)
    g = v.groupby(keys, sort=False)
    out = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.size(), "min": g.min(), "max": g.max()})
    return out.reset_index(drop=not by)


def format_interval(point: float, lo: float, hi: float, digits: int = 1) -> str:
    """``"31.4 [27.9, 35.0]"``; values are printed as given (scale to % first)."""
    return f"{point:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def format_mean_sd(mean: float, sd: float, digits: int = 1) -> str:
    """``"31.4 ± 2.1"``; ``"31.4 ± n/a"`` when sd is NaN (a single seed)."""
    sd_s = "n/a" if sd is None or math.isnan(sd) else f"{sd:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd_s}"
