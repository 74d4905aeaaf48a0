"""Our rows for the comparison tables: learned aggregation and mean clip feature, with and without re-ranking.

Paper Sec. 4.5 lists "Ours" and "Ours + Reranking" in Tables 3-5. Our rows
(:func:`our_results`) are measured on whatever dataset the config provides
(``reid_utils.experiments.comparison_data``) from the similarity sets of
``reid_utils.experiments.similarity_sets``: one row per method, evaluation
convention and re-ranking setting. PRID2011 is run on each of its 10 splits
and summarised (:func:`split_results`, :func:`summarize_split_results`);
:func:`measure` picks what applies. Every metric is in percent (the paper's
unit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from reid_utils.cache import cached
from reid_utils.data.datasets import canonical_name
from reid_utils.eval.ranking import protocol_of, summarize_splits
from reid_utils.experiments.aggregators import Method, get_aggregator, scoring_model
from reid_utils.experiments.clip_banks import get_backbone, get_clip_banks
from reid_utils.experiments.comparison_data import (
    MARS_LAYOUT,
    DataAvailability,
    data_availability,
    default_protocols,
)
from reid_utils.experiments.similarity_sets import (
    SimilaritySet,
    check_protocol,
    evaluate_set,
    protocol_inputs,
    similarity_set,
)
from reid_utils.paper import DATASET_TITLES, METRICS

__all__ = [
    "OUR_MODELS",
    "PRID_NUM_SPLITS",
    "ours_source",
    "result_rows",
    "junk_bank",
    "our_results",
    "split_results",
    "summarize_split_results",
    "measure",
]

#: (method, re-ranked) -> the row's label in the tables
OUR_MODELS = {
    ("learned", False): "Ours (learned aggregation)",
    ("learned", True): "Ours + Reranking",
    ("mean", False): "Mean clip feature",
    ("mean", True): "Mean clip feature + Reranking",
}
PRID_NUM_SPLITS = 10


def ours_source(cfg, dataset: str, num_splits: int | None = None) -> str:
    """The ``source`` label of our rows, e.g. ``"ours (synthetic benchmark, default profile)"``."""
    name = canonical_name(dataset)
    splits = f", mean ± std over {num_splits} splits" if num_splits else ""
    return f"ours ({DATASET_TITLES[name]}, {cfg.profile} profile{splits})"


def _metrics(cmc: np.ndarray, mAP: float) -> dict:
    out = {"mAP": 100.0 * float(mAP)}
    for m in METRICS[1:]:
        r = int(m[1:])
        out[m] = 100.0 * float(cmc[r - 1]) if r <= len(cmc) else np.nan
    return out


def _intervals(sset: SimilaritySet, protocol: str, rerank: bool, rerank_params: dict | None) -> dict:
    """95 % intervals of mAP and R1 (percent; bootstrap over query identities, seed 0)."""
    from reid_utils.eval.bootstrap import bootstrap_methods, per_query_scores

    dist, qp, gp, qc, gc = protocol_inputs(sset, protocol, rerank, rerank_params)
    sc = per_query_scores(dist, qp, gp, qc, gc, protocol=protocol)
    ci = bootstrap_methods({"m": sc.values}, sc.pids, n_boot=1000, seed=0).set_index("metric")
    return {
        "mAP_lo": 100 * float(ci.loc["mAP", "lo"]),
        "mAP_hi": 100 * float(ci.loc["mAP", "hi"]),
        "R1_lo": 100 * float(ci.loc["rank1", "lo"]),
        "R1_hi": 100 * float(ci.loc["rank1", "hi"]),
    }


def result_rows(
    sets: dict, protocols: Iterable[str] = ("torchreid",), rerank_params: dict | None = None, max_rank: int = 50
) -> pd.DataFrame:
    """Evaluate every method x convention, without and with re-ranking.

    Args:
        sets: ``{method: SimilaritySet}``, method ``"learned"`` or ``"mean"``
            (other keys are labelled as given).
        protocols: conventions to report.

    Returns:
        DataFrame, one row per (method, protocol, reranking): ``method``,
        ``model`` (the table label, :data:`OUR_MODELS`), ``protocol``,
        ``reranking``, ``mAP``, ``R1``, ``R5``, ``R20`` (percent; NaN where
        the gallery is shorter than the rank), ``mAP_lo`` / ``mAP_hi`` / ``R1_lo`` /
        ``R1_hi`` (95 % intervals, percent) and ``cmc`` (array in [0, 1]).
    """
    protocols = tuple(protocols)
    for p in protocols:
        check_protocol(p)
    if not sets:
        raise ValueError("sets: expected at least one method's SimilaritySet")
    rows = []
    for method, sset in sets.items():
        for protocol in protocols:
            for rr in (False, True):
                cmc, mAP = evaluate_set(sset, protocol, rr, rerank_params, max_rank)
                label = OUR_MODELS.get((method, rr), f"{method}{' + Reranking' if rr else ''}")
                rows.append(
                    {
                        "method": method,
                        "model": label,
                        "protocol": protocol,
                        "reranking": rr,
                        **_metrics(cmc, mAP),
                        **_intervals(sset, protocol, rr, rerank_params),
                        "cmc": np.asarray(cmc),
                    }
                )
    return pd.DataFrame(rows)


def junk_bank(cfg, model, progress: bool = True, tracklets=None):
    """Clip features of the junk tracks (pid -1) of a MARS-layout test set, or None if it has none.

    The official MARS gallery (``mars_official``) includes the junk tracks;
    their features come from the same frozen I3D and settings as
    ``reid_utils.experiments.clip_banks`` (``name="aggfeat-junk"``).

    Args:
        cfg: ``Config``; the junk tracks are read from its dataset's official
            split (``load_dataset_for_config(cfg, official=True)``) unless
            ``tracklets`` gives them.
        model: the frozen I3D, a ``TrainedModel`` of ``reid_utils.experiments.clip_banks.get_backbone``.
        progress: bars and cache messages.
        tracklets: the junk tracks.
    """
    from reid_utils.data.datasets import load_dataset_for_config
    from reid_utils.training.features import get_features

    if tracklets is None:
        tracklets = [t for t in load_dataset_for_config(cfg, official=True).gallery if t.pid == -1]
    if not len(tracklets):
        return None
    return get_features(
        cfg,
        model.model,
        tracklets,
        num_clips=cfg.agg.num_clips,
        clip_len=cfg.agg.clip_len,
        method="clips",
        name="aggfeat-junk",
        model_key=model.key,
        progress=progress,
    )


def _cached_set(cfg, model, model_key: str, clean: dict, junk, progress: bool) -> SimilaritySet:
    spec = {
        "model": model_key,
        "query": clean["query"].meta.get("key"),
        "gallery": clean["gallery"].meta.get("key"),
        "junk": None if junk is None else junk.meta.get("key"),
        "device": cfg.torch_device().type,
    }  # the GPU scores with bf16 operands (fused kernel)

    def compute() -> dict:
        dev_model = scoring_model(cfg, model)  # scored on the GPU when there is one (paper profile)
        return dataclasses.asdict(similarity_set(dev_model, clean["query"], clean["gallery"], junk, progress))

    return SimilaritySet(**cached(cfg.cache_root, "cmp-similarities", spec, compute, verbose=progress))


def our_results(
    cfg,
    dataset=None,
    protocols: Sequence[str] | None = None,
    rerank_params: dict | None = None,
    progress: bool = True,
    junk_tracklets=None,
) -> pd.DataFrame:
    """Our rows on one dataset (one split): learned aggregator and mean clip feature, +/- re-ranking.

    ``"Ours (learned aggregation)"``: the learned aggregator (Eqs. 1-4) trained
    at M_c^max = 0, the model of notebook 04 and of Table 2's first column.
    ``"Mean clip feature"``: the cosine of the averaged L2-normalised clip
    features (``MeanFeatureAggregator``), the parameter-free reference of
    notebooks 03-05. ``" + Reranking"``: k-reciprocal re-ranking of their
    distances (``similarity_sets.RERANK``). Prerequisites come from the artifact
    cache (notebooks 01/04) and are computed on demand: the frozen I3D, the
    clean clip banks and the aggregators; the similarity sets are cached too
    (kind ``"cmp-similarities"``).

    Args:
        cfg: ``Config``.
        dataset: the torchreid split of the test set (default
            ``load_dataset_for_config(cfg)``).
        protocols: default ``comparison_data.default_protocols`` of the dataset.
        rerank_params: default ``similarity_sets.RERANK``.
        progress: bars and cache messages.
        junk_tracklets: the junk tracks for ``mars_official`` (default: read
            from the config's dataset, :func:`junk_bank`).

    Returns:
        :func:`result_rows` with ``dataset`` and ``source`` columns in front.
    """
    from reid_utils.data.datasets import load_dataset_for_config

    ds = load_dataset_for_config(cfg) if dataset is None else dataset
    if protocol_of(ds) == "mars_official":
        raise ValueError(
            "dataset: expected the torchreid split (load_dataset_for_config(cfg)); the official "
            "convention is built from it here (gallery + queries + junk)"
        )
    name = canonical_name(ds.name)
    protocols = default_protocols(name) if protocols is None else tuple(protocols)
    for p in protocols:
        check_protocol(p)
    if "mars_official" in protocols and name not in MARS_LAYOUT:
        raise ValueError(f"protocols: mars_official applies to MARS-layout data, not {DATASET_TITLES[name]}")
    backbone = get_backbone(cfg, ds, progress=progress)
    banks = get_clip_banks(cfg, backbone, ds, progress=progress)
    junk = junk_bank(cfg, backbone, progress, junk_tracklets) if "mars_official" in protocols else None
    sets = {}
    for kind in ("learned", "mean"):
        trained = get_aggregator(banks, Method(kind), 0, progress=progress)
        sets[kind] = _cached_set(cfg, trained.model, trained.key, banks.clean, junk, progress)
    df = result_rows(sets, protocols, rerank_params)
    df.insert(0, "dataset", name)
    df.insert(1, "source", ours_source(cfg, name))
    return df


def split_results(
    cfg,
    num_splits: int = PRID_NUM_SPLITS,
    run_split: Callable | None = None,
    progress: bool = True,
    rerank_params: dict | None = None,
) -> pd.DataFrame:
    """Our rows of every PRID2011 split (one model per split), stacked with a ``split`` column.

    Each split is its own run (``load_dataset_for_config(cfg, split_id=k)``:
    its own I3D and aggregator trained on the split's training half, as the
    10-split protocol requires).

    Args:
        cfg: ``Config`` whose dataset is split-based (PRID2011).
        num_splits: the protocol's 10.
        run_split: ``run_split(k) -> DataFrame`` of :func:`our_results` rows
            (default: :func:`our_results` on ``load_dataset_for_config(cfg,
            split_id=k)``, torchreid protocol, ``rerank_params``).
    """
    from tqdm.auto import tqdm

    from reid_utils.data.datasets import load_dataset_for_config

    if int(num_splits) < 1:
        raise ValueError(f"num_splits: expected >= 1, got {num_splits}")
    if run_split is None:

        def run_split(k):
            return our_results(
                cfg,
                load_dataset_for_config(cfg, split_id=k),
                protocols=("torchreid",),
                rerank_params=rerank_params,
                progress=progress,
            )

    frames = [run_split(k).assign(split=k) for k in tqdm(range(int(num_splits)), desc="splits", disable=not progress)]
    return pd.concat(frames, ignore_index=True)


def summarize_split_results(results: pd.DataFrame, ddof: int = 0) -> pd.DataFrame:
    """Mean and standard deviation over splits (``eval.ranking.summarize_splits``), percent.

    Args:
        results: :func:`split_results` rows (``split``, ``cmc``, ``mAP`` ...).
        ddof: of the standard deviation (0: numpy's default, as ``summarize_splits``).

    Returns:
        One row per (dataset, source, method, model, protocol, reranking):
        the mean ``mAP``, ``R1``, ``R5``, ``R20``, their ``"<metric> std"``,
        ``splits`` and the mean ``cmc``; ``source`` says "mean ± std over N splits".
    """
    need = {"split", "cmc", "mAP", "method", "model", "protocol", "reranking"}
    lacking = sorted(need - set(results.columns))
    if lacking:
        raise ValueError(f"results: missing columns {lacking}; expected split_results rows")
    keys = [k for k in ("dataset", "source", "method", "model", "protocol", "reranking") if k in results.columns]
    rows = []
    for key, grp in results.groupby(keys, sort=False):
        if grp["split"].duplicated().any():
            raise ValueError(f"results: split repeated for {dict(zip(keys, key))}")
        s = summarize_splits(list(zip(grp["cmc"], grp["mAP"] / 100.0)), ddof=ddof)
        row = dict(zip(keys, key))
        row.update(_metrics(s.cmc_mean, s.mAP_mean))
        row.update({f"{m} std": v for m, v in _metrics(s.cmc_std, s.mAP_std).items()})
        row["splits"] = s.num_splits
        row["cmc"] = s.cmc_mean
        if "source" in row and "splits" not in row["source"] and row["source"].endswith(")"):
            row["source"] = row["source"][:-1] + f", mean ± std over {s.num_splits} splits)"
        rows.append(row)
    return pd.DataFrame(rows)


def measure(
    cfg,
    availability: DataAvailability | None = None,
    progress: bool = True,
    num_splits: int = PRID_NUM_SPLITS,
    rerank_params: dict | None = None,
) -> pd.DataFrame | None:
    """Our rows for whatever the config provides: None when nothing can be measured.

    PRID2011: every split, summarised (:func:`summarize_split_results`);
    otherwise :func:`our_results` on the dataset's standard split.
    ``rerank_params``: default ``similarity_sets.RERANK``.
    """
    avail = data_availability(cfg) if availability is None else availability
    if not avail.available:
        return None
    if avail.dataset == "prid2011":
        return summarize_split_results(split_results(cfg, num_splits, progress=progress, rerank_params=rerank_params))
    return our_results(cfg, rerank_params=rerank_params, progress=progress)
