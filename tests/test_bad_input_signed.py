"""Hardening probes: a planted or foreign cache entry must never be unpickled.

Cache files are authenticated by an HMAC-SHA256 under a per-user key kept outside the
artifact folder (``reid_utils.cache_io.signing_key``); the probes plant entries whose
unpickling would create a marker file, with the sidecar an attacker can compute (a plain
sha256) or a signature under another key, and check that nothing runs and the entry is
rebuilt.
"""

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest
import torch

from reid_utils import cache, cache_io


class _Payload:
    """Unpickling this creates ``marker``: a stand-in for code execution."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _planted_bytes(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"value": _Payload(str(marker))}, buf)
    return buf.getvalue()


@pytest.fixture()
def own_key(tmp_path, monkeypatch):
    monkeypatch.setenv(cache_io.KEY_ENV, str(tmp_path / "keys" / "mine.key"))
    return tmp_path / "keys" / "mine.key"


def _plant(path: Path, data: bytes, sidecar: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.with_name(path.name + ".sha256").write_text(sidecar)


def _foreign_signature(data: bytes, tmp_path: Path, monkeypatch) -> str:
    monkeypatch.setenv(cache_io.KEY_ENV, str(tmp_path / "keys" / "colleague.key"))
    sig = cache_io.signature(data)
    monkeypatch.setenv(cache_io.KEY_ENV, str(tmp_path / "keys" / "mine.key"))
    return sig


@pytest.mark.parametrize("sidecar", ["plain_sha256", "foreign_key"])
def test_planted_entry_is_rebuilt_not_unpickled(sidecar, tmp_path, own_key, monkeypatch):
    marker = tmp_path / "pwned"
    data = _planted_bytes(marker)
    sig = (
        hashlib.sha256(data).hexdigest()
        if sidecar == "plain_sha256"
        else _foreign_signature(data, tmp_path, monkeypatch)
    )
    root = tmp_path / "art"
    key = cache.artifact_key("features", {"x": 1})
    _plant(root / f"features-{key}.pt", data, sig)
    assert not cache.is_valid_file(root / f"features-{key}.pt")
    with pytest.warns(UserWarning, match=f"features-{key}.pt"):
        out = cache.cached(root, "features", {"x": 1}, lambda: {"value": 42}, verbose=False)
    assert out == {"value": 42} and not marker.exists()
    assert cache.cached(root, "features", {"x": 1}, lambda: pytest.fail("recomputed"), verbose=False) == {"value": 42}


def test_load_of_a_planted_file_raises_without_unpickling(tmp_path, own_key):
    marker = tmp_path / "pwned"
    data = _planted_bytes(marker)
    p = tmp_path / "x.pt"
    _plant(p, data, hashlib.sha256(data).hexdigest())
    with pytest.raises(cache.CorruptEntry, match="x.pt"):
        cache.torch_load_verified(p)
    assert not marker.exists()


def test_planted_training_checkpoint_is_not_resumed(tmp_path, own_key):
    from reid_utils.training.loop import Checkpoint, run_loop

    marker = tmp_path / "pwned"
    ck = tmp_path / "ckpt.pt"
    data = _planted_bytes(marker)
    _plant(ck, data, hashlib.sha256(data).hexdigest())
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match="ckpt.pt"):
        hist = run_loop(
            "probe",
            model,
            opt,
            lambda its: (torch.ones(4, 2) for _ in its),
            lambda x: (model(x).pow(2).mean(), {}),
            3,
            checkpoint=Checkpoint(ck, every=1),
            progress=False,
        )
    assert [h["iteration"] for h in hist] == [1, 2, 3] and not marker.exists()


def test_own_entries_still_load(tmp_path, own_key):
    p = tmp_path / "ok.pt"
    cache.torch_save_verified({"t": torch.arange(3)}, p)
    assert cache.is_valid_file(p) and torch.equal(cache.torch_load_verified(p)["t"], torch.arange(3))


def test_key_file_is_private_and_others_writable_key_is_refused(tmp_path, own_key):
    cache_io.signature(b"x")
    assert stat.S_IMODE(os.stat(own_key).st_mode) == 0o600
    cache_io._KEYS.clear()
    os.chmod(own_key, 0o666)
    with pytest.raises(PermissionError, match="mine.key"):
        cache_io.signature(b"x")
    os.chmod(own_key, 0o600)
    cache_io._KEYS.clear()
