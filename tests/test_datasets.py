"""Loaders on tiny fixture trees in each dataset's exact layout."""

import json
import os
import sys
import types
from pathlib import Path

import fixtures_builders as fb
import numpy as np
import pytest
import scipy.io

from reid_utils.config import get_config
from reid_utils.data import datasets
from reid_utils.data.datasets import DatasetError, layout_problem, load_dataset
from reid_utils.data.duke import _DUKE_NAME


# ---------------------------------------------------------------------------
# MARS
# ---------------------------------------------------------------------------
@pytest.fixture
def mars(tmp_path):
    return fb.make_mars_tree(tmp_path / "MARS")


def _expected_path(root, split, name):
    return os.path.join(str(root), f"bbox_{split}", name[:4], name)


def test_mars_torchreid_split(mars):
    ds = load_dataset("mars", mars["root"])
    rows = mars["rows"]
    assert ds.protocol == "torchreid" and ds.name == "mars"
    # train: every row (no junk in the train fixture), in .mat order
    assert len(ds.train) == len(rows["train"])
    for t, (s, e, pid, cam) in zip(ds.train, rows["train"]):
        assert (t.pid, t.camid) == (pid, cam - 1)
        names = mars["names"]["train"][s - 1 : e]
        assert t.frames == tuple(_expected_path(mars["root"], "train", n) for n in names)
        assert all(os.path.isabs(p) for p in t.frames)
    qrows = [r - 1 for r in mars["query_idx"]]
    assert [t.index for t in ds.query] == qrows
    assert [t.pid for t in ds.query] == [int(rows["test"][r, 2]) for r in qrows]
    test_pids = rows["test"][:, 2]
    expected_gallery = [i for i in range(len(test_pids)) if i not in qrows and test_pids[i] != -1]
    assert [t.index for t in ds.gallery] == expected_gallery
    assert 0 in {t.pid for t in ds.gallery}, "distractors (pid 0) stay in the gallery"
    assert -1 not in {t.pid for t in ds.train + ds.query + ds.gallery}, "junk removed"
    for t in ds.gallery:
        s, e, pid, cam = rows["test"][t.index]
        assert (t.pid, t.camid, len(t)) == (pid, cam - 1, e - s + 1)
    # contiguous labels for the softmax of Eq. 8
    assert ds.num_train_pids == len({r[2] for r in rows["train"]})
    assert sorted(ds.train_pid2label.values()) == list(range(ds.num_train_pids))
    assert sorted(ds.train_pid2label) == sorted({int(r[2]) for r in rows["train"]})
    assert ds.train_labels().tolist() == [ds.train_pid2label[t.pid] for t in ds.train]
    assert ds.train[0].tid == "bbox_train/0001C1T0001"


def test_mars_official_keeps_queries_and_junk_in_gallery(mars):
    ds = load_dataset("mars", mars["root"], official=True)
    assert ds.protocol == "official-mars"
    assert [t.index for t in ds.gallery] == list(range(len(mars["rows"]["test"])))
    qg = ds.meta["query_gallery_index"]
    assert qg.tolist() == [r - 1 for r in mars["query_idx"]]
    for q, gi in zip(ds.query, qg):
        assert ds.gallery[gi] is q
    assert -1 in {t.pid for t in ds.gallery}
    assert -1 not in {t.pid for t in ds.train}
    alias = load_dataset("mars", mars["root"], gallery_includes_queries=True)
    assert len(alias.gallery) == len(ds.gallery)


def test_mars_statistics_match_fixture(mars, capsys):
    ds = load_dataset("mars", mars["root"])
    st = datasets.dataset_statistics(ds, verbose=True)
    assert "tracklets per camera" in capsys.readouterr().out
    summ = st["summary"]
    for split in ("train", "query", "gallery"):
        tr = getattr(ds, split)
        assert summ.loc[split, "tracklets"] == len(tr)
        assert summ.loc[split, "frames"] == sum(len(t) for t in tr)
        assert summ.loc[split, "identities"] == len({t.pid for t in tr})
        assert st["per_camera"].loc[split].sum() == len(tr)
        assert sorted(st["lengths"][split].tolist()) == sorted(len(t) for t in tr)
    assert summ.loc["total", "tracklets"] == len(ds.train) + len(ds.query) + len(ds.gallery)


