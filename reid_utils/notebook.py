"""The first code cell of every notebook: resolve the profile, seed, style.

Kept in one place so that no notebook copies set-up code from another.
"""

from __future__ import annotations

import random

from reid_utils.config import Config, describe, resolve_profile


def setup(profile: str | None = None, seed: int | None = None, threads: int | None = None, **overrides) -> Config:
    """Resolve the config (``$REID_PROFILE`` wins), seed every RNG, set torch's CPU threads
    and the plot style.

    Args:
        profile: the notebook's ``PROFILE`` parameter.
        seed: overrides the profile's seed when given.
        threads: torch CPU threads for the whole notebook (``None``: torch's default).
            The one place the package sets threads; the aggregation notebooks use 1
            (their models are small, and one thread is fastest on a 2-core machine).
        **overrides: further ``config.get_config`` overrides.

    Returns:
        The resolved :class:`~reid_utils.config.Config`; its summary (versions,
        device, profile, seed, where artifacts and figures go) is printed.
    """
    import numpy as np
    import torch

    from reid_utils.viz.style import setup_style

    if seed is not None:
        overrides["seed"] = seed
    cfg = resolve_profile(profile, **overrides)
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads: expected >= 1 or None, got {threads}")
        torch.set_num_threads(int(threads))
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    setup_style()
    print(describe(cfg))
    return cfg
