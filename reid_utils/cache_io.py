"""Low-level file operations of the artifact cache (:mod:`reid_utils.cache`).

* atomic writes (temp file in the same folder, fsync, rename);
* temps that do not outlive their process: removed on an exception, on SIGTERM
  (a handler that cleans up, then dies of the signal as before, or chains to the
  handler installed before it) and at exit; temps of a SIGKILLed builder are
  removed by :func:`remove_stale_temps` the next time the entry is built;
* one builder per entry across processes: :func:`entry_lock` (``fcntl.flock`` on
  ``<entry>.lock``, POSIX only; elsewhere no locking).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: no locking between processes
    fcntl = None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(chunk), b""):
            h.update(b)
    return h.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same dir + rename)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: expected a file, found a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with temp_path(Path(tmp)):
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; use the usual mode
        os.replace(tmp, path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


# -- temps, locks and their cleanup -------------------------------------------
_LIVE: dict[str, int] = {}  # temp or held lock path -> pid of the process that owns it
_PREV_SIGTERM: Any = None


def remove_path(path: Path) -> None:
    """Remove a file or a folder (whichever ``path`` is); missing is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _cleanup_live() -> None:
    for p, pid in list(_LIVE.items()):
        if pid == os.getpid():  # not a forked child's copy of the parent's list
            remove_path(Path(p))


atexit.register(_cleanup_live)


def _on_sigterm(signum, frame):
    if callable(_PREV_SIGTERM):  # its exception (if any) unwinds through our cleanup
        return _PREV_SIGTERM(signum, frame)
    _cleanup_live()  # default action: remove our temps, then die of the signal as before
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_cleanup() -> None:
    global _PREV_SIGTERM
    if _PREV_SIGTERM is not None or threading.current_thread() is not threading.main_thread():
        return
    prev = signal.getsignal(signal.SIGTERM)
    if prev is _on_sigterm or prev in (signal.SIG_IGN, None):
        return
    _PREV_SIGTERM = prev
    signal.signal(signal.SIGTERM, _on_sigterm)


@contextmanager
def temp_path(path: Path) -> Iterator[Path]:
    """Track the temp ``path``: removed on an exception, on SIGTERM and at exit."""
    _install_cleanup()
    _LIVE[str(path)] = os.getpid()
    try:
        yield path
    except BaseException:
        remove_path(path)
        raise
    finally:
        _LIVE.pop(str(path), None)


@contextmanager
def entry_lock(entry: Path) -> Iterator[None]:
    """Hold ``<entry>.lock`` (flock) while building ``entry``; removed on release."""
    lock = entry.with_name(entry.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except IsADirectoryError:
            raise IsADirectoryError(f"{lock}: expected a lock file, found a folder; remove it") from None
        try:  # the holder before us may have removed the file: lock the current one
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                break
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    _install_cleanup()
    _LIVE[str(lock)] = os.getpid()
    try:
        yield
    finally:
        _LIVE.pop(str(lock), None)
        lock.unlink(missing_ok=True)  # still held: waiters see a new file and retry
        os.close(fd)


def remove_stale_temps(entry: Path, *also: str) -> None:
    """Remove the temps of ``entry`` (and of the files named ``also`` beside it) that a
    killed builder left: ``.<name>.<random>[.tmp]``. Call with the entry's lock held."""
    names = "|".join(re.escape(n) for n in (entry.name, *also))
    pattern = re.compile(rf"\.(?:{names})\.[a-z0-9_]+(?:\.tmp)?")
    for p in entry.parent.iterdir() if entry.parent.is_dir() else ():
        if pattern.fullmatch(p.name):
            remove_path(p)


KEY_ENV = "REID_CACHE_KEY_FILE"
_KEYS: dict[str, bytes] = {}


def key_file() -> Path:
    """Where this user's cache-signing key lives: ``$REID_CACHE_KEY_FILE``, else
    ``~/.config/reid_utils/cache.key`` (outside every artifact folder)."""
    env = os.environ.get(KEY_ENV)
    return Path(env) if env else Path.home() / ".config" / "reid_utils" / "cache.key"


def signing_key() -> bytes:
    """This user's secret key for signing cache files (32 random bytes, created on first
    use with mode 0600). A key file others can write to is refused."""
    path = key_file()
    if str(path) in _KEYS:
        return _KEYS[str(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
            f.flush()
            os.fsync(f.fileno())
    st = path.stat()
    if st.st_mode & 0o022 or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        raise PermissionError(
            f"{path}: the cache-signing key must be owned by you and writable only by you (chmod 600)"
        )
    key = path.read_bytes()
    if len(key) < 32:
        raise ValueError(f"{path}: expected a cache-signing key of at least 32 bytes, found {len(key)}")
    _KEYS[str(path)] = key
    return key


def signature(data: bytes) -> str:
    """``hmac-sha256:<hex>`` of ``data`` under :func:`signing_key`."""
    import hmac

    return "hmac-sha256:" + hmac.new(signing_key(), data, hashlib.sha256).hexdigest()


def file_signature(path: Path, chunk: int = 1 << 20) -> str:
    """:func:`signature` of a file's bytes, read in chunks."""
    import hmac

    h = hmac.new(signing_key(), digestmod=hashlib.sha256)
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(chunk), b""):
            h.update(b)
    return "hmac-sha256:" + h.hexdigest()
