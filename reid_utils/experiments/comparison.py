"""Comparison with the state of the art: the paper's Tables 3-5 beside our rows (Secs. 4.5-4.6).

Paper Sec. 4.5 compares the learned clip similarity aggregation with published
methods on MARS (Table 3: mAP, R1, R5, R20; "Ours" 75.9 / 82.7, "Ours +
Reranking" 83.3 / 83.4), DukeMTMC-VideoReID (Table 4: mAP, R1, R5, R20) and
PRID2011 (Table 5: R1, R5, R20; 10 random splits). Sec. 4.6 (qualitative
results, Fig. 7) is measured in notebook 06; this module covers the numbers.

What goes into a table (notebook 07):

* **The paper's rows**: :func:`paper_table`, package data
  ``reid_utils/paper_tables/table{3,4,5}_*.csv``, verbatim copies of the
  published values, in percent, labelled ``source = "paper (<dataset>)"``.
  The paper does not say which MARS evaluation convention its numbers use;
  their ``protocol`` reads ``"as published"``.
* **Our rows** (:func:`our_results`), measured on whatever dataset the
  config provides (:func:`data_availability`), labelled
  ``source = "ours (<dataset>, <profile> profile)"``:

  - ``"Ours (learned aggregation)"``: the learned aggregator (Eqs. 1-4)
    trained at M_c^max = 0, i.e. the model of notebook 04 and of Table 2's
    first column (``experiments_agg.get_aggregator``; loaded from the cache,
    trained on demand).
  - ``"Ours + Reranking"``: k-reciprocal re-ranking (Zhong et al., CVPR
    2017; ``reranking.re_ranking`` with k1 = 20, k2 = 6, lambda = 0.3) of
    the learned aggregator's distances.
  - ``"Mean clip feature"`` (with and without re-ranking): the cosine of the
    averaged L2-normalised clip features (``MeanFeatureAggregator``), the
    parameter-free reference of notebooks 03-05.

Choices the paper leaves open (documented here, tested in
``tests/test_comparison.py``):

* **Distance = 1 - similarity.** ``re_ranking`` needs non-negative
  distances (it squares them and divides every column by its maximum), so
  ``-s`` cannot be used. Our similarities are (weighted means of) cosines,
  at most 1, so ``d = 1 - s`` lies in [0, 2]. (Exactly: ``d = c - s`` with
  ``c = max(1, max s)``, so a cosine that rounds to just above 1 neither
  gives a negative distance nor, by clipping, a tie.)
  For the mean clip feature, ``1 - s = ||a - b||^2 / 2`` for the unit mean
  features a, b: proportional to the squared Euclidean distance that
  torchreid passes to ``re_ranking``; the per-column normalisation removes
  the factor. Ranking by ``1 - s`` is ranking by ``-s``, so the rows without
  re-ranking are exactly those of notebooks 04/05.
* **Self-distance 0.** The k-reciprocal sets assume every item is its own
  nearest neighbour (true for Euclidean distances). The learned aggregator's
  ``s(x, x)`` is the alpha-weighted mean of the cosines between *different*
  clips of x, below 1; we set ``s(x, x) := max(1, max s)`` (distance 0).
* **Asymmetry.** The learned aggregator visits clip pairs query clip first,
  so ``s(a, b) != s(b, a)`` in general. Between two sets we keep the
  directed score, first set's clips first, in the order queries, gallery,
  junk (so the query-gallery block is exactly the score notebooks 04/05
  evaluate) and use it for both directions; within one set (query-query,
  gallery-gallery, junk-junk) we use the mean of both directions.
* **Evaluation conventions** (``reid_utils.evaluation``). MARS-layout data
  (MARS and the synthetic benchmark) are reported under both: ``torchreid``
  (gallery = the non-query test tracks without junk; queries without a
  cross-camera match skipped) and ``mars_official`` (the MATLAB code: gallery
  = *all* test tracks, queries and junk (pid -1) included; same-identity
  same-camera items and junk ignored). The official gallery is built with
  ``evaluation.mars_official_gallery`` (gallery, then the queries) followed
  by the junk tracks (read from the official split, features from the same
  frozen I3D and settings, ``name="aggfeat-junk"``). Without re-ranking the
  junk tracks are ignored and change nothing; with re-ranking they take part
  in the neighbourhoods, as in the official setting. Re-ranking is always
  done over the gallery of the convention used. DukeMTMC-VideoReID and
  PRID2011 use ``torchreid``.
* **PRID2011**: one run per split (``datasets.load_dataset_for_config(cfg,
  split_id=k)``: its own I3D and aggregator trained on the split's training
  half, as the 10-split protocol requires), then mean and standard deviation
  over the 10 splits (``evaluation.summarize_splits``, ddof = 0).

Units: every metric in a table here is in percent (the paper's unit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from reid_utils.eval.distances import similarity_to_distance
from reid_utils.eval.ranking import PROTOCOLS, evaluate_rank, mars_official_gallery, protocol_of, summarize_splits
from reid_utils.eval.reranking import re_ranking
from reid_utils.paper import DATASET_TITLES, METRICS, PAPER_TABLE_FILES, TABLE_DATASET, paper_metrics, paper_table

__all__ = [
    "COMPARISON_VERSION",
    "RERANK",
    "PAPER_DATASETS",
    "DATASET_TABLE",
    "OUR_MODELS",
    "PROTOCOL_NAMES",
    "PRID_NUM_SPLITS",
    "canonical_dataset",
    "DataAvailability",
    "data_availability",
    "ours_source",
    "default_protocols",
    "SimilaritySet",
    "assemble_similarity_set",
    "similarity_set",
    "protocol_inputs",
    "evaluate_set",
    "result_rows",
    "junk_bank",
    "our_results",
    "split_results",
    "summarize_split_results",
    "measure",
    "comparison_table",
    "comparison_tables",
    "reranking_gains",
    "reranking_summary",
    "ours_table",
]

COMPARISON_VERSION = 1  # bump when the recipe changes (invalidates cached similarity sets)
RERANK = {"k1": 20, "k2": 6, "lambda_value": 0.3}  # DESIGN.md; Zhong et al.'s defaults
PAPER_DATASETS = ("mars", "dukemtmc-videoreid", "prid2011")
DATASET_TABLE = {"mars": 3, "synthetic": 3, "dukemtmc-videoreid": 4, "prid2011": 5}
MARS_LAYOUT = ("mars", "synthetic")
OUR_MODELS = {
    ("learned", False): "Ours (learned aggregation)",
    ("learned", True): "Ours + Reranking",
    ("mean", False): "Mean clip feature",
    ("mean", True): "Mean clip feature + Reranking",
}
PROTOCOL_NAMES = {
    "torchreid": "torchreid (gallery = the non-query test tracks)",
    "mars_official": "official MARS (gallery = all test tracks)",
    "as published": "as published",
}
PRID_NUM_SPLITS = 10
_LAYOUT = {
    "mars": ("info", "bbox_test"),
    "synthetic": ("info", "bbox_test"),
    "dukemtmc-videoreid": ("query", "gallery"),
    "prid2011": ("multi_shot",),
}


def canonical_dataset(name: str) -> str:
    """``mars`` / ``dukemtmc-videoreid`` / ``prid2011`` / ``synthetic`` (loader aliases accepted)."""
    from reid_utils.data.datasets import canonical_name

    return canonical_name(name)


# --------------------------------------------------------------------------- #
# the paper's tables
# --------------------------------------------------------------------------- #


# --------------------------------------------------------------------------- #
# what this run has
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class DataAvailability:
    """Which of the paper's datasets a config provides.

    Attributes:
        dataset: the config's dataset (canonical name).
        root: its data root (None: not set; the synthetic benchmark is then generated).
        available: the dataset can be measured in this run.
        table: the paper table our rows go beside (None when nothing is measured).
        had: the datasets this run measures (at most one; ``()`` if none).
        missing: the paper's datasets this run does not measure.
        problem: why the configured dataset is unavailable (None if it is available).
        statement: the "what we had / did not have" text for the notebook.
    """

    dataset: str
    root: str | None
    available: bool
    table: int | None
    had: tuple
    missing: tuple
    problem: str | None
    statement: str


def _and(names: Sequence[str]) -> str:
    t = [DATASET_TITLES[n] for n in names]
    return t[0] if len(t) == 1 else ", ".join(t[:-1]) + " and " + t[-1]


def _layout_problem(name: str, root) -> str | None:
    """None if ``root`` looks like the dataset's layout (top-level folders only; cheap)."""
    p = Path(root).expanduser()
    if not p.is_dir():
        return f"its data root {p} is not a directory"
    lacking = [d + "/" for d in _LAYOUT[name] if not (p / d).is_dir()]
    if lacking:
        return f"its data root {p} lacks {', '.join(lacking)} (expected the {DATASET_TITLES[name]} layout)"
    return None


