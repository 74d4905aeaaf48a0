"""Training: the I3D (Sec. 3.2, Eqs. 7-8), the clip aggregators (Sec. 3.2), feature banks.

Both trainings run through one loop (``reid_utils.training.loop.run_loop``) and the
I3D's return a :class:`TrainedModel`.
"""

from reid_utils.training.result import TrainedModel

__all__ = ["TrainedModel"]
