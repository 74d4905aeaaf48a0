"""Training: the I3D (Sec. 3.2, Eqs. 7-8), the clip aggregators (Sec. 3.2), feature banks."""

from reid_utils.training.result import TrainedModel

__all__ = ["TrainedModel"]
