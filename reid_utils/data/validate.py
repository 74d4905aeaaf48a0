"""The one validation layer for the files the loaders read: text lists, ``.mat`` tables, id lists.

Each reader returns clean values or raises one :class:`DatasetError` naming the file
(and the variable, line, row or split) and what was expected:

- :func:`read_text` / :func:`read_lines`: UTF-8 text (a binary file is named, not a
  bare ``UnicodeDecodeError``); :func:`check_names`: every line matches a pattern.
- :func:`read_mat_table`: a numeric, non-empty ``.mat`` variable of finite integer
  values, with the expected columns (or a vector) and per-column 1-based ranges.
- :func:`id_list`: a non-empty JSON list of ids without repeats (PRID splits).

Valid inputs come out exactly as the loaders read them before (same values, same order).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from reid_utils.data.tracklets import DatasetError, require_file


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of file ``path`` (``what``: what the file should hold)."""
    require_file(path, what)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(
            f"{path} is not UTF-8 text (byte {e.start} is {data[e.start : e.start + 1]!r}); expected {what}"
        ) from None


def read_lines(path: Path, what: str, allow_empty: bool = False) -> list[tuple[int, str]]:
    """``(1-based line number, stripped text)`` of the non-blank lines of ``path``; at least
    one unless ``allow_empty``."""
    text = read_text(path, what)
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines())]
    lines = [(i, ln) for i, ln in lines if ln]
    if not lines and not allow_empty:
        raise DatasetError(f"{path} is empty: expected {what}")
    return lines


def check_names(path: Path, lines: list[tuple[int, str]], pattern: re.Pattern, expected: str) -> None:
    """Every line must ``fullmatch`` ``pattern``; else name the line and ``expected``."""
    for i, name in lines:
        if pattern.fullmatch(name) is None:
            raise DatasetError(f"{path}: line {i} is {name!r}; expected {expected}")


def _load_mat_variable(path: Path, var: str) -> np.ndarray:
    import scipy.io

    require_file(path, f"a MATLAB file holding the variable {var!r}")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:
        raise DatasetError(
            f"{path} cannot be read as a .mat file ({e}); expected a MATLAB file holding {var!r}"
        ) from None
    if var not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{path} has no variable {var!r} (found {found})")
    return np.asarray(mat[var])


def _where(arr: np.ndarray, flat: int, columns: Sequence[str]) -> str:
    if arr.ndim == 2 and columns:
        r, c = divmod(flat, arr.shape[1])
        name = f" ({columns[c]})" if c < len(columns) else ""
        return f"row {r + 1}, column {c + 1}{name}"
    return f"entry {flat + 1}"


def read_mat_table(
    path: Path,
    var: str,
    columns: Sequence[str] = (),
    ranges: dict[int, tuple[int, str]] | None = None,
    allow_empty: bool = False,
) -> np.ndarray:
    """Variable ``var`` of ``path`` as int64, checked.

    Args:
        columns: names of the leading columns of a 2-D table (rows = records; more
            columns are allowed); empty: a vector (1 x N, N x 1 or N), returned flat.
        ranges: column (or 0 for a vector) -> ``(hi, what)``: values must lie in
            ``1..hi`` (1-based positions into ``what``).
        allow_empty: an empty variable (any shape with no entry, e.g. MATLAB's ``[]``)
            is ``(0, len(columns))`` (or ``(0,)``) instead of an error.

    Raises:
        DatasetError: not numeric, empty, wrong shape, a NaN/inf or fractional value,
            or a value out of its range; the message names the file, the variable,
            the row/column and the value.
    """
    arr = _load_mat_variable(path, var)
    if allow_empty and arr.size == 0:
        return np.zeros((0, len(columns)) if columns else (0,), dtype=np.int64)
    layout = f"(num_rows, {len(columns)}) rows of {', '.join(columns)}" if columns else "a vector of 1-based rows"
    if arr.dtype.kind not in "iuf":
        raise DatasetError(f"{path}: {var!r} holds {arr.dtype} data; expected numbers: {layout}")
    if arr.size == 0:
        raise DatasetError(f"{path}: {var!r} is empty (shape {arr.shape}); expected {layout}, at least one")
    if columns and (arr.ndim != 2 or arr.shape[1] < len(columns)):
        raise DatasetError(f"{path}: {var!r} has shape {arr.shape}; expected {layout}")
    if not columns and (arr.ndim > 2 or (arr.ndim == 2 and min(arr.shape) != 1)):
        raise DatasetError(f"{path}: {var!r} has shape {arr.shape}; expected {layout}")
    if arr.dtype.kind == "f":
        _check_whole(arr, path, var, columns)
    out = arr.astype(np.int64)
    for col, (hi, what) in (ranges or {}).items():
        vals = out[:, col] if columns else out.ravel()
        bad_rows = np.flatnonzero((vals < 1) | (vals > hi))
        if bad_rows.size:
            r = int(bad_rows[0])
            label = f"row {r + 1} {columns[col]}={vals[r]}" if columns else f"entry {r + 1} = {vals[r]}"
            raise DatasetError(f"{path}: {var!r} {label} is outside 1..{hi}; expected 1-based positions into {what}")
    return out if columns else out.ravel()


def _check_whole(arr: np.ndarray, path: Path, var: str, columns: Sequence[str]) -> None:
    """Float entries must be finite whole numbers (within +-2**53, exact in int64)."""
    for test, problem in (
        (lambda a: ~np.isfinite(a), "not finite"),
        (lambda a: (a != np.round(a)) | (np.abs(a) > 2**53), "not an integer"),
    ):
        bad = _first_bad(arr, test)
        if bad is not None:
            where = _where(arr, bad, columns)
            raise DatasetError(f"{path}: {var!r} {where} is {arr.flat[bad].item()!r}, {problem}; expected integers")


def _first_bad(arr: np.ndarray, test: Callable[[np.ndarray], np.ndarray]) -> int | None:
    """The flat (C-order) index of the first entry where ``test`` holds, or None."""
    hit = np.flatnonzero(test(arr))
    return int(hit[0]) if hit.size else None


def id_list(value, where: str, parse: Callable, expected: str) -> list[int]:
    """A non-empty list of ids (each through ``parse``) without repeats, sorted.

    ``where`` names the file and entry (e.g. ``"splits.json: split 0: 'train'"``);
    ``parse(x)`` gives an int id or raises :class:`DatasetError`.
    """
    if not isinstance(value, list):
        raise DatasetError(
            f"{where} is {value!r} of type {type(value).__name__}; expected a non-empty list of {expected}"
        )
    if not value:
        raise DatasetError(f"{where} is empty; expected a non-empty list of {expected}")
    ids = [parse(x) for x in value]
    repeated = sorted(p for p, n in Counter(ids).items() if n > 1)
    if repeated:
        raise DatasetError(f"{where} lists {repeated[:5]} more than once; expected each of {expected} once")
    return sorted(ids)
