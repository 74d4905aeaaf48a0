"""The house style and the one helper that saves figures and tables.

Every notebook saves its figures through :func:`save_fig` and its tables through
:func:`save_table`, into the figures directory of the active profile (the repo's
``figures/`` for ``default``, a temporary directory in tests). The other viz modules
take ``plt`` from here, so the backend line below runs before any of them.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use(matplotlib.get_backend())  # keep inline backends in notebooks
import matplotlib.pyplot as plt  # noqa: E402

from reid_utils.cache import atomic_write_bytes  # noqa: E402

__all__ = ["plt", "save_fig", "save_table", "setup_style"]


def save_fig(fig, name: str, figures_dir: str | Path, dpi: int = 130, formats=("png",)) -> list[Path]:
    """Save ``fig`` as ``<figures_dir>/<name>.<fmt>`` atomically; return the paths.

    Args:
        fig: a matplotlib Figure.
        name: file stem, e.g. ``"fig3_sampling"``.
        figures_dir: the profile's ``cfg.figures_path``.
    """
    out = []
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(
            buf, format=fmt, dpi=dpi, bbox_inches="tight", metadata={"Software": None} if fmt == "png" else None
        )
        out.append(atomic_write_bytes(figures_dir / f"{name}.{fmt}", buf.getvalue()))
    return out


def save_table(df, name: str, figures_dir: str | Path, float_format: str = "%.4f") -> list[Path]:
    """Save a pandas DataFrame as ``<name>.csv`` and ``<name>.md`` (atomic)."""
    figures_dir = Path(figures_dir)
    csv = df.to_csv(float_format=float_format)
    try:
        md = df.to_markdown(floatfmt=float_format.replace("%", ""))
    except ImportError:  # tabulate not installed: a plain fixed-width rendering
        md = "```\n" + df.to_string(float_format=lambda v: float_format % v) + "\n```\n"
    return [
        atomic_write_bytes(figures_dir / f"{name}.csv", csv.encode()),
        atomic_write_bytes(figures_dir / f"{name}.md", md.encode()),
    ]


def setup_style():
    """The house style: seaborn's whitegrid, readable font sizes."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 130})
