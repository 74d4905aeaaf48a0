"""The nuisances of the synthetic benchmark and their temporal runs.

:data:`NUISANCES` is the project's one list of the per-frame nuisance names
(the quality problems of real tracklets that motivate learned clip-similarity
aggregation, Sec. 1, Fig. 1 and Sec. 4.4 of the paper): occlusion, frames
without the person, tracker identity switches, bad boxes, motion blur.

Design choice: nuisances come in temporally contiguous runs (tracking errors
persist). For nuisance k with per-frame rate p_k a tracklet is affected with
probability p_k / E[f_k], and then a fraction f_k of its frames (stochastic
rounding, one or two runs), so the expected per-frame rate is exactly p_k while
most tracklets stay clean and a few are heavily hit. ``empty`` and
``id_switch`` runs (tracker lost / drifted onto someone else) are anchored at
the start or end of the tracklet more often than not.
"""

from __future__ import annotations

import math

import numpy as np

from reid_utils.config import SynthConfig

NUISANCES = ("occlusion", "empty", "id_switch", "bad_crop", "blur")
MAX_NUISANCE_RATE = 0.3

# run model per nuisance: (distribution of the affected fraction f of an affected tracklet,
# probability that the run is anchored at the start or end of the tracklet)
RUN_MODEL = {
    "occlusion": ("beta", 0.0),
    "empty": ("uniform", 0.7),
    "id_switch": ("uniform", 0.6),
    "bad_crop": ("beta", 0.0),
    "blur": ("beta", 0.0),
}
MEAN_FRACTION = {"beta": 2.0 / 5.0, "uniform": 0.3}  # Beta(2, 3); Uniform(0.1, 0.5)


def _place_runs(flags: np.ndarray, n: int, anchor: float, rng: np.random.Generator) -> None:
    """Flag ``n`` frames of ``flags`` (T,) in place: one run at an end (probability
    ``anchor``), else one run or, sometimes, two runs with a gap between them."""
    T = len(flags)
    if rng.random() < anchor:  # tracker start-up / loss
        if rng.random() < 0.5:
            flags[:n] = True
        else:
            flags[T - n :] = True
    else:
        gap = T - n
        if n >= 6 and gap >= 1 and rng.random() < 0.35:  # two runs
            n1 = int(rng.integers(2, n - 1))
            u1, u2 = np.sort(rng.integers(0, gap, 2))  # gaps g0, g1 >= 1, g2
            g0, g1 = int(u1), 1 + int(u2 - u1)
            flags[g0 : g0 + n1] = True
            flags[g0 + n1 + g1 : g0 + n + g1] = True
        else:
            s = int(rng.integers(0, gap + 1))
            flags[s : s + n] = True


def plan_nuisances(T: int, cfg: SynthConfig, rng: np.random.Generator) -> dict:
    """Planned per-frame nuisance runs of a tracklet of length T.

    Returns:
        {nuisance: bool array (T,)}; the expected per-frame rate of nuisance k
        over many tracklets is exactly ``cfg.p_<k>`` (see the module docstring).
    """
    out = {}
    for k in NUISANCES:
        p = getattr(cfg, f"p_{k}")
        dist, anchor = RUN_MODEL[k]
        flags = np.zeros(T, bool)
        q = p / MEAN_FRACTION[dist]
        if p > 0 and rng.random() < q:
            f = rng.beta(2.0, 3.0) if dist == "beta" else rng.uniform(0.1, 0.5)
            n = min(T, int(math.floor(f * T + rng.random())))
            if n > 0:
                _place_runs(flags, n, anchor, rng)
        out[k] = flags
    return out


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous True runs of a bool vector as (start, stop) pairs."""
    d = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))
