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
from reid_utils.eval.distances import similarity_to_distance
from reid_utils.eval.ranking import evaluate_rank
from reid_utils.experiments.aggregators import PAPER_METHODS, Method, get_aggregator, methods_for
from reid_utils.experiments.clip_banks import ClipBanks
from reid_utils.training.aggregator import build_aggregator
from reid_utils.training.features import FeatureBank
from reid_utils.training.result import TrainedModel

__all__ = ["LevelResult", "SweepResult", "evaluate_similarity", "topt_scores_all_t", "run_level", "run_sweep"]


@dataclass(frozen=True, eq=False)
class LevelResult:
    """One corruption level: its result rows and the models that produced them.

    Attributes:
        level: M_c^max.
        rows: long DataFrame, one row per evaluated (method, t) (see :func:`run_level`).
        models: ``{Method: TrainedModel}`` of the level, in ``methods_for`` order.
    """

    level: int
    rows: pd.DataFrame
    models: dict[Method, TrainedModel]

    def histories(self) -> dict[str, pd.DataFrame]:
        """``{method label: training history}`` of the models trained (not reused) at this level."""
        return {m.label: tm.history for m, tm in self.models.items() if "reused_from" not in tm.info}


@dataclass(frozen=True, eq=False)
class SweepResult:
    """Every level of a sweep.

    Attributes:
        rows: the levels' rows concatenated (Table 2's long form).
        levels: ``{M_c^max: LevelResult}`` in the order run.
    """

    rows: pd.DataFrame
    levels: dict[int, LevelResult]


def evaluate_similarity(S: torch.Tensor, query: FeatureBank, gallery: FeatureBank, protocol: str = "torchreid") -> dict:
    """mAP and rank-1 of a (Q, G) similarity matrix (``reid_utils.eval.distances.similarity_to_distance``).

    Args:
        S: (Q, G) similarities. query, gallery: banks with pids and camids.
        protocol: ``reid_utils.eval.ranking.evaluate_rank`` protocol.

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
    return {"mAP": float(mAP), "rank1": float(cmc[0]), "cmc": cmc}


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


def _score_level(banks: ClipBanks, level: int, models: dict, protocol: str, progress: bool) -> list[dict]:
    """The rows of :func:`run_level` (uncached): every model scored on the level's test set."""
    q, g = banks.features("query", level), banks.features("gallery", level)
    t_percents = banks.cfg.agg.t_percents
    rows = []

    def add_scores(method, t, S, train_s, t0):
        r = evaluate_similarity(S, banks.clean["query"], banks.clean["gallery"], protocol)
        rows.append(
            {
                "method": method,
                "t": np.nan if t is None else float(t),
                "Mc_max": level,
                "mAP": r["mAP"],
                "rank1": r["rank1"],
                "train_seconds": train_s,
                "eval_seconds": time.perf_counter() - t0,
            }
        )

    def add(method, t, model, train_s):
        t0 = time.perf_counter()
        add_scores(method, t, model.similarity_matrix(q, g, progress=progress), train_s, t0)

    add("mean", None, build_aggregator("mean", q.shape[-1]), 0.0)
    for m, tm in models.items():
        if m.kind == "topt-eval":  # one model, every t: cosines sorted once
            t0 = time.perf_counter()
            scores = topt_scores_all_t(tm.model, q, g, t_percents)
            for t in t_percents:
                add_scores("topt-e", t, scores[t], tm.seconds, t0)
        elif m.kind == "topt-train-eval":  # same Eq. 9 scores, ~4x faster than similarity_matrix
            t0 = time.perf_counter()
            add_scores("topt-te", m.t, topt_scores_all_t(tm.model, q, g, [m.t])[m.t], tm.seconds, t0)
        else:
            add(PAPER_METHODS[m.kind], m.t, tm.model, tm.seconds)
    return rows


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
    }
    rows = cached(
        cfg.cache_root,
        "agg-results",
        spec,
        lambda: _score_level(banks, mc, models, protocol, progress),
        verbose=progress,
    )
    return LevelResult(mc, pd.DataFrame(rows), models)


def run_sweep(
    banks: ClipBanks,
    levels: Iterable[int] | None = None,
    protocol: str = "torchreid",
    mining: str = "auto",
    progress: bool = True,
) -> SweepResult:
    """:func:`run_level` for every M_c^max (default ``cfg.agg.max_corrupted``), in order."""
    from tqdm.auto import tqdm

    levels = list(banks.cfg.agg.max_corrupted if levels is None else levels)
    out = [
        run_level(banks, mc, protocol=protocol, mining=mining, progress=progress)
        for mc in tqdm(levels, desc="corruption levels", disable=not progress)
    ]
    return SweepResult(pd.concat([r.rows for r in out], ignore_index=True), {r.level: r for r in out})
