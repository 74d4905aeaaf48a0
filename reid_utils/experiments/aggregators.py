"""The aggregators of one corruption level: which are trained, and training them once (Secs. 3.2, 4.4).

One model per method and level ("trained per corruption level as in the paper", Table 2):
the learned aggregator (Sec. 3.1); top-t%-eval (Eq. 9), trained once per level on the mean
of all clip pairs and evaluated at every ``cfg.agg.t_percents``; top-t%-train-eval, one
model per t in {20, 50, 70, 100} within ``cfg.agg.t_percents`` (at t = 100 % it keeps every
pair, so its training *is* top-t%-eval's and that model is reused); the parameter-free mean
feature needs no training. Every trained model is cached (``reid_utils.cache``, kind
``"agg-model"``) with its history and wall time; a training checkpoint makes an interrupted
run resume.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import pandas as pd
import torch

from reid_utils.cache import ArtifactCache, artifact_key, cached
from reid_utils.data.tracklets import DatasetError
from reid_utils.experiments.clip_banks import VAL_SPLITS, ClipBanks
from reid_utils.training.aggregator import build_aggregator, corrupting_transform, resolve_mining, train_aggregator
from reid_utils.training.result import TrainedModel

__all__ = [
    "TRAIN_EVAL_PERCENTS",
    "PAPER_METHODS",
    "Method",
    "train_eval_percents",
    "methods_for",
    "get_aggregator",
    "train_all",
    "scoring_model",
]

TRAIN_EVAL_PERCENTS = (20, 50, 70, 100)  # the top-t%-train-eval rows of Table 2
PAPER_METHODS = {"learned": "learned", "topt-eval": "topt-e", "topt-train-eval": "topt-te", "mean": "mean"}


@dataclass(frozen=True)
class Method:
    """One trained model of a corruption level.

    Attributes:
        kind: ``reid_utils.training.aggregator.build_aggregator`` kind (``learned``,
            ``topt-eval``, ``topt-train-eval``, ``mean``).
        t: t of top-t%-train-eval; None otherwise (top-t%-eval is one model evaluated
            at every t).
    """

    kind: str
    t: float | None = None

    @property
    def label(self) -> str:
        return PAPER_METHODS[self.kind] + ("" if self.t is None else f" t={self.t:g}")


def train_eval_percents(cfg) -> tuple:
    """t of the top-t%-train-eval models: {20, 50, 70, 100} within ``cfg.agg.t_percents``."""
    return tuple(t for t in TRAIN_EVAL_PERCENTS if t in tuple(cfg.agg.t_percents))


def methods_for(cfg) -> list[Method]:
    """The models trained at every corruption level (see the module doc), in training order."""
    return [Method("learned"), Method("topt-eval")] + [
        Method("topt-train-eval", float(t)) for t in train_eval_percents(cfg)
    ]


def _agg_hparams(cfg) -> dict:
    """The parts of ``cfg.agg`` a single model depends on (not the sweep's lists)."""
    d = dataclasses.asdict(cfg.agg)
    d.pop("max_corrupted")
    d.pop("t_percents")
    return d


def _build(cfg, method: Method, dim: int) -> torch.nn.Module:
    a = cfg.agg
    return build_aggregator(
        method.kind,
        dim,
        hidden=a.hidden,
        dropout=a.dropout,
        t_percent=method.t or 100.0,
        seed=cfg.seed,
        neck=a.topt_neck,
    )


def _model_spec(banks: ClipBanks, method: Method, level: int, mining: str) -> dict:
    return {
        "agg": _agg_hparams(banks.cfg),
        "seed": int(banks.cfg.seed),
        "kind": method.kind,
        "t": method.t,
        "Mc_max": level,
        "train": banks.clean["train"].meta.get("key"),
        "mining": mining,
        "train_corrupted": banks.corrupted_bank("train", level).meta.get("key") if level else None,
        "val": [banks.clean[s].meta.get("key") for s in VAL_SPLITS] if banks.has_validation else None,
    }


def _trained_as(method: Method) -> Method | None:
    """The model :func:`get_aggregator` trains for ``method``: None for the mean feature (nothing
    to train), top-t%-eval's for top-t%-train-eval at t = 100 % (the same training), else itself."""
    if method.kind == "mean":
        return None
    if method.kind == "topt-train-eval" and float(method.t) >= 100.0:
        return Method("topt-eval")
    return method


def _model_key(banks: ClipBanks, method: Method, level: int, mining: str) -> tuple[str, dict, str]:
    """``(mining mode, cache spec, cache key)`` of a trained ``method`` at M_c^max = ``level``."""
    dim = int(banks.clean["train"].feats.shape[-1])
    mode = resolve_mining(_build(banks.cfg, method, dim), mining)
    spec = _model_spec(banks, method, level, mode)
    return mode, spec, artifact_key("agg-model", spec)


def _val_eval(banks: ClipBanks, level: int):
    """``eval_fn`` of the training: mAP on the validation identities at M_c^max = ``level``
    (the plateau check of notebook 04), or None without a validation set."""
    if not banks.has_validation:
        return None
    from reid_utils.eval.distances import similarity_to_distance
    from reid_utils.eval.ranking import evaluate_rank

    q, g = banks.features("val_query", level), banks.features("val_gallery", level)
    qb, gb = banks.clean["val_query"], banks.clean["val_gallery"]

    def evaluate(model) -> dict:
        S = model.similarity_matrix(q, g, progress=False)
        _, mAP = evaluate_rank(similarity_to_distance(S), qb.pids, gb.pids, qb.camids, gb.camids, max_rank=1)
        return {"val_mAP": float(mAP)}

    return evaluate


def _train(banks: ClipBanks, model, method: Method, level: int, mining: str, key: str, progress: bool) -> dict:
    """Train ``model`` in place (resumable from its checkpoint); the cache entry."""
    cfg, a, train = banks.cfg, banks.cfg.agg, banks.clean["train"]
    transform = None
    if level > 0:
        transform = corrupting_transform(banks.corrupted_bank("train", level).feats, level)
    t0 = time.perf_counter()
    hist = train_aggregator(
        model,
        train.feats,
        train.pids,
        a.iterations,
        a.P,
        a.K,
        a.lr,
        a.margin,
        seed=cfg.seed,
        ckpt_path=ArtifactCache(cfg.cache_root).path("agg-checkpoint", key),
        ckpt_every=max(1, a.iterations // 4),
        batch_transform=transform,
        mining=mining,
        progress=progress,
        eval_fn=_val_eval(banks, level),
        eval_every=max(1, a.iterations // 5),
        threads=a.train_threads,
    )
    return {
        "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": hist.to_dict("records"),
        "seconds": time.perf_counter() - t0,
        "steps_seconds": float(hist["seconds"].sum()) if len(hist) else 0.0,
        "method": dataclasses.asdict(method),
        "Mc_max": level,
        "key": key,
    }


def get_aggregator(
    banks: ClipBanks, method: Method, level: int, mining: str = "auto", progress: bool = True
) -> TrainedModel:
    """A trained aggregator of one method and level: from the cache, else trained now.

    Training (``reid_utils.training.aggregator.train_aggregator``): frozen features of the
    training bank, P x K batches of ``cfg.agg``, Adam at ``cfg.agg.lr`` for
    ``cfg.agg.iterations``, batch-hard triplet on negative similarities; when ``level > 0``
    every batch draws a fresh corruption plan from the corrupted training bank.

    Args:
        banks: the experiment's :class:`ClipBanks` (corrupted ones needed when ``level > 0``).
        method: :class:`Method` (``mean`` has nothing to train and is built directly).
        level: M_c^max of the training batches.
        mining: training mining mode (``"auto"``: hard for the learned model).
        progress: tqdm bar and cache messages.

    Returns:
        ``TrainedModel``: the model in eval mode (CPU), its cache key (``"mean"`` for the
        mean feature), its ``history`` (one row per iteration), ``seconds`` (training wall
        time of the run that produced it; 0 for a reused model) and ``info`` with
        ``method``, ``Mc_max`` (top-t%-train-eval at t = 100 also ``reused_from``).
    """
    cfg, level = banks.cfg, int(level)
    dim = int(banks.clean["train"].feats.shape[-1])
    info = {"method": method, "Mc_max": level}
    model = _build(cfg, method, dim)
    if method.kind == "mean":
        return TrainedModel(model.eval(), "mean", pd.DataFrame(), 0.0, info)
    if not len(banks.clean["train"]):
        raise DatasetError(
            "get_aggregator: the training clip bank is empty (a query/gallery-only dataset "
            "loads for evaluation only); expected training tracklets"
        )
    if _trained_as(method) != method:
        # t = 100 %: the top-t selection keeps every pair, so training is that of top-t%-eval
        # (the mean of all pairs, the same batches and seed): reuse that model, do not train twice.
        base = get_aggregator(banks, _trained_as(method), level, mining, progress)
        model.load_state_dict(base.model.state_dict())
        return TrainedModel(model.eval(), base.key, base.history, 0.0, dict(info, reused_from="topt-eval"))
    mining, spec, key = _model_key(banks, method, level, mining)
    entry = cached(
        cfg.cache_root,
        "agg-model",
        spec,
        lambda: _train(banks, model, method, level, mining, key, progress),
        verbose=progress,
    )
    ckpt = ArtifactCache(cfg.cache_root).path("agg-checkpoint", key)
    for p in (ckpt, ckpt.with_name(ckpt.name + ".sha256")):  # finished: the resume point is obsolete
        p.unlink(missing_ok=True)
    model = _build(cfg, method, dim)
    model.load_state_dict(entry["state"])
    info["steps_seconds"] = entry["steps_seconds"]
    return TrainedModel(model.eval(), key, pd.DataFrame(entry["history"]), entry["seconds"], info)


def _pending(banks: ClipBanks, jobs, mining: str) -> list[tuple[Method, int]]:
    """The (method, level) jobs whose model is not in the cache yet, learned ones first
    (the longest trainings start first), without repeats, the mean feature and the reused
    top-t%-train-eval at t = 100 % (:func:`get_aggregator`)."""
    cache, out = ArtifactCache(banks.cfg.cache_root), []
    for method, level in jobs:
        method = _trained_as(method)
        if method is None or (method, int(level)) in out:
            continue
        if not cache.has("agg-model", _model_key(banks, method, int(level), mining)[2]):
            out.append((method, int(level)))
    return sorted(out, key=lambda j: j[0].kind != "learned")


def _train_job(banks: ClipBanks, method: Method, level: int, mining: str) -> float:
    """Worker of :func:`train_all`: train one model into the cache; its wall time (s)."""
    return get_aggregator(banks, method, level, mining=mining, progress=False).seconds


def default_workers(cfg) -> int:
    """Processes of :func:`train_all`: ``$REID_WORKERS`` if set, else one per CPU core when
    ``cfg.agg.train_threads`` is 1 (cores / threads when larger); 1 when it is 0 (a training
    then takes every core)."""
    env = os.environ.get("REID_WORKERS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"$REID_WORKERS: expected a positive integer, got {env!r}")
        return int(env)
    threads = int(cfg.agg.train_threads)
    return 1 if threads == 0 else max(1, (os.cpu_count() or 1) // threads)


def train_all(
    banks: ClipBanks, jobs, mining: str = "auto", workers: int | None = None, progress: bool = True
) -> list[tuple[Method, int]]:
    """Train every (method, level) of ``jobs`` not yet cached, side by side in processes.

    Each training runs :func:`get_aggregator` in its own process with
    ``cfg.agg.train_threads`` torch threads, so the cached models are the same whether
    they were trained here, one after the other, or by :func:`get_aggregator` alone (with
    1 thread: bit for bit, on a given CPU). Afterwards :func:`get_aggregator` loads them.
    An interrupted run keeps the finished models and the checkpoints of the others.

    Args:
        banks: the experiment's :class:`ClipBanks`.
        jobs: iterable of ``(Method, M_c^max)``.
        mining: as in :func:`get_aggregator`.
        workers: processes (default :func:`default_workers`); 1 trains in this process.
        progress: one tqdm bar over the trainings.

    Returns:
        The jobs that were trained now (learned ones first).
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    todo = _pending(banks, list(jobs), mining)
    workers = default_workers(banks.cfg) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers: expected >= 1, got {workers}")
    workers = min(workers, len(todo))
    if not todo:
        return todo
    bar = tqdm(
        total=len(todo),
        desc=f"aggregator trainings ({workers} process{'es' if workers > 1 else ''})",
        disable=not progress,
    )
    try:
        if workers == 1:
            for method, level in todo:
                _train_job(banks, method, level, mining)
                bar.update()
            return todo
        # spawn: a fresh interpreter per worker (forking a process that holds torch's thread
        # pools can deadlock); each loads only what _train_job imports.
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        try:
            futures = [pool.submit(_train_job, banks, m, lv, mining) for m, lv in todo]
            for f in as_completed(futures):
                f.result()  # a failed training raises here, with its worker's exception
                bar.update()
        finally:  # on an error or an interrupt: drop the trainings not started yet
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
    return todo


def scoring_model(cfg, model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in eval mode on ``cfg.torch_device()``, where query x gallery scoring runs.

    On CUDA ``similarity_matrix`` then picks the fused kernel; aggregators are trained and
    cached on the CPU.
    """
    return model.to(cfg.torch_device()).eval()
