"""Numbers quoted in prose (README.md, notebook markdown), checked against the committed tables.

A quoted number carries an HTML comment right after it (invisible when rendered) naming its cell:

    27.8 %<!--q: 01_models.csv | #0~=L_train=4 | mAP-->
    31.4<!--q: table2_mAP_ours_vs_paper.csv | method=learned; source=ours (synthetic) | 0-->
    75.9<!--q: paper:table3_mars_sota.csv | model=Ours (paper) | mAP-->
    37 %<!--q: 08_shortlist.csv | K=50 | time_vs_full | x100-->
    +7.4<!--q: diff paper:table3_mars_sota.csv | model=Ours + Reranking (paper) | mAP
                  || paper:table3_mars_sota.csv | model=Ours (paper) | mAP-->

``TABLE | FILTERS | COLUMN [| OPTIONS]``: TABLE is a CSV under ``figures/`` or, with ``paper:``, under
``reid_utils/paper_tables/``. FILTERS, separated by ``;``, select exactly one row: ``col=value`` (equal as
text, or as numbers: ``t=50`` matches ``50.0``) or ``col~=text`` (the cell contains it); ``col`` is a header or
``#N`` (the N-th column, from 0; for empty or repeated headers); no filter = a one-row table. OPTIONS:
``xS`` scales the cell (``x100``: a fraction quoted as a percentage), ``round=N`` sets the decimals compared
(default: those written). ``diff A || B`` (A - B) and ``ratio A || B`` (A / B) quote derived numbers. The
quoted number passes when it equals the value rounded to its decimals (a tie may round either way). Inside a
markdown table write ``\\|`` for ``|``.

Every result-like number (a decimal: ``0.63``, ``31.5 %``, ``1.68x``, ``3e-4``) in prose must be tagged or
exempted by a marker naming why it is not a table cell: ``<!--q: KIND [note]-->``, KIND in
:data:`EXEMPT_KINDS`. Integers (counts, settings) need neither. Ignored: code spans and fenced code blocks,
HTML comments and tags, URLs, references (Sec. 4.4, Eqs. 1-4, Fig. 7, Table 2) and version numbers.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from decimal import Decimal, DivisionByZero, InvalidOperation
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EXEMPT_KINDS = {
    "config": "a setting of the project or the paper: margin, learning rate, t, a budget, a tolerance",
    "fact": "a fact no run of ours produces: dataset statistics, hardware, arithmetic on settings",
    "paper": "a number from the paper's text that reid_utils/paper_tables does not hold",
    "example": "an illustrative value in an explanation, not a measurement",
    "timing": "a wall time of a run; refused once figures/ holds a timing table (TIMING_TABLES) to tag it against",
    "untabled": "a measurement no committed table holds; the note must say where it comes from",
}
NOTE_REQUIRED = {"untabled"}
TIMING_TABLES = ("reproduce_time*.csv", "timings*.csv")  # a per-notebook wall-time table
_HINT = f"tag it <!--q: TABLE | FILTERS | COLUMN--> or mark it <!--q: KIND--> with KIND in {sorted(EXEMPT_KINDS)}"

_NUMBER = re.compile(  # a sign only where it cannot be a range's dash ("1.2-2x", "73.9<!--...-->-76.1")
    r"(?:(?<![\w.)\]>%\x01])[+\-\u2212])?(?<![\w.])(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][+\-\u2212]?\d+)?|\.\d+)"
)
_NUMBER_END = re.compile(_NUMBER.pattern + r"\Z")
_SUFFIX = re.compile(r"(?:\s*(?:%|\u00d7|x|s|min|pp|points?|\*{1,2}|_{1,2}|\${1,2}))*\s*\Z")
_COMMENT = re.compile(r"<!--(.*?)-->", re.S)
_TAG = re.compile(r"\s*q\s*:(.*)\Z", re.S)
_IGNORED = [
    re.compile(r"(`+)(?!`)(?:(?!\n[ \t]*\n).)+?(?<!`)\1(?!`)", re.S),  # code spans (within a paragraph)
    re.compile(r"<[A-Za-z/][^<>\n]*>"),  # HTML tags, autolinks
    re.compile(r"\]\([^)]*\)|https?://\S+"),  # link targets, bare URLs
    re.compile(  # references: Sec. 4.4, Secs. 3.1 and 4.4, Eqs. 1-4, Fig. 7, Table 2
        r"(?:\b(?:Secs?\.|Sections?|Eqs?\.|Equations?|Figs?\.|Figures?|Tables?)|\u00a7)\s*\d+(?:\.\d+)*"
        r"(?:\s*(?:and|or|to|-|\u2013)\s*\d+(?:\.\d+)*)*"
    ),
    re.compile(r"\b(?:Python|torch|CUDA|Triton|version|v)\s*\d+(?:\.\d+)+|\d+(?:\.\d+){2,}"),  # versions
]


class TagError(ValueError):
    """A tag that cannot be read or resolved; the message says what was expected."""


@dataclass(frozen=True)
class Problem:
    """One failure: where (file and line or cell), the quoted text, and what is wrong."""

    where: str
    quoted: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.quoted!r}: {self.message}"


@dataclass(frozen=True)
class Source:
    """A piece of markdown to check: ``where`` names it (``README.md``, ``notebooks/x.ipynb cell 3``)."""

    where: str
    text: str


@dataclass(frozen=True)
class CellRef:
    """One table cell: the table's name, the row filters and the column, and a scale for the value."""

    table: str
    filters: tuple[tuple[str, str, str], ...]  # (column, operator "=" or "~=", value)
    column: str
    scale: Decimal = Decimal(1)


