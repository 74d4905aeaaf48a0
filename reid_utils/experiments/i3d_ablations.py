"""The I3D experiments of Sec. 4.3: the models of notebook 01, the frame-sampling /
clip-length ablation of Fig. 3 (notebook 02) and the clip-averaging ablation of
Fig. 4 (notebook 03).

Protocol, as in the paper (Sec. 4.3):

* three I3D models trained with ``L_train`` in {4, 8, 16}, frames sampled
  consecutively (``consec``) during training;
* Fig. 3: each test tracklet represented by the feature of ONE clip sampled
  with ``consec`` / ``random`` / ``evenly`` / ``all``, ``L_test`` in
  {4, 8, 16, 32}; gallery ranked by Euclidean distance of the features;
* Fig. 4: the model with ``L_train = 4``, ``L_test = 4``; the sequence feature
  is the mean of the features of 1, 2, 4, 8, 16 evenly spaced clips, with and
  without L2 normalisation of the clip features.

Every result table is cached through ``reid_utils.cache.cached`` under a key of the
models (their ``TrainedModel.key``) and settings that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from reid_utils.cache import cached
from reid_utils.eval.ranking import evaluate_features, protocol_of  # noqa: F401  (re-exported)
from reid_utils.training.features import FeatureBank, average_clips, get_features
from reid_utils.training.result import TrainedModel

TABLE1_METHODS = ("consec", "random", "evenly", "all")


def train_models(cfg, dataset, clip_lens: Sequence[int], progress: bool = True) -> dict[int, TrainedModel]:
    """Train (or load) one I3D per ``L_train``.

    Each is ``reid_utils.training.i3d.trained_i3d``: trained from the profile's
    initialisation (``paper``, as in the paper), or, with
    ``cfg.ablation.finetune_iterations`` (``default``), a shared trunk plus a short
    phase on clips of L_train frames.

    Returns:
        ``{L_train: TrainedModel}`` (``.model``, ``.key``, ``.history``).
    """
    from reid_utils.training.i3d import trained_i3d

    return {int(L): trained_i3d(cfg, dataset, int(L), progress=progress) for L in clip_lens}


def feature_bank(
    cfg, trained: TrainedModel, tracklets, split: str, M: int, L: int, method: str, progress: bool = True
) -> FeatureBank:
    """Cached (N, M, D) clip features of one split of a trained model
    (``reid_utils.training.features.get_features``, named by split)."""
    return get_features(
        cfg,
        trained.model,
        tracklets,
        num_clips=M,
        clip_len=L,
        method=method,
        model_key=trained.key,
        name=f"features-{split}",
        progress=progress,
    )


def evaluate_with_interval(qf, gf, dataset, n_boot: int = 1000, seed: int = 0) -> dict:
    """``evaluate_features`` (Euclidean ranking) plus 95 % intervals of mAP and rank-1
    (bootstrap over query identities, ``reid_utils.eval.bootstrap``), all in [0, 1]."""
    import torch

    from reid_utils.data.tracklets import id_arrays
    from reid_utils.eval.bootstrap import bootstrap_methods, per_query_scores

    r = evaluate_features(qf, gf, dataset)
    q_pids, q_camids = id_arrays(dataset.query)
    g_pids, g_camids = id_arrays(dataset.gallery)
    dist = torch.cdist(qf.double(), gf.double()).numpy()
    sc = per_query_scores(dist, q_pids, g_pids, q_camids, g_camids, protocol=protocol_of(dataset))
    ci = bootstrap_methods({"m": sc.values}, sc.pids, n_boot=n_boot, seed=seed).set_index("metric")
    for metric in ("mAP", "rank1"):
        r[f"{metric}_lo"], r[f"{metric}_hi"] = float(ci.loc[metric, "lo"]), float(ci.loc[metric, "hi"])
    return r


def _percent_row(r: dict) -> dict:
    keys = ("mAP", "mAP_lo", "mAP_hi", "rank1", "rank1_lo", "rank1_hi", "rank5")
    return {k: 100 * r[k] for k in keys}


def sampling_ablation(
    cfg,
    dataset,
    models: dict,
    test_lens: Sequence[int] = (4, 8, 16, 32),
    methods: Sequence[str] = TABLE1_METHODS,
    progress: bool = True,
) -> pd.DataFrame:
    """Fig. 3: single-clip re-ID accuracy per L_train, sampling method and L_test.

    Args:
        cfg: ``Config`` (seed, cache root). dataset: its ``.query`` and ``.gallery``.
        models: ``{L_train: TrainedModel}`` (:func:`train_models`).
        test_lens: L_test values; ``all`` ignores L_test (one row per L_train,
            repeated over L_test so it draws as a horizontal line).

    Returns:
        DataFrame with columns ``L_train, method, L_test, mAP, mAP_lo, mAP_hi, rank1,
        rank1_lo, rank1_hi, rank5`` (in %; ``_lo`` / ``_hi``: 95 % intervals,
        :func:`evaluate_with_interval`).
    """
    spec = {
        "models": {int(k): m.key for k, m in models.items()},
        "lens": list(test_lens),
        "methods": list(methods),
        "seed": cfg.seed,
    }

    def compute():
        rows = []
        for L_train, model in models.items():
            for method in methods:
                lens = [None] if method == "all" else list(test_lens)
                for L in lens:
                    L_eff = max(test_lens) if L is None else L
                    qf = feature_bank(cfg, model, dataset.query, "query", 1, L_eff, method, progress)
                    gf = feature_bank(cfg, model, dataset.gallery, "gallery", 1, L_eff, method, progress)
                    r = evaluate_with_interval(qf.feats[:, 0], gf.feats[:, 0], dataset, seed=int(cfg.seed))
                    for L_test in test_lens if L is None else [L]:
                        rows.append(
                            {"L_train": int(L_train), "method": method, "L_test": int(L_test), **_percent_row(r)}
                        )
        return pd.DataFrame(rows)

    return cached(cfg.cache_root, "fig3-sampling", spec, compute, verbose=progress)


def clip_averaging_ablation(
    cfg, dataset, model, nums: Sequence[int] = (1, 2, 4, 8, 16), clip_len: int = 4, progress: bool = True
) -> pd.DataFrame:
    """Fig. 4: mean of the features of ``n`` evenly spaced clips, with/without L2.

    The features of ``max(nums)`` clips spread uniformly over each tracklet
    (Sec. 3.1's ``clips`` sampling) are extracted once; the ``n`` clips used for
    each point are evenly spaced among them.

    Args:
        cfg: ``Config``. dataset: its ``.query`` and ``.gallery``.
        model: the ``TrainedModel`` with L_train = ``clip_len``.
        nums: numbers of clips averaged. clip_len: L_test.

    Returns:
        DataFrame with columns ``num_clips, l2_normalised, mAP, mAP_lo, mAP_hi, rank1,
        rank1_lo, rank1_hi, rank5`` (in %; 95 % intervals as in :func:`sampling_ablation`).
    """
    M = max(nums)
    spec = {"model": model.key, "nums": list(nums), "L": clip_len}

    def compute():
        qb = feature_bank(cfg, model, dataset.query, "query", M, clip_len, "clips", progress)
        gb = feature_bank(cfg, model, dataset.gallery, "gallery", M, clip_len, "clips", progress)
        rows = []
        for l2 in (False, True):
            for n in nums:
                qf = average_clips(qb.feats, n, normalise_clips=l2)
                gf = average_clips(gb.feats, n, normalise_clips=l2)
                r = evaluate_with_interval(qf, gf, dataset, seed=int(cfg.seed))
                rows.append({"num_clips": int(n), "l2_normalised": l2, **_percent_row(r)})
        return pd.DataFrame(rows)

    return cached(cfg.cache_root, "fig4-averaging", spec, compute, verbose=progress)


def sampling_findings(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's qualitative Fig. 3 findings (Sec. 4.3), each checked against ``df``.

    Args:
        df: :func:`sampling_ablation`'s table (``L_train, method, L_test, mAP``).

    Returns:
        One row per finding: ``finding``, ``paper`` (what the paper reports), ``ours``
        (the numbers here) and ``holds`` (bool). With lo / hi the shortest / longest
        L_test: (1) mAP at hi beats lo, counted over the (L_train, method) curves of the
        L-dependent methods, holds for a majority; (2) ``random`` or ``evenly`` beats
        ``consec`` at lo, counted over the models, holds for a majority; with several
        models also (3) the best model at lo (mean over methods but ``all``) is the one
        with the shortest L_train, and (4) the models' spread at hi is smaller than at lo.
    """
    piv = df.pivot_table(index=["L_train", "method"], columns="L_test", values="mAP")
    lens = sorted(df.L_test.unique())
    lo, hi = lens[0], lens[-1]
    grows = [
        (piv.loc[(lt, m), hi] > piv.loc[(lt, m), lo])
        for lt in df.L_train.unique()
        for m in ("consec", "random", "evenly")
        if (lt, m) in piv.index
    ]
    wins = [
        (max(piv.loc[(lt, "random"), lo], piv.loc[(lt, "evenly"), lo]) > piv.loc[(lt, "consec"), lo])
        for lt in df.L_train.unique()
        if all((lt, m) in piv.index for m in ("random", "evenly", "consec"))
    ]
    rows = [
        (
            f"longer test clips help (L_test={hi} vs {lo})",
            "yes, with diminishing returns",
            f"{sum(grows)}/{len(grows)} curves",
            2 * sum(grows) > len(grows),
        ),
        (
            f"random/evenly beat consec at L_test={lo}",
            "yes (larger temporal extent)",
            f"{sum(wins)}/{len(wins)} models",
            2 * sum(wins) > len(wins),
        ),
    ]
    if len(df.L_train.unique()) > 1:
        sub = df[(df.L_test == lo) & (df.method != "all")].groupby("L_train").mAP.mean()
        spread_hi = df[(df.L_test == hi) & (df.method != "all")].groupby("L_train").mAP.mean()
        best, shortest = int(sub.idxmax()), int(sub.index.min())
        lo_gap, hi_gap = sub.max() - sub.min(), spread_hi.max() - spread_hi.min()
        rows += [
            (f"best model at L_test={lo}", f"the shortest, L_train={shortest}", f"L_train={best}", best == shortest),
            (
                f"models similar at L_test={hi}",
                "yes",
                f"within {hi_gap:.1f} mAP points (vs {lo_gap:.1f} at L_test={lo})",
                bool(hi_gap < lo_gap),
            ),
        ]
    out = pd.DataFrame(rows, columns=["finding", "paper", "ours", "holds"])
    return out.astype({"holds": bool})


def single_clip_table(cfg, dataset, models: dict, progress: bool = False) -> pd.DataFrame:
    """Notebook 01's summary: each model with one ``evenly`` clip of L_train frames.

    Args:
        cfg: ``Config``. dataset: its ``.query`` and ``.gallery``.
        models: ``{L_train: TrainedModel}`` (:func:`train_models`).

    Returns:
        DataFrame indexed by model label with ``mAP`` and ``rank1`` (in %).
    """
    rows = {}
    for L, model in models.items():
        qf = feature_bank(cfg, model, dataset.query, "query", 1, L, "evenly", progress).feats[:, 0]
        gf = feature_bank(cfg, model, dataset.gallery, "gallery", 1, L, "evenly", progress).feats[:, 0]
        r = evaluate_features(qf, gf, dataset)
        rows[f"I3D, L_train={L} (one evenly-sampled clip of {L})"] = {"mAP": 100 * r["mAP"], "rank1": 100 * r["rank1"]}
    return pd.DataFrame(rows).T


def length_split(
    cfg, dataset, models: dict, test_lens: Sequence[int], method: str = "evenly", min_len: int = 32
) -> pd.DataFrame:
    """Fig. 3's L_test trend for short and long query tracklets separately (an analysis).

    A clip of L_test frames from a tracklet shorter than L_test repeats frames
    (``reid_utils.data.sampling``); if that explained a falling L_test curve, the fall would
    be confined to the short queries. Same features as :func:`sampling_ablation` (cached).

    Returns:
        DataFrame with ``L_train``, ``L_test``, ``queries`` (``< min_len frames`` /
        ``>= min_len frames``), ``n`` (counted queries) and ``mAP`` (percent).
    """
    import torch

    from reid_utils.data.tracklets import id_arrays
    from reid_utils.eval.bootstrap import per_query_scores

    q_pids, q_camids = id_arrays(dataset.query)
    g_pids, g_camids = id_arrays(dataset.gallery)
    long_q = np.array([len(t) >= int(min_len) for t in dataset.query])
    rows = []
    for L_train, model in models.items():
        for L in test_lens:
            qf = feature_bank(cfg, model, dataset.query, "query", 1, int(L), method, False).feats[:, 0]
            gf = feature_bank(cfg, model, dataset.gallery, "gallery", 1, int(L), method, False).feats[:, 0]
            dist = torch.cdist(qf.double(), gf.double()).numpy()
            sc = per_query_scores(dist, q_pids, g_pids, q_camids, g_camids, protocol=protocol_of(dataset))
            is_long = long_q[sc.counted]
            for name, sel in ((f"< {min_len} frames", ~is_long), (f">= {min_len} frames", is_long)):
                ap = sc.values["mAP"][sel]
                rows.append(
                    {
                        "L_train": int(L_train),
                        "L_test": int(L),
                        "queries": name,
                        "n": int(sel.sum()),
                        "mAP": 100 * float(ap.mean()) if len(ap) else np.nan,
                    }
                )
    return pd.DataFrame(rows)


def single_clip_intervals(cfg, dataset, models: dict, n_boot: int = 1000) -> pd.DataFrame:
    """:func:`single_clip_table` with 95 % intervals (bootstrap over query identities,
    ``reid_utils.eval.bootstrap``; the same resamples for every model).

    Returns:
        DataFrame indexed by model label: ``mAP``, ``mAP_lo``, ``mAP_hi``, ``rank1``,
        ``rank1_lo``, ``rank1_hi`` (percent).
    """
    import torch

    from reid_utils.data.tracklets import id_arrays
    from reid_utils.eval.bootstrap import bootstrap_methods, per_query_scores

    q_pids, q_camids = id_arrays(dataset.query)
    g_pids, g_camids = id_arrays(dataset.gallery)
    per_query, pids = {}, None
    for L, model in models.items():
        qf = feature_bank(cfg, model, dataset.query, "query", 1, L, "evenly", False).feats[:, 0]
        gf = feature_bank(cfg, model, dataset.gallery, "gallery", 1, L, "evenly", False).feats[:, 0]
        dist = torch.cdist(qf.double(), gf.double()).numpy()
        sc = per_query_scores(dist, q_pids, g_pids, q_camids, g_camids, protocol=protocol_of(dataset))
        per_query[f"I3D, L_train={L} (one evenly-sampled clip of {L})"], pids = sc.values, sc.pids
    ci = bootstrap_methods(per_query, pids, n_boot=n_boot, seed=int(cfg.seed))
    out = {}
    for r in ci.itertuples():
        row = out.setdefault(r.method, {})
        row[r.metric], row[f"{r.metric}_lo"], row[f"{r.metric}_hi"] = 100 * r.point, 100 * r.lo, 100 * r.hi
    cols = ["mAP", "mAP_lo", "mAP_hi", "rank1", "rank1_lo", "rank1_hi"]
    return pd.DataFrame(out).T[cols]


def clip_norm_spread(cfg, dataset, model, num_clips: int = 16, clip_len: int = 4) -> pd.DataFrame:
    """Why L2 normalisation matters, or not, for clip averaging (an analysis of Fig. 4).

    Normalising before averaging changes the mean only as much as the clip features' norms
    differ within a tracklet; and it helps if the norm tracks clip quality (a spoiled clip
    with a large norm dominates a plain mean). Measured on the query and gallery clips of
    Fig. 4's bank (cached).

    Returns:
        One-column DataFrame: the median within-tracklet coefficient of variation of the
        clip norms, the median max/min norm ratio, and (with per-frame annotations) the
        Spearman correlation of a clip's norm with the fraction of its frames carrying a
        nuisance, and the mean norm of clean and of fully-nuisance clips relative to the
        tracklet's mean norm.
    """
    from scipy.stats import spearmanr

    from reid_utils.synth import NUISANCES

    out = {}
    norms, spoiled = [], []
    for split in ("query", "gallery"):
        tracks = getattr(dataset, split)
        bank = feature_bank(cfg, model, tracks, split, num_clips, clip_len, "clips", False)
        n = bank.feats.norm(dim=-1).numpy()  # (N, M)
        norms.append(n / n.mean(axis=1, keepdims=True))
        if all(t.annotations is not None for t in tracks):
            for t, idx in zip(tracks, np.asarray(bank.indices)):
                a = t.annotations
                bad = np.zeros(len(t), bool)
                for k in NUISANCES:
                    if k in a.dtype.names:
                        bad |= np.asarray(a[k], dtype=np.float64) > 0
                spoiled.append(bad[idx].mean(axis=1))
    rel = np.concatenate(norms)
    out["median CV of clip norms within a tracklet"] = float(np.median(rel.std(axis=1)))
    out["median max/min clip-norm ratio within a tracklet"] = float(np.median(rel.max(axis=1) / rel.min(axis=1)))
    if spoiled:
        frac, flat = np.concatenate(spoiled), rel.ravel()  # both (sum N * M,), tracklet-major
        out["Spearman(norm, nuisance fraction of the clip)"] = float(spearmanr(flat, frac)[0])
        out["relative norm of clean clips"] = float(flat[frac == 0].mean()) if (frac == 0).any() else np.nan
        out["relative norm of all-nuisance clips"] = float(flat[frac == 1].mean()) if (frac == 1).any() else np.nan
    return pd.DataFrame({"value": out})
