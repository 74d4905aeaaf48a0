"""Sequence similarity from M clip features per sequence (Secs. 3.1, 4.2, 4.4): the aggregators.

* :class:`LearnedClipAggregator` - the paper's contribution, learned clip
  similarity aggregation (Eqs. 1-4, architecture of Sec. 4.2);
  ``reid_utils.models.learned_aggregator``.
* :class:`TopTAggregator` - the top-t% clip-similarity baseline of Chen et
  al. (Eq. 9), in its ``eval`` and ``train-eval`` variants (Sec. 4.4);
  ``reid_utils.models.baseline_aggregators``.
* :class:`MeanFeatureAggregator` - the plain reference: cosine between the
  means of the L2-normalised clip features (Sec. 4.3, "Averaging features").

All share the interface of ``reid_utils.models.pair_aggregator``:
``forward(fq, fg)`` -> ``(similarity (B,), weights (B, Mq*Mg))``,
``similarity_matrix(q, g)`` (eval mode, chunked) and ``batch_similarity(q, g)``
(training, with autograd).
"""

from reid_utils.models.baseline_aggregators import MeanFeatureAggregator, TopTAggregator, top_t_count
from reid_utils.models.learned_aggregator import LearnedClipAggregator, make_importance_net
from reid_utils.models.pair_aggregator import PairAggregator

__all__ = [
    "LearnedClipAggregator",
    "TopTAggregator",
    "MeanFeatureAggregator",
    "PairAggregator",
    "make_importance_net",
    "top_t_count",
]