def _rewrite_mat(root, split, rows):
    scipy.io.savemat(
        str(root / "info" / f"tracks_{split}_info.mat"), {f"track_{split}_info": np.asarray(rows, dtype=np.float64)}
    )


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda r: r.__setitem__((0, 2), 7), "pid=7"),  # pid disagrees with names
        (lambda r: r.__setitem__((1, 3), 4), "camid=4"),  # camid disagrees with names
        (lambda r: r.__setitem__((2, 1), 10_000), "outside"),  # row beyond the name list
        (lambda r: r.__setitem__((2, 0), r[2, 1] + 1), "empty tracklet"),
    ],
)
def test_mars_inconsistent_rows(mars, mutate, expect):
    rows = mars["rows"]["test"].copy()
    mutate(rows)
    _rewrite_mat(mars["root"], "test", rows)
    with pytest.raises(DatasetError, match=expect) as ei:
        load_dataset("mars", mars["root"])
    assert "tracks_test_info.mat" in str(ei.value)


@pytest.mark.parametrize(
    "remove, expect",
    [
        ("info/query_IDX.mat", "query_IDX.mat"),
        ("info/train_name.txt", "train_name.txt"),
        ("info/tracks_train_info.mat", "tracks_train_info.mat"),
        ("bbox_test", "bbox_test"),
        ("info", "info"),
    ],
)
def test_mars_missing_layout_parts(mars, remove, expect):
    import shutil

    p = mars["root"] / remove
    shutil.rmtree(p) if p.is_dir() else p.unlink()
    with pytest.raises(DatasetError, match="expected") as ei:
        load_dataset("mars", mars["root"])
    assert expect in str(ei.value)


