"""reid_utils: the helper package behind the notebooks reproducing Matiyali &
Sharma, "Video Person Re-Identification using Learned Clip Similarity
Aggregation" (WACV 2020).

Modules are small and single-purpose; each cites the section or equation of
the paper it implements. Import submodules explicitly, e.g.
``from reid_utils import evaluation``.
"""

__version__ = "0.1.0"
