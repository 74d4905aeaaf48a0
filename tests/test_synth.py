"""The synthetic benchmark generator: exact MARS layout, consistency, determinism,
nuisance statistics, caching (reid_utils.synth: writer, plan, nuisances, people, atlas)."""

import csv
import dataclasses
import json
import re

import numpy as np
import pytest
import scipy.io
from PIL import Image

from reid_utils.cache import COMPLETE_MARKER
from reid_utils.config import SynthConfig, get_config
from reid_utils.synth import NUISANCES, atlas, nuisances, people, plan, writer

NAME_RE = re.compile(r"^(\d{4}|00-1)C([1-6])T(\d{4})F(\d{3})\.jpg$")

# tiny, with frequent nuisances so that every kind occurs
TINY = SynthConfig(
    seed=3,
    num_train_ids=4,
    num_test_ids=6,
    num_cameras=3,
    min_len=2,
    median_len=6,
    max_len=14,
    tracklets_per_id_cam=0.8,
    num_distractor_tracklets=3,
    num_junk_tracklets=3,
    p_occlusion=0.2,
    p_empty=0.15,
    p_id_switch=0.2,
    p_bad_crop=0.2,
    p_blur=0.2,
)


def _pid(prefix: str) -> int:
    return -1 if prefix == "00-1" else int(prefix)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "tiny"
    stats = writer.generate(TINY, root, progress=False)
    return root, stats


def _names(root, split):
    return (root / "info" / f"{split}_name.txt").read_text().split("\n")[:-1]


def _tracks(root, split):
    return scipy.io.loadmat(root / "info" / f"tracks_{split}_info.mat")[f"track_{split}_info"]


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------
def test_layout_and_naming_exactly_as_mars(tiny):
    root, stats = tiny
    assert sorted(p.name for p in root.iterdir()) == ["bbox_test", "bbox_train", "info"]
    assert sorted(p.name for p in (root / "info").iterdir()) == sorted(
        [
            "train_name.txt",
            "test_name.txt",
            "tracks_train_info.mat",
            "tracks_test_info.mat",
            "query_IDX.mat",
            "annotations.csv",
            "synth_meta.json",
        ]
    )
    total = 0
    for split in ("train", "test"):
        names = _names(root, split)
        on_disk = sorted((root / f"bbox_{split}").rglob("*"))
        files = [p for p in on_disk if p.is_file()]
        assert all(p.parent.parent == root / f"bbox_{split}" for p in files)  # <pid>/<frame>
        assert sorted(names) == sorted(p.name for p in files)  # same set
        assert len(set(names)) == len(names)
        for p in files:
            m = NAME_RE.match(p.name)
            assert m, p.name
            assert p.parent.name == m.group(1)  # folder = pid
        total += len(names)
    assert total == stats["frames"]
    # real MARS conventions: junk '00-1' and distractors '0000' only in the test split
    assert {"00-1", "0000"} <= {p.name for p in (root / "bbox_test").iterdir()}
    assert not {"00-1", "0000"} & {p.name for p in (root / "bbox_train").iterdir()}
    im = Image.open(next((root / "bbox_train").rglob("*.jpg")))
    assert im.format == "JPEG" and im.mode == "RGB" and im.size == (TINY.frame_width, TINY.frame_height)


def test_mat_files_consistent_with_name_lists(tiny):
    root, stats = tiny
    n_tracks = 0
    for split in ("train", "test"):
        names, info = _names(root, split), _tracks(root, split)
        assert info.dtype == np.float64 and info.ndim == 2 and info.shape[1] == 4
        assert info[0, 0] == 1 and info[-1, 1] == len(names)
        assert np.all(info[1:, 0] == info[:-1, 1] + 1)  # contiguous
        assert np.all(info[:, 1] >= info[:, 0])
        prefixes = []
        for s, e, pid, cam in info.astype(int):
            chunk = names[s - 1 : e]
            ms = [NAME_RE.match(n) for n in chunk]
            assert {n[:11] for n in chunk} == {chunk[0][:11]}  # one tracklet
            assert _pid(ms[0].group(1)) == pid and int(ms[0].group(2)) == cam
            assert [int(m.group(4)) for m in ms] == list(range(1, len(chunk) + 1))  # F001.. in order
            prefixes.append(chunk[0][:11])
        assert len(set(prefixes)) == len(prefixes)  # each tracklet once
        assert set(info[:, 3].astype(int)) <= set(range(1, TINY.num_cameras + 1))
        n_tracks += len(info)
    assert n_tracks == stats["tracklets"]
    test = _tracks(root, "test")
    assert (test[:, 2] == -1).sum() == TINY.num_junk_tracklets
    assert (test[:, 2] == 0).sum() == TINY.num_distractor_tracklets
    assert len(set(_tracks(root, "train")[:, 2]) & set(test[:, 2])) == 0  # disjoint ids