@dataclass(frozen=True)
class Tag:
    """A parsed tag: a cell, a difference or ratio of two cells, or an exemption of one ``kind``."""

    op: str  # "cell", "diff", "ratio" or "exempt"
    refs: tuple[CellRef, ...] = ()
    digits: int | None = None
    kind: str = ""
    note: str = ""


def parse_tag(body: str) -> Tag:
    """Read the text after ``q:`` of one tag (module docstring for the syntax)."""
    body = body.replace("\\|", "|").strip()
    if "|" not in body:
        kind, _, note = body.partition(" ")
        if kind not in EXEMPT_KINDS:
            raise TagError(
                f"unknown exemption kind {kind!r}; expected one of {sorted(EXEMPT_KINDS)} or a cell reference"
            )
        if kind in NOTE_REQUIRED and not note.strip():
            raise TagError(f"an {kind!r} exemption needs a note saying where the number comes from")
        return Tag("exempt", kind=kind, note=note.strip())
    op = "cell"
    m = re.match(r"(diff|ratio)\s+", body)
    if m:
        op, body = m.group(1), body[m.end() :]
    operands = body.split("||")
    if len(operands) != (1 if op == "cell" else 2):
        raise TagError(f"{op!r} takes {'one reference' if op == 'cell' else 'two references joined by ||'}")
    refs, digits = [], set()
    for operand in operands:
        ref, d = _parse_ref(operand)
        refs.append(ref)
        digits |= {d} - {None}
    if len(digits) > 1:
        raise TagError(f"conflicting round= options {sorted(digits)}")
    return Tag(op, tuple(refs), digits.pop() if digits else None)


def _parse_ref(text: str) -> tuple[CellRef, int | None]:
    parts = [p.strip() for p in text.split("|")]
    if len(parts) not in (3, 4):
        raise TagError(f"expected 'TABLE | FILTERS | COLUMN [| OPTIONS]', got {text.strip()!r}")
    filters = []
    for f in filter(None, (f.strip() for f in parts[1].split(";"))):
        m = re.match(r"(.+?)\s*(~=|=)\s*(.*)\Z", f)
        if not m:
            raise TagError(f"filter {f!r} is not 'column=value' or 'column~=text'")
        filters.append(m.groups())
    scale, digits = Decimal(1), None
    for opt in parts[3].replace(",", " ").split() if len(parts) == 4 else []:
        if re.fullmatch(r"x\d+(\.\d+)?", opt):
            scale = Decimal(opt[1:])
        elif re.fullmatch(r"round=\d+", opt):
            digits = int(opt[6:])
        else:
            raise TagError(f"unknown option {opt!r}; expected xS (scale) or round=N")
    return CellRef(parts[0], tuple(filters), parts[2], scale), digits


