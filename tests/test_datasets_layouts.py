"""Datasets accepted as downloaded: the root may be the dataset folder or up to two levels above
it, query/gallery-only trees load for evaluation, and the synthetic generator writes the
DukeMTMC-VideoReID and PRID2011 layouts (reid_utils.data.discover, the loaders, synth.layouts)."""

import json
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import fixtures_builders as fb
import numpy as np
import pytest
import scipy.io
from PIL import Image

from reid_utils.config import SynthConfig
from reid_utils.data.datasets import DatasetError, layout_problem, load_dataset, require_train
from reid_utils.synth import dataset_key, ensure_synthetic, generate, writer

BUILD = {
    "mars": lambda d: fb.make_mars_tree(d),
    "dukemtmc-videoreid": lambda d: fb.make_duke_tree(d),
    "prid2011": lambda d: fb.make_prid_tree(d),
}
# where users keep them: (folders above the dataset folder, the dataset folder)
AS_DOWNLOADED = {
    "mars": ("data/reid", "MARS"),
    "dukemtmc-videoreid": ("reid-data/dukemtmc-vidreid", "DukeMTMC-VideoReID"),
    "prid2011": ("root/prid2011", "prid_2011"),
}
DATASETS = sorted(BUILD)


def _counts(ds):
    return len(ds.train), len(ds.query), len(ds.gallery)


def _build(base: Path, name: str) -> Path:
    above, folder = AS_DOWNLOADED[name]
    ds_dir = base / above / folder
    BUILD[name](ds_dir)
    return ds_dir


# ---------------------------------------------------------------------------
# discovery: the folder itself, one or two levels up; not three; never two candidates
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", DATASETS)
def test_root_is_the_folder_or_up_to_two_levels_above_it(tmp_path, name):
    ds_dir = _build(tmp_path, name)
    direct = load_dataset(name, ds_dir)
    assert direct.root == str(ds_dir) and all(_counts(direct))
    for root in (ds_dir.parent, ds_dir.parent.parent, str(ds_dir.parent.parent) + os.sep):
        ds = load_dataset(name, root)
        assert ds.root == str(ds_dir), root
        assert _counts(ds) == _counts(direct)
        assert [t.frames for t in ds.query] == [t.frames for t in direct.query]
        assert layout_problem(name, root) is None


@pytest.mark.parametrize("name", DATASETS)
def test_three_levels_up_is_refused_naming_the_folder_too_deep(tmp_path, name):
    ds_dir = _build(tmp_path, name)
    root = ds_dir.parent.parent.parent
    assert root == tmp_path
    with pytest.raises(DatasetError) as ei:
        load_dataset(name, root)
    msg = str(ei.value)
    assert str(root) in msg and "up to 2 levels" in msg and "expected" in msg
    assert f"{ds_dir} is 3 levels below it, one too deep" in msg
    problem = layout_problem(name, root)
    assert problem.startswith(f"its data root {root} lacks ") and "one too deep" in problem


@pytest.mark.parametrize("name", DATASETS)
def test_two_candidates_are_an_error_listing_both(tmp_path, name):
    a, b = tmp_path / "old" / "copy", tmp_path / "new"
    BUILD[name](a)
    BUILD[name](b)
    for err in (lambda: load_dataset(name, tmp_path), lambda: layout_problem(name, tmp_path)):
        try:
            msg = err()
        except DatasetError as e:
            msg = str(e)
        assert msg and "holds 2 " in msg and f"({b}, {a})" in msg and "expected one" in msg
    assert load_dataset(name, tmp_path / "old").root == str(a)  # one of them named: fine


def test_each_dataset_found_beside_the_others_and_macos_residue_ignored(tmp_path):
    base = tmp_path / "reid-data"
    dirs = {name: base / AS_DOWNLOADED[name][0].split("/")[-1] / AS_DOWNLOADED[name][1] for name in DATASETS}
    for name in DATASETS:
        BUILD[name](dirs[name])
        shutil.copytree(dirs[name], base / "__MACOSX" / name)  # zip residue: skipped
        shutil.copytree(dirs[name], base / f".{name}-backup")  # hidden folders: skipped
    for name in DATASETS:  # the other datasets' folders are no candidates either
        assert load_dataset(name, base).root == str(dirs[name])
        assert layout_problem(name, base) is None