def test_query_idx_valid_with_cross_camera_matches(tiny):
    root, stats = tiny
    q = scipy.io.loadmat(root / "info" / "query_IDX.mat")["query_IDX"]
    assert q.shape == (1, stats["queries"]) and q.dtype == np.float64
    test = _tracks(root, "test").astype(int)
    qi = q.ravel().astype(int) - 1
    assert len(set(qi)) == len(qi) and qi.min() >= 0 and qi.max() < len(test)
    gal = np.setdiff1d(np.arange(len(test)), qi)
    seen = set()
    for i in qi:
        pid, cam = test[i, 2], test[i, 3]
        assert pid > 0  # never junk/distractor
        assert (pid, cam) not in seen  # <= 1 per id per camera
        seen.add((pid, cam))
        g = test[gal]
        assert np.any((g[:, 2] == pid) & (g[:, 3] != cam)), f"query row {i} has no gallery match"
    # every test identity is queried
    assert {p for p, _ in seen} == set(test[test[:, 2] > 0, 2])


def test_annotations_cover_every_frame(tiny):
    root, _ = tiny
    with open(root / "info" / "annotations.csv") as f:
        header = f.readline().strip()
        rows = list(csv.DictReader(f, fieldnames=header.split(",")))
    assert header == "split,name,true_pid,occlusion,empty,id_switch,bad_crop,blur"
    expect = [("train", n) for n in _names(root, "train")] + [("test", n) for n in _names(root, "test")]
    assert [(r["split"], r["name"]) for r in rows] == expect
    counts = dict.fromkeys(NUISANCES, 0)
    for r in rows:
        pid = _pid(r["name"][:4])
        tp = int(r["true_pid"])
        flags = {k: int(r[k]) for k in NUISANCES}
        assert set(flags.values()) <= {0, 1}
        assert (tp == plan.NO_PERSON) == bool(flags["empty"])
        if flags["empty"]:
            assert flags["occlusion"] == flags["id_switch"] == flags["bad_crop"] == 0
        if pid == -1:
            assert flags["empty"] or flags["bad_crop"]
        elif flags["id_switch"]:
            assert tp > 0 and tp != pid
        elif not flags["empty"]:
            assert tp == pid
        for k in counts:
            counts[k] += flags[k]
    assert all(v > 0 for v in counts.values()), counts


def test_annotations_match_the_plans(tiny):
    root, _ = tiny
    _, plans = plan.plan_dataset(TINY)
    with open(root / "info" / "annotations.csv") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    for p in plans:
        a = plan.frame_annotations(p)
        for f in range(p.length):
            r = rows[p.frame_name(f)]
            assert int(r["true_pid"]) == a["true_pid"][f]
            assert [int(r[k]) for k in NUISANCES] == [int(a[k][f]) for k in NUISANCES]


def test_meta_records_config_identities_and_lookalikes(tiny):
    root, _ = tiny
    meta = json.loads((root / "info" / "synth_meta.json").read_text())
    assert meta["generator_version"] == writer.GENERATOR_VERSION
    assert meta["config"] == dataclasses.asdict(TINY)
    folders = {p.name for s in ("train", "test") for p in (root / f"bbox_{s}").iterdir()}
    assert set(meta["identities"]) == folders - {"0000", "00-1"}
    assert len(meta["cameras"]) == TINY.num_cameras
    assert len(meta["lookalike_pairs"]) >= 1
    for pair in meta["lookalike_pairs"]:
        a, b = (meta["identities"][f"{p:04d}"] for p in pair["pids"])
        assert a["split"] == b["split"]
        assert a["upper_color"] == b["upper_color"] and a["lower_color"] == b["lower_color"]
        assert a != b and pair["differs_in"] in people.LOOKALIKE_DETAILS


