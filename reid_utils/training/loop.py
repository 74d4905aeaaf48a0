"""The one training loop of the I3D (Sec. 3.2, Eqs. 7-8) and of the clip aggregators (Sec. 3.2).

The caller supplies the batches and the per-iteration step (the forward pass and the
loss: everything that draws random numbers); :func:`run_loop` does the rest, the same
way for both: it resumes from the last checkpoint, checks that the loss is finite,
makes the optimiser (and scheduler) step, records one history row per iteration,
evaluates every ``eval_every`` iterations and after the last one (model in eval mode,
no grad), writes a checkpoint every ``every`` iterations (atomic and verified through
``reid_utils.cache``) and shows a tqdm bar. A run resumed from a checkpoint ends with
the weights of the uninterrupted run, provided that the batch and the step of an
iteration depend only on its index and on what the checkpoint restores. Under torchrun
(``reid_utils.training.distributed``) only rank 0 writes checkpoints and shows the bar;
every rank resumes from the same file.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from reid_utils.cache import torch_load_verified, torch_save_verified
from reid_utils.training import distributed

# Layout of the checkpoint files written by run_loop; a file of another layout is ignored.
CHECKPOINT_FORMAT = 3

Batches = Callable[[range], Iterator[Any]]
Step = Callable[[Any], tuple[torch.Tensor, dict]]


@dataclass
class Checkpoint:
    """Where and how often :func:`run_loop` saves its resume point.

    A checkpoint holds the model, optimiser and scheduler states, the iteration, the
    history, torch's RNG states when ``rng`` is set, and ``extra``.

    Attributes:
        path: the checkpoint file.
        every: iterations between checkpoints.
        at_end: also save after the last iteration (a finished checkpoint is then
            loaded and returned without training).
        rng: save and restore torch's global (CPU and CUDA) RNG states, for steps
            that draw from them without seeding them per iteration.
        extra: saved as is; compared with the saved one on resume, and a checkpoint
            whose ``extra`` differs belongs to another run (ValueError).
    """

    path: Path
    every: int
    at_end: bool = False
    rng: bool = False
    extra: dict | None = None


def run_loop(
    name: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Batches,
    step: Step,
    iterations: int,
    *,
    scheduler=None,
    checkpoint: Checkpoint | None = None,
    evaluate: Callable[[], dict] | None = None,
    eval_every: int = 0,
    callback: Callable[[int, dict], None] | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> list[dict]:
    """Train ``model`` from the resume point to ``iterations``.

    Args:
        name: the training function's name, in messages and errors.
        model: the trained module (put in train mode; in eval mode while evaluated).
        optimizer: stepped after every backward pass. scheduler: stepped after it.
        batches: ``batches(range(start, iterations))`` yields one batch per iteration
            (a generator is closed when the loop ends).
        step: ``step(batch) -> (loss, stats)``: the scalar loss and the history columns
            of the iteration (plain numbers).
        iterations: total number of iterations (a resumed run continues to it).
        checkpoint: the resume point (:class:`Checkpoint`), None for none.
        evaluate: ``evaluate() -> {name: value}``, every ``eval_every`` iterations
            (0: never) and after the last one.
        callback: ``callback(iteration, row)`` after every iteration (1-based).
        progress: tqdm bar and the resume message.
        desc: the bar's label (default ``name``).

    Returns:
        The history: one dict per iteration with ``iteration``, ``loss``, the step's
        stats, ``seconds`` (wall time of the iteration) and the evaluated metrics.
    """
    progress = progress and distributed.is_main()
    history, start = _resume(name, checkpoint, model, optimizer, scheduler, iterations, progress)
    its = range(start, iterations)
    source = batches(its)
    bar = tqdm(total=iterations, initial=start, desc=desc or name, disable=not progress, leave=True)
    model.train()
    try:
        for it in its:
            t0 = time.perf_counter()
            loss, stats = step(next(source))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name}: non-finite loss at iteration {it + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            n = it + 1
            row = {"iteration": n, "loss": loss.item(), **stats, "seconds": time.perf_counter() - t0}
            metrics = {}
            if evaluate is not None and (n == iterations or (eval_every and n % eval_every == 0)):
                metrics = _evaluate(model, evaluate)
            row.update(metrics)
            history.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", **{k: f"{v:.3f}" for k, v in metrics.items()})
            due = checkpoint is not None and (n % checkpoint.every == 0 if n < iterations else checkpoint.at_end)
            if due and distributed.is_main():
                _save(checkpoint, n, history, model, optimizer, scheduler)
            if callback is not None:
                callback(n, row)
    finally:
        bar.close()
        if hasattr(source, "close"):
            source.close()
    return history


def _evaluate(model: torch.nn.Module, evaluate: Callable[[], dict]) -> dict:
    model.eval()
    try:
        with torch.no_grad():
            return {k: float(v) for k, v in dict(evaluate()).items()}
    finally:
        model.train()


def _save(ck: Checkpoint, n: int, history: list, model, optimizer, scheduler) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "extra": ck.extra,
        "iteration": n,
        "history": history,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
    }
    if ck.rng:
        state["torch_rng"] = torch.get_rng_state()
        state["cuda_rng"] = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    torch_save_verified(state, ck.path)


def _resume(name: str, ck: Checkpoint | None, model, optimizer, scheduler, iterations: int, progress: bool):
    """``(history, start)`` restored from ``ck`` (``([], 0)`` without a usable checkpoint)."""
    if ck is None or not Path(ck.path).exists():
        return [], 0
    try:
        state = torch_load_verified(ck.path)
    except Exception as e:  # corrupt or half-written: start again
        warnings.warn(f"{name}: checkpoint {ck.path} is unreadable ({e}); starting from scratch")
        return [], 0
    if state.get("format") != CHECKPOINT_FORMAT:
        warnings.warn(f"{name}: checkpoint {ck.path} has an old format; starting from scratch")
        return [], 0
    saved = state["extra"] or {}
    diff = {k: (saved.get(k), v) for k, v in (ck.extra or {}).items() if saved.get(k) != v}
    if diff:
        raise ValueError(
            f"{name}: checkpoint {ck.path} belongs to another run (differs in {sorted(diff)}: "
            f"saved vs now {diff}); use another checkpoint path or delete it"
        )
    start = int(state["iteration"])
    if start > iterations:
        raise ValueError(f"{name}: checkpoint {ck.path} is at iteration {start}, beyond iterations={iterations}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if ck.rng:
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    if progress:
        print(f"[train] {name}: resuming from iteration {start} ({Path(ck.path).name})")
    return list(state["history"]), start