def test_a_symlinked_copy_counts_once(tmp_path):
    mars = fb.make_mars_tree(tmp_path / "MARS")["root"]
    (tmp_path / "mars-link").symlink_to(mars, target_is_directory=True)
    assert load_dataset("mars", tmp_path).root == str(mars)


def test_mars_without_info_names_what_is_missing(tmp_path):
    """The MARS zip holds bbox_train/ and bbox_test/ only; info/ comes from another download."""
    mars = fb.make_mars_tree(tmp_path / "MARS")["root"]
    shutil.rmtree(mars / "info")
    with pytest.raises(DatasetError) as ei:
        load_dataset("mars", tmp_path)
    msg = str(ei.value)
    assert f"{mars} holds bbox_test/, bbox_train/ but lacks info/" in msg
    assert "MARS info/ folder (train_name.txt" in msg


def test_duke_needs_duke_named_frames(tmp_path):
    """query/ + gallery/ trees of other frames (an image dataset, other names) are not DukeMTMC-VideoReID."""
    other, flat = tmp_path / "other", tmp_path / "market"
    for split in ("query", "gallery"):
        fb.write_image(other / split / "0001" / "0001" / "0001_c1s1_000151_00.jpg", (1, 2, 3))
        fb.write_image(flat / split / "0001_c1s1_000151_00.jpg", (1, 2, 3))
    with pytest.raises(DatasetError) as ei:
        load_dataset("duke", tmp_path)
    msg = str(ei.value)
    assert f"{flat} holds query/ and gallery/ but query/0001_c1s1_000151_00.jpg is not a DukeMTMC" in msg
    assert f"{other} holds query/ and gallery/ but query/0001/0001/0001_c1s1_000151_00.jpg is not" in msg
    assert "expected query/<pid>/<tracklet>/0001C6F0099X30823.jpg" in msg
    duke = tmp_path / "DukeMTMC-VideoReID"
    fb.make_duke_tree(duke)
    assert load_dataset("duke", tmp_path).root == str(duke)  # the other trees are no candidates
    assert layout_problem("duke", tmp_path) is None


def test_prid_uses_the_torchreid_splits_file_beside_the_dataset_folder(tmp_path):
    """torchreid keeps prid2011/splits_prid2011.json beside prid2011/prid_2011/multi_shot."""
    prid = fb.make_prid_tree(tmp_path / "prid2011" / "prid_2011")
    elig = prid["eligible"]
    splits = [{"train": [f"person_{p:04d}" for p in elig[:3]], "test": [f"person_{p:04d}" for p in elig[3:]]}]
    (tmp_path / "prid2011" / "splits_prid2011.json").write_text(json.dumps(splits))
    ds = load_dataset("prid2011", tmp_path)
    assert ds.meta["splits_source"] == str(tmp_path / "prid2011" / "splits_prid2011.json")
    assert sorted({t.pid for t in ds.train}) == elig[:3] and sorted(t.pid for t in ds.query) == elig[3:]
    assert not (tmp_path / "prid2011" / "prid_2011" / "splits_prid2011.json").exists()


# ---------------------------------------------------------------------------
# query/gallery-only trees: evaluation yes, training no
# ---------------------------------------------------------------------------
def _without_train(tmp_path, name, how):
    root = tmp_path / name
    if name == "mars":
        fb.make_mars_tree(root)
        if how == "absent":
            shutil.rmtree(root / "bbox_train")
        else:  # bbox_train/ kept, the train lists in info/ empty
            shutil.rmtree(root / "bbox_train")
            (root / "bbox_train").mkdir()
            (root / "info" / "train_name.txt").write_text("")
            scipy.io.savemat(str(root / "info" / "tracks_train_info.mat"), {"track_train_info": np.zeros((0, 4))})
    else:
        fb.make_duke_tree(root, spec={k: v for k, v in fb.DUKE_SPEC.items() if k != "train"})
        if how == "empty":
            (root / "train").mkdir()
    return root