def test_deterministic_from_seed(tiny, tmp_path):
    root, _ = tiny
    again = tmp_path / "again"
    writer.generate(TINY, again, progress=False)
    a, b = _files(root), _files(again)
    assert [p.relative_to(root) for p in a] == [p.relative_to(again) for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name  # byte-identical
    # another seed gives another dataset (plans differ; no need to render)
    other = plan.plan_dataset(dataclasses.replace(TINY, seed=4))[1]
    mine = plan.plan_dataset(TINY)[1]
    assert [(p.prefix, p.length) for p in other] != [(p.prefix, p.length) for p in mine]


def test_generate_refuses_a_non_empty_dir(tmp_path):
    (tmp_path / "x").write_text("x")
    with pytest.raises(ValueError, match="must be empty"):
        writer.generate(TINY, tmp_path, progress=False)


@pytest.mark.parametrize(
    "field,value", [("num_cameras", 7), ("max_len", 1000), ("p_occlusion", 0.5), ("min_len", 0), ("num_test_ids", 1)]
)
def test_bad_config_is_rejected_with_the_field_named(field, value):
    with pytest.raises(ValueError, match=field):
        plan.plan_dataset(dataclasses.replace(TINY, **{field: value}))


# --------------------------------------------------------------------------
def _rates(cfg):
    """Per-frame rate of each planned nuisance over identity tracklets, and its
    cluster-robust standard error (tracklets are the independent units)."""
    _, plans = plan.plan_dataset(cfg)
    plans = [p for p in plans if p.kind == "normal"]
    T = np.array([p.length for p in plans], float)
    out = {}
    for k in NUISANCES:
        n = np.array([p.raw[k].sum() for p in plans], float)
        rate = n.sum() / T.sum()
        se = np.sqrt(np.sum((n - rate * T) ** 2)) / T.sum()
        out[k] = (rate, se, plans)
    return out


@pytest.mark.parametrize("p", [0.04, 0.2])
def test_nuisance_rates_track_the_knobs(p):
    cfg = SynthConfig(
        seed=11,
        num_train_ids=150,
        num_test_ids=150,
        median_len=20,
        max_len=80,
        p_occlusion=p,
        p_empty=p / 2,
        p_id_switch=p,
        p_bad_crop=p / 2,
        p_blur=p,
    )
    rates = _rates(cfg)
    for k, (rate, se, plans) in rates.items():
        want = getattr(cfg, f"p_{k}")
        assert abs(rate - want) <= 4 * se, (k, rate, want, se)
        # temporally contiguous: an affected tracklet has one or two runs, and
        # most tracklets are clean (the frames are concentrated, not spread)
        runs = [len(nuisances.runs(pl.raw[k])) for pl in plans if pl.raw[k].any()]
        assert max(runs) <= 2
        assert len(runs) / len(plans) < 2 * want / nuisances.MEAN_FRACTION[nuisances.RUN_MODEL[k][0]] + 0.02


def test_zero_rates_give_clean_tracklets():
    cfg = dataclasses.replace(TINY, p_occlusion=0, p_empty=0, p_id_switch=0, p_bad_crop=0, p_blur=0)
    _, plans = plan.plan_dataset(cfg)
    for p in plans:
        a = plan.frame_annotations(p)
        if p.kind != "junk":
            assert sum(int(a[k].sum()) for k in NUISANCES) == 0
            assert np.all(a["true_pid"] == p.pid)


def test_length_distribution_heavy_tailed_and_bounded():
    cfg = SynthConfig(seed=5, num_train_ids=150, num_test_ids=150, min_len=3, median_len=20, max_len=200)
    _, plans = plan.plan_dataset(cfg)
    L = np.array([p.length for p in plans if p.kind == "normal"])
    assert L.min() >= 3 and L.max() <= 200
    assert abs(np.median(L) - 20) <= 3
    assert L.mean() > np.median(L)  # right-skewed
    assert np.mean(L <= 8) > 0.08 and np.mean(L >= 60) > 0.03


# --------------------------------------------------------------------------
def test_viewpoint_changes_what_is_visible():
    rng = np.random.default_rng(0)
    p = dataclasses.replace(
        people.sample_person(rng),
        bag="backpack",
        bag_color=[200, 20, 200],
        upper_pattern="logo",
        upper_color=[20, 20, 20],
        upper_color2=[240, 240, 0],
    )

    def count(view, rgb):
        a = atlas.render_atlas(p, view, 64)
        alpha = a[..., 3:]
        col = a[..., :3] / np.maximum(alpha, 1e-6)
        close = np.abs(col - np.asarray(rgb) / 255).max(-1) < 0.25
        return int((close & (alpha[..., 0] > 0.5)).sum())

    magenta, yellow = (200, 20, 200), (240, 240, 0)
    assert count("back", magenta) > 3 * count("front", magenta) > 0  # pack vs straps
    assert count("front", yellow) > 0 and count("back", yellow) == 0  # logo only in front
    a = atlas.render_atlas(p, "right", 64)
    assert a.shape[0] == atlas.NPH and not np.allclose(a[0], a[atlas.NPH // 4])  # the gait animates


def test_ensure_synthetic_caches_and_rebuilds(tmp_path, capsys, monkeypatch):
    cfg = dataclasses.replace(
        TINY,
        num_train_ids=2,
        num_test_ids=3,
        num_cameras=2,
        num_distractor_tracklets=1,
        num_junk_tracklets=1,
        max_len=8,
    )
    path = writer.ensure_synthetic(cfg, tmp_path)
    out = capsys.readouterr().out
    for word in ("identities", "tracklets", "frames", "MB", "generation took"):
        assert word in out
    assert path.parent == tmp_path and writer.dataset_key(cfg) in path.name
    assert (path / COMPLETE_MARKER).is_file()
    frame = next((path / "bbox_train").rglob("*.jpg"))
    good = frame.read_bytes()

    calls = []
    real = writer.generate
    monkeypatch.setattr(writer, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert writer.ensure_synthetic(cfg, tmp_path) == path and calls == []  # reused
    assert "cached" in capsys.readouterr().out

    frame.unlink()  # partial entry
    with pytest.warns(UserWarning, match="incomplete or corrupt"):
        assert writer.ensure_synthetic(cfg, tmp_path, verbose=False) == path
    assert calls == [1] and frame.read_bytes() == good  # rebuilt identically
    (path / COMPLETE_MARKER).unlink()  # interrupted build
    with pytest.warns(UserWarning):
        writer.ensure_synthetic(cfg, tmp_path, verbose=False)
    assert calls == [1, 1] and (path / COMPLETE_MARKER).is_file()


def test_profiles_sizes_are_in_the_intended_range():
    """Plans only: the smoke set is tiny and the default one MARS-like but CPU sized."""
    for prof, (lo_t, hi_t, hi_f) in {"smoke": (40, 400, 6000), "default": (700, 2000, 100000)}.items():
        cfg = get_config(prof).synth
        _, plans = plan.plan_dataset(cfg)
        frames = sum(p.length for p in plans)
        assert lo_t <= len(plans) <= hi_t and frames <= hi_f, (prof, len(plans), frames)
        assert cfg.max_len <= 999


def test_default_lengths_are_mars_like():
    """MARS (tracks_*_info.mat): mean 58 frames, median 33, p99 280, max 920, 51 % >= 32 frames;
    the default benchmark's identity tracklets are drawn to match (mean 50-65, a tail past 300)."""
    _, plans = plan.plan_dataset(get_config("default").synth)
    lens = np.array([p.length for p in plans if p.kind == "normal"])
    assert 50 <= lens.mean() <= 65, lens.mean()
    assert 28 <= np.median(lens) <= 38 and lens.max() > 300 and np.percentile(lens, 99) > 250
    assert 0.4 <= (lens >= 32).mean() <= 0.6


def test_pid_spelling():
    assert plan.pid_str(-1) == "00-1" and plan.pid_str(0) == "0000" and plan.pid_str(12) == "0012"
    with pytest.raises(ValueError, match="pid"):
        plan.pid_str(-3)


def test_package_api_and_one_list_of_nuisances():
    import reid_utils.synth as synth

    assert set(synth.__all__) == {"NUISANCES", "dataset_key", "ensure_synthetic", "generate"}
    assert synth.generate is writer.generate and synth.NUISANCES is nuisances.NUISANCES
    assert writer.ANNOTATION_HEADER.split(",")[3:] == list(NUISANCES)
