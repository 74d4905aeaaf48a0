"""The synthetic video re-ID benchmark: generated from a seed, written in the MARS layout.

Public API (what the other layers import): :func:`ensure_synthetic`, :func:`generate`,
:func:`dataset_key` and :data:`NUISANCES`, the per-frame annotation columns.
"""

from reid_utils.synth.benchmark import NUISANCES, dataset_key, ensure_synthetic, generate

__all__ = ["NUISANCES", "dataset_key", "ensure_synthetic", "generate"]
