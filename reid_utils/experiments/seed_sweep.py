"""How much do the results move with the training seed? Several I3D trunks and aggregators.

Training trajectories differ between seeds (and between CPUs with the same seed), so one
run's numbers hide a spread. For every seed, :func:`run_seed` trains the I3D of L_train =
``cfg.agg.clip_len`` (its own trunk: initialisation and batches follow ``cfg.seed``),
extracts its clip banks and runs the corruption sweep (``corruption_sweep.run_sweep``) at
the chosen M_c^max levels, including the training-matters controls
(``aggregator_controls``) on clean clips. The validation split and the corrupted test set
are the same for every seed (``reid_utils.data.validation``, ``clip_banks.test_plan``), so
the spread is that of training alone.

Run it as a command (it writes ``seeds_*.csv`` where the profile's figures go,
``figures/`` for ``default``; notebooks 01, 04 and 05 read them when present and summarise
them with ``reid_utils.eval.bootstrap.seed_summary``)::

    python -m reid_utils.experiments.seed_sweep --profile default --seeds 0 1 2 --levels 0 4 7
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import pandas as pd
from tqdm.auto import tqdm

__all__ = ["run_seed", "seed_rows", "main"]

TABLES = ("seeds_i3d", "seeds_table2", "seeds_table2_val", "seeds_controls")


def run_seed(cfg, seed: int, levels, progress: bool = False) -> dict[str, pd.DataFrame]:
    """One seed's I3D accuracy, Table 2 rows (test and validation) and controls.

    Returns:
        ``{table name: DataFrame}`` for :data:`TABLES`, each with a ``seed`` column.
    """
    from reid_utils.data.datasets import load_dataset_for_config
    from reid_utils.experiments import aggregator_controls as ctl
    from reid_utils.experiments.aggregators import Method, get_aggregator
    from reid_utils.experiments.clip_banks import get_backbone, get_clip_banks
    from reid_utils.experiments.corruption_sweep import run_sweep
    from reid_utils.experiments.i3d_ablations import single_clip_table

    c = dataclasses.replace(cfg, seed=int(seed))
    ds = load_dataset_for_config(c)
    backbone = get_backbone(c, ds, progress=progress)
    i3d = single_clip_table(c, ds, {c.agg.clip_len: backbone}, progress=progress)
    banks = get_clip_banks(c, backbone, ds, corrupted=any(int(lv) for lv in levels), progress=progress)
    sweep = run_sweep(banks, levels, progress=progress)
    learned = get_aggregator(banks, Method("learned"), 0, progress=progress)
    controls = ctl.control_table(banks, ctl.control_similarities(banks, learned, 0))
    out = {
        "seeds_i3d": i3d.rename_axis("model").reset_index(),
        "seeds_table2": sweep.rows,
        "seeds_table2_val": sweep.val_rows if sweep.val_rows is not None else pd.DataFrame(),
        "seeds_controls": controls.reset_index(),
    }
    return {k: v.assign(seed=int(seed)) for k, v in out.items()}


def seed_rows(cfg, seeds, levels, progress: bool = True) -> dict[str, pd.DataFrame]:
    """:func:`run_seed` for every seed, concatenated per table (cached pieces are reused)."""
    parts = [run_seed(cfg, s, levels, progress=False) for s in tqdm(seeds, desc="seeds", disable=not progress)]
    return {k: pd.concat([p[k] for p in parts], ignore_index=True) for k in TABLES}


def main(argv=None) -> int:
    """``python -m reid_utils.experiments.seed_sweep``: run the seeds, write the tables."""
    import torch

    from reid_utils.config import resolve_profile

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default=None, help="smoke | default | paper ($REID_PROFILE when not given)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--levels", type=int, nargs="+", default=[0, 4, 7], help="M_c^max levels")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:  # the flag wins over $REID_PROFILE
        os.environ["REID_PROFILE"] = args.profile
    cfg = resolve_profile()
    rows = seed_rows(cfg, args.seeds, args.levels)
    out = cfg.figures_path
    out.mkdir(parents=True, exist_ok=True)
    from reid_utils.cache_io import atomic_write_bytes

    for name, df in rows.items():
        atomic_write_bytes(out / f"{name}.csv", df.to_csv(index=False, float_format="%.6g").encode())
    print(f"seed sweep: {len(args.seeds)} seeds x levels {args.levels} -> {out}/seeds_*.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