@pytest.mark.parametrize(
    "name, how, why",
    [
        ("mars", "absent", "bbox_train is absent"),
        ("mars", "empty", "tracks_train_info.mat lists no tracklets"),
        ("dukemtmc-videoreid", "absent", "train is absent"),
        ("dukemtmc-videoreid", "empty", "holds no <pid>/<tracklet>/ folders"),
    ],
)
def test_query_gallery_only_tree_loads_for_evaluation(tmp_path, name, how, why):
    BUILD[name](tmp_path / "full")
    full = load_dataset(name, tmp_path / "full")
    root = _without_train(tmp_path / "eval", name, how)
    ds = load_dataset(name, tmp_path / "eval")  # discovery works on such a tree too
    assert ds.root == str(root) and ds.train == [] and ds.num_train_pids == 0
    assert [(t.pid, t.camid, len(t)) for t in ds.query] == [(t.pid, t.camid, len(t)) for t in full.query]
    assert [(t.pid, t.camid, len(t)) for t in ds.gallery] == [(t.pid, t.camid, len(t)) for t in full.gallery]
    assert why in ds.meta["no_train"]
    assert ds.statistics()["summary"].loc["train", "tracklets"] == 0  # notebook 00 describes it
    with pytest.raises(DatasetError) as ei:
        ds.require_train("train_i3d")
    msg = str(ei.value)
    assert msg.startswith("train_i3d needs training tracklets") and str(root) in msg and why in msg
    assert "evaluation only" in msg
    full.require_train("train_i3d")  # a tree with a training split passes


def test_mars_train_info_without_frames_is_still_an_error(tmp_path):
    """bbox_train/ present but its name list gone: a broken tree, not a query/gallery-only one."""
    root = fb.make_mars_tree(tmp_path / "MARS")["root"]
    (root / "info" / "train_name.txt").unlink()
    with pytest.raises(DatasetError, match="train_name.txt"):
        load_dataset("mars", root)


def test_require_train_on_any_dataset_like_object():
    require_train(SimpleNamespace(train=[1]), "x")
    with pytest.raises(DatasetError, match=r"^get_aggregator needs training tracklets, but the dataset has none"):
        require_train(SimpleNamespace(train=[]), "get_aggregator")


# ---------------------------------------------------------------------------
# the synthetic generator in each layout, read back by the loaders
# ---------------------------------------------------------------------------
SYN = SynthConfig(
    seed=5,
    num_train_ids=4,
    num_test_ids=5,
    num_cameras=3,
    frame_height=48,  # not the default size: any size is written as asked
    frame_width=24,
    min_len=3,
    median_len=5,
    max_len=9,
    num_distractor_tracklets=3,
    num_junk_tracklets=2,
)
SYN_PRID = replace(SYN, num_cameras=2, min_len=21, median_len=22, max_len=24, num_test_ids=4)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout, cfg, sub in (
        ("mars", SYN, "MARS"),
        ("dukemtmc-videoreid", SYN, "reid-data/dukemtmc-vidreid/DukeMTMC-VideoReID"),
        ("prid2011", SYN_PRID, "prid2011/prid_2011"),
    ):
        stats = generate(cfg, base / layout / sub, progress=False, layout=layout)
        root = base / layout / sub
        out[layout] = (root.parent.parent, root, stats)  # the root two levels above, the tree
    return out


def _frame_size(path):
    with Image.open(path) as im:
        return im.size[1], im.size[0]


def test_duke_layout_reads_back_as_the_mars_layout_benchmark(trees):
    top, root, stats = trees["dukemtmc-videoreid"]
    duke = load_dataset("dukemtmc-videoreid", top)  # two levels up, as downloaded
    mars = load_dataset("synthetic", trees["mars"][1])
    assert duke.root == str(root) and duke.protocol == "duke"
    assert sorted(os.listdir(root)) == ["gallery", "query", "synth_meta.json", "train"]
    # the same tracklets: train as in MARS, the same queries, the gallery = other test tracks minus junk
    key = lambda ts: sorted((t.pid, t.camid, len(t)) for t in ts)  # noqa: E731
    assert key(duke.train) == key(mars.train) and key(duke.query) == key(mars.query)
    mars_g = [t for t in mars.gallery if t.pid > 0]
    last = max(t.pid for t in mars.train + mars.gallery)  # the last identity's pid
    assert key(t for t in duke.gallery if t.pid <= last) == key(mars_g)
    distractors = [t for t in duke.gallery if t.pid > last]
    assert len(distractors) == sum(t.pid == 0 for t in mars.gallery) == SYN.num_distractor_tracklets
    assert not {t.pid for t in distractors} & {t.pid for t in duke.query}  # gallery-only identities
    assert stats["counts"] == {"train": len(duke.train), "query": len(duke.query), "gallery": len(duke.gallery)}
    assert duke.num_train_pids == SYN.num_train_ids and len({t.pid for t in duke.query}) <= SYN.num_test_ids
    for t in duke.train[:2] + duke.query[:2] + duke.gallery[:2]:
        assert _frame_size(t.frames[0]) == (SYN.frame_height, SYN.frame_width)
    # the very same JPEG bytes as the MARS layout's frames of the source tracklet
    meta = json.loads((root / "synth_meta.json").read_text())
    entry = next(e for e in meta["tracklets"] if e["split"] == "query")
    src = next(t for t in mars.query if t.tid.endswith(entry["source"]))
    dst = sorted((root / entry["folder"]).iterdir())
    assert [p.read_bytes() for p in dst] == [Path(p).read_bytes() for p in src.frames]


