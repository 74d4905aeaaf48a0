"""What a training function returns: the model and its identity, instead of ad-hoc attributes."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch


@dataclass
class TrainedModel:
    """A trained (or loaded-from-cache) model with what it is known by.

    Attributes:
        model: the network, in eval mode.
        key: its artifact-cache key: the identity of the weights, used to key everything
            computed from them (feature banks, scores).
        history: one row per logged training iteration (empty if none was recorded).
        seconds: wall time of the training run that produced the weights (NaN if unknown).
        info: anything else the producer records (e.g. the method and corruption level).
    """

    model: torch.nn.Module
    key: str
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: float = float("nan")
    info: dict = field(default_factory=dict)
