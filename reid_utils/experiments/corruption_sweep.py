"""The aggregation experiments of notebooks 04 and 05 (Secs. 3.1, 3.2, 4.4; Table 2, Fig. 6).

One place for the logic both notebooks run, so that neither copies it:

* **Clip-feature banks** (:func:`clip_banks`): M clips of L frames per
  tracklet (``features.get_features``, method ``"clips"``) through the frozen
  I3D trained with L_train = ``cfg.agg.clip_len``, for train / query /
  gallery; clean, and with *every* clip corrupted (``corruption.corrupt_clip``
  as the ``frame_transform``). Both are computed once and cached.
* **Corruption levels** (Sec. 4.4): an M_c^max experiment never re-runs the
  I3D. Its test features are assembled from the two banks with a
  :func:`test_plan` that is deterministic per (seed, split, M_c^max); its
  training batches draw a fresh plan every iteration
  (``agg_train.corrupting_transform``).
* **Methods** (one model per method and level, "trained per corruption level
  as in the paper"): the learned aggregator; top-t%-eval, trained once per
  level on the mean of all clip pairs and evaluated at every
  ``cfg.agg.t_percents``; top-t%-train-eval, one model per t in
  {20, 50, 70, 100} (those of them in ``cfg.agg.t_percents``, the paper's
  Table 2 rows; at t = 100 % the selection keeps every pair, so its training
  *is* top-t%-eval's and that model is reused instead of trained twice); and
  the parameter-free mean-feature reference.
* **Caching** (``reid_utils.cache``): every trained aggregator (with its
  training history and wall time) under a key of everything it depends on
  (aggregator config, method, t, level, seed, training banks, mining mode,
  :data:`EXPERIMENT_VERSION`); training checkpoints make an interrupted run
  resume; every level's result rows under a key of the models and test banks.
* **Table 2** (:func:`table2_wide`, :func:`table2_side_by_side`) beside the
  paper's MARS values (:func:`paper_table2`, package data
  ``reid_utils/paper_tables/table2_mars_corruption.csv``, a verbatim copy of
  the values published in the paper), and :func:`claim_check`, which states
  in words whether the paper's claim holds on our numbers.

Metric units: ``mAP`` and ``rank1`` are in [0, 1] in the long results and
in percent in the Table 2 renderings (as in the paper).

Threads: features are extracted and aggregators trained and evaluated with
``torch`` limited to ``num_threads`` CPU threads (default 1; ``None`` leaves
torch's setting). On our shared 2-core machine, torch's default of 2 threads
made the learned aggregator's training step 13-16x and the I3D's feature
extraction up to 80x *slower* than 1 thread whenever other processes competed
for the cores (OpenMP threads waiting for a descheduled sibling).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from reid_utils.cache import ArtifactCache
from reid_utils.config import config_key
from reid_utils.data.corruption import DOWNSCALE, JPEG_QUALITY, assemble_corrupted, corrupt_clip, corruption_plan
from reid_utils.eval.distances import similarity_to_distance
from reid_utils.eval.ranking import evaluate_rank, protocol_of
from reid_utils.paper import paper_table2
from reid_utils.training.aggregator import build_aggregator, corrupting_transform, resolve_mining, train_aggregator
from reid_utils.training.features import FeatureBank, get_features

__all__ = [
    "EXPERIMENT_VERSION",
    "SPLITS",
    "CORRUPTION_KEY",
    "TRAIN_EVAL_PERCENTS",
    "PAPER_METHODS",
    "Method",
    "torch_threads",
    "dataset_protocol",
    "scoring_model",
    "get_backbone",
    "clip_banks",
    "test_plan",
    "level_features",
    "methods_for",
    "train_eval_percents",
    "get_aggregator",
    "evaluate_similarity",
    "topt_scores_all_t",
    "run_level",
    "run_sweep",
    "as_percent",
    "table2_wide",
    "table2_side_by_side",
    "claim_check",
    "training_cost",
    "methods_table",
    "convergence_table",
    "collapse_check",
    "sweep_collapse",
    "corruption_examples",
    "pair_importance",
    "importance_table",
    "importance_by_corruption",
    "importance_summary",
    "importance_panels",
    "corruption_shift",
]

EXPERIMENT_VERSION = 1  # bump when the recipe below changes (invalidates cached models/results)
SPLITS = ("train", "query", "gallery")
_SPLIT_CODE = {"train": 0, "query": 1, "gallery": 2}
CORRUPTION_KEY = f"corrupt_clip(downscale={DOWNSCALE},jpeg_quality={JPEG_QUALITY})"
TRAIN_EVAL_PERCENTS = (20, 50, 70, 100)  # the top-t%-train-eval rows of Table 2
PAPER_METHODS = {"learned": "learned", "topt-eval": "topt-e", "topt-train-eval": "topt-te", "mean": "mean"}


@dataclass(frozen=True)
class Method:
    """One trained model of a corruption level.

    Attributes:
        kind: ``agg_train.build_aggregator`` kind (``learned``, ``topt-eval``,
            ``topt-train-eval``, ``mean``).
        t: t of top-t%-train-eval; None otherwise (top-t%-eval is one model
            evaluated at every t).
    """

    kind: str
    t: float | None = None

    @property
    def label(self) -> str:
        return PAPER_METHODS[self.kind] + ("" if self.t is None else f" t={self.t:g}")


@contextlib.contextmanager
def torch_threads(num_threads: int | None):
    """Temporarily set ``torch.set_num_threads`` (``None``: leave it as is)."""
    old = torch.get_num_threads()
    if num_threads is not None:
        if int(num_threads) < 1:
            raise ValueError(f"num_threads: expected >= 1 or None, got {num_threads}")
        torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------- #
# features
# --------------------------------------------------------------------------- #
def get_backbone(cfg, dataset=None, progress: bool = True):
    """The frozen I3D of Sec. 4.4: trained with L_train = ``cfg.agg.clip_len`` (cache or now)."""
    from reid_utils.training.i3d import get_trained_i3d

    return get_trained_i3d(cfg, clip_len=cfg.agg.clip_len, dataset=dataset, progress=progress)


def _corrupt_all(frames: np.ndarray, tracklet_idx: int, clip_idx: int) -> np.ndarray:
    return corrupt_clip(frames)


def clip_banks(
    cfg, model, dataset, corrupted: bool = False, progress: bool = True, num_threads: int | None = 1
) -> dict[str, FeatureBank]:
    """Clip features of train / query / gallery, clean or with every clip corrupted.

    Args:
        cfg: ``Config`` (``cfg.agg.num_clips`` = M, ``cfg.agg.clip_len`` = L).
        model: the frozen I3D (:func:`get_backbone`).
        dataset: its ``.train``, ``.query``, ``.gallery`` tracklets.
        corrupted: corrupt *every* clip (``corruption.corrupt_clip``); an
            M_c^max experiment then picks clean or corrupted per clip.
        progress: tqdm bars and cache messages.
        num_threads: torch CPU threads while extracting (module doc; on CPU
            only - on CUDA the setting does not matter).

    Returns:
        ``{split: FeatureBank}`` with feats (N, M, D); the clean and corrupted
        banks of a split use the same frames (method ``"clips"`` is
        deterministic), so they are aligned clip by clip.
    """
    out = {}
    for split in SPLITS:
        with torch_threads(num_threads):
            out[split] = get_features(
                cfg,
                model,
                getattr(dataset, split),
                num_clips=cfg.agg.num_clips,
                clip_len=cfg.agg.clip_len,
                method="clips",
                frame_transform=_corrupt_all if corrupted else None,
                transform_key=CORRUPTION_KEY if corrupted else None,
                name=f"aggfeat-{split}{'-corrupted' if corrupted else ''}",
                progress=progress,
            )
    return out


def test_plan(cfg, split: str, num_sequences: int, max_corrupted: int) -> np.ndarray:
    """The fixed corruption plan of a test split at one M_c^max (Sec. 4.4).

    Deterministic per ``(cfg.seed, split, max_corrupted)``: every method of a
    level is evaluated on the same corrupted test set, and a re-run gives it
    again. M_c ~ U{0..M_c^max} per sequence (``corruption.corruption_plan``).

    Returns:
        (N, M) bool, True = corrupted clip.
    """
    if split not in _SPLIT_CODE:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng([int(cfg.seed), 45, _SPLIT_CODE[split], int(max_corrupted)])
    return corruption_plan(num_sequences, cfg.agg.num_clips, int(max_corrupted), rng)


def level_features(cfg, clean: dict, corrupted: dict | None, split: str, max_corrupted: int) -> torch.Tensor:
    """(N, M, D) test features of ``split`` at M_c^max (clean bank when 0)."""
    bank = clean[split]
    if int(max_corrupted) == 0:
        return bank.feats
    if corrupted is None:
        raise ValueError(f"corrupted: needed for max_corrupted={max_corrupted} > 0")
    plan = test_plan(cfg, split, len(bank), max_corrupted)
    return assemble_corrupted(bank.feats, corrupted[split].feats, plan)


# --------------------------------------------------------------------------- #
# methods, training, evaluation
# --------------------------------------------------------------------------- #
def train_eval_percents(cfg) -> tuple:
    """t of the top-t%-train-eval models: {20, 50, 70, 100} within ``cfg.agg.t_percents``."""
    return tuple(t for t in TRAIN_EVAL_PERCENTS if t in tuple(cfg.agg.t_percents))


def methods_for(cfg) -> list[Method]:
    """The models trained at every corruption level (see the module doc)."""
    return [Method("learned"), Method("topt-eval")] + [
        Method("topt-train-eval", float(t)) for t in train_eval_percents(cfg)
    ]


def _agg_hparams(cfg) -> dict:
    """The parts of ``cfg.agg`` a single model depends on (not the sweep's lists)."""
    d = dataclasses.asdict(cfg.agg)
    d.pop("max_corrupted")
    d.pop("t_percents")
    return d


def _model_key(cfg, method: Method, max_corrupted: int, clean: dict, corrupted: dict | None, mining: str) -> str:
    spec = {
        "v": EXPERIMENT_VERSION,
        "agg": _agg_hparams(cfg),
        "seed": int(cfg.seed),
        "kind": method.kind,
        "t": method.t,
        "Mc_max": int(max_corrupted),
        "train": clean["train"].meta.get("key"),
        "mining": mining,
        "train_corrupted": corrupted["train"].meta.get("key") if max_corrupted else None,
    }
    return config_key(spec)


def get_aggregator(
    cfg,
    method: Method,
    max_corrupted: int,
    clean: dict,
    corrupted: dict | None = None,
    mining: str = "auto",
    progress: bool = True,
    num_threads: int | None = 1,
):
    """A trained aggregator of one method and level: from the cache, else trained now.

    Training (``agg_train.train_aggregator``): frozen features of the training
    bank, P x K batches of ``cfg.agg``, Adam at ``cfg.agg.lr`` for
    ``cfg.agg.iterations``, batch-hard triplet on negative similarities; when
    ``max_corrupted > 0`` every batch draws a fresh corruption plan from the
    corrupted training bank. Resumable from a checkpoint in the cache.

    Args:
        cfg: ``Config``.
        method: :class:`Method` (``mean`` has nothing to train and is built directly).
        max_corrupted: M_c^max of the training batches.
        clean, corrupted: the banks of :func:`clip_banks`.
        mining: ``agg_train`` mining mode (``"auto"``: hard for the learned model).
        progress: tqdm bar and cache messages.
        num_threads: torch CPU threads while training (module doc).

    Returns:
        ``(model, info)``: the model in eval mode and a dict with ``history``
        (DataFrame, one row per iteration), ``seconds`` (training wall time of
        the run that produced it; 0 for a reused model) and ``key``
        (top-t%-train-eval at t = 100 also has ``reused_from``).
    """
    D = int(clean["train"].feats.shape[-1])
    a = cfg.agg

    def build():
        return build_aggregator(
            method.kind, D, hidden=a.hidden, dropout=a.dropout, t_percent=method.t or 100.0, seed=cfg.seed
        )

    model = build()
    if method.kind == "mean":
        return model.eval(), {"history": pd.DataFrame(), "seconds": 0.0, "key": None}
    if method.kind == "topt-train-eval" and float(method.t) >= 100.0:
        # t = 100 %: the top-t selection keeps every pair, so training is that of top-t%-eval
        # (the mean of all pairs, the same batches and seed): reuse that model, do not train twice.
        base, info = get_aggregator(
            cfg, Method("topt-eval"), max_corrupted, clean, corrupted, mining, progress, num_threads
        )
        model.load_state_dict(base.state_dict())
        return model.eval(), dict(info, seconds=0.0, reused_from="topt-eval")
    mining = resolve_mining(model, mining)
    key = _model_key(cfg, method, max_corrupted, clean, corrupted, mining)
    cache = ArtifactCache(cfg.cache_root)
    ckpt = cache.path("agg-checkpoint", key)

    def compute() -> dict:
        transform = None
        if int(max_corrupted) > 0:
            if corrupted is None:
                raise ValueError(f"corrupted: needed to train at max_corrupted={max_corrupted}")
            transform = corrupting_transform(corrupted["train"].feats, int(max_corrupted))
        t0 = time.perf_counter()
        with torch_threads(num_threads):
            hist = train_aggregator(
                model,
                clean["train"].feats,
                clean["train"].pids,
                a.iterations,
                a.P,
                a.K,
                a.lr,
                a.margin,
                seed=cfg.seed,
                ckpt_path=ckpt,
                ckpt_every=max(1, a.iterations // 4),
                batch_transform=transform,
                mining=mining,
                progress=progress,
            )
        return {
            "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "history": hist.to_dict("records"),
            "seconds": time.perf_counter() - t0,
            "steps_seconds": float(hist["seconds"].sum()) if len(hist) else 0.0,
            "method": dataclasses.asdict(method),
            "Mc_max": int(max_corrupted),
            "key": key,
        }

    entry = cache.get_or_compute("agg-model", key, compute, verbose=progress)
    for p in (ckpt, ckpt.with_name(ckpt.name + ".sha256")):  # finished: the resume point is obsolete
        p.unlink(missing_ok=True)
    model = build()
    model.load_state_dict(entry["state"])
    return model.eval(), {"history": pd.DataFrame(entry["history"]), "seconds": entry["seconds"], "key": key}


def dataset_protocol(dataset) -> str:
    """The ``evaluate_rank`` protocol of a dataset's query/gallery split (``evaluation.protocol_of``)."""
    return protocol_of(dataset)


def evaluate_similarity(S: torch.Tensor, query: FeatureBank, gallery: FeatureBank, protocol: str = "torchreid") -> dict:
    """mAP and rank-1 of a (Q, G) similarity matrix (distance = -similarity).

    Args:
        S: (Q, G) similarities. query, gallery: banks with pids and camids.
        protocol: ``evaluation.evaluate_rank`` protocol.

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


def _score(model, q: torch.Tensor, g: torch.Tensor, progress: bool) -> torch.Tensor:
    return model.similarity_matrix(q, g, progress=progress)


@torch.no_grad()
def topt_scores_all_t(
    model, q: torch.Tensor, g: torch.Tensor, t_percents: Iterable[float], max_elems: int = 1 << 24
) -> dict:
    """Eq. 9 at every t from one top-t%-eval model, sorting each pair's cosines once.

    Equivalent to ``TopTAggregator(dim, t).similarity_matrix(q, g)`` with the
    same weights for each t (the mean of the k = ``top_t_count(t, M^2)``
    largest projected clip-pair cosines), but the cosines are computed and
    sorted once for all t instead of once per t.

    Args:
        model: a :class:`~reid_utils.aggregation.TopTAggregator` (its t is ignored).
        q: (Q, M, D); g: (G, M, D) clip features.
        t_percents: the t values.
        max_elems: query rows are processed in chunks of about this many
            clip-pair cosines (bounded memory).

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


def run_level(
    cfg,
    max_corrupted: int,
    clean: dict,
    corrupted: dict | None = None,
    protocol: str = "torchreid",
    mining: str = "auto",
    progress: bool = True,
    num_threads: int | None = 1,
) -> pd.DataFrame:
    """Train (or load) every method of one corruption level and evaluate it.

    ``num_threads``: torch CPU threads for training and scoring (module doc).

    Returns:
        Long DataFrame, one row per evaluated (method, t): ``method`` (paper
        name: ``learned``, ``topt-e``, ``topt-te``, ``mean``), ``t`` (NaN for
        learned and mean), ``Mc_max``, ``mAP``, ``rank1`` (in [0, 1]),
        ``train_seconds`` (of the model; top-t%-eval's one model is shared by
        its t rows) and ``eval_seconds`` (scoring + ranking; for top-t%-eval
        counted from the start of its shared scoring). Cached under a key of
        the models and test banks.
    """
    mc = int(max_corrupted)
    ms = methods_for(cfg)
    models = {
        m: get_aggregator(cfg, m, mc, clean, corrupted, mining=mining, progress=progress, num_threads=num_threads)
        for m in ms
    }
    spec = {
        "v": EXPERIMENT_VERSION,
        "models": sorted(info["key"] for _, info in models.values()),
        "t_percents": list(cfg.agg.t_percents),
        "seed": int(cfg.seed),
        "Mc_max": mc,
        "query": clean["query"].meta.get("key"),
        "gallery": clean["gallery"].meta.get("key"),
        "corrupted": (
            [corrupted[s].meta.get("key") for s in ("query", "gallery")] if mc and corrupted is not None else None
        ),
        "protocol": protocol,
    }

    def compute():
        q = level_features(cfg, clean, corrupted, "query", mc)
        g = level_features(cfg, clean, corrupted, "gallery", mc)
        rows = []

        def add(method, t, model, train_s):
            t0 = time.perf_counter()
            add_scores(method, t, _score(model, q, g, progress), train_s, t0)

        def add_scores(method, t, S, train_s, t0):
            r = evaluate_similarity(S, clean["query"], clean["gallery"], protocol)
            rows.append(
                {
                    "method": method,
                    "t": np.nan if t is None else float(t),
                    "Mc_max": mc,
                    "mAP": r["mAP"],
                    "rank1": r["rank1"],
                    "train_seconds": train_s,
                    "eval_seconds": time.perf_counter() - t0,
                }
            )

        add("mean", None, build_aggregator("mean", q.shape[-1]), 0.0)
        for m, (model, info) in models.items():
            if m.kind == "topt-eval":  # one model, every t: cosines sorted once
                t0 = time.perf_counter()
                scores = topt_scores_all_t(model, q, g, cfg.agg.t_percents)
                for t in cfg.agg.t_percents:
                    add_scores("topt-e", t, scores[t], info["seconds"], t0)
            elif m.kind == "topt-train-eval":  # same Eq. 9 scores, ~4x faster than similarity_matrix
                t0 = time.perf_counter()
                add_scores("topt-te", m.t, topt_scores_all_t(model, q, g, [m.t])[m.t], info["seconds"], t0)
            else:
                add(PAPER_METHODS[m.kind], m.t, model, info["seconds"])
        return rows

    with torch_threads(num_threads):
        rows = ArtifactCache(cfg.cache_root).get_or_compute("agg-results", config_key(spec), compute, verbose=progress)
    return pd.DataFrame(rows)


def run_sweep(
    cfg,
    clean: dict,
    corrupted: dict | None,
    levels: Iterable[int] | None = None,
    protocol: str = "torchreid",
    mining: str = "auto",
    progress: bool = True,
    num_threads: int | None = 1,
) -> pd.DataFrame:
    """:func:`run_level` for every M_c^max (default ``cfg.agg.max_corrupted``), concatenated."""
    from tqdm.auto import tqdm

    levels = list(cfg.agg.max_corrupted if levels is None else levels)
    out = []
    for mc in tqdm(levels, desc="corruption levels", disable=not progress):
        out.append(
            run_level(
                cfg, mc, clean, corrupted, protocol=protocol, mining=mining, progress=progress, num_threads=num_threads
            )
        )
    return pd.concat(out, ignore_index=True)


def methods_table(results: pd.DataFrame, t_show: Iterable[float] | None = None) -> pd.DataFrame:
    """mAP / rank-1 (percent) of one level's methods, indexed by a readable label.

    Args:
        results: :func:`run_level` rows (one level).
        t_show: top-t%-eval rows to keep (default: all).
    """
    r = results
    if t_show is not None:
        r = r[(r["method"] != "topt-e") | r["t"].isin([float(t) for t in t_show])]
    labels = [m + ("" if np.isnan(t) else f" t={t:g}%") for m, t in zip(r["method"], r["t"])]
    out = as_percent(r).assign(method=labels).set_index("method")[["mAP", "rank1"]]
    return out


def convergence_table(histories: dict, parts: int = 5) -> pd.DataFrame:
    """Mean training loss per ``parts``-th of each run: has the loss flattened?

    Args:
        histories: ``{label: history DataFrame}`` (``iteration``, ``loss``).
        parts: number of equal consecutive blocks of iterations.

    Returns:
        DataFrame, one row per block (index: last iteration of the block), one
        column per label, plus a last row ``"change, last block (%)"``: the
        relative change of the mean loss from the second-to-last to the last
        block (a flattened curve has a change of a few percent, within the
        batch-to-batch noise).
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

    A flat loss can mean either. The batch-hard triplet loss has a trivial
    stationary point where all similarities are equal: the loss then sits at
    exactly the margin. This happens when the hardest negative starts out
    more similar than the hardest positive for nearly every anchor (weak
    features). Flagged when, over the last ``last`` fraction of the run, the
    mean loss is within ``tol * margin`` of the margin and the mined
    positive and negative similarities are within ``tol`` of each other.

    Args:
        histories: ``{label: history DataFrame}``.
        margin: the triplet margin of the runs.

    Returns:
        DataFrame, one row per label: ``loss``, ``hard_pos_sim``,
        ``hard_neg_sim`` (means over the end of the run) and ``collapsed``.
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


def sweep_collapse(cfg, clean: dict, corrupted: dict | None, levels: Iterable[int]) -> pd.DataFrame:
    """:func:`collapse_check` of every trained model of the sweep (loaded from the cache).

    Returns:
        DataFrame indexed by (Mc_max, model label) with the columns of
        :func:`collapse_check`.
    """
    out = []
    for mc in levels:
        hist = {}
        for m in methods_for(cfg):
            _, info = get_aggregator(cfg, m, int(mc), clean, corrupted, progress=False)
            if "reused_from" not in info:
                hist[m.label] = info["history"]
        out.append(collapse_check(hist, cfg.agg.margin).assign(Mc_max=int(mc)))
    df = pd.concat(out)
    df.index.name = "model"
    return df.reset_index().set_index(["Mc_max", "model"])


def training_cost(results: pd.DataFrame) -> pd.DataFrame:
    """Training wall time (s) per level and method (one value per trained model; 0: reused)."""
    r = results[results["method"] != "mean"].copy()
    r["model"] = np.where(r["method"] == "topt-te", r["method"] + " t=" + r["t"].map("{:g}".format), r["method"])
    return r.groupby(["Mc_max", "model"])["train_seconds"].first().unstack("model")


# --------------------------------------------------------------------------- #
# Table 2 and the claim
# --------------------------------------------------------------------------- #


def scoring_model(cfg, model):
    """``model`` in eval mode on ``cfg.torch_device()``, where query x gallery scoring runs
    (on CUDA ``similarity_matrix`` then picks the fused kernel); aggregators are trained
    and cached on the CPU."""
    return model.to(cfg.torch_device()).eval()


def as_percent(results: pd.DataFrame, metrics: Sequence[str] = ("mAP", "rank1")) -> pd.DataFrame:
    """Our long results with the metrics in percent (the paper's unit)."""
    out = results.copy()
    for m in metrics:
        out[m] = 100 * out[m]
    return out


_METHOD_ORDER = {"mean": 0, "topt-e": 1, "topt-te": 2, "learned": 3}


def _sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    keys = [df.index.get_level_values("method").map(_METHOD_ORDER), df.index.get_level_values("t").fillna(-1)]
    order = np.lexsort(keys[::-1])
    return df.iloc[order]


def table2_wide(results: pd.DataFrame, metrics: Sequence[str] = ("mAP", "rank1")) -> pd.DataFrame:
    """Our Table 2: rows (method, t), columns (metric, M_c^max), in percent.

    Args:
        results: long results of :func:`run_sweep` (metrics in [0, 1]).
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

    Rows (method, t, source), columns M_c^max; values in percent. ``source``
    is ``"ours (synthetic)"`` or ``"paper (MARS)"``; rows the paper does not
    have (the mean-feature reference) appear for ours only, and levels we
    did not run are left out.
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


def _best(df: pd.DataFrame, metric: str, methods: Sequence[str]) -> pd.DataFrame:
    """Per level, the row of ``methods`` with the highest ``metric``."""
    sub = df[df["method"].isin(methods)]
    return sub.loc[sub.groupby("Mc_max")[metric].idxmax()].set_index("Mc_max")


def claim_check(
    results: pd.DataFrame, metric: str = "mAP", source: str = "our synthetic benchmark", scale: float = 100.0
) -> dict:
    """Does the learned method degrade more gracefully than the best top-t%? (Sec. 4.4)

    The paper's claim: comparable to top-t% at low corruption, and clearly
    better at high corruption (M_c^max = 7: learned 69.9 vs the best
    top-t%-eval 49.3 mAP). Compared here at the lowest and highest level run:
    the learned method against the best top-t% row of *either* variant at
    that level (an oracle choice of t and variant, as in the paper's text).

    Args:
        results: long results (one row per method, t, Mc_max; ``metric`` in
            [0, 1], or already in percent with ``scale=1``).
        metric: ``"mAP"`` or ``"rank1"``.
        source: how the sentence names the data.

    Returns:
        dict with ``lo``/``hi`` (levels), ``learned``/``best_topt`` (metric at
        each, percent), ``best_label`` (which top-t row), ``drop_learned``,
        ``drop_topt`` (points lost from lo to hi), ``gap_lo``/``gap_hi``
        (learned minus best top-t), ``holds`` (bool: learned better than the
        best top-t at hi *and* it lost fewer points) and ``text``.
    """
    df = results.copy()
    df[metric] = df[metric] * scale
    levels = sorted(df["Mc_max"].unique())
    lo, hi = int(levels[0]), int(levels[-1])
    learned = df[df["method"] == "learned"].set_index("Mc_max")[metric]
    best = _best(df, metric, ["topt-e", "topt-te"])
    lab = {mc: f"{row['method']} t={row['t']:g}%" for mc, row in best.iterrows()}
    out = {
        "metric": metric,
        "lo": lo,
        "hi": hi,
        "learned": {lo: float(learned[lo]), hi: float(learned[hi])},
        "best_topt": {lo: float(best.loc[lo, metric]), hi: float(best.loc[hi, metric])},
        "best_label": {lo: lab[lo], hi: lab[hi]},
    }
    out["drop_learned"] = out["learned"][lo] - out["learned"][hi]
    out["drop_topt"] = out["best_topt"][lo] - out["best_topt"][hi]
    out["gap_lo"] = out["learned"][lo] - out["best_topt"][lo]
    out["gap_hi"] = out["learned"][hi] - out["best_topt"][hi]
    out["holds"] = bool(out["gap_hi"] > 0 and out["drop_learned"] < out["drop_topt"])
    if lo == hi:
        out["holds"] = False
    verdict = "**holds**" if out["holds"] else "**does not hold**"
    m = "mAP" if metric == "mAP" else "rank-1"
    out["text"] = (
        f"On {source}, at M_c^max = {lo} the learned aggregation reaches {out['learned'][lo]:.1f} % {m} "
        f"against {out['best_topt'][lo]:.1f} % for the best top-t% row ({lab[lo]}), a difference of "
        f"{out['gap_lo']:+.1f} points. At M_c^max = {hi} it reaches {out['learned'][hi]:.1f} % against "
        f"{out['best_topt'][hi]:.1f} % ({lab[hi]}), {out['gap_hi']:+.1f} points. From M_c^max = {lo} to "
        f"{hi} the learned method loses {out['drop_learned']:.1f} points and the best top-t% "
        f"{out['drop_topt']:.1f}. The paper's claim (the learned method degrades more gracefully and "
        f"beats the best top-t% at high corruption) {verdict} here for {m}."
    )
    return out


# --------------------------------------------------------------------------- #
# looking inside: Fig. 5 examples, importance scores
# --------------------------------------------------------------------------- #
def corruption_examples(cfg, tracklets: Sequence, num: int = 3, seed: int = 0) -> list:
    """Clean and corrupted versions of one clip of a few tracklets (Fig. 5).

    Picks ``num`` tracklets at random (``seed``), takes the middle one of their
    M clips (``sampling.sample_clips``) at the network input size, and
    corrupts it with ``corruption.corrupt_clip``.

    Returns:
        list of ``(tracklet, clean (L, H, W, 3) uint8, corrupted (L, H, W, 3) uint8)``.
    """
    from reid_utils.data.sampling import sample_clips
    from reid_utils.data.transforms import input_size, load_frames

    if not len(tracklets):
        raise ValueError("tracklets: expected at least one tracklet")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(tracklets), size=min(num, len(tracklets)), replace=False)
    out = []
    for i in pick:
        t = tracklets[int(i)]
        clips = sample_clips(len(t.frames), cfg.agg.num_clips, cfg.agg.clip_len)
        idx = clips[len(clips) // 2]
        clean = load_frames([t.frames[k] for k in idx], input_size(cfg))
        out.append((t, clean, corrupt_clip(clean)))
    return out


@torch.no_grad()
def pair_importance(model, fq: torch.Tensor, fg: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Importance scores and clip-pair cosines of sequence pairs, as M x M maps.

    Args:
        model: a :class:`LearnedClipAggregator` (evaluated in eval mode).
        fq, fg: (B, M, D) clip features of B query / gallery sequences.

    Returns:
        ``(alpha, cos)``: two (B, M, M) arrays, ``alpha[b, i, j]`` the score of
        query clip i with gallery clip j (visiting order t = i*M + j).
    """
    was = model.training
    model.eval()
    try:
        _, alpha = model(fq, fg)
    finally:
        model.train(was)
    B, M = fq.shape[0], fq.shape[1]
    qn = torch.nn.functional.normalize(fq, dim=-1)
    gn = torch.nn.functional.normalize(fg, dim=-1)
    cos = torch.einsum("bid,bjd->bij", qn, gn)
    return alpha.reshape(B, M, fg.shape[1]).numpy(), cos.numpy()


def importance_table(
    model,
    query: FeatureBank,
    gallery: FeatureBank,
    num_queries: int = 20,
    seed: int = 0,
    q_feats: torch.Tensor | None = None,
    g_feats: torch.Tensor | None = None,
    num_threads: int | None = 1,
) -> pd.DataFrame:
    """Every clip pair of ``num_queries`` random queries x all gallery sequences.

    Args:
        model: a trained :class:`LearnedClipAggregator`.
        query, gallery: banks (pids); ``q_feats``/``g_feats`` override their
            features (e.g. a corrupted test set).
        num_queries: queries drawn at random (``seed``).
        num_threads: torch CPU threads (module doc).

    Returns:
        DataFrame, one row per clip pair: ``q``, ``g`` (sequence indices),
        ``i``, ``j`` (clip indices), ``alpha``, ``alpha_rel`` (alpha over the
        mean alpha of its sequence pair: 1 = uniform weighting), ``cos`` and
        ``same`` (same identity).
    """
    qf = query.feats if q_feats is None else q_feats
    gf = gallery.feats if g_feats is None else g_feats
    rng = np.random.default_rng(seed)
    qs = np.sort(rng.choice(len(query), size=min(num_queries, len(query)), replace=False))
    G, M = gf.shape[0], gf.shape[1]
    frames = []
    for qi in qs:
        with torch_threads(num_threads):
            alpha, cos = pair_importance(model, qf[qi : qi + 1].expand(G, -1, -1), gf)
        rel = alpha / alpha.mean(axis=(1, 2), keepdims=True)
        ii, jj = np.meshgrid(np.arange(qf.shape[1]), np.arange(M), indexing="ij")
        frames.append(
            pd.DataFrame(
                {
                    "q": int(qi),
                    "g": np.repeat(np.arange(G), ii.size),
                    "i": np.tile(ii.ravel(), G),
                    "j": np.tile(jj.ravel(), G),
                    "alpha": alpha.reshape(-1),
                    "alpha_rel": rel.reshape(-1),
                    "cos": cos.reshape(-1),
                    "same": np.repeat(gallery.pids == query.pids[qi], ii.size),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def importance_by_corruption(table: pd.DataFrame, q_plan: np.ndarray, g_plan: np.ndarray) -> pd.DataFrame:
    """Mean relative importance of clean-clean, mixed and corrupted-corrupted clip pairs.

    Args:
        table: :func:`importance_table` rows.
        q_plan, g_plan: (Q, M), (G, M) corruption plans of the test features used.

    Returns:
        DataFrame indexed by pair type with the mean ``alpha_rel``, the mean
        cosine and the number of clip pairs.
    """
    qb = np.asarray(q_plan)[table["q"].to_numpy(), table["i"].to_numpy()]
    gb = np.asarray(g_plan)[table["g"].to_numpy(), table["j"].to_numpy()]
    kind = np.where(qb & gb, "both corrupted", np.where(qb | gb, "one corrupted", "both clean"))
    out = (
        table.assign(pair=kind)
        .groupby("pair")
        .agg(alpha_rel=("alpha_rel", "mean"), cos=("cos", "mean"), pairs=("cos", "size"))
    )
    return out.reindex([k for k in ("both clean", "one corrupted", "both corrupted") if k in out.index])


def importance_summary(table: pd.DataFrame) -> pd.DataFrame:
    """How far the learned weights are from uniform, and how they relate to the cosine.

    Args:
        table: :func:`importance_table` rows.

    Returns:
        One-column DataFrame: spread of ``alpha_rel`` (std, 5th/95th
        percentiles), the median over sequence pairs of the *effective
        fraction of clip pairs used*, (sum alpha)^2 / (T sum alpha^2) with T =
        M^2 (1: uniform weights, 1/T: all weight on one pair), the mean
        ``alpha_rel`` of the first and of the last M visiting steps (the
        recurrence visits the pairs in a fixed order), and Spearman
        rank correlations of alpha with the clip-pair cosine (pooled over all
        clip pairs, and the mean over sequence pairs of the within-pair
        correlation).
    """
    per = table.groupby(["q", "g"])
    within = per[["alpha", "cos"]].corr(method="spearman").xs("alpha", level=2)["cos"]
    eff = per["alpha"].apply(lambda a: float(a.sum() ** 2 / (len(a) * (a**2).sum())))
    vals = {
        "clip pairs": len(table),
        "std of alpha / mean": float(table["alpha_rel"].std()),
        "5th percentile of alpha / mean": float(table["alpha_rel"].quantile(0.05)),
        "95th percentile of alpha / mean": float(table["alpha_rel"].quantile(0.95)),
        "effective fraction of clip pairs used, median": float(eff.median()),
        "mean alpha / mean, first query clip (steps t < M)": float(table.loc[table["i"] == 0, "alpha_rel"].mean()),
        "mean alpha / mean, last query clip (last M steps)": float(
            table.loc[table["i"] == table["i"].max(), "alpha_rel"].mean()
        ),
        "Spearman(alpha, cos), all clip pairs": float(table["alpha"].corr(table["cos"], method="spearman")),
        "Spearman(alpha, cos) within a sequence pair, mean": float(within.mean()),
    }
    return pd.DataFrame({"value": vals})


@torch.no_grad()
def importance_panels(
    model,
    query: FeatureBank,
    gallery: FeatureBank,
    query_index: int = 0,
    q_feats: torch.Tensor | None = None,
    g_feats: torch.Tensor | None = None,
    protocol_same_camera: bool = True,
) -> list:
    """M x M importance and cosine maps of one query with two gallery sequences.

    The gallery sequences are the query's best-scored true match and its
    best-scored impostor (the pair the batch-hard loss cares about); with
    ``protocol_same_camera`` the query's same-identity same-camera gallery
    items are skipped, as in the evaluation protocol.

    Returns:
        ``[(title, alpha (M, M), cos (M, M)), ...]`` for ``viz.plot_importance_heatmaps``.
    """
    qf = query.feats if q_feats is None else q_feats
    gf = gallery.feats if g_feats is None else g_feats
    qi = int(query_index)
    s = model.similarity_matrix(qf[qi : qi + 1], gf, progress=False)[0].numpy()
    same = gallery.pids == query.pids[qi]
    ok = ~(same & (gallery.camids == query.camids[qi])) if protocol_same_camera else np.ones_like(same)
    out = []
    for name, mask in (("true match", same & ok), ("impostor", ~same & ok)):
        if not mask.any():
            continue
        gi = int(np.flatnonzero(mask)[np.argmax(s[mask])])
        alpha, cos = pair_importance(model, qf[qi : qi + 1], gf[gi : gi + 1])
        title = f"query {qi} (pid {query.pids[qi]}) vs {name} {gi} (pid {gallery.pids[gi]})\nsimilarity s = {s[gi]:.3f}"
        out.append((title, alpha[0], cos[0]))
    return out


def corruption_shift(clean: FeatureBank, corrupted: FeatureBank, seed: int = 0, num_pairs: int = 20000) -> pd.DataFrame:
    """How far corruption moves a clip feature, against the spread of clean features.

    Returns:
        DataFrame (rows: comparisons, columns: mean, std of the cosine):
        a clip vs its own corrupted version; two clean clips of the same
        sequence; two clean clips of different sequences; two corrupted clips
        of different sequences (if corruption collapses features towards a
        common "blurry" direction, this is high - the trap for averaging).
    """
    import torch.nn.functional as F

    c = F.normalize(clean.feats, dim=-1)
    x = F.normalize(corrupted.feats, dim=-1)
    N, M, _ = c.shape
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, N, num_pairs), rng.integers(0, N, num_pairs)
    keep = a != b
    a, b = a[keep], b[keep]
    i, j = rng.integers(0, M, len(a)), rng.integers(0, M, len(a))
    j2 = (i + 1 + rng.integers(0, max(1, M - 1), len(a))) % M  # another clip of the same sequence
    rows = {
        "clip vs its corrupted version": (c * x).sum(-1).flatten(),
        "clean clips, same sequence": (c[a, i] * c[a, j2]).sum(-1),
        "clean clips, different sequences": (c[a, i] * c[b, j]).sum(-1),
        "corrupted clips, different sequences": (x[a, i] * x[b, j]).sum(-1),
    }
    return pd.DataFrame({k: {"mean cosine": float(v.mean()), "std": float(v.std())} for k, v in rows.items()}).T
