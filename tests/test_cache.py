import os

import pytest
import torch

from reid_utils import cache
from reid_utils.cache import ArtifactCache


def test_get_or_compute_caches(tmp_path):
    c = ArtifactCache(tmp_path)
    calls = []
    fn = lambda: calls.append(1) or {"x": torch.arange(3)}  # noqa: E731
    a = c.get_or_compute("thing", "k1", fn, verbose=False)
    b = c.get_or_compute("thing", "k1", fn, verbose=False)
    assert calls == [1] and torch.equal(a["x"], b["x"])
    c.get_or_compute("thing", "k2", fn, verbose=False)
    assert calls == [1, 1]


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_sidecar"])
def test_corrupt_entry_is_detected_and_rebuilt(tmp_path, damage):
    c = ArtifactCache(tmp_path)
    c.get_or_compute("t", "k", lambda: torch.ones(1000), verbose=False)
    p = c.path("t", "k")
    data = p.read_bytes()
    if damage == "truncate":
        p.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        p.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
    else:
        os.remove(str(p) + ".sha256")
    assert not c.has("t", "k")
    with pytest.warns(UserWarning, match="corrupt"):
        out = c.get_or_compute("t", "k", lambda: torch.zeros(5), verbose=False)
    assert torch.equal(out, torch.zeros(5)) and c.has("t", "k")


def test_interrupted_write_leaves_no_valid_entry(tmp_path):
    c = ArtifactCache(tmp_path)

    def boom():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        c.get_or_compute("t", "k", boom, verbose=False)
    assert not c.path("t", "k").exists()
    assert list(tmp_path.glob("*")) == []


def test_dir_entries_atomic_and_verified(tmp_path):
    c = ArtifactCache(tmp_path)
    builds = []

    def build(d):
        builds.append(1)
        (d / "a.txt").write_text("a")
        (d / "sub").mkdir()
        (d / "sub" / "b.txt").write_text("b")

    p = c.get_or_build_dir("ds", "k", build, verbose=False)
    assert cache.is_complete_dir(p) and builds == [1]
    c.get_or_build_dir("ds", "k", build, verbose=False)
    assert builds == [1]
    (p / "sub" / "b.txt").unlink()  # a partial entry
    assert not cache.is_complete_dir(p)
    with pytest.warns(UserWarning, match="incomplete"):
        c.get_or_build_dir("ds", "k", build, verbose=False)
    assert builds == [1, 1] and (p / "sub" / "b.txt").exists()


def test_failed_dir_build_leaves_nothing(tmp_path):
    c = ArtifactCache(tmp_path)

    def build(d):
        (d / "a.txt").write_text("a")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        c.get_or_build_dir("ds", "k", build, verbose=False)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_builder_that_loses_the_race_keeps_the_winner(tmp_path):
    c = ArtifactCache(tmp_path)

    def build(d):
        (d / "a.txt").write_text("mine")
        # meanwhile a process that ignores the entry's lock completes the same entry
        other = c.dir_path("ds", "k")
        other.mkdir()
        (other / "a.txt").write_text("theirs")
        cache._write_manifest(other)

    p = c.get_or_build_dir("ds", "k", build, verbose=False)
    assert (p / "a.txt").read_text() == "theirs" and cache.is_complete_dir(p)
    assert [x.name for x in tmp_path.iterdir()] == ["ds-k"]
