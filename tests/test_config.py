import dataclasses
from pathlib import Path

import pytest

from reid_utils import config
from reid_utils.config import get_config, resolve_profile


def test_profiles_are_frozen_hashable_and_distinct():
    cfgs = {p: get_config(p) for p in config.PROFILES}
    assert len({hash(c) for c in cfgs.values()}) == 3
    assert len({c.key() for c in cfgs.values()}) == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfgs["smoke"].seed = 3


def test_key_is_stable_and_sensitive_to_the_named_parts():
    a, b = get_config("default"), get_config("default")
    assert a.key() == b.key() and a.key("synth") == b.key("synth")
    c = get_config("default", synth={"seed": 1})
    assert c.key("synth") != a.key("synth")
    assert c.key("model") == a.key("model")  # only the changed part moves


def test_paper_profile_matches_the_paper_settings():
    p = get_config("paper")
    assert (p.model.input_height, p.model.input_width, p.model.feat_dim) == (256, 128, 1024)
    assert (p.agg.num_clips, p.agg.clip_len, p.agg.hidden) == (8, 4, 1024)
    assert p.model.width_mult == 1.0 and p.model.pretrained


def test_env_overrides_profile(monkeypatch):
    monkeypatch.setenv("REID_PROFILE", "smoke")
    assert resolve_profile("default").profile == "smoke"
    monkeypatch.delenv("REID_PROFILE")
    assert resolve_profile("paper").profile == "paper"


def test_bad_profile_and_field_are_named():
    with pytest.raises(ValueError, match="nope"):
        get_config("nope")
    with pytest.raises(ValueError, match="colour"):
        get_config("smoke", colour=3)
    with pytest.raises(ValueError, match="synth"):
        get_config("smoke", synth={"no_such_knob": 1})


def test_only_the_default_profile_writes_the_committed_figures(monkeypatch):
    from reid_utils.config import REPO_ROOT

    monkeypatch.delenv("REID_FIGURES", raising=False)
    assert get_config("default").figures_path == REPO_ROOT / "figures"
    assert get_config("smoke").figures_path == REPO_ROOT / "figures" / "smoke"
    assert get_config("smoke", figures_dir="/tmp/elsewhere").figures_path == Path("/tmp/elsewhere")
