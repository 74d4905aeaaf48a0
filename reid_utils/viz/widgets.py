"""Interactive explorer of rankings and importance scores (notebook 06; Sec. 3.1, Fig. 7).

:class:`ImportanceExplorer` works from precomputed data - clip features, the
(Q, G) similarity matrix of the learned aggregator and the model itself - so an
interaction costs one ranking lookup, one ``forward`` of a single sequence pair
(Eqs. 1-4: the M^2 importance scores) and two small PNG renders:

* choose a query (Dropdown) -> its top-k gallery sequences, ranked by the
  learned similarity (gallery items with the query's identity *and* camera
  are left out, as in the evaluation protocol), each marked match / non-match,
  as text and as thumbnails (green / red frames);
* choose one of them (Dropdown) -> the M x M importance map (alpha / mean) of
  that sequence pair with its highest- and lowest-importance clip pairs as
  thumbnails (``reid_utils.viz.importance.plot_pair_importance``).

Images are PNG bytes in ``ipywidgets.Image`` widgets (rendered with a bare
``matplotlib.figure.Figure`` and the Agg canvas, and for the thumbnails with
PIL), so the explorer updates in a live JupyterLab kernel and touches no
pyplot state in callbacks. The CSS classes a browser test relies on are
:data:`CLASSES`; the DOM contract is in :class:`ImportanceExplorer`.
"""

from __future__ import annotations

import html
import io
import logging
from collections.abc import Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = ["ImportanceExplorer", "CLASSES"]

CLASSES = {
    "container": "reid-explorer",
    "query": "reid-query",
    "gallery": "reid-gallery",
    "ranking": "reid-ranking",
    "heatmap": "reid-heatmap",
    "title": "reid-heatmap-title",
    "status": "reid-status",
}
_MATCH, _MISS = (0, 160, 60), (210, 30, 30)


