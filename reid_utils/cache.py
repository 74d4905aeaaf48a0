"""Artifact cache: config-keyed, atomic, self-verifying.

Every expensive result (a generated dataset, a checkpoint, a feature bank, a
score matrix) lives under ``artifacts/<profile>/<name>-<key>`` where ``key`` is
the hash of the config that produced it (``config.config_key``).

Guarantees:

* **Atomic writes.** Files are written to a temporary name in the same
  directory, fsynced and renamed; directories are built in a temporary
  directory and renamed. An interrupted run leaves no entry that looks valid.
* **Verified reads.** Each file entry has a sidecar ``<file>.sha256`` holding its
  HMAC-SHA256 under a per-user secret key kept outside the cache (so a planted or
  foreign entry is rebuilt, never unpickled); a
  directory entry has a ``_COMPLETE`` manifest (every file's size and sha256)
  written last. A corrupt, truncated or half-written entry is detected,
  reported and rebuilt, never silently used. A folder's file set and sizes are
  checked on every use, its hashes once per process and again for any file
  whose mtime changed (44k-file default dataset: ~1.1 s first, ~0.4 s after).
* **One builder per entry.** Builders of the same entry take ``<entry>.lock``
  (``fcntl.flock``): the second waits and then loads the first one's result.
  Temps of a build stopped by SIGTERM are removed; those of a killed (SIGKILL)
  builder are removed by the next build of the same entry.
"""

from __future__ import annotations

import hmac
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from reid_utils.cache_io import (  # noqa: F401  (atomic_write_*, sha256_file: part of this API)
    atomic_write_bytes,
    atomic_write_text,
    entry_lock,
    file_signature,
    remove_path,
    remove_stale_temps,
    sha256_file,
    signature,
    temp_path,
)

COMPLETE_MARKER = "_COMPLETE"

# One recipe version per kind of artifact: bump a kind's number when the code that
# produces it changes, and every cached entry of that kind is rebuilt.
ARTIFACT_VERSIONS: dict[str, int] = {
    "i3d": 2,  # training.i3d: a trained I3D (weights + history)
    "features": 1,  # training.features: a feature bank
    "baseline-color": 1,  # experiments.baselines: colour-histogram results
    "fig3-sampling": 2,  # experiments.i3d_ablations: Fig. 3 grid
    "fig4-averaging": 2,  # experiments.i3d_ablations: Fig. 4 grid
    "agg-model": 1,  # experiments.aggregators: a trained aggregator
    "agg-results": 2,  # experiments.corruption_sweep: one level's test and validation rows, per-query values
    "agg-similarity": 1,  # experiments.importance_vs_nuisance: a similarity matrix
    "cmp-similarities": 1,  # experiments.comparison_rows: a similarity set
}


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_verified(path: str | Path, data: bytes) -> Path:
    """Atomically write ``data`` plus its signed sidecar (written second)."""
    path = Path(path)
    _sidecar(path).unlink(missing_ok=True)
    atomic_write_bytes(path, data)
    atomic_write_text(_sidecar(path), signature(data))
    return path


def is_valid_file(path: str | Path) -> bool:
    """True if ``path`` and its sidecar exist and the sidecar holds the file's HMAC-SHA256
    under this user's key (``cache_io.signing_key``). A plain hash, a signature by another
    key or a damaged file is not valid: such a file is rebuilt, never unpickled."""
    path = Path(path)
    sc = _sidecar(path)
    if not path.is_file() or not sc.is_file():
        return False
    try:
        return hmac.compare_digest(sc.read_text().strip(), file_signature(path))
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
        """Return the cached object, computing (and caching) it when missing or corrupt.

        Concurrent callers for the same entry compute it once: the others wait for the
        entry's lock, then load the result.
        """
        p = self.path(name, key)
        if p.is_file() and _sidecar(p).is_file():
            try:
                return self._loaded(p, verbose)
            except Exception:
                pass  # reported and rebuilt under the lock below
        with entry_lock(p):
            remove_stale_temps(p, _sidecar(p).name)
            if p.exists() or p.is_symlink() or _sidecar(p).exists():
                try:
                    return self._loaded(p, verbose)
                except Exception as e:  # corrupt / truncated / unreadable / a folder
                    warnings.warn(f"[cache] {p} is corrupt ({e}); rebuilding it")
                    remove_path(p)
                    remove_path(_sidecar(p))
            obj = compute()
            self.save(name, key, obj)
        return obj

    def _loaded(self, p: Path, verbose: bool) -> Any:
        obj = torch_load_verified(p)
        if verbose:
            print(f"[cache] loaded {p.relative_to(self.root.parent) if self.root.parent in p.parents else p}")
        return obj

    # -- directory entries (e.g. a generated dataset) -----------------------
    def dir_path(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key}"

    def get_or_build_dir(
        self, name: str, key: str, build: Callable[[Path], Any], meta: dict | None = None, verbose: bool = True
    ) -> Path:
        """Return a complete directory entry, building it if missing, partial or corrupt.

        ``build(tmp_dir)`` fills a temporary directory; it is renamed into place
        after a ``_COMPLETE`` manifest (every file's size and sha256 + ``meta``) is
        written. Concurrent callers build it once (the others wait, then use it).
        """
        final = self.dir_path(name, key)
        if is_complete_dir(final):
            if verbose:
                print(f"[cache] using {final}")
            return final
        with entry_lock(final):
            problem = _dir_problem(final)
            if problem is None:  # another process built it while we waited
                if verbose:
                    print(f"[cache] using {final}")
                return final
            remove_stale_temps(final)
            if final.exists() or final.is_symlink():
                warnings.warn(f"[cache] {final} is incomplete or corrupt ({problem}); rebuilding it")
                remove_path(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            with temp_path(Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))) as tmp:
                build(tmp)
                _write_manifest(tmp, meta)
                try:
                    os.replace(tmp, final)
                except OSError:
                    # A builder that ignores the lock finished first: keep theirs if complete.
                    if not is_complete_dir(final):
                        raise
                    remove_path(tmp)
        return final


