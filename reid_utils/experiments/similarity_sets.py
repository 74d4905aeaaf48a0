"""Similarities among all test sequences, for k-reciprocal re-ranking and both MARS conventions (Sec. 4.5).

The paper's Table 3 reports its method with and without k-reciprocal
re-ranking (Zhong et al., CVPR 2017; ``reid_utils.eval.reranking``), which
needs query-query and gallery-gallery distances besides query-gallery ones.
A :class:`SimilaritySet` holds one method's similarities among all test
sequences (:func:`similarity_set` scores them, :func:`assemble_similarity_set`
builds the symmetric matrix); :func:`protocol_inputs` turns it into the
distances and labels of one evaluation convention, re-ranked or not, and
:func:`evaluate_set` into CMC and mAP (``reid_utils.eval.ranking``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reid_utils.eval.distances import similarity_to_distance
from reid_utils.eval.ranking import PROTOCOLS, evaluate_rank, mars_official_gallery
from reid_utils.eval.reranking import re_ranking

__all__ = [
    "RERANK",
    "SimilaritySet",
    "assemble_similarity_set",
    "similarity_set",
    "check_protocol",
    "protocol_inputs",
    "evaluate_set",
]

RERANK = {"k1": 20, "k2": 6, "lambda_value": 0.3}  # Zhong et al.'s defaults, the usual video re-ID setting


@dataclass
class SimilaritySet:
    """Similarities of one method among all test sequences.

    Items are in the order of the official MARS gallery: ``[gallery (G),
    queries (Q), junk (J)]``; the torchreid gallery is the first G items.

    Attributes:
        sim: (N, N) float64, N = G + Q + J, symmetric, diagonal
            ``max(1, max s)`` (:func:`assemble_similarity_set`: between-set blocks
            hold the directed score, within-set blocks the mean of both directions).
        pids, camids: (N,) int64 labels (junk: pid -1).
        num_gallery, num_query, num_junk: G, Q, J.
    """

    sim: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    num_gallery: int
    num_query: int
    num_junk: int = 0

    def distance(self) -> np.ndarray:
        """:func:`similarity_to_distance` of ``sim``, computed once per set (every
        convention and re-ranking setting of :func:`protocol_inputs` reads it)."""
        if self.__dict__.get("_distance") is None:
            self.__dict__["_distance"] = similarity_to_distance(self.sim)
        return self.__dict__["_distance"]

    def __post_init__(self):
        self.sim = np.asarray(self.sim, dtype=np.float64)
        self.pids = np.asarray(self.pids, dtype=np.int64)
        self.camids = np.asarray(self.camids, dtype=np.int64)
        n = self.num_gallery + self.num_query + self.num_junk
        if self.num_gallery < 1 or self.num_query < 1 or self.num_junk < 0:
            raise ValueError(
                f"SimilaritySet: expected >= 1 gallery item and >= 1 query, got G="
                f"{self.num_gallery}, Q={self.num_query}, J={self.num_junk}"
            )
        if self.sim.shape != (n, n):
            raise ValueError(f"sim: expected shape ({n}, {n}) for G+Q+J = {n}, got {self.sim.shape}")
        for name in ("pids", "camids"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},), got {getattr(self, name).shape}")
        if not np.isfinite(self.sim).all():
            raise ValueError("sim: contains NaN or infinite similarities")

    @property
    def query_slice(self) -> slice:
        return slice(self.num_gallery, self.num_gallery + self.num_query)


def _block(x, shape, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if a.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")
    return a


def assemble_similarity_set(
    s_qg, s_qq, s_gg, q_pids, q_camids, g_pids, g_camids, s_qj=None, s_gj=None, s_jj=None, j_camids=None
) -> SimilaritySet:
    """Build a :class:`SimilaritySet` from directed blocks.

    Asymmetry: the learned aggregator visits clip pairs query clip first, so
    ``s(a, b) != s(b, a)`` in general. Between two sets the directed score is
    kept, first set's clips first, in the order queries, gallery, junk (so the
    query-gallery block is exactly the score notebooks 04/05 evaluate), and
    used for both directions; within one set (query-query, gallery-gallery,
    junk-junk) the mean of both directions. Self-similarity: the k-reciprocal
    sets assume every item is its own nearest neighbour (true for Euclidean
    distances), but the learned ``s(x, x)`` is the alpha-weighted mean of
    cosines between *different* clips of x, below 1; so the diagonal is set to
    ``max(1, max s)`` (distance 0).

    Args:
        s_qg: (Q, G) query -> gallery scores. s_qq: (Q, Q). s_gg: (G, G).
        q_pids, q_camids: (Q,). g_pids, g_camids: (G,).
        s_qj: (Q, J), s_gj: (G, J), s_jj: (J, J) scores with junk tracks
            (all three or none); j_camids: (J,).

    Returns:
        :class:`SimilaritySet` in the order [gallery, queries, junk].
    """
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    Q, G = len(q_pids), len(g_pids)
    qg = _block(s_qg, (Q, G), "s_qg")
    qq = _block(s_qq, (Q, Q), "s_qq")
    gg = _block(s_gg, (G, G), "s_gg")
    junk = [s_qj, s_gj, s_jj, j_camids]
    if any(x is None for x in junk) and not all(x is None for x in junk):
        raise ValueError("s_qj, s_gj, s_jj, j_camids: give all four (junk tracks) or none")
    J = 0 if j_camids is None else len(j_camids)
    N = G + Q + J
    S = np.empty((N, N))
    qs, js = slice(G, G + Q), slice(G + Q, N)
    S[:G, :G] = (gg + gg.T) / 2
    S[qs, qs] = (qq + qq.T) / 2
    S[qs, :G], S[:G, qs] = qg, qg.T
    if J:
        qj = _block(s_qj, (Q, J), "s_qj")
        gj = _block(s_gj, (G, J), "s_gj")
        jj = _block(s_jj, (J, J), "s_jj")
        S[js, js] = (jj + jj.T) / 2
        S[qs, js], S[js, qs] = qj, qj.T
        S[:G, js], S[js, :G] = gj, gj.T
    np.fill_diagonal(S, -np.inf)
    np.fill_diagonal(S, max(1.0, float(S.max())))  # self: the closest
    pids = np.concatenate([g_pids, q_pids, np.full(J, -1)])
    camids = np.concatenate(
        [np.asarray(g_camids), np.asarray(q_camids), np.asarray([] if j_camids is None else j_camids)]
    )
    return SimilaritySet(S, pids, camids, G, Q, J)


@torch.no_grad()
def similarity_set(model, query, gallery, junk=None, progress: bool = False) -> SimilaritySet:
    """All similarities a method needs for both conventions and re-ranking.

    Scores queries against [gallery, queries, junk], gallery against
    [gallery, junk] and junk against junk (``model.similarity_matrix``, eval
    mode, on the model's device): Q (G + Q + J) + G (G + J) + J^2 sequence
    pairs, nothing twice. Re-ranking makes the gallery-gallery block the
    largest: on MARS (Q = 1980, G = 9330 plus the junk tracks) about 6x the
    query-gallery pairs that the evaluation without re-ranking needs.

    Args:
        model: an aggregator with ``similarity_matrix(q, g)`` (learned, mean, top-t%).
        query, gallery: ``FeatureBank`` (feats (N, M, D), pids, camids).
        junk: optional ``FeatureBank`` of the junk tracks (official MARS gallery).
        progress: tqdm bars.
    """
    q, g = query.feats, gallery.feats
    Q, G = len(query), len(gallery)
    J = 0 if junk is None else len(junk)
    j = junk.feats if J else q[:0]
    s_q = model.similarity_matrix(q, torch.cat([g, q, j]), progress=progress)
    s_g = model.similarity_matrix(g, torch.cat([g, j]), progress=progress)
    extra = {}
    if J:
        extra = {
            "s_qj": s_q[:, G + Q :],
            "s_gj": s_g[:, G:],
            "s_jj": model.similarity_matrix(j, j, progress=progress),
            "j_camids": junk.camids,
        }
    return assemble_similarity_set(
        s_q[:, :G], s_q[:, G : G + Q], s_g[:, :G], query.pids, query.camids, gallery.pids, gallery.camids, **extra
    )


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")


def protocol_inputs(
    sset: SimilaritySet, protocol: str = "torchreid", rerank: bool = False, rerank_params: dict | None = None
) -> tuple:
    """Distances and labels of one convention, re-ranked or not, for ``evaluate_rank``.

    Distance: ``similarity_to_distance`` (``1 - s`` for our similarities, which
    are at most 1): ``re_ranking`` needs non-negative distances (it squares
    them and divides every column by its maximum), so ``-s`` cannot be used.
    For the mean clip feature ``1 - s = ||a - b||^2 / 2`` for the unit mean
    features, proportional to the squared Euclidean distance torchreid passes
    to ``re_ranking`` (the per-column normalisation removes the factor).
    Without re-ranking, ranking by ``1 - s`` is ranking by ``-s``.

    Conventions: ``torchreid`` (gallery = the non-query test tracks without
    junk; queries without a cross-camera match skipped) and ``mars_official``
    (the MATLAB code: gallery = *all* test tracks, queries and junk (pid -1)
    included; same-identity same-camera items and junk ignored). Without
    re-ranking the junk tracks change nothing; with re-ranking they take part
    in the neighbourhoods, as in the official setting. Re-ranking is always
    done over the gallery of the convention used.

    Args:
        sset: :class:`SimilaritySet`.
        protocol: ``"torchreid"`` (gallery = the first G items) or
            ``"mars_official"`` (gallery = all items: gallery, queries, junk;
            ``eval.ranking.mars_official_gallery`` plus the junk columns).
        rerank: k-reciprocal re-ranking over that gallery
            (``re_ranking(q_g, q_q, g_g, **rerank_params)``).
        rerank_params: ``k1``, ``k2``, ``lambda_value`` (default :data:`RERANK`).

    Returns:
        ``(distmat (Q, G'), q_pids, g_pids, q_camids, g_camids)`` with G' = G
        (torchreid) or G + Q + J (mars_official).
    """
    check_protocol(protocol)
    params = dict(RERANK if rerank_params is None else rerank_params)
    G, qs = sset.num_gallery, sset.query_slice
    D = sset.distance()
    qp, qc = sset.pids[qs], sset.camids[qs]
    if protocol == "torchreid":
        dist = D[qs, :G]
        if rerank:
            dist = re_ranking(dist, D[qs, qs], D[:G, :G], **params)
        return dist, qp, sset.pids[:G], qc, sset.camids[:G]
    dist, qp, gp, qc, gc = mars_official_gallery(D[qs, :G], D[qs, qs], qp, sset.pids[:G], qc, sset.camids[:G])
    js = slice(G + sset.num_query, None)
    dist = np.concatenate([dist, D[qs, js]], axis=1)
    gp = np.concatenate([gp, sset.pids[js]])
    gc = np.concatenate([gc, sset.camids[js]])
    if rerank:  # the official gallery is every item, in the order of D
        dist = re_ranking(dist, D[qs, qs], D, **params)
    return dist, qp, gp, qc, gc


def evaluate_set(
    sset: SimilaritySet,
    protocol: str = "torchreid",
    rerank: bool = False,
    rerank_params: dict | None = None,
    max_rank: int = 50,
):
    """CMC and mAP of one method under one convention, with or without re-ranking.

    Args:
        sset, protocol, rerank, rerank_params: as :func:`protocol_inputs`.
        max_rank: CMC length (cut to the gallery size).

    Returns:
        ``(cmc, mAP)`` of ``eval.ranking.evaluate_rank``, in [0, 1].
    """
    dist, qp, gp, qc, gc = protocol_inputs(sset, protocol, rerank, rerank_params)
    return evaluate_rank(dist, qp, gp, qc, gc, max_rank=min(int(max_rank), dist.shape[1]), protocol=protocol)
