"""The public API is importable from the top-level package and names the documented objects."""

import importlib

import pytest

import reid_utils

PUBLIC = {
    "load_dataset": "reid_utils.data.datasets",
    "sample_clip": "reid_utils.data.sampling",
    "corrupt_clip": "reid_utils.data.corruption",
    "evaluate_rank": "reid_utils.eval.ranking",
    "re_ranking": "reid_utils.eval.reranking",
    "InceptionI3d": "reid_utils.models.i3d",
    "kinetics_i3d": "reid_utils.models.pretrained",
    "LearnedClipAggregator": "reid_utils.models.aggregation",
    "TopTAggregator": "reid_utils.models.aggregation",
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_top_level_name_is_the_module_object(name):
    obj = getattr(reid_utils, name)
    assert obj is getattr(importlib.import_module(PUBLIC[name]), name)
    assert callable(obj)


def test_from_import_and_unknown_names():
    from reid_utils import LearnedClipAggregator, evaluate_rank  # noqa: F401

    assert set(PUBLIC) <= set(reid_utils.__all__) and set(PUBLIC) <= set(dir(reid_utils))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        reid_utils.nope  # noqa: B018