class Tables:
    """The committed CSV tables, read once: ``figures/`` and ``reid_utils/paper_tables/``."""

    def __init__(self, figures: Path, paper: Path):
        self.figures, self.paper, self._cache = Path(figures), Path(paper), {}

    def path(self, name: str) -> Path:
        folder, rel = (self.paper, name[6:].strip()) if name.startswith("paper:") else (self.figures, name)
        if not rel.endswith(".csv"):
            raise TagError(f"table {name!r}: only .csv tables can be quoted (every figures/*.md has a .csv twin)")
        path = folder / rel
        if ".." in Path(rel).parts or not path.is_file():
            raise TagError(f"table {name!r}: no file {path}")
        return path

    def rows(self, name: str) -> tuple[list[str], list[list[str]]]:
        path = self.path(name)
        if path not in self._cache:
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
            if not rows:
                raise TagError(f"table {name!r} is empty")
            self._cache[path] = ([h.strip() for h in rows[0]], rows[1:])
        return self._cache[path]

    def value(self, ref: CellRef) -> Decimal:
        """The referenced cell, times the tag's scale; TagError says which part did not resolve."""
        header, rows = self.rows(ref.table)
        col = _column(header, ref.column, ref.table)
        matches = [
            r for r in rows if all(_matches(r, _column(header, c, ref.table), op, v) for c, op, v in ref.filters)
        ]
        sel = "; ".join(f"{c}{op}{v}" for c, op, v in ref.filters) or "(no filter)"
        if len(matches) != 1:
            raise TagError(f"table {ref.table!r}: {len(matches)} rows match {sel!r}, expected exactly one")
        cell = matches[0][col].strip() if col < len(matches[0]) else ""
        try:
            return Decimal(cell) * ref.scale
        except InvalidOperation:
            raise TagError(
                f"table {ref.table!r}, row {sel!r}, column {ref.column!r}: {cell!r} is not a number"
            ) from None


def _column(header: list[str], name: str, table: str) -> int:
    if re.fullmatch(r"#\d+", name):
        if int(name[1:]) >= len(header):
            raise TagError(f"table {table!r} has {len(header)} columns, no {name}")
        return int(name[1:])
    hits = [i for i, h in enumerate(header) if h == name.strip()]
    if len(hits) != 1:
        why = "no column" if not hits else f"{len(hits)} columns named"
        raise TagError(f"table {table!r}: {why} {name!r} (columns: {header}; use #N for the N-th)")
    return hits[0]


def _matches(row: list[str], col: int, op: str, value: str) -> bool:
    cell = row[col].strip() if col < len(row) else ""
    if op == "~=":
        return value in cell
    if cell == value:
        return True
    try:
        return Decimal(cell) == Decimal(value)
    except InvalidOperation:
        return False


def evaluate(tag: Tag, tables: Tables) -> Decimal:
    """The number a cell/diff/ratio tag stands for."""
    vals = [tables.value(r) for r in tag.refs]
    if tag.op == "cell":
        return vals[0]
    if tag.op == "diff":
        return vals[0] - vals[1]
    try:
        return vals[0] / vals[1]
    except (DivisionByZero, InvalidOperation):
        raise TagError("ratio: the second cell is zero") from None


def _to_decimal(quoted: str) -> Decimal:
    return Decimal(quoted.replace(",", "").replace("\u2212", "-"))


def agrees(quoted: str, value: Decimal, digits: int | None = None) -> bool:
    """Is ``quoted`` (as written) ``value`` rounded to ``digits`` decimals (default: those written)?"""
    q = _to_decimal(quoted)
    d = -q.as_tuple().exponent if digits is None else digits
    return abs(q - value) <= Decimal(5).scaleb(-d - 1)


