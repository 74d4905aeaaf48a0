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

Every result table is cached through ``reid_utils.cache`` under a key of the
models and settings that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from reid_utils.cache import ArtifactCache
from reid_utils.config import config_key
from reid_utils.eval.ranking import evaluate_features, protocol_of  # noqa: F401  (re-exported)
from reid_utils.training.features import average_clips, get_features

TABLE1_METHODS = ("consec", "random", "evenly", "all")


def train_models(cfg, dataset, clip_lens: Sequence[int], progress: bool = True) -> dict:
    """Train (or load) one I3D per ``L_train``; returns ``{L: (model, history)}``.

    Each is ``train.trained_i3d``: trained from the profile's initialisation
    (``paper``, as in the paper), or, with ``cfg.ablation.finetune_iterations``
    (``default``), a shared trunk plus a short phase on clips of L_train frames.
    """
    from reid_utils.training.i3d import trained_i3d

    return {int(L): trained_i3d(cfg, dataset, int(L), progress=progress) for L in clip_lens}


def feature_bank(cfg, model, tracklets, split: str, M: int, L: int, method: str, progress: bool = True):
    """Cached (N, M, D) clip features of one split (``features.get_features``, named by split)."""
    return get_features(
        cfg, model, tracklets, num_clips=M, clip_len=L, method=method, name=f"features-{split}", progress=progress
    )


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
        models: ``{L_train: model}`` (trained I3Ds with ``.reid_key``).
        test_lens: L_test values; ``all`` ignores L_test (one row per L_train,
            repeated over L_test so it draws as a horizontal line).

    Returns:
        DataFrame with columns ``L_train, method, L_test, mAP, rank1, rank5``
        (in %).
    """
    spec = {
        "models": {int(k): m.reid_key for k, m in models.items()},
        "lens": list(test_lens),
        "methods": list(methods),
        "seed": cfg.seed,
    }
    cache = ArtifactCache(cfg.cache_root)

    def compute():
        rows = []
        for L_train, model in models.items():
            for method in methods:
                lens = [None] if method == "all" else list(test_lens)
                for L in lens:
                    L_eff = max(test_lens) if L is None else L
                    qf = feature_bank(cfg, model, dataset.query, "query", 1, L_eff, method, progress)
                    gf = feature_bank(cfg, model, dataset.gallery, "gallery", 1, L_eff, method, progress)
                    r = evaluate_features(qf.feats[:, 0], gf.feats[:, 0], dataset)
                    for L_test in test_lens if L is None else [L]:
                        rows.append(
                            {
                                "L_train": int(L_train),
                                "method": method,
                                "L_test": int(L_test),
                                "mAP": 100 * r["mAP"],
                                "rank1": 100 * r["rank1"],
                                "rank5": 100 * r["rank5"],
                            }
                        )
        return pd.DataFrame(rows)

    return cache.get_or_compute("fig3-sampling", config_key(spec), compute, verbose=progress)


def clip_averaging_ablation(
    cfg, dataset, model, nums: Sequence[int] = (1, 2, 4, 8, 16), clip_len: int = 4, progress: bool = True
) -> pd.DataFrame:
    """Fig. 4: mean of the features of ``n`` evenly spaced clips, with/without L2.

    The features of ``max(nums)`` clips spread uniformly over each tracklet
    (Sec. 3.1's ``clips`` sampling) are extracted once; the ``n`` clips used for
    each point are evenly spaced among them.

    Returns:
        DataFrame with columns ``num_clips, l2_normalised, mAP, rank1, rank5`` (in %).
    """
    M = max(nums)
    spec = {"model": model.reid_key, "nums": list(nums), "L": clip_len}
    cache = ArtifactCache(cfg.cache_root)

    def compute():
        qb = feature_bank(cfg, model, dataset.query, "query", M, clip_len, "clips", progress)
        gb = feature_bank(cfg, model, dataset.gallery, "gallery", M, clip_len, "clips", progress)
        rows = []
        for l2 in (False, True):
            for n in nums:
                qf = average_clips(qb.feats, n, normalise_clips=l2)
                gf = average_clips(gb.feats, n, normalise_clips=l2)
                r = evaluate_features(qf, gf, dataset)
                rows.append(
                    {
                        "num_clips": int(n),
                        "l2_normalised": l2,
                        "mAP": 100 * r["mAP"],
                        "rank1": 100 * r["rank1"],
                        "rank5": 100 * r["rank5"],
                    }
                )
        return pd.DataFrame(rows)

    return cache.get_or_compute("fig4-averaging", config_key(spec), compute, verbose=progress)


def describe_sampling_findings(df: pd.DataFrame) -> list[str]:
    """The paper's qualitative Fig. 3 findings, each checked against ``df``.

    Returns one sentence per finding, saying whether it holds here.
    """
    out = []
    piv = df.pivot_table(index=["L_train", "method"], columns="L_test", values="mAP")
    lens = sorted(df.L_test.unique())
    lo, hi = lens[0], lens[-1]
    # 1. accuracy grows with L_test (for the L-dependent methods)
    grows = [
        (piv.loc[(lt, m), hi] > piv.loc[(lt, m), lo])
        for lt in df.L_train.unique()
        for m in ("consec", "random", "evenly")
        if (lt, m) in piv.index
    ]
    out.append(
        f"Longer test clips help (paper: yes, with diminishing returns): mAP at L_test={hi} beats "
        f"L_test={lo} in {sum(grows)}/{len(grows)} (L_train, method) curves."
    )
    # 2. random/evenly beat consec at short L_test
    wins = [
        (max(piv.loc[(lt, "random"), lo], piv.loc[(lt, "evenly"), lo]) > piv.loc[(lt, "consec"), lo])
        for lt in df.L_train.unique()
        if all((lt, m) in piv.index for m in ("random", "evenly", "consec"))
    ]
    out.append(
        f"random/evenly beat consec at L_test={lo} (paper: yes, larger temporal extent): "
        f"holds for {sum(wins)}/{len(wins)} models."
    )
    # 3. at short L_test, the model trained on short clips is best
    if len(df.L_train.unique()) > 1:
        sub = df[(df.L_test == lo) & (df.method != "all")].groupby("L_train").mAP.mean()
        best = int(sub.idxmax())
        out.append(
            f"At L_test={lo} the best model is L_train={best} (paper: the shortest, "
            f"L_train={int(sub.index.min())}): {'holds' if best == sub.index.min() else 'does not hold'} here."
        )
        spread_hi = df[(df.L_test == hi) & (df.method != "all")].groupby("L_train").mAP.mean()
        out.append(
            f"At L_test={hi} the models are within {spread_hi.max() - spread_hi.min():.1f} mAP points "
            f"of each other (paper: similar), vs {sub.max() - sub.min():.1f} at L_test={lo}."
        )
    return out


def single_clip_table(cfg, dataset, models: dict, progress: bool = False) -> pd.DataFrame:
    """Notebook 01's summary: each model with one ``evenly`` clip of L_train frames.

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
