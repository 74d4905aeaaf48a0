"""Train the models of the notebooks from the command line, into the artifact cache they read.

Usage::

    python -m reid_utils.train --profile paper --dataset mars --data-root /data/reid
    python -m reid_utils.train aggregators --profile paper --data-root /data/reid
    python -m reid_utils.train all --profile smoke --set train.iterations=4 --set agg.iterations=4
    torchrun --nproc_per_node=8 -m reid_utils.train --profile paper --data-root /data/reid

``i3d`` (the default) trains the I3D of every L_train of notebook 01
(``cfg.ablation.train_lens``) and of notebooks 04-08 (``cfg.agg.clip_len``), or only
``--clip-len``, exactly as ``reid_utils.training.i3d.trained_i3d`` does in the notebooks
(same cache keys). ``aggregators`` extracts the clip-feature banks (clean and corrupted)
and trains and scores every aggregator of notebooks 04-05 (``run_sweep`` over
``cfg.agg.max_corrupted`` or ``--levels``, plus level 0); ``all`` does both. The config
is the notebooks' (``resolve_profile``: ``$REID_PROFILE``, ``$REID_OVERRIDES``,
``$REID_DATA_ROOT``, ``$REID_DATASET``), then ``--dataset``, ``--data-root`` and
``--set section.field=value`` (JSON values); the notebooks find the models when they
resolve the same config (the command prints the variables to export). Progress and ETA
go to stderr. A killed run resumes from its last checkpoint when the command is run
again. Under ``torchrun`` the I3D trains with DistributedDataParallel and features are
extracted shard-wise (``reid_utils.training.distributed``); rank 0 alone writes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

WHAT = ("i3d", "aggregators", "all")
PROG = "python -m reid_utils.train"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="i3d", choices=WHAT, help="what to train (default: i3d)")
    ap.add_argument("--profile", help="smoke | default | paper (default: $REID_PROFILE, else default)")
    ap.add_argument("--dataset", help="synthetic | mars | dukemtmc-videoreid | prid2011 (default: the profile's)")
    ap.add_argument("--data-root", help="the dataset's folder, or a folder up to two levels above it")
    ap.add_argument("--clip-len", type=int, nargs="+", metavar="L", help="L_train of the I3Ds to train")
    ap.add_argument("--levels", type=int, nargs="+", metavar="MC", help="M_c^max levels of the aggregators")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override, e.g. train.iterations=100"
    )
    ap.add_argument("--checkpoint-every", type=int, metavar="N", help="I3D iterations between resume points")
    ap.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars or cache messages")
    ap.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    return ap


def parse_set(items: list[str]) -> dict:
    """``["train.iterations=2", "device=cpu"]`` -> ``{"train": {"iterations": 2}, "device": "cpu"}``.

    A value is read as JSON (numbers, ``true``/``false``/``null``, lists) and otherwise
    kept as a string.
    """
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. train.iterations=100")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *parents, leaf = key.strip().split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {p!r} was already set to a value")
        node[leaf] = value
    return out


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _config(args):
    from reid_utils.config import resolve_profile

    env = os.environ.get("REID_PROFILE")
    if args.profile and env and env != args.profile:
        raise ValueError(f"--profile {args.profile} but $REID_PROFILE={env}: unset one of them")
    overrides = parse_set(args.set)
    for k in ("dataset", "data_root"):
        if getattr(args, k):
            overrides[k] = getattr(args, k)
    return resolve_profile(args.profile, **overrides), overrides


def _notebook_env(cfg, overrides: dict) -> str:
    """The environment under which the notebooks resolve this config."""
    from reid_utils.config import env_overrides

    extra = {k: v for k, v in overrides.items() if k not in ("dataset", "data_root")}
    env = {"REID_PROFILE": cfg.profile}
    if cfg.dataset != "synthetic" or cfg.data_root:
        env.update(REID_DATASET=cfg.dataset, REID_DATA_ROOT=str(cfg.data_root or ""))
    merged = _merge(env_overrides(), extra)
    if merged:
        env["REID_OVERRIDES"] = json.dumps(merged, sort_keys=True)
    return " ".join(f"{k}={v!r}" if k == "REID_OVERRIDES" else f"{k}={v}" for k, v in env.items())


def _load_dataset(cfg):
    from reid_utils.data.datasets import load_dataset_for_config
    from reid_utils.training import distributed

    ds = distributed.rank0_first(lambda: load_dataset_for_config(cfg))
    return ds


def _require_train(ds) -> None:
    if not ds.train:
        raise ValueError(
            f"{ds.name} at {ds.root}: no training split (no training tracklets found); "
            "training needs one (this tree can only be evaluated)"
        )


def _train_i3ds(cfg, ds, args, show: bool, say) -> None:
    from reid_utils.training.i3d import trained_i3d

    lens = args.clip_len or sorted({*map(int, cfg.ablation.train_lens), int(cfg.agg.clip_len)})
    for L in lens:
        run = trained_i3d(cfg, ds, int(L), progress=show, checkpoint_every=args.checkpoint_every)
        h = run.history
        last = h.iloc[-1] if len(h) else None
        evald = h.dropna(subset=["mAP"]) if "mAP" in h else h.iloc[:0]
        metric = f", mAP {100 * evald['mAP'].iloc[-1]:.1f} %" if len(evald) else ""
        loss = f", final loss {last['loss']:.4f}" if last is not None else ""
        say(f"I3D L_train={L}: {len(h)} iterations{loss}{metric}, {run.seconds:.0f} s of training; key {run.key}")


def _train_aggregators(cfg, ds, args, show: bool, say) -> None:
    from reid_utils.eval.ranking import protocol_of
    from reid_utils.experiments.clip_banks import get_backbone, get_clip_banks
    from reid_utils.experiments.corruption_sweep import run_level, run_sweep
    from reid_utils.training import distributed

    levels = [int(x) for x in (args.levels or cfg.agg.max_corrupted)]
    i3d = get_backbone(cfg, ds, progress=show)
    banks = get_clip_banks(cfg, i3d, ds, corrupted=any(x > 0 for x in levels), progress=show)
    if not distributed.is_main():
        return  # aggregators train on the CPU from the banks: rank 0 alone
    proto = protocol_of(ds)
    rows = run_sweep(banks, levels=levels, protocol=proto, progress=show).rows
    if 0 not in levels:  # notebook 04's level
        rows = run_level(banks, 0, protocol=proto, progress=show).rows
    for mc, part in rows.groupby("Mc_max"):
        best = part.sort_values("mAP").iloc[-1]
        t = "" if best["t"] != best["t"] else f" t={best['t']:g}"
        say(f"aggregators M_c^max={mc}: {len(part)} rows; best mAP {100 * best['mAP']:.1f} % ({best['method']}{t})")


def _run(args) -> int:
    import numpy as np
    import torch

    from reid_utils.config import describe
    from reid_utils.training import distributed

    cfg, overrides = _config(args)
    distributed.init_from_env()
    main = distributed.is_main()
    show = main and not args.quiet

    def say(msg: str) -> None:
        if main:
            print(msg, flush=True)

    if args.threads:
        torch.set_num_threads(int(args.threads))
    random.seed(cfg.seed)  # as notebook.setup
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    say(describe(cfg) + (f"\nprocesses: {distributed.world_size()} (torchrun)" if distributed.world_size() > 1 else ""))
    ds = _load_dataset(cfg)
    _require_train(ds)
    if args.what in ("i3d", "all"):
        _train_i3ds(cfg, ds, args, show, say)
    if args.what in ("aggregators", "all"):
        _train_aggregators(cfg, ds, args, show, say)
    say(f"done; the notebooks find these models with: {_notebook_env(cfg, overrides)}")
    distributed.shutdown(wait=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command; returns the exit status (2 for a bad argument, config or data set)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        if args.traceback:
            raise
        msg = " ".join(str(e).split())
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
