"""Importance vs nuisance, measured over the test set (Sec. 4.6 / Fig. 7; Sec. 3.1, Eqs. 1-4, 9).

The paper argues from four hand-picked examples (Fig. 7) that the learned
aggregator gives *low* importance alpha_t (Eq. 1) to clip pairs with
occlusion, no person, a tracking error or a bad crop, so that they hardly
count in the similarity (Eq. 3). The synthetic benchmark annotates every
frame, so the claim can be measured (:func:`measure`): over query x gallery
sequence pairs of the test set (:func:`sample_pairs`), each clip pair
(``reid_utils.experiments.importance.clip_pair_table``) gets "contains X"
labels (``reid_utils.experiments.nuisance_labels``); then the ROC AUC of *low
importance* for each label with a cluster bootstrap interval over query
tracklets (:func:`importance_auc`, statistics in ``reid_utils.eval.auc``),
for the learned model and for the top-t% baseline's implicit selection
(Eq. 9), and the paired difference of the two (:func:`compare_methods`).
:func:`auc_verdicts` says, per label, which side of 0.5 the interval lies on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from reid_utils.cache import cached
from reid_utils.eval.auc import cluster_bootstrap_auc
from reid_utils.experiments.aggregators import Method, get_aggregator
from reid_utils.experiments.clip_banks import ClipBanks
from reid_utils.experiments.importance import clip_pair_table, topt_columns
from reid_utils.experiments.nuisance_labels import CORRUPTED, pair_labels, split_clip_labels
from reid_utils.synth import NUISANCES

__all__ = [
    "METHODS",
    "sample_pairs",
    "importance_auc",
    "compare_methods",
    "auc_verdicts",
    "default_level",
    "learned_at_level",
    "measure",
]

#: method -> (readable label, column of the clip-pair table holding its "low importance" score)
METHODS = {
    "learned": ("learned: low alpha", "low_learned"),
    "learned-step": ("learned: low alpha, step-adjusted", "low_learned_step"),
    "topt-select": ("top-t%: not selected", "low_topt_select"),
    "topt-rank": ("top-t%: low projected-cosine rank", "low_topt_rank"),
}


def sample_pairs(num_query: int, num_gallery: int, max_pairs: int | None = None, seed: int = 0) -> np.ndarray:
    """Query x gallery sequence pairs to measure, all or a seeded subsample.

    When Q x G exceeds ``max_pairs``, every query keeps ``max_pairs // Q``
    gallery sequences drawn uniformly without replacement (seeded), so every
    query contributes equally.

    Returns:
        (P, 2) int64 array of (query index, gallery index), sorted.
    """
    Q, G = int(num_query), int(num_gallery)
    if Q < 1 or G < 1:
        raise ValueError(f"num_query, num_gallery: expected >= 1, got {num_query}, {num_gallery}")
    if max_pairs is None or int(max_pairs) >= Q * G:
        qq, gg = np.meshgrid(np.arange(Q), np.arange(G), indexing="ij")
        return np.stack([qq.ravel(), gg.ravel()], axis=1).astype(np.int64)
    if int(max_pairs) < 1:
        raise ValueError(f"max_pairs: expected >= 1 or None, got {max_pairs}")
    k = max(1, int(max_pairs) // Q)
    rng = np.random.default_rng([int(seed), 606])
    rows = [np.stack([np.full(k, q), np.sort(rng.choice(G, size=k, replace=False))], axis=1) for q in range(Q)]
    return np.concatenate(rows).astype(np.int64)


def _add_scores(table: pd.DataFrame) -> pd.DataFrame:
    """The "low importance" score of each method (:data:`METHODS`; higher = less important).

    ``learned``: -alpha_rel. ``learned-step``: -alpha_rel divided by the mean
    alpha_rel of the same visiting step t over all pairs of the table (the
    recurrence treats steps differently, e.g. alpha_1 = g(-c_1) sees no running
    mean; this removes that systematic part, a robustness check).
    ``topt-select``: 1 if the pair is *not* among the top t% projected cosines
    of its sequence pair, else 0 (Eq. 9's implicit 0/1 weight).
    ``topt-rank``: minus the within-pair rank of the projected cosine in [0, 1].
    """
    out = table.copy()
    out["low_learned"] = -out["alpha_rel"]
    if "t" in out:  # remove the systematic dependence on the visiting step
        out["low_learned_step"] = -out["alpha_rel"] / out.groupby("t")["alpha_rel"].transform("mean")
    if "topt_selected" in out:
        out["low_topt_select"] = (~out["topt_selected"].astype(bool)).astype(float)
        out["low_topt_rank"] = -out["topt_rank"]
    return out


def importance_auc(
    table: pd.DataFrame,
    labels: Sequence[str],
    methods: Sequence[str] | None = None,
    num_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    return_replicates: bool = False,
):
    """ROC AUC of low importance for "this clip pair contains X", per method and label.

    The AUC pools all positive x negative clip pairs over sequence pairs (the
    scores of :func:`_add_scores` are within-pair quantities). Its interval
    resamples *query tracklets* (clusters; their clip pairs share frames and
    gallery draws). Gallery tracklets recur across queries; that dependence
    is not resampled, so the interval is, if anything, a little narrow.

    Args:
        table: clip pairs with ``q`` (the cluster), ``alpha_rel`` (and the
            ``importance.topt_columns`` for the top-t% methods) and one bool
            column per label.
        labels: label columns.
        methods: keys of :data:`METHODS` (default: all the table supports).
        num_boot, level, seed: bootstrap (``eval.auc.cluster_bootstrap_auc``); the
            same replicates (same clusters drawn) for every method and label,
            so differences between methods can be bootstrapped pairwise
            (:func:`compare_methods`).
        return_replicates: also return ``{(method, label): (num_boot,) array}``.

    Returns:
        Tidy DataFrame, one row per (method, label): ``method``,
        ``method_label``, ``nuisance``, ``auc``, ``lo``, ``hi``, ``n_pos``,
        ``n_neg``, ``prevalence``, ``clusters``, ``boot_valid``.
    """
    df = _add_scores(table)
    if methods is None:
        methods = [m for m, (_, col) in METHODS.items() if col in df]
    for m in methods:
        if m not in METHODS or METHODS[m][1] not in df:
            raise ValueError(f"methods: {m!r} unknown or its columns missing from table (known: {list(METHODS)})")
    missing = [lb for lb in labels if lb not in df]
    if missing:
        raise ValueError(f"labels: columns {missing} not in table")
    clusters = df["q"].to_numpy()
    rows, reps = [], {}
    for m in methods:
        label, col = METHODS[m]
        sc = df[col].to_numpy()
        for lb in labels:
            r = cluster_bootstrap_auc(
                sc, df[lb].to_numpy(bool), clusters, num_boot, level, seed, return_replicates=True
            )
            reps[(m, lb)] = r.pop("replicates")
            rows.append(
                {
                    "method": m,
                    "method_label": label,
                    "nuisance": lb,
                    **r,
                    "prevalence": r["n_pos"] / max(1, r["n_pos"] + r["n_neg"]),
                }
            )
    out = pd.DataFrame(rows)
    return (out, reps) if return_replicates else out


def compare_methods(
    auc: pd.DataFrame, replicates: dict, a: str = "learned", b: str = "topt-select", level: float = 0.95
) -> pd.DataFrame:
    """Paired bootstrap of AUC(a) - AUC(b) per label (same resampled clusters for both).

    Returns:
        DataFrame indexed by label: ``diff``, ``lo``, ``hi``.
    """
    rows = {}
    for lb in auc["nuisance"].unique():
        if (a, lb) not in replicates or (b, lb) not in replicates:
            raise ValueError(f"replicates: need both {a!r} and {b!r} for {lb!r}")
        pa = auc[(auc["method"] == a) & (auc["nuisance"] == lb)]["auc"].iloc[0]
        pb = auc[(auc["method"] == b) & (auc["nuisance"] == lb)]["auc"].iloc[0]
        d = replicates[(a, lb)] - replicates[(b, lb)]
        d = d[np.isfinite(d)]
        q = (1.0 - level) / 2.0
        lo, hi = np.quantile(d, [q, 1 - q]) if len(d) else (np.nan, np.nan)
        rows[lb] = {"diff": pa - pb, "lo": float(lo), "hi": float(hi)}
    out = pd.DataFrame(rows).T
    out.index.name = f"AUC({a}) - AUC({b})"
    return out


# --------------------------------------------------------------------------- #
# the measurement on the benchmark
# --------------------------------------------------------------------------- #
def auc_verdicts(
    auc: pd.DataFrame, compare: pd.DataFrame | None = None, method: str = "learned", baseline: str = "topt-select"
) -> pd.DataFrame:
    """Per label: does low importance go to the clip pairs carrying it? Read off the intervals.

    ``verdict`` is ``"above"`` when the interval's lower end is above 0.5 (pairs
    with the label do get lower importance), ``"below"`` when its upper end is
    below 0.5 (they get *higher* importance), ``"chance"`` otherwise
    (indistinguishable from 0.5), and ``"undefined"`` when the AUC is NaN (no
    clip pair carries the label, or all do).

    Args:
        auc: :func:`importance_auc` rows (one level).
        compare: optional :func:`compare_methods` table (method minus baseline).
        method, baseline: keys of :data:`METHODS`.

    Returns:
        DataFrame indexed by ``nuisance`` (in the order of ``auc``): ``n_pos``,
        ``clip_pairs``, ``auc``, ``lo``, ``hi``, ``verdict``, ``step_auc``
        (the step-adjusted AUC when ``method`` is ``"learned"``), ``baseline_auc``,
        ``diff``, ``diff_lo``, ``diff_hi`` (method minus baseline, paired
        bootstrap) and ``vs_baseline`` (``"higher"``, ``"lower"`` or ``"not
        distinguishable"``: the difference's interval above, below or around 0);
        NaN where a quantity is not available.
    """
    sub = auc[auc["method"] == method].set_index("nuisance")
    if sub.empty:
        raise ValueError(f"auc: no rows for method {method!r}")
    base = auc[auc["method"] == baseline].set_index("nuisance")["auc"]
    step = auc[auc["method"] == "learned-step"].set_index("nuisance")["auc"] if method == "learned" else None
    out = sub[["n_pos", "auc", "lo", "hi"]].copy()
    out.insert(1, "clip_pairs", sub["n_pos"] + sub["n_neg"])
    out["verdict"] = np.select(
        [~np.isfinite(sub["auc"]), sub["lo"] > 0.5, sub["hi"] < 0.5], ["undefined", "above", "below"], "chance"
    )
    out["step_auc"] = np.nan if step is None else step.reindex(out.index)
    out["baseline_auc"] = base.reindex(out.index)
    c = (compare if compare is not None else pd.DataFrame(columns=["diff", "lo", "hi"])).reindex(out.index)
    out["diff"], out["diff_lo"], out["diff_hi"] = (c[k].astype(float) for k in ("diff", "lo", "hi"))
    side = np.select([out["diff_lo"] > 0, out["diff_hi"] < 0], ["higher", "lower"], "not distinguishable")
    out["vs_baseline"] = np.where(out["diff"].notna(), side, None)
    return out


def default_level(cfg) -> int:
    """A middle corruption level: the largest M_c^max <= M/2 of the profile, else its smallest > 0.

    Clean and corrupted clip pairs are then both common.
    """
    levels = sorted(int(x) for x in cfg.agg.max_corrupted if int(x) > 0)
    if not levels:
        raise ValueError("cfg.agg.max_corrupted: no level > 0 to measure the corrupted label at")
    mid = [lv for lv in levels if lv <= cfg.agg.num_clips // 2]
    return mid[-1] if mid else levels[0]


def learned_at_level(banks: ClipBanks, level: int, progress: bool = True) -> dict:
    """The learned aggregator of one level, its test features and its (Q, G) similarity matrix.

    The model comes from ``reid_utils.experiments.aggregators.get_aggregator`` (cache or trained
    now); the similarities (``similarity_matrix``, fast eval path) are cached
    (kind ``"agg-similarity"``) under a key of the model and the test banks.

    Returns:
        dict ``model``, ``q_feats``, ``g_feats`` (the level's test features)
        and ``S`` ((Q, G) float64 numpy array).
    """
    cfg, clean, corrupted, level = banks.cfg, banks.clean, banks.corrupted, int(level)
    trained = get_aggregator(banks, Method("learned"), level, progress=progress)
    model = trained.model
    qf, gf = banks.features("query", level), banks.features("gallery", level)
    spec = {
        "model": trained.key,
        "level": level,
        "seed": int(cfg.seed),
        "banks": [clean[s].meta.get("key") for s in ("query", "gallery")],
        "corrupted": (
            [corrupted[s].meta.get("key") for s in ("query", "gallery")] if level and corrupted is not None else None
        ),
    }

    def compute():
        return model.similarity_matrix(qf, gf, progress=progress)

    S = cached(cfg.cache_root, "agg-similarity", spec, compute, verbose=progress)
    return {"model": model, "q_feats": qf, "g_feats": gf, "S": S.double().numpy()}


def measure(
    dataset,
    banks: ClipBanks,
    level: int,
    t_percent: float = 50.0,
    max_pairs: int | None = 4000,
    min_fraction: float = 0.5,
    num_boot: int = 1000,
    seed: int | None = None,
    progress: bool = True,
) -> dict:
    """Importance vs nuisance on the test set at one corruption level (module doc).

    Models: the learned and the top-t%-eval aggregators trained at ``level``
    (``reid_utils.experiments.aggregators.get_aggregator``: cache or trained now); features: the
    level's test features (``reid_utils.experiments.clip_banks``, the fixed
    corrupted test plan for ``level > 0``). A clip pair is :data:`CORRUPTED`
    if at least one of its clips comes from the corrupted bank of that plan.

    Args:
        dataset: with ``.query``/``.gallery`` tracklets aligned with the banks
            (their annotations give the nuisance labels; without annotations
            only ``corrupted`` is measured).
        banks: the experiment's ``reid_utils.experiments.clip_banks.ClipBanks`` (corrupted
            banks needed when ``level > 0``).
        level: M_c^max.
        t_percent: t of the top-t% selection (default 50 %, the middle of
            Table 2's range).
        max_pairs: sequence pairs measured (:func:`sample_pairs`; None: all).
        min_fraction: see ``nuisance_labels.clip_labels``.
        num_boot: bootstrap replicates.
        seed: pair subsampling and bootstrap seed (default ``cfg.seed``).
        progress: tqdm bars.

    Returns:
        dict: ``table`` (clip pairs with scores and labels), ``auc`` (tidy,
        with a ``level`` column), ``compare`` (learned minus top-t% selection,
        paired bootstrap), ``labels`` (measured label names), ``pairs``
        (sequence pairs measured).
    """
    cfg, clean, level = banks.cfg, banks.clean, int(level)
    seed = int(cfg.seed if seed is None else seed)
    learned = get_aggregator(banks, Method("learned"), level, progress=progress).model
    topt = get_aggregator(banks, Method("topt-eval"), level, progress=progress).model
    qf, gf = banks.features("query", level), banks.features("gallery", level)
    qb, gb = clean["query"], clean["gallery"]
    pairs = sample_pairs(len(qf), len(gf), max_pairs, seed)
    table = clip_pair_table(learned, qf, gf, pairs, progress=progress)
    table = topt_columns(table, topt, qf, gf, t_percent)
    names, ql, gl = [], [], []
    q_nui, g_nui = split_clip_labels(dataset, clean, min_fraction)
    if q_nui is not None:
        names += list(NUISANCES)
        ql.append(q_nui)
        gl.append(g_nui)
    names.append(CORRUPTED)
    if level > 0:
        ql.append(banks.plan("query", level)[..., None])
        gl.append(banks.plan("gallery", level)[..., None])
    else:
        ql.append(np.zeros(qf.shape[:2] + (1,), bool))
        gl.append(np.zeros(gf.shape[:2] + (1,), bool))
    table = pair_labels(table, np.concatenate(ql, -1), np.concatenate(gl, -1), names)
    table["same"] = qb.pids[table["q"].to_numpy()] == gb.pids[table["g"].to_numpy()]
    auc, reps = importance_auc(table, names, num_boot=num_boot, seed=seed, return_replicates=True)
    auc.insert(0, "level", level)
    auc["t_percent"] = float(t_percent)
    cmp = compare_methods(auc, reps, "learned", "topt-select")
    return {"table": table, "auc": auc, "compare": cmp, "labels": names, "pairs": pairs}
