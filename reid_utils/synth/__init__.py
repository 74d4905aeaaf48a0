"""The synthetic video re-ID benchmark: generated from a seed, written in the MARS layout.

MARS (Sec. 4.1 of the paper) cannot be downloaded here, so this project generates
a small benchmark with the clip-quality problems that motivate learned
clip-similarity aggregation (Sec. 1, Fig. 1, Sec. 4.4), with per-frame ground
truth of what went wrong. Modules, in pipeline order:

* ``people`` (pedestrians, look-alikes), ``parts`` and ``atlas`` (sprites),
  ``cameras`` and ``scenes`` (cameras, backgrounds);
* ``nuisances`` (:data:`NUISANCES`, their runs), ``plan`` (world, tracklets,
  ground truth, queries);
* ``tracklet`` and ``compose`` (rendering frames), ``writer`` (files, caching),
  ``layouts`` (the DukeMTMC-VideoReID and PRID2011 layouts).

Difficulty (default profile, measured when the generator was built; notebook 00
recomputes the baseline): the colour-histogram baseline reaches about 22 % mAP /
16 % rank-1 (camera colour casts, look-alike pairs, viewpoints and nuisances keep
it far from 100 %); a small 2D CNN probe trained from scratch reached about 40 %
mAP, and plateaued near 31 % with only 60-100 training identities, hence many
training identities with few tracklets each.

Public API (what the other layers import): :func:`ensure_synthetic`, :func:`generate`
(``layout=`` ``"mars"``, ``"dukemtmc-videoreid"`` or ``"prid2011"``), :func:`dataset_key`
and :data:`NUISANCES`, the per-frame annotation columns.
"""

from reid_utils.synth.nuisances import NUISANCES
from reid_utils.synth.writer import dataset_key, ensure_synthetic, generate

__all__ = ["NUISANCES", "dataset_key", "ensure_synthetic", "generate"]