def data_availability(cfg, check_disk: bool = True) -> DataAvailability:
    """Detect which dataset ``cfg`` provides and say what this run had and did not have.

    A run measures the one dataset ``cfg.dataset`` names (``$REID_DATASET``),
    read from ``cfg.data_root`` (``$REID_DATA_ROOT``); the synthetic benchmark
    needs no root (it is generated from the profile's seed).

    Args:
        cfg: ``Config``.
        check_disk: also check that the root exists with the dataset's
            top-level folders (MARS ``info/``, ``bbox_test/``; Duke ``query/``,
            ``gallery/``; PRID ``multi_shot/``). The loaders check the rest.

    Returns:
        :class:`DataAvailability`.
    """
    name = canonical_dataset(cfg.dataset)
    root = cfg.data_root or None
    title = DATASET_TITLES[name]
    if name != "synthetic" and root is None:
        problem = "no data root is set (cfg.data_root / $REID_DATA_ROOT)"
    elif root is not None and check_disk:
        problem = _layout_problem(name, root)
    else:
        problem = None
    available = problem is None
    had = (name,) if available else ()
    missing = tuple(d for d in PAPER_DATASETS if d not in had)
    table = DATASET_TABLE[name] if available else None
    no_rows = [DATASET_TABLE[d] for d in missing]
    if not available:
        statement = (
            f"**Data.** The {cfg.profile} profile asks for {title}, but {problem}; nothing was "
            f"measured in this run. Not available: {_and(missing)}. Tables 3-5 show the paper's "
            f"published rows only (set $REID_DATASET and $REID_DATA_ROOT to measure a dataset)."
        )
    elif name == "synthetic":
        where = f"read from {root}" if root else "generated from the profile's seed"
        statement = (
            f"**Data.** This run had only the embedded synthetic benchmark ({where}; MARS "
            f"layout). MARS, DukeMTMC-VideoReID and PRID2011 were not available, so Tables 3-5 "
            f"show the paper's published numbers for them. Our rows were measured on the synthetic "
            f"benchmark; they are listed beside Table 3 (same layout and evaluation conventions as "
            f"MARS) under their own source label and are **not comparable in absolute value** with "
            f"any row of the paper: only differences between our own rows (e.g. what re-ranking "
            f"adds) can be set against the paper's."
        )
    else:
        statement = (
            f"**Data.** This run had {title} at {root}: our rows beside Table {table} were measured "
            f"on {title}. Not available in this run: {_and(missing)} (a run measures the one "
            f"dataset the config names; set $REID_DATASET and $REID_DATA_ROOT for another), so "
            f"Table{'s' if len(no_rows) > 1 else ''} {' and '.join(map(str, no_rows))} show"
            f"{'' if len(no_rows) > 1 else 's'} the paper's rows only."
        )
    return DataAvailability(
        dataset=name,
        root=root,
        available=available,
        table=table,
        had=had,
        missing=missing,
        problem=problem,
        statement=statement,
    )