def mask(text: str) -> str:
    """``text`` with everything the check ignores blanked out (same length, newlines kept)."""
    out, fence = [], None
    for line in text.splitlines(keepends=True):
        m = re.match(r" {0,3}(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and m and line.strip().startswith(fence):
            fence = None
            out.append(_blank(line))
            continue
        out.append(_blank(line) if fence is not None else line)
    text = _COMMENT.sub(lambda m: _blank(m.group(0), "\x01"), "".join(out))  # a comment is no space
    for pattern in _IGNORED:
        text = pattern.sub(lambda m: _blank(m.group(0)), text)
    return text


def _blank(s: str, fill: str = " ") -> str:
    return re.sub(r"[^\n]", fill, s)


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def check_source(src: Source, tables: Tables) -> list[Problem]:
    """Every tag of ``src`` resolves and agrees with its cell; every result-like number is tagged."""
    masked, problems, bound = mask(src.text), [], set()
    outside_code = mask(_COMMENT.sub(lambda m: "\0" * len(m.group(0)), src.text))  # \0 = a comment in prose
    timing_tables = sorted(p for pattern in TIMING_TABLES for p in tables.figures.glob(pattern))
    for c in _COMMENT.finditer(src.text):
        m = _TAG.match(c.group(1))
        if not m or "\0" not in outside_code[c.start() : c.end()]:
            continue
        where = f"{src.where} line {_line_of(src.text, c.start())}"
        num = _bound_number(src.text, masked, c.start())
        quoted = num.group(0) if num else c.group(0)
        if num is None:
            problems.append(Problem(where, quoted, "tag binds to no number: put it right after the number"))
            continue
        if num.start() in bound:
            problems.append(Problem(where, quoted, "two tags bind the same number"))
        bound.add(num.start())
        problems += _check_tag(m.group(1), quoted, where, tables, timing_tables)
    for num in _NUMBER.finditer(masked):
        if _result_like(num.group(0)) and num.start() not in bound:
            where = f"{src.where} line {_line_of(src.text, num.start())}"
            context = " ".join(src.text[max(0, num.start() - 40) : num.end() + 30].split())
            problems.append(Problem(where, num.group(0), f"untagged result-like number in '...{context}...'; {_HINT}"))
    return problems


def _bound_number(text: str, masked: str, tag_start: int) -> re.Match | None:
    """The number a tag at ``tag_start`` binds: the last one before it, with only units (``%``, ``x``,
    ``s``, ``min``, ``pp``, emphasis or ``$``) between them in the text as written."""
    suffix = _SUFFIX.search(text, max(0, tag_start - 20), tag_start)
    end = suffix.start() if suffix else tag_start
    return _NUMBER_END.search(masked, max(0, end - 40), end)


def _check_tag(body: str, quoted: str, where: str, tables: Tables, timing_tables: list[Path]) -> list[Problem]:
    if "--" in body or body.endswith("-"):
        return [Problem(where, quoted, "a tag must not contain '--' or end with '-' (not a valid HTML comment)")]
    try:
        tag = parse_tag(body)
        if tag.op == "exempt":
            if tag.kind == "timing" and timing_tables:
                names = [p.name for p in timing_tables]
                return [Problem(where, quoted, f"figures/ now holds {names}: tag this time against it, not 'timing'")]
            return []
        value = evaluate(tag, tables)
    except TagError as e:
        return [Problem(where, quoted, f"bad tag: {e}")]
    if agrees(quoted, value, tag.digits):
        return []
    refs = " || ".join(f"{r.table} | {'; '.join(''.join(f) for f in r.filters)} | {r.column}" for r in tag.refs)
    return [Problem(where, quoted, f"the table says {_fmt(value)} ({tag.op} of {refs})")]


def _fmt(value: Decimal) -> str:
    return format(round(value, 6).normalize(), "f")


def _result_like(token: str) -> bool:
    return "." in token or "e" in token.lower()


def readme_sources(root: Path = ROOT) -> list[Source]:
    """The project's README and the notebooks' reading guide."""
    return [Source(name, (root / name).read_text()) for name in ("README.md", "notebooks/README.md")]


def notebook_sources(path: Path) -> list[Source]:
    """The markdown cells of one notebook, each named ``notebooks/NAME cell I``."""
    cells = json.loads(Path(path).read_text())["cells"]
    rel = f"{Path(path).parent.name}/{Path(path).name}"
    return [
        Source(f"{rel} cell {i}", "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "markdown"
    ]


def check(sources: list[Source], tables: Tables | None = None) -> list[Problem]:
    """All problems of ``sources`` against the repository's tables (or ``tables``)."""
    tables = tables or Tables(ROOT / "figures", ROOT / "reid_utils" / "paper_tables")
    return [p for s in sources for p in check_source(s, tables)]
