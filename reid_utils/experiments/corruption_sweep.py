"""The corruption sweep of Table 2 (Sec. 4.4): every method of every M_c^max level, scored.

A level (:func:`run_level`) trains or loads its aggregators
(``reid_utils.experiments.aggregators.get_aggregator``), assembles its corrupted test set
from the clip banks (``reid_utils.experiments.clip_banks.ClipBanks.features``), and scores
the query x gallery similarities of every method: the learned aggregator (Sec. 3.1),
top-t%-eval at every t and top-t%-train-eval (Eq. 9), and the mean-feature reference. The
result rows are cached (kind ``"agg-results"``) under a key of the models and test banks;
the returned :class:`LevelResult` also carries the trained models, and :func:`run_sweep`
does every level (Table 2, Fig. 6).

Metric units: ``mAP`` and ``rank1`` are in [0, 1] in the rows (percent in the tables of
``reid_utils.experiments.sweep_tables``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from reid_utils.cache import cached
from reid_utils.eval.bootstrap import bootstrap_methods, per_query_scores
from reid_utils.eval.distances import similarity_to_distance
from reid_utils.eval.ranking import evaluate_rank
from reid_utils.experiments.aggregators import PAPER_METHODS, Method, get_aggregator, methods_for, train_all
from reid_utils.experiments.clip_banks import VAL_SPLITS, ClipBanks
from reid_utils.training.aggregator import build_aggregator
from reid_utils.training.features import FeatureBank
from reid_utils.training.result import TrainedModel

N_BOOT = 1000  # bootstrap resamples of the 95 % intervals (reid_utils.eval.bootstrap)

__all__ = ["LevelResult", "SweepResult", "evaluate_similarity", "topt_scores_all_t", "run_level", "run_sweep"]


@dataclass(frozen=True, eq=False)
class LevelResult:
    """One corruption level: its result rows and the models that produced them.

    Attributes:
        level: M_c^max.
        rows: long DataFrame, one row per evaluated (method, t) on the test set (see
            :func:`run_level`), with 95 % bootstrap intervals.
        models: ``{Method: TrainedModel}`` of the level, in ``methods_for`` order.
        val_rows: the same rows on the validation set (None without one).
        per_query: ``{"test"|"val": {"rows": ..., "per_query": {label: {"mAP": (Qc,),
            "rank1": (Qc,)}}, "pids": (Qc,)}}``, for paired intervals between any two rows
            (``reid_utils.eval.bootstrap.paired_differences``); labels ``"learned"``,
            ``"mean"``, ``"topt-e t=50"``, ...
    """

    level: int
    rows: pd.DataFrame
    models: dict[Method, TrainedModel]
    val_rows: pd.DataFrame | None = None
    per_query: dict | None = None

    def histories(self) -> dict[str, pd.DataFrame]:
        """``{method label: training history}`` of the models trained (not reused) at this level."""
        return {m.label: tm.history for m, tm in self.models.items() if "reused_from" not in tm.info}


@dataclass(frozen=True, eq=False)
class SweepResult:
    """Every level of a sweep.

    Attributes:
        rows: the levels' rows concatenated (Table 2's long form).
        levels: ``{M_c^max: LevelResult}`` in the order run.
        val_rows: the levels' validation rows concatenated (None without a validation set).
    """

    rows: pd.DataFrame
    levels: dict[int, LevelResult]
    val_rows: pd.DataFrame | None = None


def evaluate_similarity(
    S: torch.Tensor, query: FeatureBank, gallery: FeatureBank, protocol: str = "torchreid", interval: bool = False
) -> dict:
    """mAP and rank-1 of a (Q, G) similarity matrix (``reid_utils.eval.distances.similarity_to_distance``).

    Args:
        S: (Q, G) similarities. query, gallery: banks with pids and camids.
        protocol: ``reid_utils.eval.ranking.evaluate_rank`` protocol.

        interval: also the 95 % intervals of mAP and rank-1 (``mAP_lo``, ``mAP_hi``,
            ``rank1_lo``, ``rank1_hi``; bootstrap over query identities, seed 0).

    Returns:
        ``{"mAP": float, "rank1": float, "cmc": (R,) array}`` in [0, 1].
    """
    S = torch.as_tensor(S)
    if S.shape != (len(query), len(gallery)):
        raise ValueError(f"S: expected shape ({len(query)}, {len(gallery)}), got {tuple(S.shape)}")
    cmc, mAP = evaluate_rank(
        similarity_to_distance(S),
        query.pids,
        gallery.pids,
        query.camids,
        gallery.camids,
        max_rank=min(50, len(gallery)),
        protocol=protocol,
    )
    out = {"mAP": float(mAP), "rank1": float(cmc[0]), "cmc": cmc}
    if interval:
        d = similarity_to_distance(S)
        sc = per_query_scores(d, query.pids, gallery.pids, query.camids, gallery.camids, protocol=protocol)
        ci = bootstrap_methods({"m": sc.values}, sc.pids, n_boot=N_BOOT, seed=0).set_index("metric")
        for m in ("mAP", "rank1"):
            out[f"{m}_lo"], out[f"{m}_hi"] = float(ci.loc[m, "lo"]), float(ci.loc[m, "hi"])
    return out


@torch.no_grad()
def topt_scores_all_t(
    model, q: torch.Tensor, g: torch.Tensor, t_percents: Iterable[float], max_elems: int = 1 << 24
) -> dict:
    """Eq. 9 at every t from one top-t%-eval model, sorting each pair's cosines once.

    Equivalent to ``TopTAggregator(dim, t).similarity_matrix(q, g)`` with the same weights
    for each t (the mean of the k = ``top_t_count(t, M^2)`` largest projected clip-pair
    cosines), but the cosines are computed and sorted once for all t instead of once per t.

    Args:
        model: a :class:`~reid_utils.models.aggregation.TopTAggregator` (its t is ignored).
        q: (Q, M, D); g: (G, M, D) clip features.
        t_percents: the t values.
        max_elems: query rows are processed in chunks of about this many clip-pair cosines
            (bounded memory).

    Returns:
        ``{t: (Q, G) similarities}``.
    """
    from reid_utils.models.aggregation import top_t_count

    was = model.training
    model.eval()
    try:
        G, T = g.shape[0], q.shape[1] * g.shape[1]
        ks = {t: top_t_count(float(t), T) for t in t_percents}
        out = {t: torch.empty(q.shape[0], G) for t in ks}
        rows = max(1, int(max_elems) // max(1, G * T))
        for s in range(0, q.shape[0], rows):
            cos = model._pair_cos_matrix(q[s : s + rows], g)  # (rows, G, T)
            csum = cos.sort(dim=-1, descending=True).values.cumsum(dim=-1)
            for t, k in ks.items():
                out[t][s : s + rows] = csum[..., k - 1] / k
    finally:
        model.train(was)
    return out


def _similarities(banks: ClipBanks, level: int, models: dict, splits: tuple, progress: bool) -> list[tuple]:
    """``[(method, t, S, train_seconds, eval_seconds)]`` of every model on one query/gallery pair."""
    q, g = banks.features(splits[0], level), banks.features(splits[1], level)
    t_percents = banks.cfg.agg.t_percents
    out = []
    t0 = time.perf_counter()
    out.append(("mean", None, build_aggregator("mean", q.shape[-1]).similarity_matrix(q, g, progress=progress), 0.0))
    out[-1] += (time.perf_counter() - t0,)
    for m, tm in models.items():
        t0 = time.perf_counter()
        if m.kind == "topt-eval":  # one model, every t: cosines sorted once
            scores = topt_scores_all_t(tm.model, q, g, t_percents)
            out.extend(("topt-e", t, scores[t], tm.seconds, time.perf_counter() - t0) for t in t_percents)
        elif m.kind == "topt-train-eval":  # same Eq. 9 scores, ~4x faster than similarity_matrix
            S = topt_scores_all_t(tm.model, q, g, [m.t])[m.t]
            out.append(("topt-te", m.t, S, tm.seconds, time.perf_counter() - t0))
        else:
            S = tm.model.similarity_matrix(q, g, progress=progress)
            out.append((PAPER_METHODS[m.kind], m.t, S, tm.seconds, time.perf_counter() - t0))
    return out


def _score_split(banks: ClipBanks, level: int, models: dict, splits: tuple, protocol: str, progress: bool) -> dict:
    """Rows (with 95 % intervals) and per-query values of every model on one query/gallery pair."""
    qb, gb = banks.clean[splits[0]], banks.clean[splits[1]]
    rows, per_query, pids = [], {}, None
    for method, t, S, train_s, eval_s in _similarities(banks, level, models, splits, progress):
        sc = per_query_scores(similarity_to_distance(S), qb.pids, gb.pids, qb.camids, gb.camids, protocol=protocol)
        key = method if t is None else f"{method} t={float(t):g}"
        per_query[key], pids = sc.values, sc.pids
        rows.append(
            {
                "method": method,
                "t": np.nan if t is None else float(t),
                "Mc_max": level,
                "mAP": float(sc.values["mAP"].mean()),
                "rank1": float(sc.values["rank1"].mean()),
                "train_seconds": train_s,
                "eval_seconds": eval_s,
            }
        )
    ci = bootstrap_methods(per_query, pids, n_boot=N_BOOT, seed=int(level)).set_index(["method", "metric"])
    for r, key in zip(rows, per_query):
        for metric in ("mAP", "rank1"):
            r[f"{metric}_lo"], r[f"{metric}_hi"] = (float(ci.loc[(key, metric), c]) for c in ("lo", "hi"))
    return {"rows": rows, "per_query": per_query, "pids": pids}


def _score_level(banks: ClipBanks, level: int, models: dict, protocol: str, progress: bool) -> dict:
    """What :func:`run_level` caches: test (and validation) rows and per-query values."""
    out = {"test": _score_split(banks, level, models, ("query", "gallery"), protocol, progress)}
    if banks.has_validation:
        out["val"] = _score_split(banks, level, models, VAL_SPLITS, protocol, progress)
    return out


def run_level(
    banks: ClipBanks, level: int, protocol: str = "torchreid", mining: str = "auto", progress: bool = True
) -> LevelResult:
    """Train (or load) every method of one corruption level and evaluate it.

    Args:
        banks: the experiment's :class:`ClipBanks` (corrupted ones needed when ``level > 0``).
        level: M_c^max of training and test set.
        protocol: ``reid_utils.eval.ranking.evaluate_rank`` protocol
            (``reid_utils.eval.ranking.protocol_of(dataset)``).
        mining: training mining mode of ``get_aggregator``.
        progress: tqdm bars and cache messages.

    Returns:
        :class:`LevelResult`. Its rows: one per evaluated (method, t): ``method`` (paper
        name: ``learned``, ``topt-e``, ``topt-te``, ``mean``), ``t`` (NaN for learned and
        mean), ``Mc_max``, ``mAP``, ``rank1`` (in [0, 1]), ``train_seconds`` (of the model;
        top-t%-eval's one model is shared by its t rows) and ``eval_seconds`` (scoring +
        ranking; for top-t%-eval counted from the start of its shared scoring).
    """
    cfg, mc = banks.cfg, int(level)
    train_all(banks, [(m, mc) for m in methods_for(cfg)], mining=mining, progress=progress)  # side by side
    models = {m: get_aggregator(banks, m, mc, mining=mining, progress=progress) for m in methods_for(cfg)}
    spec = {
        "models": sorted(tm.key for tm in models.values()),
        "t_percents": list(cfg.agg.t_percents),
        "seed": int(cfg.seed),
        "Mc_max": mc,
        "query": banks.clean["query"].meta.get("key"),
        "gallery": banks.clean["gallery"].meta.get("key"),
        "corrupted": (
            [banks.corrupted[s].meta.get("key") for s in ("query", "gallery")]
            if mc and banks.corrupted is not None
            else None
        ),
        "protocol": protocol,
        "val": [banks.clean[s].meta.get("key") for s in VAL_SPLITS] if banks.has_validation else None,
        "n_boot": N_BOOT,
    }
    out = cached(
        cfg.cache_root,
        "agg-results",
        spec,
        lambda: _score_level(banks, mc, models, protocol, progress),
        verbose=progress,
    )
    val = pd.DataFrame(out["val"]["rows"]) if "val" in out else None
    return LevelResult(mc, pd.DataFrame(out["test"]["rows"]), models, val, out)


def run_sweep(
    banks: ClipBanks,
    levels: Iterable[int] | None = None,
    protocol: str = "torchreid",
    mining: str = "auto",
    progress: bool = True,
) -> SweepResult:
    """:func:`run_level` for every M_c^max (default ``cfg.agg.max_corrupted``), in order.

    The models of all levels are trained first, side by side
    (``reid_utils.experiments.aggregators.train_all``), then each level is scored.
    """
    from tqdm.auto import tqdm

    levels = list(banks.cfg.agg.max_corrupted if levels is None else levels)
    jobs = [(m, int(mc)) for mc in levels for m in methods_for(banks.cfg)]
    train_all(banks, jobs, mining=mining, progress=progress)  # every level's models, side by side
    out = [
        run_level(banks, mc, protocol=protocol, mining=mining, progress=progress)
        for mc in tqdm(levels, desc="corruption levels", disable=not progress)
    ]
    val = [r.val_rows for r in out if r.val_rows is not None]
    return SweepResult(
        pd.concat([r.rows for r in out], ignore_index=True),
        {r.level: r for r in out},
        pd.concat(val, ignore_index=True) if val else None,
    )
