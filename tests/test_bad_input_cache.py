"""Bad input for the artifact cache (``reid_utils.cache``): damaged directory entries,
interrupted and concurrent builders, a file where a folder is
expected and the reverse."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from reid_utils import cache
from reid_utils.cache import COMPLETE_MARKER, ArtifactCache

ROOT = Path(__file__).resolve().parent.parent


def _build_dataset(d: Path):
    """A miniature of the synthetic set's layout: a .mat, JPEG frames, annotations.csv."""
    (d / "info").mkdir()
    (d / "info" / "tracks_train_info.mat").write_bytes(bytes(range(256)) * 8)
    (d / "bbox_train" / "0001").mkdir(parents=True)
    for i in range(3):
        (d / "bbox_train" / "0001" / f"0001C1T0001F00{i}.jpg").write_bytes(b"\xff\xd8" + bytes([i]) * 500 + b"\xff\xd9")
    (d / "annotations.csv").write_text("frame,occluded\n0001C1T0001F000.jpg,0\n0001C1T0001F001.jpg,1\n")


def _truncate_mat(p):
    f = p / "info" / "tracks_train_info.mat"
    f.write_bytes(f.read_bytes()[:100])


def _flip_jpeg(p):  # same size: only the hashes can tell
    f = p / "bbox_train" / "0001" / "0001C1T0001F001.jpg"
    b = bytearray(f.read_bytes())
    b[10] ^= 0xFF
    f.write_bytes(bytes(b))


def _edit_csv(p):  # same size
    f = p / "annotations.csv"
    f.write_text(f.read_text().replace("F001.jpg,1", "F001.jpg,0"))


def _extra_file(p):
    (p / "bbox_train" / "0001" / "stray.jpg").write_bytes(b"x")


def _file_becomes_folder(p):
    f = p / "annotations.csv"
    f.unlink()
    f.mkdir()


def _old_style_manifest(p):
    (p / COMPLETE_MARKER).write_text('{"num_files": 5, "meta": {}}')