def test_prid_layout_reads_back_with_its_splits(trees):
    from reid_utils.data.prid import make_prid_splits

    top, root, stats = trees["prid2011"]
    ds = load_dataset("prid2011", top)
    assert ds.root == str(root) and sorted(os.listdir(root)) == [
        "multi_shot",
        "splits_prid2011.json",
        "synth_meta.json",
    ]
    assert sorted(os.listdir(root / "multi_shot")) == ["cam_a", "cam_b"]
    persons = SYN_PRID.num_train_ids + SYN_PRID.num_test_ids  # 2 cameras: every identity in both
    assert stats["identities"] == stats["eligible_persons"] == ds.meta["num_eligible_persons"] == persons
    assert stats["counts"] == {"cam_a": persons, "cam_b": persons}
    assert len(ds.train) == 2 * (persons // 2) and len(ds.query) == len(ds.gallery) == persons - persons // 2
    assert {t.camid for t in ds.query} == {0} and {t.camid for t in ds.gallery} == {1}
    assert all(len(t) >= 21 for t in ds.train + ds.query + ds.gallery)
    assert _frame_size(ds.query[0].frames[0]) == (SYN_PRID.frame_height, SYN_PRID.frame_width)
    # the splits file is what the loader would generate for these persons (it only reads it)
    eligible = sorted({t.pid for t in ds.train + ds.query})
    assert json.loads((root / "splits_prid2011.json").read_text()) == make_prid_splits(eligible)
    assert ds.meta["splits_source"] == str(root / "splits_prid2011.json")
    assert load_dataset("prid2011", top, split_id=9).protocol == "prid-split9"


def test_prid_layout_needs_long_enough_tracklets_in_two_cameras(tmp_path):
    with pytest.raises(ValueError, match=r"min_len>=21"):
        generate(SYN, tmp_path / "p", progress=False, layout="prid2011")


def test_layout_names_and_keys(tmp_path):
    with pytest.raises(ValueError, match="expected one of mars, dukemtmc-videoreid, prid2011"):
        generate(SYN, tmp_path / "x", progress=False, layout="duke")
    from reid_utils.config import config_key

    assert dataset_key(SYN) == dataset_key(SYN, "mars") == f"{config_key(SYN)}-v{writer.GENERATOR_VERSION}"
    keys = {dataset_key(SYN, layout) for layout in ("mars", "dukemtmc-videoreid", "prid2011")}
    assert len(keys) == 3


def test_ensure_synthetic_caches_a_layout_the_loader_leaves_intact(tmp_path, capsys, monkeypatch):
    small = replace(SYN_PRID, num_train_ids=2, num_test_ids=2, frame_height=32, frame_width=16)
    path = ensure_synthetic(small, tmp_path, layout="prid2011")
    assert "prid2011 layout" in capsys.readouterr().out
    assert dataset_key(small, "prid2011") in str(path)
    ds = load_dataset("prid2011", path)
    assert ds.meta["splits_source"] == str(path / "splits_prid2011.json")  # read, not written
    calls = []
    monkeypatch.setattr(writer, "generate", lambda *a, **k: calls.append(1))
    assert ensure_synthetic(small, tmp_path, layout="prid2011") == path
    assert calls == []  # complete and unchanged: reused


def test_a_root_inside_the_dataset_folder_points_to_it(tmp_path):
    mars = fb.make_mars_tree(tmp_path / "MARS")["root"]
    with pytest.raises(DatasetError, match=re.escape(f"it is inside the MARS folder {mars}: give that folder")):
        load_dataset("mars", mars / "bbox_test")