def test_mars_bad_mat_contents(mars):
    info = mars["root"] / "info"
    scipy.io.savemat(str(info / "query_IDX.mat"), {"wrong_name": np.array([[1.0]])})
    with pytest.raises(DatasetError, match="no variable 'query_IDX'"):
        load_dataset("mars", mars["root"])
    scipy.io.savemat(str(info / "query_IDX.mat"), {"query_IDX": np.array([[1.0, 99.0]])})
    with pytest.raises(DatasetError, match="query_IDX.mat"):
        load_dataset("mars", mars["root"])
    (info / "query_IDX.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetError, match="cannot be read"):
        load_dataset("mars", mars["root"])


def test_mars_missing_and_broken_frames(mars):
    root = mars["root"]
    name = mars["names"]["test"][-1]  # last frame of the last tracklet
    missing = Path(_expected_path(root, "test", name))
    missing.unlink()
    with pytest.raises(DatasetError, match="does not exist") as ei:
        load_dataset("mars", root, official=True)
    assert name in str(ei.value)
    ds = load_dataset("mars", root, check_frames="none")  # opting out of the check
    assert len(ds.train) == len(mars["rows"]["train"])
    fb.write_image(missing, (0, 0, 0))
    first = Path(_expected_path(root, "train", mars["names"]["train"][0]))
    first.write_bytes(b"\xff\xd8 truncated garbage")
    with pytest.raises(DatasetError, match="cannot be decoded") as ei:
        load_dataset("mars", root)
    assert str(first) in str(ei.value)


def test_missing_root_and_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("mars", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no root given"):
        load_dataset("dukemtmc-videoreid", None)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset("prid2011", f)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("market1501", tmp_path)
    with pytest.raises(ValueError, match="unknown option"):
        load_dataset("mars", tmp_path, split_id=3)
    with pytest.raises(DatasetError, match="MARS info"):
        load_dataset("mars", tmp_path)  # exists, wrong layout


# ---------------------------------------------------------------------------
# layout_problem: the cheap top-level check used before loading
# ---------------------------------------------------------------------------
def test_layout_problem_accepts_each_fixture_layout(tmp_path):
    mars = fb.make_mars_tree(tmp_path / "MARS")["root"]
    fb.make_duke_tree(tmp_path / "duke")
    prid = fb.make_prid_tree(tmp_path / "prid")["root"]
    assert layout_problem("mars", mars) is None
    assert layout_problem("synthetic", str(mars)) is None  # same layout as MARS
    assert layout_problem("dukemtmc-videoreid", tmp_path / "duke") is None
    assert layout_problem("duke", tmp_path / "duke") is None  # aliases accepted
    assert layout_problem("prid2011", prid) is None


def test_layout_problem_names_what_is_missing(tmp_path):
    import shutil

    mars = fb.make_mars_tree(tmp_path / "MARS")["root"]
    shutil.rmtree(mars / "bbox_test")
    assert layout_problem("mars", mars) == f"its data root {mars} lacks bbox_test/ (expected the MARS layout)"
    assert layout_problem("prid2011", mars) == f"its data root {mars} lacks multi_shot/ (expected the PRID2011 layout)"
    assert layout_problem("dukemtmc-videoreid", mars) == (
        f"its data root {mars} lacks query/, gallery/ (expected the DukeMTMC-VideoReID layout)"
    )
    assert (
        layout_problem("synthetic", tmp_path / "nowhere") == f"its data root {tmp_path / 'nowhere'} is not a directory"
    )
    f = tmp_path / "file"
    f.write_text("x")
    assert "is not a directory" in layout_problem("mars", f)
    assert layout_problem("mars", None) == "no data root is given"
    with pytest.raises(ValueError, match="unknown dataset"):
        layout_problem("market1501", mars)


# ---------------------------------------------------------------------------
# synthetic (read through the MARS loader, with per-frame annotations)
# ---------------------------------------------------------------------------
def _patch_ensure_synthetic(monkeypatch, fn):
    try:
        import reid_utils.synth as synth  # the real module, once it exists

        monkeypatch.setattr(synth, "ensure_synthetic", fn)
    except ImportError:
        fake = types.ModuleType("reid_utils.synth")
        fake.ensure_synthetic = fn
        monkeypatch.setitem(sys.modules, "reid_utils.synth", fake)


def test_synthetic_reads_mars_layout_with_annotations(tmp_path, monkeypatch):
    fix = fb.make_mars_tree(tmp_path / "synth", annotations=True)
    calls = []

    def fake_ensure(synth_cfg, cache_root):
        calls.append((synth_cfg, cache_root))
        return fix["root"]

    _patch_ensure_synthetic(monkeypatch, fake_ensure)
    cfg = get_config("smoke", val_ids=0)  # the fixture's 3 identities cannot spare validation ones
    ds = datasets.load_dataset_for_config(cfg)
    assert calls == [(cfg.synth, cfg.cache_root)]
    assert ds.name == "synthetic" and ds.protocol == "torchreid"
    assert set(ds.meta["annotation_fields"]) == set(fb.ANNOT_FIELDS)
    for t in ds.train + ds.query + ds.gallery:
        a = t.annotations
        assert a is not None and len(a) == len(t.frames)
        fnums = np.array([int(Path(p).stem.split("F")[-1]) for p in t.frames])
        assert a["true_pid"].tolist() == [999 if f == 2 else t.pid for f in fnums]
        assert a["occlusion"].tolist() == (fnums % 2).tolist()
        assert a["id_switch"].tolist() == (fnums == 2).astype(int).tolist()
        assert not a.flags.writeable
    # the same tracklet counts as the plain MARS loader
    plain = load_dataset("mars", fix["root"])
    assert [len(getattr(plain, s)) for s in ("train", "query", "gallery")] == [
        len(getattr(ds, s)) for s in ("train", "query", "gallery")
    ]
    assert all(t.annotations is None for t in plain.train)
    off = load_dataset("synthetic", fix["root"], official=True)
    assert off.protocol == "official-mars" and off.gallery[0].annotations is not None


def test_synthetic_bad_input(tmp_path):
    fix = fb.make_mars_tree(tmp_path / "synth", annotations=False)
    with pytest.raises(DatasetError, match="annotations.csv"):
        load_dataset("synthetic", fix["root"])
    with pytest.raises(ValueError, match="synth_cfg"):
        load_dataset("synthetic", None)
    ann = fix["root"] / "info" / "annotations.csv"
    ann.write_text("split,name,true_pid\ntrain,0001C1T0001F001.jpg,1\n")
    with pytest.raises(DatasetError, match="no annotation row"):
        load_dataset("synthetic", fix["root"])


def test_load_dataset_for_config_real_needs_root(tmp_path):
    cfg = get_config("paper")
    with pytest.raises(DatasetError, match="data_root"):
        datasets.load_dataset_for_config(cfg)
    fix = fb.make_mars_tree(tmp_path / "MARS")
    cfg = get_config("paper", data_root=str(fix["root"]))
    assert datasets.load_dataset_for_config(cfg).name == "mars"


# ---------------------------------------------------------------------------
# DukeMTMC-VideoReID
# ---------------------------------------------------------------------------
def _fnum(path):
    m = _DUKE_NAME.match(os.path.basename(path))
    return int(m.group(3))


def test_duke_orders_frames_by_f_index(tmp_path):
    exp = fb.make_duke_tree(tmp_path / "duke")
    ds = load_dataset("dukemtmc-videoreid", tmp_path / "duke")
    assert ds.protocol == "duke"
    for split in ("train", "query", "gallery"):
        got = getattr(ds, split)
        assert [(t.pid, t.camid, t.tid) for t in got] == [(p, c, tid) for p, c, _, tid in exp[split]]
        for t, (_, _, fidx, _) in zip(got, exp[split]):
            assert [_fnum(p) for p in t.frames] == fidx
            # the pixels say the same (green channel encodes the frame number)
            assert np.allclose([fb.decode_green(p) for p in t.frames], fidx, atol=2)
    # the fixture really exercises the ordering: some tracklet's name order differs from F order
    gal = ds.gallery[-1]
    assert sorted(os.path.basename(p) for p in gal.frames) != [os.path.basename(p) for p in gal.frames]
    assert ds.train_pid2label == {1: 0, 7: 1}


@pytest.mark.parametrize(
    "breakage, expect",
    [
        ("empty_tracklet", "holds no frames"),
        ("missing_split", "gallery"),
        ("bad_name", "does not match"),
        ("mixed_cams", "one camera per tracklet"),
        ("pid_mismatch", "folder says"),
    ],
)
def test_duke_bad_input(tmp_path, breakage, expect):
    import shutil

    root = tmp_path / "duke"
    fb.make_duke_tree(root)
    tdir = root / "train" / "0001" / "0001"
    if breakage == "empty_tracklet":
        (root / "query" / "0012" / "0009").mkdir()
    elif breakage == "missing_split":
        shutil.rmtree(root / "gallery")
    elif breakage == "bad_name":
        fb.write_image(tdir / "frame_0001.jpg", (1, 2, 3))
    elif breakage == "mixed_cams":
        fb.write_image(tdir / "0001C2F0050X1.jpg", (1, 2, 3))
    elif breakage == "pid_mismatch":
        fb.write_image(tdir / "0002C1F0050X1.jpg", (1, 2, 3))
    with pytest.raises(DatasetError, match=expect):
        load_dataset("dukemtmc-videoreid", root)


# ---------------------------------------------------------------------------
# PRID2011
# ---------------------------------------------------------------------------
@pytest.fixture
def prid(tmp_path):
    return fb.make_prid_tree(tmp_path / "prid")


def test_prid_eligibility_split_and_numeric_order(prid):
    root = prid["root"]
    ds = load_dataset("prid2011", root)
    train_p = sorted({t.pid for t in ds.train})
    test_p = sorted({t.pid for t in ds.query})
    assert sorted(train_p + test_p) == prid["eligible"]  # persons 7, 8, 9 excluded
    assert len(train_p) == len(prid["eligible"]) // 2 and not set(train_p) & set(test_p)
    assert sorted({t.pid for t in ds.gallery}) == test_p
    assert {t.camid for t in ds.query} == {0} and {t.camid for t in ds.gallery} == {1}
    assert sorted((t.pid, t.camid) for t in ds.train) == [(p, c) for p in train_p for c in (0, 1)]
    assert ds.meta["num_eligible_persons"] == len(prid["eligible"])
    for t in ds.train + ds.query + ds.gallery:
        nums = [int(Path(p).stem) for p in t.frames]
        assert nums == list(range(1, prid["counts"][(t.pid, t.camid)] + 1))
        assert np.allclose([fb.decode_green(t.frames[i]) for i in (0, 9, -1)], [nums[i] for i in (0, 9, -1)], atol=2)
    assert any(Path(t.frames[0]).name == "1.png" for t in ds.train + ds.query)


def test_prid_splits_generated_deterministically_and_saved(prid, tmp_path):
    root = prid["root"]
    path = root / datasets.PRID_SPLITS_FILE
    assert not path.exists()
    ds0 = load_dataset("prid2011", root)
    saved = json.loads(path.read_text())
    assert len(saved) == 10 and all(set(s) == {"train", "test"} for s in saved)
    for s in saved:
        assert sorted(s["train"] + s["test"]) == prid["eligible"]
    # a fresh copy of the data generates the same splits
    other = fb.make_prid_tree(tmp_path / "prid_copy")["root"]
    load_dataset("prid2011", other)
    assert json.loads((other / datasets.PRID_SPLITS_FILE).read_text()) == saved
    # split_id selects among them; the saved file is read back
    ds3 = load_dataset("prid2011", root, split_id=3)
    assert sorted({t.pid for t in ds3.query}) == saved[3]["test"]
    assert sorted({t.pid for t in ds0.query}) == saved[0]["test"]
    assert ds3.meta["splits_source"] == str(path)
    assert len({tuple(s["test"]) for s in saved}) > 1, "the 10 splits differ"
    with pytest.raises(ValueError, match="split_id"):
        load_dataset("prid2011", root, split_id=10)


def test_prid_reads_given_splits_json(prid):
    root = prid["root"]
    given = [{"train": ["person_0001", "person_0002", "person_0003"], "test": [4, 5, 6]}] * 10
    (root / datasets.PRID_SPLITS_FILE).write_text(json.dumps(given))
    ds = load_dataset("prid2011", root, split_id=9)
    assert sorted({t.pid for t in ds.train}) == [1, 2, 3]
    assert sorted({t.pid for t in ds.query}) == [4, 5, 6]
    (root / datasets.PRID_SPLITS_FILE).write_text(json.dumps([{"train": [1], "test": [42]}]))
    with pytest.raises(DatasetError, match=r"\[42\]"):
        load_dataset("prid2011", root)
    (root / datasets.PRID_SPLITS_FILE).write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset("prid2011", root)
    (root / datasets.PRID_SPLITS_FILE).write_text(json.dumps([{"train": [1, 2], "test": [2]}]))
    with pytest.raises(DatasetError, match="disjoint"):
        load_dataset("prid2011", root)


def test_prid_splits_path_and_read_only_root(prid, tmp_path, monkeypatch):
    root = prid["root"]
    elsewhere = tmp_path / "splits" / "prid.json"
    load_dataset("prid2011", root, splits_path=elsewhere)
    assert elsewhere.is_file() and not (root / datasets.PRID_SPLITS_FILE).exists()

    import reid_utils.cache

    def refuse(path, text):
        raise PermissionError(f"read-only: {path}")

    monkeypatch.setattr(reid_utils.cache, "atomic_write_text", refuse)
    with pytest.warns(UserWarning, match="could not save"):
        ds = load_dataset("prid2011", root)
    assert sorted({t.pid for t in ds.train + ds.query}) == prid["eligible"]


def test_prid_bad_input(prid):
    import shutil

    root = prid["root"]
    (root / "multi_shot" / "cam_a" / "person_0003" / "frame.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="not a number"):
        load_dataset("prid2011", root)
    (root / "multi_shot" / "cam_a" / "person_0003" / "frame.png").unlink()
    (root / "multi_shot" / "cam_b" / "person_0020").mkdir()
    with pytest.raises(DatasetError, match="person_0020 holds no frames"):
        load_dataset("prid2011", root)
    shutil.rmtree(root / "multi_shot" / "cam_b")
    with pytest.raises(DatasetError, match="cam_b"):
        load_dataset("prid2011", root)
    with pytest.raises(DatasetError, match="no person has >= 100 frames"):
        fb.make_prid_tree(root.parent / "p2")
        load_dataset("prid2011", root.parent / "p2", min_frames=100)


def test_real_synthetic_set_reads_back_consistently(tmp_path):
    """The generated benchmark (reid_utils.synth) through the MARS loader: counts match its .mat files."""
    synth = pytest.importorskip("reid_utils.synth")
    from dataclasses import replace

    scfg = replace(
        get_config("smoke").synth,
        num_train_ids=4,
        num_test_ids=4,
        max_len=16,
        num_distractor_tracklets=2,
        num_junk_tracklets=2,
    )
    root = Path(synth.ensure_synthetic(scfg, tmp_path / "artifacts"))
    ds = load_dataset("synthetic", root, official=True)
    info = root / "info"
    rows = {
        s: scipy.io.loadmat(str(info / f"tracks_{s}_info.mat"))[f"track_{s}_info"].astype(int)
        for s in ("train", "test")
    }
    qidx = scipy.io.loadmat(str(info / "query_IDX.mat"))["query_IDX"].ravel().astype(int) - 1
    assert len(ds.gallery) == len(rows["test"]) and len(ds.query) == len(qidx)
    assert len(ds.train) == int((rows["train"][:, 2] != -1).sum())
    for tracks, r in ((ds.train, rows["train"]), (ds.gallery, rows["test"])):
        for t in tracks:
            s, e, pid, cam = r[t.index][:4]
            assert (len(t), t.pid, t.camid) == (e - s + 1, pid, cam - 1)
            assert t.annotations is not None and len(t.annotations) == len(t)
    assert all(os.path.isfile(p) for t in ds.query for p in t.frames)
    plain = load_dataset("synthetic", root)
    assert len(plain.gallery) == int(
        sum(1 for i, r in enumerate(rows["test"]) if i not in set(qidx.tolist()) and r[2] != -1)
    )


def test_most_affected_orders_by_nuisance_frames_and_skips_unannotated():
    from types import SimpleNamespace

    import numpy as np

    from reid_utils.data.datasets import most_affected

    dt = np.dtype([("occlusion", "f4"), ("blur", "i1")])
    ann = lambda occ, blur: np.array(list(zip(occ, blur)), dtype=dt)  # noqa: E731
    a = SimpleNamespace(annotations=ann([1, 0, 0], [0, 0, 0]))
    b = SimpleNamespace(annotations=ann([1, 1, 0], [0, 1, 1]))
    c = SimpleNamespace(annotations=None)
    assert most_affected([a, b, c], 5) == [b, a]
    assert most_affected([a, b, c], 1) == [b]