def _scan(root: str, rel: str = "") -> Iterator[tuple[str, os.DirEntry]]:
    """(relative path, entry) of everything under ``root`` except folders."""
    with os.scandir(os.path.join(root, rel)) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False):
                yield from _scan(root, f"{rel}{e.name}/")
            else:
                yield f"{rel}{e.name}", e


def _write_manifest(path: Path, meta: dict | None = None) -> None:
    """Write ``path``'s ``_COMPLETE`` manifest: every file's size and sha256, plus ``meta``."""
    files = {r: [e.stat(follow_symlinks=False).st_size, sha256_file(e.path)] for r, e in _scan(str(path))}
    files.pop(COMPLETE_MARKER, None)
    manifest = {"num_files": len(files), "files": dict(sorted(files.items())), "meta": meta or {}}
    atomic_write_text(path / COMPLETE_MARKER, json.dumps(manifest, indent=1))


# folder entry -> {file: (size, mtime_ns)} whose hash this process has checked
_VERIFIED: dict[tuple, dict[str, tuple[int, int]]] = {}


def _dir_problem(path: Path, verify_hashes: bool | None = None) -> str | None:
    """Why ``path`` is not a complete folder entry (None if it is); see :func:`is_complete_dir`."""
    marker = path / COMPLETE_MARKER
    if not path.is_dir():
        return "missing" if not path.exists() else "not a folder"
    try:
        st = marker.stat()
        expected = json.loads(marker.read_text())["files"]
        found = {r: e for r, e in _scan(str(path)) if r != COMPLETE_MARKER}
        if found.keys() != expected.keys():
            diff = sorted(found.keys() ^ expected.keys())
            return f"{len(diff)} file(s) missing or unexpected, e.g. {diff[0]}"
        seen = _VERIFIED.setdefault((str(path.resolve()), st.st_ino, st.st_mtime_ns), {})
        for r, e in found.items():
            if not e.is_file(follow_symlinks=False):
                return f"{r}: not a regular file"
            fst = e.stat(follow_symlinks=False)
            if fst.st_size != expected[r][0]:
                return f"{r}: {fst.st_size} bytes, the manifest says {expected[r][0]}"
            stamp = (fst.st_size, fst.st_mtime_ns)
            if verify_hashes is False or (verify_hashes is None and seen.get(r) == stamp):
                continue
            if sha256_file(e.path) != expected[r][1]:
                seen.pop(r, None)
                return f"{r}: sha256 differs from the manifest"
            seen[r] = stamp
    except FileNotFoundError as e:
        return f"no {COMPLETE_MARKER} manifest" if e.filename == str(marker) else f"{e.filename} vanished"
    except OSError as e:
        return f"unreadable ({e})"
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        return f"{COMPLETE_MARKER} is not a manifest of this version ({type(e).__name__}: {e})"
    return None


def is_complete_dir(path: str | Path, verify_hashes: bool | None = None) -> bool:
    """True if ``path`` holds exactly the files its ``_COMPLETE`` manifest lists, with
    their sizes and sha256. ``verify_hashes``: None (default) hashes each file the
    first time in this process and again when its size or mtime changed; True
    always; False never (file set and sizes only)."""
    return _dir_problem(Path(path), verify_hashes) is None


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