def ours_source(cfg, dataset: str, num_splits: int | None = None) -> str:
    """The ``source`` label of our rows, e.g. ``"ours (synthetic benchmark, default profile)"``."""
    name = canonical_dataset(dataset)
    splits = f", mean ± std over {num_splits} splits" if num_splits else ""
    return f"ours ({DATASET_TITLES[name]}, {cfg.profile} profile{splits})"


def default_protocols(dataset: str) -> tuple:
    """Both MARS conventions for MARS-layout data, ``torchreid`` for Duke and PRID."""
    return ("torchreid", "mars_official") if canonical_dataset(dataset) in MARS_LAYOUT else ("torchreid",)


# --------------------------------------------------------------------------- #
# similarities among the test sequences
# --------------------------------------------------------------------------- #
@dataclass
class SimilaritySet:
    """Similarities of one method among all test sequences.

    Items are in the order of the official MARS gallery: ``[gallery (G),
    queries (Q), junk (J)]``; the torchreid gallery is the first G items.

    Attributes:
        sim: (N, N) float64, N = G + Q + J, symmetric, diagonal
            ``max(1, max s)`` (module doc: between-set blocks hold the directed
            score, within-set blocks the mean of both directions).
        pids, camids: (N,) int64 labels (junk: pid -1).
        num_gallery, num_query, num_junk: G, Q, J.
    """

    sim: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    num_gallery: int
    num_query: int
    num_junk: int = 0

    def distance(self) -> np.ndarray:
        """:func:`similarity_to_distance` of ``sim``, computed once per set (every
        convention and re-ranking setting of :func:`protocol_inputs` reads it)."""
        if self.__dict__.get("_distance") is None:
            self.__dict__["_distance"] = similarity_to_distance(self.sim)
        return self.__dict__["_distance"]

    def __post_init__(self):
        self.sim = np.asarray(self.sim, dtype=np.float64)
        self.pids = np.asarray(self.pids, dtype=np.int64)
        self.camids = np.asarray(self.camids, dtype=np.int64)
        n = self.num_gallery + self.num_query + self.num_junk
        if self.num_gallery < 1 or self.num_query < 1 or self.num_junk < 0:
            raise ValueError(
                f"SimilaritySet: expected >= 1 gallery item and >= 1 query, got G="
                f"{self.num_gallery}, Q={self.num_query}, J={self.num_junk}"
            )
        if self.sim.shape != (n, n):
            raise ValueError(f"sim: expected shape ({n}, {n}) for G+Q+J = {n}, got {self.sim.shape}")
        for name in ("pids", "camids"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},), got {getattr(self, name).shape}")
        if not np.isfinite(self.sim).all():
            raise ValueError("sim: contains NaN or infinite similarities")

    @property
    def query_slice(self) -> slice:
        return slice(self.num_gallery, self.num_gallery + self.num_query)


