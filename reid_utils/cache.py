"""Artifact cache: config-keyed, atomic, self-verifying.

Every expensive result (a generated dataset, a checkpoint, a feature bank, a
score matrix) lives under ``artifacts/<profile>/<name>-<key>`` where ``key`` is
the hash of the config that produced it (``config.config_key``).

Guarantees:

* **Atomic writes.** Files are written to a temporary name in the same
  directory, fsynced and renamed; directories are built in a temporary
  directory and renamed. An interrupted run leaves no entry that looks valid.
* **Verified reads.** Each file entry has a sidecar ``<file>.sha256``; a
  directory entry has a ``_COMPLETE`` manifest written last. A corrupt,
  truncated or half-written entry is detected, reported and rebuilt, never
  silently used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMPLETE_MARKER = "_COMPLETE"

# One recipe version per kind of artifact: bump a kind's number when the code that
# produces it changes, and every cached entry of that kind is rebuilt.
ARTIFACT_VERSIONS: dict[str, int] = {
    "i3d": 2,  # training.i3d: a trained I3D (weights + history)
    "features": 1,  # training.features: a feature bank
    "baseline-color": 1,  # experiments.baselines: colour-histogram results
    "fig3-sampling": 1,  # experiments.i3d_ablations: Fig. 3 grid
    "fig4-averaging": 1,  # experiments.i3d_ablations: Fig. 4 grid
    "agg-model": 1,  # experiments.aggregators: a trained aggregator
    "agg-results": 1,  # experiments.corruption_sweep: one corruption level's rows
    "agg-similarity": 1,  # experiments.importance_vs_nuisance: a similarity matrix
    "cmp-similarities": 1,  # experiments.comparison_rows: a similarity set
}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(chunk), b""):
            h.update(b)
    return h.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same dir + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_verified(path: str | Path, data: bytes) -> Path:
    """Atomically write ``data`` plus a sha256 sidecar (written second)."""
    path = Path(path)
    _sidecar(path).unlink(missing_ok=True)
    atomic_write_bytes(path, data)
    atomic_write_text(_sidecar(path), hashlib.sha256(data).hexdigest())
    return path


def is_valid_file(path: str | Path) -> bool:
    """True if ``path`` and its sidecar exist and the checksum matches."""
    path = Path(path)
    sc = _sidecar(path)
    if not path.is_file() or not sc.is_file():
        return False
    try:
        return sc.read_text().strip() == sha256_file(path)
    except OSError:
        return False


def torch_save_verified(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through an in-memory buffer, then an atomic verified write."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return save_verified(path, buf.getvalue())


def torch_load_verified(path: str | Path, map_location="cpu", weights_only: bool = False) -> Any:
    """Load a file written by ``torch_save_verified``; raise if it is corrupt.

    ``weights_only=True`` restricts unpickling to tensors and plain containers
    (use it for anything that did not come from this project's own runs).
    """
    import torch

    path = Path(path)
    if not is_valid_file(path):
        raise CorruptEntry(f"{path}: missing or checksum mismatch")
    return torch.load(path, map_location=map_location, weights_only=weights_only)


class CorruptEntry(RuntimeError):
    """A cache entry exists but fails verification."""


class ArtifactCache:
    """Config-keyed artifact store rooted at ``root`` (``cfg.cache_root``).

    Example:
        >>> cache = ArtifactCache(cfg.cache_root)
        >>> feats = cache.get_or_compute("features", cfg.key("model", "agg"),
        ...                              lambda: extract(...))
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- file entries (torch-serialisable objects) --------------------------
    def path(self, name: str, key: str, suffix: str = ".pt") -> Path:
        return self.root / f"{name}-{key}{suffix}"

    def has(self, name: str, key: str, suffix: str = ".pt") -> bool:
        return is_valid_file(self.path(name, key, suffix))

    def load(self, name: str, key: str) -> Any:
        return torch_load_verified(self.path(name, key))

    def save(self, name: str, key: str, obj: Any) -> Path:
        return torch_save_verified(obj, self.path(name, key))

    def get_or_compute(self, name: str, key: str, compute: Callable[[], Any], verbose: bool = True) -> Any:
        """Return the cached object, computing (and caching) it when missing or corrupt."""
        p = self.path(name, key)
        if p.exists() or _sidecar(p).exists():
            try:
                obj = torch_load_verified(p)
                if verbose:
                    print(f"[cache] loaded {p.relative_to(self.root.parent) if self.root.parent in p.parents else p}")
                return obj
            except Exception as e:  # corrupt / truncated / unreadable
                warnings.warn(f"[cache] {p} is corrupt ({e}); rebuilding it")
                p.unlink(missing_ok=True)
                _sidecar(p).unlink(missing_ok=True)
        obj = compute()
        self.save(name, key, obj)
        return obj

    # -- directory entries (e.g. a generated dataset) -----------------------
    def dir_path(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key}"

    def get_or_build_dir(
        self, name: str, key: str, build: Callable[[Path], Any], meta: dict | None = None, verbose: bool = True
    ) -> Path:
        """Return a complete directory entry, building it if missing or partial.

        ``build(tmp_dir)`` fills a temporary directory; it is renamed into place
        after a ``_COMPLETE`` manifest (file count + ``meta``) is written.
        """
        final = self.dir_path(name, key)
        if is_complete_dir(final):
            if verbose:
                print(f"[cache] using {final}")
            return final
        if final.exists():
            warnings.warn(f"[cache] {final} is incomplete or corrupt; rebuilding it")
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            build(tmp)
            files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
            manifest = {"num_files": len(files), "meta": meta or {}}
            atomic_write_text(tmp / COMPLETE_MARKER, json.dumps(manifest, indent=1))
            try:
                os.replace(tmp, final)
            except OSError:
                # Another process finished the same entry first: keep theirs if complete.
                if not is_complete_dir(final):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final


def is_complete_dir(path: str | Path) -> bool:
    """True if ``path`` has a ``_COMPLETE`` manifest whose file count matches."""
    path = Path(path)
    marker = path / COMPLETE_MARKER
    if not marker.is_file():
        return False
    try:
        manifest = json.loads(marker.read_text())
        n = sum(1 for p in path.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER)
        return n == manifest["num_files"]
    except (OSError, ValueError, KeyError):
        return False


def artifact_key(kind: str, spec: dict) -> str:
    """Cache key of an artifact of ``kind`` produced from ``spec`` (plain data: config
    values, keys of the inputs), including the kind's recipe version."""
    from reid_utils.config import config_key

    if kind not in ARTIFACT_VERSIONS:
        raise KeyError(f"artifact kind {kind!r}: expected one of {sorted(ARTIFACT_VERSIONS)}")
    return config_key({"v": ARTIFACT_VERSIONS[kind], **spec})


def cached(
    cache_root: str | Path,
    kind: str,
    spec: dict,
    compute: Callable[[], Any],
    *,
    name: str | None = None,
    verbose: bool = True,
) -> Any:
    """The one way to cache an expensive result: key ``spec`` by :func:`artifact_key`
    and return the entry ``<name or kind>-<key>`` from ``ArtifactCache(cache_root)``,
    computing and storing it when missing or corrupt.

    Args:
        cache_root: the profile's artifact folder (``cfg.cache_root``).
        kind: a key of :data:`ARTIFACT_VERSIONS`.
        spec: everything the result depends on (JSON-serialisable).
        compute: builds the result (torch-serialisable) when it is not cached.
        name: file-name prefix when it should differ from ``kind``.
    """
    key = artifact_key(kind, spec)
    return ArtifactCache(cache_root).get_or_compute(name or kind, key, compute, verbose=verbose)
