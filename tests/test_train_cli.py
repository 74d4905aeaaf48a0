"""``python -m reid_utils.train``: end to end on a tiny synthetic set, filling the cache the
notebooks read (they then train nothing); a killed run resumes to the uninterrupted
run's weights; bad input is one line and a non-zero exit status."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reid_utils import train as cli
from reid_utils.cache import ArtifactCache
from reid_utils.config import get_config, resolve_profile
from reid_utils.data.datasets import load_dataset_for_config

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "model.input_height=32",
    "model.input_width=16",
    "train.P=2",
    "train.K=2",
    "agg.iterations=3",
    "agg.P=2",
    "agg.K=2",
    "agg.num_clips=2",
    "agg.hidden=16",
]
SETS = [a for s in TINY for a in ("--set", s)]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A tiny synthetic data set in the MARS layout (6 training identities, 32 x 16 frames)."""
    synth = dict(num_train_ids=6, num_test_ids=4, num_distractor_tracklets=0, num_junk_tracklets=0)
    cfg = get_config(
        "smoke",
        artifacts_dir=str(tmp_path_factory.mktemp("gen")),
        synth={**synth, "frame_height": 32, "frame_width": 16},
    )
    return str(load_dataset_for_config(cfg).root)


def _cli(args: list, artifacts: Path, wait: bool = True):
    env = {k: v for k, v in os.environ.items() if k not in ("REID_PROFILE", "REID_OVERRIDES", "REID_DATA_ROOT")}
    env.update(REID_ARTIFACTS=str(artifacts), REID_FIGURES=str(artifacts / "figures"), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "reid_utils.train", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _config(artifacts: Path, data_root: str, extra: list):
    """The config a notebook resolves for the CLI's arguments (REID_OVERRIDES = the --set values)."""
    return resolve_profile("smoke", artifacts_dir=str(artifacts), data_root=data_root, **cli.parse_set(TINY + extra))


def test_parse_set():
    got = cli.parse_set(["train.iterations=2", "device=cpu", "ablation.train_lens=[4, 8]", "model.pretrained=false"])
    assert got == {
        "train": {"iterations": 2},
        "device": "cpu",
        "ablation": {"train_lens": [4, 8]},
        "model": {"pretrained": False},
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        cli.parse_set(["train.iterations"])


def test_all_fills_the_cache_the_notebooks_read(data_root, tmp_path, monkeypatch):
    extra = ["train.iterations=4", "train.eval_every=4"]
    args = ["all", "--profile", "smoke", "--data-root", data_root, "--clip-len", 4, "--levels", 0, 1, "--threads", 1]
    t0 = time.perf_counter()
    r = _cli([*args, *SETS, "--set", extra[0], "--set", extra[1]], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "I3D L_train=4: 4 iterations" in r.stdout and "aggregators M_c^max=1" in r.stdout
    assert "REID_OVERRIDES=" in r.stdout  # how the notebooks resolve the same config
    assert "train I3D" in r.stderr  # the progress bar goes to stderr
    print(f"\nend-to-end CLI run (i3d + aggregators): {time.perf_counter() - t0:.1f} s")

    # What notebooks 01, 04 and 05 call now loads from the cache: any training would raise.
    from reid_utils.eval.ranking import protocol_of
    from reid_utils.experiments import aggregators, i3d_ablations
    from reid_utils.experiments.clip_banks import get_backbone, get_clip_banks
    from reid_utils.experiments.corruption_sweep import run_level, run_sweep
    from reid_utils.training import features, i3d_run

    def trains(*a, **k):
        raise AssertionError("the notebook path trained or extracted instead of loading the cache")

    for mod, name in [(i3d_run, "run_training"), (aggregators, "_train"), (features, "extract_clip_features")]:
        monkeypatch.setattr(mod, name, trains)
    cfg = _config(tmp_path, data_root, extra)
    ds = load_dataset_for_config(cfg)
    models = i3d_ablations.train_models(cfg, ds, [4], progress=False)
    i3d = get_backbone(cfg, ds, progress=False)
    assert i3d.key == models[4].key and len(i3d.history) == 4
    banks = get_clip_banks(cfg, i3d, ds, corrupted=True, progress=False)
    assert len(
        run_level(get_clip_banks(cfg, i3d, ds, progress=False), 0, protocol=protocol_of(ds), progress=False).rows
    )
    sweep = run_sweep(banks, levels=[0, 1], protocol=protocol_of(ds), progress=False)
    assert set(sweep.rows["Mc_max"]) == {0, 1}


def test_a_killed_run_resumes_to_the_uninterrupted_weights(data_root, tmp_path):
    extra = ["train.iterations=8", "train.eval_every=0"]
    args = ["--profile", "smoke", "--data-root", data_root, "--clip-len", 4, "--threads", 1, "--checkpoint-every", 2]
    args += [*SETS, "--set", extra[0], "--set", extra[1]]
    ref = _cli(args, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-3000:]

    art = tmp_path / "killed"
    proc = _cli(args, art, wait=False)
    deadline = time.monotonic() + 240
    # a checkpoint is complete once its signature sidecar is written (after the file itself):
    # killing between the two leaves an unsigned checkpoint, which a rerun rightly ignores
    while not list((art / "smoke").glob("i3d-checkpoint-*.pt.sha256")):
        assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    done = [f for f in (art / "smoke").glob("i3d-*.pt") if "checkpoint" not in f.name]
    assert not done, "killed too late: the run had finished"

    again = _cli(args, art)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from iteration" in again.stdout

    from reid_utils.training.i3d import train_key

    cfg = _config(art, data_root, extra)
    key = train_key(cfg, load_dataset_for_config(cfg), 4)
    a = ArtifactCache(tmp_path / "ref" / "smoke").load("i3d", key)
    b = ArtifactCache(art / "smoke").load("i3d", key)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    for k, v in a["backbone"].items():
        assert torch.equal(b["backbone"][k], v), k


def test_under_torchrun_two_gloo_ranks_fill_the_notebooks_cache(data_root, tmp_path, monkeypatch):
    """The same command under ``torchrun --nproc_per_node=2`` (gloo): rank 0 writes the entry
    that a single-process notebook then loads; rank 1 reads it (both exit 0)."""
    extra = ["train.iterations=2", "train.eval_every=2"]
    args = ["--profile", "smoke", "--data-root", data_root, "--clip-len", 4, "--threads", 1, *SETS]
    args += ["--set", extra[0], "--set", extra[1]]
    env = {k: v for k, v in os.environ.items() if k not in ("REID_PROFILE", "REID_OVERRIDES", "REID_DATA_ROOT")}
    env.update(REID_ARTIFACTS=str(tmp_path), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    r = subprocess.run(
        [*cmd, "-m", "reid_utils.train", *map(str, args)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "processes: 2 (torchrun)" in r.stdout and r.stdout.count("I3D L_train=4") == 1  # rank 0 reports

    from reid_utils.training import i3d_run
    from reid_utils.training.i3d import get_trained_i3d

    monkeypatch.setattr(i3d_run, "run_training", lambda *a, **k: pytest.fail("trained instead of loading"))
    cfg = _config(tmp_path, data_root, extra)
    run = get_trained_i3d(cfg, 4, load_dataset_for_config(cfg), progress=False)
    assert list(run.history["iteration"]) == [1, 2] and run.history["mAP"].notna().iloc[-1]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--profile", "nope"], "unknown profile 'nope'"),
        (["--profile", "paper", "--data-root", "/nonexistent/reid"], "does not exist"),
        (["--profile", "smoke", "--set", "train.nope=1"], "train.nope"),
        (["--profile", "smoke", "--set", "iterations"], "KEY=VALUE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, expected, capsys):
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m reid_utils.train: error:") and expected in err[0], err


def test_a_tree_without_a_training_split_is_refused(data_root, tmp_path, capsys):
    root = tmp_path / "eval_only"
    shutil.copytree(data_root, root)
    shutil.rmtree(root / "bbox_train")
    assert cli.main(["--profile", "smoke", "--data-root", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train" in err[0] and str(root) in err[0], err