def _block(x, shape, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if a.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")
    return a


def assemble_similarity_set(
    s_qg, s_qq, s_gg, q_pids, q_camids, g_pids, g_camids, s_qj=None, s_gj=None, s_jj=None, j_camids=None
) -> SimilaritySet:
    """Build a :class:`SimilaritySet` from directed blocks (module doc: asymmetry).

    Args:
        s_qg: (Q, G) query -> gallery scores. s_qq: (Q, Q). s_gg: (G, G).
        q_pids, q_camids: (Q,). g_pids, g_camids: (G,).
        s_qj: (Q, J), s_gj: (G, J), s_jj: (J, J) scores with junk tracks
            (all three or none); j_camids: (J,).

    Returns:
        :class:`SimilaritySet` in the order [gallery, queries, junk].
    """
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    Q, G = len(q_pids), len(g_pids)
    qg = _block(s_qg, (Q, G), "s_qg")
    qq = _block(s_qq, (Q, Q), "s_qq")
    gg = _block(s_gg, (G, G), "s_gg")
    junk = [s_qj, s_gj, s_jj, j_camids]
    if any(x is None for x in junk) and not all(x is None for x in junk):
        raise ValueError("s_qj, s_gj, s_jj, j_camids: give all four (junk tracks) or none")
    J = 0 if j_camids is None else len(j_camids)
    N = G + Q + J
    S = np.empty((N, N))
    qs, js = slice(G, G + Q), slice(G + Q, N)
    S[:G, :G] = (gg + gg.T) / 2
    S[qs, qs] = (qq + qq.T) / 2
    S[qs, :G], S[:G, qs] = qg, qg.T
    if J:
        qj = _block(s_qj, (Q, J), "s_qj")
        gj = _block(s_gj, (G, J), "s_gj")
        jj = _block(s_jj, (J, J), "s_jj")
        S[js, js] = (jj + jj.T) / 2
        S[qs, js], S[js, qs] = qj, qj.T
        S[:G, js], S[js, :G] = gj, gj.T
    np.fill_diagonal(S, -np.inf)
    np.fill_diagonal(S, max(1.0, float(S.max())))  # self: the closest (module doc)
    pids = np.concatenate([g_pids, q_pids, np.full(J, -1)])
    camids = np.concatenate(
        [np.asarray(g_camids), np.asarray(q_camids), np.asarray([] if j_camids is None else j_camids)]
    )
    return SimilaritySet(S, pids, camids, G, Q, J)


@torch.no_grad()
def similarity_set(model, query, gallery, junk=None, progress: bool = False) -> SimilaritySet:
    """All similarities a method needs for both conventions and re-ranking.

    Scores queries against [gallery, queries, junk], gallery against
    [gallery, junk] and junk against junk (``model.similarity_matrix``, eval
    mode, on the model's device): Q (G + Q + J) + G (G + J) + J^2 sequence
    pairs, nothing twice. Re-ranking makes the gallery-gallery block the
    largest: on MARS (Q = 1980, G = 9330 plus the junk tracks) about 6x the
    query-gallery pairs that the evaluation without re-ranking needs.

    Args:
        model: an aggregator with ``similarity_matrix(q, g)`` (learned, mean, top-t%).
        query, gallery: ``FeatureBank`` (feats (N, M, D), pids, camids).
        junk: optional ``FeatureBank`` of the junk tracks (official MARS gallery).
        progress: tqdm bars.
    """
    q, g = query.feats, gallery.feats
    Q, G = len(query), len(gallery)
    J = 0 if junk is None else len(junk)
    j = junk.feats if J else q[:0]
    s_q = model.similarity_matrix(q, torch.cat([g, q, j]), progress=progress)
    s_g = model.similarity_matrix(g, torch.cat([g, j]), progress=progress)
    extra = {}
    if J:
        extra = {
            "s_qj": s_q[:, G + Q :],
            "s_gj": s_g[:, G:],
            "s_jj": model.similarity_matrix(j, j, progress=progress),
            "j_camids": junk.camids,
        }
    return assemble_similarity_set(
        s_q[:, :G], s_q[:, G : G + Q], s_g[:, :G], query.pids, query.camids, gallery.pids, gallery.camids, **extra
    )


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")


def protocol_inputs(
    sset: SimilaritySet, protocol: str = "torchreid", rerank: bool = False, rerank_params: dict | None = None
) -> tuple:
    """Distances and labels of one convention, re-ranked or not, for ``evaluate_rank``.

    Args:
        sset: :class:`SimilaritySet`.
        protocol: ``"torchreid"`` (gallery = the first G items) or
            ``"mars_official"`` (gallery = all items: gallery, queries, junk;
            ``evaluation.mars_official_gallery`` plus the junk columns).
        rerank: k-reciprocal re-ranking over that gallery
            (``re_ranking(q_g, q_q, g_g, **rerank_params)``).
        rerank_params: ``k1``, ``k2``, ``lambda_value`` (default :data:`RERANK`).

    Returns:
        ``(distmat (Q, G'), q_pids, g_pids, q_camids, g_camids)`` with G' = G
        (torchreid) or G + Q + J (mars_official).
    """
    _check_protocol(protocol)
    params = dict(RERANK if rerank_params is None else rerank_params)
    G, qs = sset.num_gallery, sset.query_slice
    D = sset.distance()
    qp, qc = sset.pids[qs], sset.camids[qs]
    if protocol == "torchreid":
        dist = D[qs, :G]
        if rerank:
            dist = re_ranking(dist, D[qs, qs], D[:G, :G], **params)
        return dist, qp, sset.pids[:G], qc, sset.camids[:G]
    dist, qp, gp, qc, gc = mars_official_gallery(D[qs, :G], D[qs, qs], qp, sset.pids[:G], qc, sset.camids[:G])
    js = slice(G + sset.num_query, None)
    dist = np.concatenate([dist, D[qs, js]], axis=1)
    gp = np.concatenate([gp, sset.pids[js]])
    gc = np.concatenate([gc, sset.camids[js]])
    if rerank:  # the official gallery is every item, in the order of D
        dist = re_ranking(dist, D[qs, qs], D, **params)
    return dist, qp, gp, qc, gc


def evaluate_set(
    sset: SimilaritySet,
    protocol: str = "torchreid",
    rerank: bool = False,
    rerank_params: dict | None = None,
    max_rank: int = 50,
):
    """CMC and mAP of one method under one convention, with or without re-ranking.

    Args:
        sset, protocol, rerank, rerank_params: as :func:`protocol_inputs`.
        max_rank: CMC length (cut to the gallery size).

    Returns:
        ``(cmc, mAP)`` of ``evaluation.evaluate_rank``, in [0, 1].
    """
    dist, qp, gp, qc, gc = protocol_inputs(sset, protocol, rerank, rerank_params)
    return evaluate_rank(dist, qp, gp, qc, gc, max_rank=min(int(max_rank), dist.shape[1]), protocol=protocol)


def _metrics(cmc: np.ndarray, mAP: float) -> dict:
    out = {"mAP": 100.0 * float(mAP)}
    for m in METRICS[1:]:
        r = int(m[1:])
        out[m] = 100.0 * float(cmc[r - 1]) if r <= len(cmc) else np.nan
    return out


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
        the gallery is shorter than the rank) and ``cmc`` (array in [0, 1]).
    """
    protocols = tuple(protocols)
    for p in protocols:
        _check_protocol(p)
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
                        "cmc": np.asarray(cmc),
                    }
                )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- #
# running it on the config's data
# --------------------------------------------------------------------------- #
def junk_bank(cfg, model, progress: bool = True, num_threads: int | None = 1, tracklets=None):
    """Clip features of the junk tracks (pid -1) of a MARS-layout test set, or None if it has none.

    Args:
        cfg: ``Config``; the junk tracks are read from its dataset's official
            split (``load_dataset_for_config(cfg, official=True)``) unless
            ``tracklets`` gives them.
        model: the frozen I3D of ``experiments_agg.get_backbone``.
        num_threads: torch CPU threads while extracting.
    """
    from reid_utils.data.datasets import load_dataset_for_config
    from reid_utils.experiments import corruption_sweep as E
    from reid_utils.training.features import get_features

    if tracklets is None:
        tracklets = [t for t in load_dataset_for_config(cfg, official=True).gallery if t.pid == -1]
    if not len(tracklets):
        return None
    with E.torch_threads(num_threads):  # the settings of experiments_agg.clip_banks
        return get_features(
            cfg,
            model,
            tracklets,
            num_clips=cfg.agg.num_clips,
            clip_len=cfg.agg.clip_len,
            method="clips",
            name="aggfeat-junk",
            progress=progress,
        )


def _cached_set(
    cfg, model, model_key: str, clean: dict, junk, progress: bool, num_threads: int | None
) -> SimilaritySet:
    from reid_utils.cache import ArtifactCache
    from reid_utils.config import config_key
    from reid_utils.experiments import corruption_sweep as E

    spec = {
        "v": COMPARISON_VERSION,
        "model": model_key,
        "query": clean["query"].meta.get("key"),
        "gallery": clean["gallery"].meta.get("key"),
        "junk": None if junk is None else junk.meta.get("key"),
        "device": cfg.torch_device().type,
    }  # the GPU scores with bf16 operands (fused kernel)

    def compute() -> dict:
        dev_model = E.scoring_model(cfg, model)  # scored on the GPU when there is one (paper profile)
        with E.torch_threads(num_threads):
            return dataclasses.asdict(similarity_set(dev_model, clean["query"], clean["gallery"], junk, progress))

    entry = ArtifactCache(cfg.cache_root).get_or_compute(
        "cmp-similarities", config_key(spec), compute, verbose=progress
    )
    return SimilaritySet(**entry)


def our_results(
    cfg,
    dataset=None,
    protocols: Sequence[str] | None = None,
    rerank_params: dict | None = None,
    progress: bool = True,
    num_threads: int | None = 1,
    junk_tracklets=None,
) -> pd.DataFrame:
    """Our rows on one dataset (one split): learned aggregator and mean clip feature, +/- re-ranking.

    Prerequisites come from the artifact cache (notebooks 01/04) and are
    computed on demand: the frozen I3D, the clean clip banks and the learned
    aggregator at M_c^max = 0; the similarity sets are cached too.

    Args:
        cfg: ``Config``.
        dataset: the torchreid split of the test set (default
            ``load_dataset_for_config(cfg)``).
        protocols: default :func:`default_protocols` of the dataset.
        rerank_params: default :data:`RERANK`.
        progress: bars and cache messages.
        num_threads: torch CPU threads (``experiments_agg`` module doc).
        junk_tracklets: the junk tracks for ``mars_official`` (default: read
            from the config's dataset, :func:`junk_bank`).

    Returns:
        :func:`result_rows` with ``dataset`` and ``source`` columns in front.
    """
    from reid_utils.data.datasets import load_dataset_for_config
    from reid_utils.experiments import corruption_sweep as E

    ds = load_dataset_for_config(cfg) if dataset is None else dataset
    if protocol_of(ds) == "mars_official":
        raise ValueError(
            "dataset: expected the torchreid split (load_dataset_for_config(cfg)); the official "
            "convention is built from it here (gallery + queries + junk)"
        )
    name = canonical_dataset(ds.name)
    protocols = default_protocols(name) if protocols is None else tuple(protocols)
    for p in protocols:
        _check_protocol(p)
    if "mars_official" in protocols and name not in MARS_LAYOUT:
        raise ValueError(f"protocols: mars_official applies to MARS-layout data, not {DATASET_TITLES[name]}")
    backbone = E.get_backbone(cfg, ds, progress=progress)
    clean = E.clip_banks(cfg, backbone, ds, progress=progress, num_threads=num_threads)
    junk = junk_bank(cfg, backbone, progress, num_threads, junk_tracklets) if "mars_official" in protocols else None
    sets = {}
    for kind in ("learned", "mean"):
        model, info = E.get_aggregator(cfg, E.Method(kind), 0, clean, progress=progress, num_threads=num_threads)
        sets[kind] = _cached_set(cfg, model, info["key"] or kind, clean, junk, progress, num_threads)
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
    """Mean and standard deviation over splits (``evaluation.summarize_splits``), percent.

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
    ``rerank_params``: default :data:`RERANK`.
    """
    avail = data_availability(cfg) if availability is None else availability
    if not avail.available:
        return None
    if avail.dataset == "prid2011":
        return summarize_split_results(split_results(cfg, num_splits, progress=progress, rerank_params=rerank_params))
    return our_results(cfg, rerank_params=rerank_params, progress=progress)


# --------------------------------------------------------------------------- #
# tables
# --------------------------------------------------------------------------- #
def comparison_table(table: int, ours: pd.DataFrame | None = None, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """One of the paper's Tables 3-5 with our rows appended, columns aligned.

    Args:
        table: 3, 4 or 5.
        ours: our rows (:func:`our_results` / :func:`summarize_split_results`)
            measured on the dataset of that table (MARS-layout data, i.e. MARS
            or the synthetic benchmark, for Table 3); None: the paper's rows only.
        paper: the paper's rows (default :func:`paper_table`).

    Returns:
        DataFrame: ``source``, ``model``, ``protocol``, the paper's metrics
        (percent), ``"<metric> std"`` when our rows have them (NaN for the
        paper), ``reranking`` and (Table 3) ``backbone_3d`` (True for ours:
        I3D). Paper rows first, in the paper's order.

    Raises:
        ValueError: our rows come from another table's dataset, or lack a
            metric column of the paper's table.
    """
    paper = paper_table(table) if paper is None else paper
    metrics = paper_metrics(paper)
    flags = [c for c in ("reranking", "backbone_3d") if c in paper.columns]
    cols = ["source", "model", "protocol"] + metrics
    if ours is None or not len(ours):
        return paper[cols + flags].reset_index(drop=True)
    lacking = [c for c in ["source", "model", "protocol", "reranking"] + metrics if c not in ours.columns]
    if lacking:
        raise ValueError(f"ours: missing columns {lacking} (Table {table} reports {metrics})")
    if "dataset" in ours.columns:
        wrong = sorted({d for d in ours["dataset"] if DATASET_TABLE.get(canonical_dataset(d)) != table})
        if wrong:
            raise ValueError(
                f"ours: rows measured on {', '.join(wrong)} do not belong beside Table {table} "
                f"({DATASET_TITLES[TABLE_DATASET[table]]})"
            )
    std = [f"{m} std" for m in metrics if f"{m} std" in ours.columns]
    o = ours.copy()
    if "backbone_3d" in flags:
        o["backbone_3d"] = True  # our backbone is the I3D (3D CNN), like the paper's
    out = pd.concat([paper.assign(**{c: np.nan for c in std}), o], ignore_index=True)
    return out[cols + std + flags]


def comparison_tables(ours: pd.DataFrame | None, availability: DataAvailability) -> dict:
    """``{3: df, 4: df, 5: df}``: each paper table, with our rows beside the one we measured."""
    return {t: comparison_table(t, ours if availability.table == t else None) for t in PAPER_TABLE_FILES}


def ours_table(ours: pd.DataFrame) -> pd.DataFrame:
    """Our rows alone for saving (``07_ours``): no CMC arrays, metrics in percent."""
    return ours.drop(columns=[c for c in ("cmc", "method") if c in ours.columns]).reset_index(drop=True)


def reranking_gains(ours: pd.DataFrame | None = None, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """What re-ranking adds, in points: the paper's pairs and ours.

    Paper pairs are rows ``"X + Reranking (...)"`` whose base ``"X (...)"`` is
    also in the table (Table 3: PABR, STA, Ours). Ours: each method and
    protocol, re-ranked minus not re-ranked.

    Returns:
        DataFrame: ``source``, ``model`` (the base row), ``protocol`` and the
        metric differences (percentage points) of the columns present.
    """
    rows = []
    if paper is not None:
        names = set(paper["model"])
        metrics = paper_metrics(paper)
        for _, r in paper.iterrows():
            if " + Reranking" not in r["model"]:
                continue
            base = r["model"].replace(" + Reranking", "")
            if base in names:
                b = paper[paper["model"] == base].iloc[0]
                rows.append(
                    {
                        "source": r["source"],
                        "model": base,
                        "protocol": r["protocol"],
                        **{m: r[m] - b[m] for m in metrics},
                    }
                )
    if ours is not None and len(ours):
        metrics = [m for m in METRICS if m in ours.columns]
        key = "method" if "method" in ours.columns else "model"
        for (src, meth, prot), grp in ours.groupby(["source", key, "protocol"], sort=False):
            on, off = grp[grp["reranking"]], grp[~grp["reranking"]]
            if len(on) != 1 or len(off) != 1:
                raise ValueError(
                    f"ours: expected one row with and one without re-ranking for {meth!r}, "
                    f"{prot!r}; got {len(on)} and {len(off)}"
                )
            rows.append(
                {
                    "source": src,
                    "model": off["model"].iloc[0],
                    "protocol": prot,
                    **{m: on[m].iloc[0] - off[m].iloc[0] for m in metrics},
                }
            )
    return pd.DataFrame(rows)


def reranking_summary(gains: pd.DataFrame, tol: float = 0.05) -> str:
    """Markdown: what re-ranking added to each of our methods and to the paper's pairs, from the numbers.

    Args:
        gains: :func:`reranking_gains` rows.
        tol: a change smaller than this (points) counts as no change (below the tables' rounding).
    """
    if gains is None or not len(gains):
        return "No pair of rows with and without re-ranking to compare."
    metrics = [m for m in METRICS if m in gains.columns]

    def fmt(r):
        return ", ".join(f"{m} {getattr(r, m):+.1f}" for m in metrics if not pd.isna(getattr(r, m)))

    lines = ["What re-ranking adds (re-ranked minus plain, percentage points):"]
    for r in gains.itertuples():
        lines.append(f"- {r.source}: {r.model}, {PROTOCOL_NAMES.get(r.protocol, r.protocol)}: {fmt(r)}")
    paper = gains[gains["source"].str.startswith("paper") & (gains["model"] == "Ours (paper)")]
    ours = gains[gains["source"].str.startswith("ours") & (gains["model"] == OUR_MODELS[("learned", False)])]
    if len(paper) and len(ours):
        p = paper.iloc[0]
        for m in [m for m in ("mAP", "R1") if m in metrics]:
            verdict = {"agrees": [], "disagrees": [], "no change": []}
            for prot, v in zip(ours["protocol"], ours[m]):
                name = PROTOCOL_NAMES.get(prot, prot).split(" (")[0]
                if abs(v) < tol:
                    verdict["no change"].append(name)
                else:
                    verdict["agrees" if np.sign(v) == np.sign(p[m]) else "disagrees"].append(name)
            changes = " and ".join(
                f"{v:+.1f} ({PROTOCOL_NAMES.get(k, k).split(' (')[0]})" for k, v in zip(ours["protocol"], ours[m])
            )
            said = "; ".join(
                f"{k} with the paper's direction under {', '.join(v)}"
                if k != "no change"
                else f"no change (below {tol} points) under {', '.join(v)}"
                for k, v in verdict.items()
                if v
            )
            lines.append(
                f"\nFor {m}, re-ranking changed the paper's own method by {p[m]:+.1f} points on MARS; "
                f"on our data it changed the learned aggregation by {changes}: {said}."
            )
    return "\n".join(lines)
