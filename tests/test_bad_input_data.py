"""Bad data inputs (the hardening targets): each case must end in one clear
error naming the file (or ``$REID_DATASET``) and what was expected, never load silently.

The cases are parametrised; their ids name them. Valid inputs are covered by
``tests/test_datasets.py`` and ``tests/test_synth.py``.
"""

import json

import fixtures_builders as fb
import numpy as np
import pytest
import scipy.io

from reid_utils.config import get_config, resolve_profile
from reid_utils.data import datasets
from reid_utils.data.datasets import DatasetError, load_dataset


@pytest.fixture
def mars(tmp_path):
    return fb.make_mars_tree(tmp_path / "MARS")


def _savemat(path, var, value):
    scipy.io.savemat(str(path), {var: value})


# ---------------------------------------------------------------------------
# every name of the MARS name lists matches the naming pattern
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("0001C1/../../../outside.jpg", id="later_name_dotdot"),
        pytest.param("0001C1T0001F0x2.jpg", id="later_name_off_pattern"),
        pytest.param("0001C1T0001F002.jpg/x.jpg", id="later_name_separator"),
    ],
)
def test_mars_every_name_matches_the_pattern(mars, bad):
    names = list(mars["names"]["train"])
    names[1] = bad  # second frame of the first tracklet (the first name is fine)
    path = mars["root"] / "info" / "train_name.txt"
    path.write_text("\n".join(names) + "\n")
    with pytest.raises(DatasetError, match="line 2") as ei:
        load_dataset("mars", mars["root"])
    msg = str(ei.value)
    assert str(path) in msg and "PPPPCcTttttFfff" in msg and repr(bad) in msg


# ---------------------------------------------------------------------------
# PRID splits files
# ---------------------------------------------------------------------------
GOOD_SPLIT = {"train": [1, 2, 3], "test": [4, 5, 6]}


@pytest.mark.parametrize(
    "splits, split_id, expect",
    [
        pytest.param([{"train": "12", "test": [3, 4]}], 0, "'train' is '12' of type str", id="train_string"),
        pytest.param([{"train": 5, "test": [3, 4]}], 0, "'train' is 5 of type int", id="train_int"),
        pytest.param([{"train": [1, 2], "test": None}], 0, "'test' is None of type NoneType", id="test_null"),
        pytest.param([{"train": [1, 1, "person_0001"], "test": [3]}], 0, r"\[1\] more than once", id="duplicates"),
        pytest.param([{"train": [2, "person_0002"], "test": [3]}], 0, r"\[2\] more than once", id="duplicate_name"),
        pytest.param([{"train": [1, 7], "test": [3]}], 0, r"\[7\].*20 frames in cam_b", id="too_few_frames"),
        pytest.param([{"train": [1, 8], "test": [3]}], 0, r"\[8\].*not in cam_b", id="one_camera_only"),
        pytest.param([{"train": [], "test": [3]}], 0, "'train' is empty", id="empty_train"),
        pytest.param([{"train": [1], "test": []}], 0, "'test' is empty", id="empty_test"),
        pytest.param(
            [GOOD_SPLIT, {"train": "12", "test": [3]}], 1, "split 1: 'train' is '12' of type str", id="bad_second_split"
        ),
        pytest.param([GOOD_SPLIT, {"train": [1, 7], "test": [3]}], 1, r"split 1.*\[7\]", id="ineligible_second_split"),
    ],
)
def test_prid_bad_splits_file(tmp_path, splits, split_id, expect):
    root = fb.make_prid_tree(tmp_path / "prid")["root"]
    path = root / datasets.PRID_SPLITS_FILE
    path.write_text(json.dumps(splits))
    with pytest.raises(DatasetError, match=expect) as ei:
        load_dataset("prid2011", root, split_id=split_id)
    assert str(path) in str(ei.value) and "expected" in str(ei.value)


# ---------------------------------------------------------------------------
# items 8 and 10: the .mat tables (finite integers, columns, non-empty, ranges)
# ---------------------------------------------------------------------------
def _rows(mars, split, row, col, value):
    rows = mars["rows"][split].astype(np.float64)
    rows[row, col] = value
    return rows