DAMAGE = {
    "truncated_mat": _truncate_mat,
    "flipped_jpeg_bytes": _flip_jpeg,
    "edited_annotations_csv": _edit_csv,
    "extra_file": _extra_file,
    "file_replaced_by_folder": _file_becomes_folder,
    "old_style_manifest": _old_style_manifest,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("new_process", [True, False], ids=["next_process", "same_process"])
def test_damaged_dir_entry_is_detected_and_rebuilt(tmp_path, damage, new_process):
    c = ArtifactCache(tmp_path)
    builds = []

    def build(d):
        builds.append(1)
        _build_dataset(d)

    p = c.get_or_build_dir("synthetic", "k", build, verbose=False)
    assert cache.is_complete_dir(p)  # hashes checked (and remembered) in this process
    good = {f.relative_to(p): f.read_bytes() for f in p.rglob("*") if f.is_file() and f.name != COMPLETE_MARKER}
    DAMAGE[damage](p)
    if new_process:
        cache._VERIFIED.clear()
    else:  # an edit later in a long-lived process (a notebook kernel): the mtime moves
        for f in p.rglob("*"):
            os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert not cache.is_complete_dir(p)
    with pytest.warns(UserWarning, match=r"synthetic-k is incomplete or corrupt"):
        assert c.get_or_build_dir("synthetic", "k", build, verbose=False) == p
    assert builds == [1, 1]
    assert {f.relative_to(p): f.read_bytes() for f in p.rglob("*") if f.is_file() and f.name != COMPLETE_MARKER} == good


def test_dir_entry_path_is_a_file_is_rebuilt(tmp_path):
    c = ArtifactCache(tmp_path)
    c.dir_path("ds", "k").write_text("not a folder")
    with pytest.warns(UserWarning, match="ds-k is incomplete or corrupt"):
        p = c.get_or_build_dir("ds", "k", _build_dataset, verbose=False)
    assert p.is_dir() and cache.is_complete_dir(p)


@pytest.mark.parametrize("which", ["entry", "sidecar"])
def test_file_entry_path_is_a_folder_is_rebuilt(tmp_path, which):
    c = ArtifactCache(tmp_path)
    p = c.path("t", "k")
    (p if which == "entry" else p.with_name(p.name + ".sha256")).mkdir(parents=True)
    with pytest.warns(UserWarning, match="t-k.pt is corrupt"):
        out = c.get_or_compute("t", "k", lambda: torch.ones(3), verbose=False)
    assert torch.equal(out, torch.ones(3)) and c.has("t", "k")


def test_saving_onto_a_folder_names_the_path(tmp_path):
    (tmp_path / "x.pt").mkdir()
    with pytest.raises(IsADirectoryError, match=r"x\.pt: expected a file, found a folder"):
        cache.atomic_write_bytes(tmp_path / "x.pt", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_lock_path_is_a_folder_names_it(tmp_path):
    (tmp_path / "t-k.pt.lock").mkdir()
    with pytest.raises(IsADirectoryError, match=r"t-k\.pt\.lock: expected a lock file, found a folder"):
        ArtifactCache(tmp_path).get_or_compute("t", "k", lambda: torch.ones(1), verbose=False)


_WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from reid_utils.cache import ArtifactCache
    kind, tmp, me, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    (tmp / ("ready-" + me)).touch()
    while len(list(tmp.glob("ready-*"))) < n:  # start together
        time.sleep(0.01)

    def work(d=None):
        with open(tmp / "calls.log", "a") as f:
            f.write(me + "\\n")
        if d is not None:
            (d / "a.txt").write_text("a")
            (d / "building").touch()
        time.sleep(float(os.environ.get("SLEEP", "1.5")))
        return {{"by": me}}

    c = ArtifactCache(tmp / "cache")
    if kind == "file":
        out = c.get_or_compute("t", "k", work, verbose=False)["by"]
    else:
        out = (c.get_or_build_dir("ds", "k", work, verbose=False) / "a.txt").read_text()
    print("RESULT", out)
    """
)


def _spawn(tmp_path, kind, me, n, sleep="1.5"):
    script = tmp_path / "worker.py"
    if not script.exists():
        script.write_text(_WORKER.format(root=str(ROOT)))
    env = {**os.environ, "SLEEP": sleep}
    return subprocess.Popen(
        [sys.executable, str(script), kind, str(tmp_path), me, str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_concurrent_builders_compute_once(tmp_path, kind):
    procs = [_spawn(tmp_path, kind, me, 2) for me in ("a", "b")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len((tmp_path / "calls.log").read_text().split()) == 1  # the second waited, then loaded
    assert len({o.split("RESULT")[1].strip() for o, _ in outs}) == 1
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == (
        ["t-k.pt", "t-k.pt.sha256"] if kind == "file" else ["ds-k"]
    )


def _wait_building(tmp_path, proc):
    deadline = time.time() + 60
    while not list((tmp_path / "cache").glob(".ds-k.*/building")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)


def test_sigterm_mid_build_leaves_no_temp_folder(tmp_path):
    proc = _spawn(tmp_path, "dir", "a", 1, sleep="60")
    _wait_building(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM  # still dies of the signal
    assert list((tmp_path / "cache").iterdir()) == []  # no temp folder, no lock file


def test_sigkill_mid_build_temps_removed_by_next_build(tmp_path):
    proc = _spawn(tmp_path, "dir", "a", 1, sleep="60")
    _wait_building(tmp_path, proc)
    proc.kill()
    proc.communicate(timeout=60)
    root = tmp_path / "cache"
    assert list(root.glob(".ds-k.*"))  # a killed process cannot clean up
    other = root / ".ds-kx.abcd1234"  # another entry's temp: not ours to remove
    other.mkdir()
    p = ArtifactCache(root).get_or_build_dir("ds", "k", _build_dataset, verbose=False)
    assert sorted(x.name for x in root.iterdir()) == sorted([p.name, other.name])


def test_stale_file_temps_removed_by_next_build(tmp_path):
    c = ArtifactCache(tmp_path)
    stale = [tmp_path / ".t-k.pt.abcd1234.tmp", tmp_path / ".t-k.pt.sha256.x_y9z0ab.tmp"]
    keep = tmp_path / ".t-k2.pt.abcd1234.tmp"
    for f in stale + [keep]:
        f.write_bytes(b"half")
    c.get_or_compute("t", "k", lambda: torch.ones(2), verbose=False)
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(["t-k.pt", "t-k.pt.sha256", keep.name])