def _png_width(png: bytes) -> str:
    """Pixel width from a PNG header (IHDR), so the browser shows the image at its natural size."""
    return str(int.from_bytes(png[16:20], "big")) if png[:8] == b"\x89PNG\r\n\x1a\n" else ""


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(img, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class ImportanceExplorer:
    """Pick a query, see its ranking, pick a gallery sequence, see the importance scores.

    Args:
        model: a trained ``LearnedClipAggregator`` (used in eval mode for one
            pair at a time).
        q_feats: (Q, M, D) query clip features; g_feats: (G, M, D).
        q_pids, g_pids: identities (match = same pid).
        q_camids, g_camids: cameras (same pid and same camera are left out of
            the ranking); None: nothing is left out.
        similarity: (Q, G) similarities of ``model`` (computed with
            ``model.similarity_matrix`` when None).
        q_clip_frames, g_clip_frames: (Q, M, L), (G, M, L) frame indices of the
            clips (``FeatureBank.indices``); needed for clip thumbnails.
        q_source, g_source: objects with ``frames(seq, frame_indices, clip)``
            and ``flags(seq, frame_indices, clip)``
            (``reid_utils.viz.importance.ClipSource``); None: no thumbnails.
        topk: gallery sequences in the ranking.
        queries: query indices offered (default: all).
        thumb_height: thumbnail frame height in pixels.
        n_extreme: highest / lowest clip pairs shown per sequence pair.

    Attributes:
        widget: the outer VBox (class ``reid-explorer``); the explorer object
            itself also displays as it.
        query, gallery, ranking, ranking_text, ranking_image, heatmap, title,
        status: the parts of the DOM contract below.

    DOM contract (a browser test relies on it; CSS classes via ``add_class``):

    ===========================  ===============================================
    ``reid-explorer``            the outer container (:attr:`widget`, a VBox)
    ``reid-query``               the query Dropdown (:attr:`query`; value = query index)
    ``reid-gallery``             the gallery Dropdown (:attr:`gallery`; value = gallery index)
    ``reid-ranking``             the ranking area (VBox :attr:`ranking`): an HTML
                                 text naming the query ("query <q>") and the ranked
                                 gallery ids ("gallery <g>"), and a thumbnail Image
    ``reid-heatmap``             the heatmap Image (:attr:`heatmap`)
    ``reid-heatmap-title``       HTML (:attr:`title`): ``query <q> vs gallery <g>:
                                 similarity <s>`` (s with 3 decimals)
    ``reid-status``              HTML (:attr:`status`): ``ready`` after every
                                 successful update, else ``error: <Type>: <message>``
    ===========================  ===============================================

    <q> and <g> are 0-based indices into the query and gallery splits (the rows
    of the feature banks). Exceptions raised while updating are caught, shown in
    the status widget and logged with their traceback (logger
    ``reid_utils.viz.widgets``); nothing is swallowed silently.
    """

    def __init__(
        self,
        model,
        q_feats: torch.Tensor,
        g_feats: torch.Tensor,
        q_pids,
        g_pids,
        q_camids=None,
        g_camids=None,
        *,
        similarity=None,
        q_clip_frames=None,
        g_clip_frames=None,
        q_source=None,
        g_source=None,
        topk: int = 5,
        queries: Sequence[int] | None = None,
        thumb_height: int = 48,
        n_extreme: int = 2,
    ):
        import ipywidgets as W

        for name, x in (("q_feats", q_feats), ("g_feats", g_feats)):
            if not torch.is_tensor(x) or x.dim() != 3:
                raise ValueError(
                    f"{name}: expected a tensor (N, M, D), got "
                    f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}"
                )
        self.model, self.q_feats, self.g_feats = model, q_feats, g_feats
        Q, G = len(q_feats), len(g_feats)
        self.q_pids, self.g_pids = np.asarray(q_pids), np.asarray(g_pids)
        if self.q_pids.shape != (Q,) or self.g_pids.shape != (G,):
            raise ValueError(
                f"q_pids, g_pids: expected ({Q},) and ({G},), got {self.q_pids.shape}, {self.g_pids.shape}"
            )
        self.q_camids = None if q_camids is None else np.asarray(q_camids)
        self.g_camids = None if g_camids is None else np.asarray(g_camids)
        if similarity is None:
            similarity = model.similarity_matrix(q_feats, g_feats, progress=False)
        self.S = np.asarray(similarity.numpy() if torch.is_tensor(similarity) else similarity, np.float64)
        if self.S.shape != (Q, G):
            raise ValueError(f"similarity: expected shape ({Q}, {G}), got {self.S.shape}")
        if int(topk) < 1:
            raise ValueError(f"topk: expected >= 1, got {topk}")
        self.topk, self.thumb_height, self.n_extreme = int(topk), int(thumb_height), int(n_extreme)
        self.q_clip_frames, self.g_clip_frames = q_clip_frames, g_clip_frames
        self.q_source, self.g_source = q_source, g_source
        queries = list(range(Q)) if queries is None else [int(q) for q in queries]
        if not queries or min(queries) < 0 or max(queries) >= Q:
            raise ValueError(f"queries: expected a non-empty list of indices in [0, {Q})")

        self.query = W.Dropdown(
            options=[(self._query_label(q), q) for q in queries], value=queries[0], description="query"
        )
        self.gallery = W.Dropdown(options=[], description="gallery", layout=W.Layout(width="360px"))
        self.ranking_text = W.HTML()
        self.ranking_image = W.Image(format="png")
        self.ranking = W.VBox([self.ranking_text, self.ranking_image])
        self.title = W.HTML()
        self.heatmap = W.Image(format="png")
        self.status = W.HTML("starting")
        for w, key in (
            (self.query, "query"),
            (self.gallery, "gallery"),
            (self.ranking, "ranking"),
            (self.heatmap, "heatmap"),
            (self.title, "title"),
            (self.status, "status"),
        ):
            w.add_class(CLASSES[key])
        self.widget = W.VBox([W.HBox([self.query, self.gallery, self.status]), self.ranking, self.title, self.heatmap])
        self.widget.add_class(CLASSES["container"])
        self._busy = False
        self.query.observe(self._on_query, names="value")
        self.gallery.observe(self._on_gallery, names="value")
        self._guarded(self._update_query)

    # -- display ---------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # -- data ------------------------------------------------------------------
    def _query_label(self, q: int) -> str:
        cam = "" if self.q_camids is None else f" · camera {int(self.q_camids[q]) + 1}"
        return f"query {q} · pid {int(self.q_pids[q])}{cam}"

    def ranked(self, q: int) -> np.ndarray:
        """The top-k gallery indices of query ``q`` (protocol: same pid and camera left out)."""
        s = self.S[int(q)].copy()
        if self.q_camids is not None and self.g_camids is not None:
            s[(self.g_pids == self.q_pids[q]) & (self.g_camids == self.q_camids[q])] = -np.inf
        order = np.argsort(-s, kind="stable")
        return order[np.isfinite(s[order])][: self.topk]

    def pair_table(self, q: int, g: int):
        """``reid_utils.experiments.importance.clip_pair_table`` of one sequence pair (alpha from ``model.forward``)."""
        from reid_utils.experiments.importance import clip_pair_table

        return clip_pair_table(
            self.model, self.q_feats, self.g_feats, np.array([[q, g]], np.int64), self.q_clip_frames, self.g_clip_frames
        )

    # -- callbacks -------------------------------------------------------------
    def _guarded(self, fn):
        try:
            fn()
        except Exception as e:  # shown in the status widget and logged, never silent
            log.exception("ImportanceExplorer update failed")
            self.status.value = html.escape(f"error: {type(e).__name__}: {e}")
            return False
        self.status.value = "ready"
        return True

    def _on_query(self, change):
        if not self._busy:
            self._guarded(self._update_query)

    def _on_gallery(self, change):
        if not self._busy and change["new"] is not None:
            self._guarded(self._update_pair)

    def _update_query(self):
        q = int(self.query.value)
        ranked = self.ranked(q)
        match = self.g_pids[ranked] == self.q_pids[q]
        self._busy = True
        try:
            self.gallery.options = [
                (f"#{r + 1} gallery {int(g)} (pid {int(self.g_pids[g])}) {'✓ match' if m else '✗ non-match'}", int(g))
                for r, (g, m) in enumerate(zip(ranked, match))
            ]
            self.gallery.value = int(ranked[0]) if len(ranked) else None
        finally:
            self._busy = False
        items = "".join(
            f"<li>#{r + 1} gallery {int(g)} (pid {int(self.g_pids[g])}), similarity {self.S[q, g]:.3f} "
            f"<b style='color:{'#00a03c' if m else '#d21e1e'}'>{'✓ match' if m else '✗ non-match'}</b></li>"
            for r, (g, m) in enumerate(zip(ranked, match))
        )
        self.ranking_text.value = (
            f"<b>query {q}</b> (pid {int(self.q_pids[q])}): top-{len(ranked)} "
            f"ranked gallery <ol style='margin:0'>{items}</ol>"
        )
        png = self._ranking_png(q, ranked, match)
        self.ranking_image.value, self.ranking_image.width = png, _png_width(png)
        if len(ranked):
            self._update_pair()
        else:
            self.title.value = f"query {q}: no gallery sequence left by the protocol"
            self.heatmap.value = b""

    def _thumb(self, source, seq: int, clip_frames) -> list | None:
        if source is None or clip_frames is None:
            return None
        idx = np.asarray(clip_frames)[int(seq)]
        return source.frames(seq, idx[:, 0])  # first frame of every clip

    def _ranking_png(self, q: int, ranked, match) -> bytes:
        from reid_utils.viz.data import tracklet_strip

        h = self.thumb_height
        qf = self._thumb(self.q_source, q, self.q_clip_frames)
        if qf is None:  # no frames: coloured tiles, one per ranked item
            tiles = [np.full((h, h // 2, 3), 128, np.uint8)] + [
                np.full((h, h // 2, 3), _MATCH if m else _MISS, np.uint8) for m in match
            ]
        else:
            tiles = [tracklet_strip(qf, h, 3, np.array((60, 60, 60), np.uint8))] + [
                tracklet_strip(
                    self._thumb(self.g_source, g, self.g_clip_frames), h, 3, np.array(_MATCH if m else _MISS, np.uint8)
                )
                for g, m in zip(ranked, match)
            ]
        H = max(t.shape[0] for t in tiles)
        padded = []
        for k, t in enumerate(tiles):
            t = np.pad(t, ((0, H - t.shape[0]), (0, 0), (0, 0)), constant_values=255)
            padded += [t, np.full((H, 12 if k == 0 else 6, 3), 255, np.uint8)]
        return _png(np.concatenate(padded[:-1], axis=1))

    def _update_pair(self):
        from matplotlib.figure import Figure

        from reid_utils.viz.importance import figure_png, pair_title, plot_pair_importance

        q, g = int(self.query.value), self.gallery.value
        if g is None:
            raise ValueError(f"query {q}: no gallery sequence to show")
        g = int(g)
        table = self.pair_table(q, g)
        s = float(table["similarity"].iloc[0])
        self.title.value = f"query {q} vs gallery {g}: similarity {s:.3f}"
        heading = pair_title({"q": q, "g": g, "q_pid": self.q_pids[q], "g_pid": self.g_pids[g], "similarity": s})
        fig = plot_pair_importance(
            table,
            heading,
            self.q_source if self.q_clip_frames is not None else None,
            self.g_source if self.g_clip_frames is not None else None,
            n=self.n_extreme,
            height=self.thumb_height,
            fig=Figure(figsize=(4.6, 7.2)),
        )
        png = figure_png(fig, dpi=105)
        self.heatmap.value, self.heatmap.width = png, _png_width(png)

    @classmethod
    def from_banks(
        cls,
        model,
        query_bank,
        gallery_bank,
        q_tracklets=None,
        g_tracklets=None,
        *,
        q_feats=None,
        g_feats=None,
        size=None,
        q_corrupted=None,
        g_corrupted=None,
        **kwargs,
    ):
        """An explorer from ``FeatureBank`` objects (and the tracklets for thumbnails).

        Args:
            model: the learned aggregator.
            query_bank, gallery_bank: banks (pids, camids, clip frame indices).
            q_tracklets, g_tracklets: the splits' tracklets (thumbnails); None: none.
            q_feats, g_feats: features overriding the banks' (e.g. a corrupted test set).
            size: thumbnail load size ``(height, width)``.
            q_corrupted, g_corrupted: (N, M) corruption plans (shown corrupted).
            **kwargs: :class:`ImportanceExplorer` arguments (``similarity``, ``topk``, ...).
        """
        from reid_utils.viz.importance import ClipSource

        qs = None if q_tracklets is None else ClipSource(q_tracklets, size, q_corrupted)
        gs = None if g_tracklets is None else ClipSource(g_tracklets, size, g_corrupted)
        return cls(
            model,
            query_bank.feats if q_feats is None else q_feats,
            gallery_bank.feats if g_feats is None else g_feats,
            query_bank.pids,
            gallery_bank.pids,
            query_bank.camids,
            gallery_bank.camids,
            q_clip_frames=query_bank.indices,
            g_clip_frames=gallery_bank.indices,
            q_source=qs,
            g_source=gs,
            **kwargs,
        )
