"""Does training the learned aggregator matter? Controls scored on the same queries (Sec. 3.1).

The learned similarity is a weighted mean of frozen clip-pair cosines (Eq. 3), so it can
only reweight what the I3D already measures; a trained network must therefore be compared
with what it would give without training or without its weights:

* ``trained``: the learned aggregator as trained (``get_aggregator``);
* ``untrained``: the same network at its initialisation (random g, same seed);
* ``uniform``: every clip pair weighted alike, the mean of the M^2 cosines (what Eq. 3
  gives with a constant g; top-t% at t = 100 % without a projection);
* ``shuffled order``: the trained network visiting the clip pairs in a random order
  instead of row-major (t = i*Mg + j), which tests how much of its weighting is an
  ordering effect of the recurrence (Eqs. 1-2) rather than a judgement of the pair.

Every control is scored on the same (query, gallery) set, so :func:`control_table` can
give paired bootstrap intervals (``reid_utils.eval.bootstrap``) of each control's
difference from the trained model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from reid_utils.eval.bootstrap import bootstrap_methods, paired_differences, per_query_scores
from reid_utils.eval.distances import similarity_to_distance
from reid_utils.experiments.clip_banks import ClipBanks
from reid_utils.training.aggregator import build_aggregator
from reid_utils.training.result import TrainedModel

__all__ = ["CONTROLS", "control_similarities", "control_table", "validation_curves", "margin_comparison"]

CONTROLS = ("trained", "untrained", "uniform", "shuffled order")


def _shuffled_order(num_pairs: int, seed: int) -> list[int]:
    return np.random.default_rng([int(seed), 71]).permutation(int(num_pairs)).tolist()


def control_similarities(
    banks: ClipBanks, trained: TrainedModel, level: int, splits=("query", "gallery"), progress: bool = False
) -> dict[str, torch.Tensor]:
    """``{control: (Q, G) similarities}`` of :data:`CONTROLS` on one test (or validation) set.

    Args:
        banks: the experiment's clip banks; ``splits`` names its query and gallery banks
            (``("val_query", "val_gallery")`` for the validation set).
        trained: the trained learned aggregator of M_c^max = ``level``.
        level: M_c^max of the test features (``ClipBanks.features``).
    """
    cfg = banks.cfg
    q, g = banks.features(splits[0], level), banks.features(splits[1], level)
    dim = int(q.shape[-1])
    untrained = build_aggregator("learned", dim, hidden=cfg.agg.hidden, dropout=cfg.agg.dropout, seed=cfg.seed)
    uniform = build_aggregator("topt-eval", dim, t_percent=100.0, seed=cfg.seed)
    order = _shuffled_order(q.shape[1] * g.shape[1], cfg.seed)
    model = trained.model.eval()
    return {
        "trained": model.similarity_matrix(q, g, progress=progress),
        "untrained": untrained.eval().similarity_matrix(q, g, progress=progress),
        "uniform": uniform.eval().similarity_matrix(q, g, progress=progress),
        "shuffled order": model.similarity_matrix(q, g, progress=progress, order=order),
    }


def control_table(
    banks: ClipBanks,
    sims: dict[str, torch.Tensor],
    splits=("query", "gallery"),
    protocol: str = "torchreid",
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """mAP and rank-1 of each control with its 95 % interval and its paired difference from
    ``trained`` (bootstrap over query identities, the same resamples for every control).

    Returns:
        DataFrame indexed by control: ``mAP``, ``mAP_lo``, ``mAP_hi``, ``rank1``, ``rank1_lo``,
        ``rank1_hi`` (percent) and, except for ``trained``, ``d_mAP``, ``d_mAP_lo``,
        ``d_mAP_hi``, ``d_rank1``, ... (control - trained, percent) and ``differs`` (the mAP
        difference's interval excludes zero).
    """
    qb, gb = banks.clean[splits[0]], banks.clean[splits[1]]
    per_query, pids = {}, None
    for name, S in sims.items():
        d = similarity_to_distance(S)
        sc = per_query_scores(d, qb.pids, gb.pids, qb.camids, gb.camids, protocol=protocol)
        per_query[name], pids = sc.values, sc.pids
    ci = bootstrap_methods(per_query, pids, n_boot=n_boot, seed=seed)
    out = pd.DataFrame(index=pd.Index(list(sims), name="control"))
    for r in ci.itertuples():
        out.loc[r.method, r.metric] = 100 * r.point
        out.loc[r.method, f"{r.metric}_lo"] = 100 * r.lo
        out.loc[r.method, f"{r.metric}_hi"] = 100 * r.hi
    diff = paired_differences(per_query, pids, reference="trained", n_boot=n_boot, seed=seed)
    for r in diff.itertuples():
        out.loc[r.method, f"d_{r.metric}"] = 100 * r.difference
        out.loc[r.method, f"d_{r.metric}_lo"] = 100 * r.lo
        out.loc[r.method, f"d_{r.metric}_hi"] = 100 * r.hi
    d = diff[diff.metric == "mAP"].set_index("method")["excludes_zero"]
    out["differs"] = [bool(d[m]) if m in d.index else False for m in out.index]
    return out


def validation_curves(histories: dict) -> pd.DataFrame:
    """Validation mAP (percent) over training, one column per model: has it plateaued?

    Args:
        histories: ``{label: history}`` with a ``val_mAP`` column (``get_aggregator``
            evaluates on the validation identities every fifth of the run).

    Returns:
        DataFrame indexed by iteration, plus a last row ``"change over the last fifth"``:
        the last evaluation minus the one a fifth of the run before it (points). Models
        without validation evaluations are left out.
    """
    cols = {}
    for label, h in histories.items():
        if "val_mAP" not in h or h["val_mAP"].isna().all():
            continue
        v = h.dropna(subset=["val_mAP"]).set_index("iteration")["val_mAP"] * 100
        cols[label] = v
    if not cols:
        return pd.DataFrame()
    out = pd.DataFrame(cols)
    out.index.name = "iteration"
    change = out.ffill().iloc[-1] - out.ffill().iloc[-2] if len(out) >= 2 else out.iloc[-1] * np.nan
    return pd.concat([out, change.to_frame("change over the last fifth").T])


def margin_comparison(banks: ClipBanks, margins, level: int = 0, last: float = 0.2) -> pd.DataFrame:
    """The learned aggregator under each triplet margin: does the margin suit it?

    A similarity that is a weighted mean of frozen cosines cannot open a gap wider than
    the cosines' spread; a margin above it keeps every anchor's hinge active, so the loss
    becomes a plain mean of s_neg - s_pos over the mined pairs plus the margin.

    The profile's margin m is trained (``get_aggregator``, cached). Another margin m' > m
    is not trained when every hinge of the m run was active at every step: then the m'
    run is the same run, step for step (by induction: equal weights give equal mined
    pairs and similarities; m' - s_pos + s_neg >= m - s_pos + s_neg > 0, also in floating
    point, so every hinge is active again and the gradient of the mean hinge, which does
    not contain the margin, is the same). Any other margin is trained.

    Returns:
        DataFrame indexed by margin: ``active`` (fraction of anchors with an active hinge),
        ``gap`` (mean mined s_pos - s_neg), both over the last ``last`` of the run,
        ``val_mAP_end`` (percent, mean of the validation evaluations in the last two fifths),
        ``test_mAP`` (percent, M_c^max = ``level``), ``always_active`` (every hinge active at
        every step) and ``trained`` (False where the row is the profile margin's run by the
        argument above).
    """
    import dataclasses

    from reid_utils.experiments.aggregators import Method, get_aggregator

    base_margin = float(banks.cfg.agg.margin)

    def trained_with(m: float) -> TrainedModel:
        cfg = dataclasses.replace(banks.cfg, agg=dataclasses.replace(banks.cfg.agg, margin=float(m)))
        return get_aggregator(ClipBanks(cfg, banks.clean, banks.corrupted), Method("learned"), level, progress=False)

    base = trained_with(base_margin)
    implied = bool(len(base.history)) and bool((base.history["active"] == 1.0).all())
    rows = {}
    for m in sorted({float(x) for x in margins} | {base_margin}):
        same = m == base_margin or (m > base_margin and implied)
        tm = base if same else trained_with(m)
        h = tm.history
        end = h.iloc[-max(1, int(round(last * len(h)))) :]
        val = h.dropna(subset=["val_mAP"])["val_mAP"] if "val_mAP" in h else pd.Series(dtype=float)
        S = tm.model.similarity_matrix(banks.features("query", level), banks.features("gallery", level), progress=False)
        qb, gb = banks.clean["query"], banks.clean["gallery"]
        sc = per_query_scores(similarity_to_distance(S), qb.pids, gb.pids, qb.camids, gb.camids)
        rows[m] = {
            "active": float(end["active"].mean()),
            "gap": float((end["hard_pos_sim"] - end["hard_neg_sim"]).mean()),
            "val_mAP_end": 100 * float(val.iloc[-2:].mean()) if len(val) else np.nan,
            "test_mAP": 100 * float(sc.values["mAP"].mean()),
            "always_active": bool((h["active"] == 1.0).all()) if len(h) else False,
            "trained": m == base_margin or not same,
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "margin"
    return out