@pytest.mark.parametrize(
    "make, file, expect",
    [
        pytest.param(
            lambda m: ("query_IDX", np.array([[1.5, 4.0, 9.0]])), "query_IDX", "not an integer", id="query_fraction"
        ),
        pytest.param(lambda m: ("query_IDX", np.array([[1.0, np.nan]])), "query_IDX", "not finite", id="query_nan"),
        pytest.param(
            lambda m: ("query_IDX", np.array([[1.0, 4.0], [9.0, 2.0]])), "query_IDX", "shape", id="query_matrix"
        ),
        pytest.param(lambda m: ("query_IDX", np.zeros((1, 0))), "query_IDX", "is empty", id="query_empty"),
        pytest.param(lambda m: ("query_IDX", "abc"), "query_IDX", "expected numbers", id="query_text"),
        pytest.param(
            lambda m: ("track_train_info", _rows(m, "train", 0, 0, 1.7)),
            "tracks_train_info",
            r"row 1, column 1 \(start\).*not an integer",
            id="tracks_start_fraction",
        ),
        pytest.param(
            lambda m: ("track_test_info", _rows(m, "test", 2, 2, np.nan)),
            "tracks_test_info",
            r"row 3, column 3 \(pid\).*not finite",
            id="tracks_nan",
        ),
        pytest.param(
            lambda m: ("track_test_info", _rows(m, "test", 1, 1, np.inf)),
            "tracks_test_info",
            "not finite",
            id="tracks_inf",
        ),
        pytest.param(
            lambda m: ("track_train_info", np.zeros((0, 4))), "tracks_train_info", "is empty", id="tracks_0_rows"
        ),
        pytest.param(
            lambda m: ("track_test_info", np.zeros((0, 4))), "tracks_test_info", "is empty", id="tracks_0_test"
        ),
        pytest.param(lambda m: ("track_train_info", "abc"), "tracks_train_info", "expected numbers", id="tracks_text"),
        pytest.param(
            lambda m: ("track_train_info", _rows(m, "train", 0, 0, 0)),
            "tracks_train_info",
            r"row 1.*start=0 is outside 1\.\.",
            id="tracks_start_0",
        ),
    ],
)
def test_mars_bad_mat_tables(mars, make, file, expect):
    var, value = make(mars)
    path = mars["root"] / "info" / f"{file}.mat"
    _savemat(path, var, value)
    with pytest.raises(DatasetError, match=expect) as ei:
        load_dataset("mars", mars["root"])
    msg = str(ei.value)
    assert str(path) in msg and repr(var) in msg and "expected" in msg
    assert str(np.iinfo(np.int64).min) not in msg


# ---------------------------------------------------------------------------
# binary text files, bad annotation tables
# ---------------------------------------------------------------------------
BINARY = b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x81\x9c binary"


@pytest.mark.parametrize("file", ["train_name.txt", "test_name.txt", "annotations.csv"])
def test_binary_text_files(tmp_path, file):
    fix = fb.make_mars_tree(tmp_path / "synth", annotations=True)
    path = fix["root"] / "info" / file
    path.write_bytes(BINARY)
    with pytest.raises(DatasetError, match="not UTF-8 text") as ei:
        load_dataset("synthetic", fix["root"])
    assert str(path) in str(ei.value) and "expected" in str(ei.value)


def _edit_annotations(path, edit):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


@pytest.mark.parametrize(
    "edit, expect",
    [
        pytest.param(
            lambda ls: ls[:3] + [ls[3].rsplit(",", 3)[0] + ",x,0,0"] + ls[4:],
            "column 'id_switch' has the value 'x' on line 4",
            id="bad_value",
        ),
        pytest.param(
            lambda ls: [ls[0] + ",blur"] + [ln + ",0" for ln in ls[1:]], "'blur' twice", id="duplicate_column"
        ),
        pytest.param(lambda ls: [ls[0] + ","] + [ln + ",0" for ln in ls[1:]], "empty column name", id="empty_column"),
        pytest.param(lambda ls: ls + [ls[1]], r"line \d+ repeats frame", id="duplicate_row"),
    ],
)
def test_bad_annotations_csv(tmp_path, edit, expect):
    fix = fb.make_mars_tree(tmp_path / "synth", annotations=True)
    path = fix["root"] / "info" / "annotations.csv"
    _edit_annotations(path, edit)
    with pytest.raises(DatasetError, match=expect) as ei:
        load_dataset("synthetic", fix["root"])
    assert str(path) in str(ei.value) and "expected" in str(ei.value)


# ---------------------------------------------------------------------------
# an unknown $REID_DATASET is named before anything about the data root
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("with_root", [False, True], ids=["env_bogus_no_root", "env_bogus_with_root"])
def test_unknown_dataset_in_config(tmp_path, monkeypatch, with_root):
    monkeypatch.setenv("REID_DATASET", "bogus")
    if with_root:
        monkeypatch.setenv("REID_DATA_ROOT", str(tmp_path))
    else:
        monkeypatch.delenv("REID_DATA_ROOT", raising=False)
    cfg = resolve_profile("paper")
    with pytest.raises(ValueError, match="'bogus'") as ei:
        datasets.load_dataset_for_config(cfg)
    msg = str(ei.value)
    assert "$REID_DATASET" in msg and "mars" in msg and "prid2011" in msg
    assert "data_root" not in msg and not isinstance(ei.value, DatasetError)


def test_config_dataset_alias_is_resolved(tmp_path):
    cfg = get_config(
        "default",
        dataset="Synthetic",
        data_root=str(fb.make_mars_tree(tmp_path / "s", annotations=True)["root"]),
        val_ids=0,  # a 3-identity tree cannot spare the default's 30 validation identities
    )
    assert datasets.load_dataset_for_config(cfg).name == "synthetic"
