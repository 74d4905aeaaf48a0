"""Plain reference implementations, written from the definitions: the ground truth of the
tests (``tests/test_evaluation.py``, ``tests/test_reranking.py``) and the baselines the
benchmarks time the package against. Slow on purpose: one query at a time, dense matrices.
"""

import numpy as np


def loop_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, protocol="torchreid"):
    """One query at a time, stable full sort, exactly as the protocols read.

    Returns (cmc, mAP, per-query AP (NaN if skipped), kept ranked gallery indices per query).
    """
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    official = protocol == "mars_official"
    cmcs, aps, ap_all, kept_orders = [], [], [], []
    for q in range(num_q):
        ap_all.append(np.nan)
        order = np.argsort(distmat[q], kind="stable")
        same_pid = g_pids[order] == q_pids[q]
        junk = same_pid & (g_camids[order] == q_camids[q])
        if official:
            junk |= g_pids[order] == -1
        good = (same_pid & ~junk)[~junk]  # flags of the kept items, in ranked order
        kept_orders.append(order[~junk])
        n_good = good.sum()
        if n_good == 0:
            if official:
                cmcs.append(np.zeros(max_rank))
                aps.append(0.0)
                ap_all[-1] = 0.0
            continue
        cmc = np.zeros(max_rank)
        first = int(np.argmax(good))
        cmc[first:] = 1
        cmcs.append(cmc)
        if official:  # compute_AP.m: trapezoid between precision before and at each hit
            ap, old_recall, old_precision, hits = 0.0, 0.0, 1.0, 0
            for j, g in enumerate(good):
                hits += int(g)
                recall, precision = hits / n_good, hits / (j + 1)
                ap += (recall - old_recall) * (old_precision + precision) / 2
                old_recall, old_precision = recall, precision
                if hits == n_good:
                    break
        else:
            hits = np.cumsum(good)
            ap = float(np.sum(hits[good] / (np.flatnonzero(good) + 1)) / n_good)
        aps.append(ap)
        ap_all[-1] = ap
    if not cmcs:
        raise ValueError("no valid query")
    return np.mean(cmcs, axis=0), float(np.mean(aps)), np.array(ap_all), kept_orders


def reference_re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """Dense, loop-per-item k-reciprocal re-ranking; O(N^2) memory.

    Follows the reference step by step; neighbour lists come from a *stable*
    argsort so that exact ties have a defined order.
    """
    num_q = q_g_dist.shape[0]
    full = np.block([[q_q_dist, q_g_dist], [q_g_dist.T, g_g_dist]])
    full = np.power(full, 2).astype(np.float32)
    dist = (full / np.max(full, axis=0)).T  # row i: column i over its max
    n = dist.shape[0]
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i, k):
        forward = rank[i, : k + 1]
        return np.array([j for j in forward if i in rank[j, : k + 1]], dtype=np.int64)

    half = int(np.around(k1 / 2.0))
    V = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        r = reciprocal(i, k1)
        expansion = list(r)
        for c in r:
            rc = reciprocal(c, half)
            if len(np.intersect1d(rc, r)) > 2.0 / 3 * len(rc):
                expansion.extend(rc)
        expansion = np.unique(np.array(expansion, dtype=np.int64))
        w = np.exp(-dist[i, expansion])
        V[i, expansion] = w / np.sum(w)
    if k2 != 1:
        V = np.stack([V[rank[i, :k2]].mean(axis=0) for i in range(n)]).astype(np.float32)
    jaccard = np.zeros((num_q, n), dtype=np.float32)
    for i in range(num_q):
        shared = np.minimum(V[i][None, :], V).sum(axis=1)  # sum_l min(V[i,l], V[j,l])
        jaccard[i] = 1 - shared / (2.0 - shared)
    final = jaccard * (1 - lambda_value) + dist[:num_q] * lambda_value
    return final[:, num_q:]


def scoring_model(D: int, H: int, seed: int, gain: float = 1.0):
    """A ``LearnedClipAggregator`` in eval mode with non-trivial BatchNorm statistics to fold
    and (``gain`` > 1) larger weights, so the clip-pair weights really differ between pairs:
    the model the fused-kernel checks score (tests/test_fused_scoring.py, benchmarks/gpu_check.py)."""
    import torch

    from reid_utils.models.aggregation import LearnedClipAggregator

    torch.manual_seed(seed)
    m = LearnedClipAggregator(D, H)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for bn in (m.importance_net[1], m.importance_net[5]):
            bn.running_mean.copy_(torch.randn(H, generator=gen) * 0.3)
            bn.running_var.copy_(torch.rand(H, generator=gen) + 0.5)
            bn.weight.copy_(torch.rand(H, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(H, generator=gen) * 0.2)
        for i in (0, 4, 8):
            m.importance_net[i].weight.mul_(gain)
    return m.eval()
