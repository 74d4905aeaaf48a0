"""reid_utils: the helper package behind the notebooks reproducing Matiyali & Sharma,
"Video Person Re-Identification using Learned Clip Similarity Aggregation" (WACV 2020).

Layers (each may import only those below it): ``viz`` -> ``experiments`` -> ``training``
-> ``data``, ``synth``, ``models``, ``eval`` -> ``config``, ``cache``, ``paper``.
The public API is importable from here (``from reid_utils import load_dataset``); the
names are resolved lazily, so ``import reid_utils`` stays cheap.
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "load_dataset": "reid_utils.data.datasets",
    "sample_clip": "reid_utils.data.sampling",
    "corrupt_clip": "reid_utils.data.corruption",
    "evaluate_rank": "reid_utils.eval.ranking",
    "re_ranking": "reid_utils.eval.reranking",
    "InceptionI3d": "reid_utils.models.i3d",
    "kinetics_i3d": "reid_utils.models.pretrained",
    "LearnedClipAggregator": "reid_utils.models.aggregation",
    "TopTAggregator": "reid_utils.models.aggregation",
    "get_config": "reid_utils.config",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'reid_utils' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
