"""Tests for reid_utils.models.losses (Eq. 7, Eq. 8, Sec. 3.2)."""

import math

import pytest
import torch

from reid_utils.models.losses import batch_hard_triplet, batch_hard_triplet_similarity, pairwise_euclidean, softmax_ce


def _hand_case():
    # Four points on a line: ids A = {0, 1}, B = {3, 7}.
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    labels = torch.tensor([0, 0, 1, 1])
    return x, labels


def test_batch_hard_triplet_hand_worked():
    x, labels = _hand_case()
    dist = torch.cdist(x, x)
    m = 0.5
    # anchor 0: pos max = 1, neg min = 3 -> [0.5 + 1 - 3]_+ = 0
    # anchor 1: pos max = 1, neg min = 2 -> [0.5 + 1 - 2]_+ = 0
    # anchor 3 (x=3): pos max = 4, neg min = 2 -> 0.5 + 4 - 2 = 2.5
    # anchor 4 (x=7): pos max = 4, neg min = 6 -> 0.5 + 4 - 6 < 0 -> 0
    per = batch_hard_triplet(dist, labels, m, reduction="none")
    assert torch.allclose(per, torch.tensor([0.0, 0.0, 2.5, 0.0]))
    assert math.isclose(batch_hard_triplet(dist, labels, m).item(), 2.5 / 4)
    assert math.isclose(batch_hard_triplet(dist, labels, m, reduction="sum").item(), 2.5)


def test_similarity_variant_is_negated_distance():
    torch.manual_seed(0)
    sim = torch.rand(6, 6)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    a = batch_hard_triplet_similarity(sim, labels, 0.3, reduction="none")
    # by hand for anchor 0: [m - min_pos s + max_neg s]_+ (self included among positives)
    pos = sim[0, :2].min()
    neg = sim[0, 2:].max()
    assert math.isclose(a[0].item(), max(0.0, 0.3 - pos.item() + neg.item()), rel_tol=1e-6)
    assert torch.allclose(a, batch_hard_triplet(-sim, labels, 0.3, reduction="none"))


def test_pairwise_euclidean_matches_cdist_and_has_finite_grad():
    torch.manual_seed(0)
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    d = pairwise_euclidean(x)
    ref = torch.cdist(x.detach(), x.detach())
    off = ~torch.eye(5, dtype=torch.bool)
    assert torch.allclose(d.detach()[off], ref[off], atol=1e-10)
    batch_hard_triplet(d, torch.tensor([0, 0, 1, 1, 2]), 0.3).backward()
    assert torch.isfinite(x.grad).all()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="no negative"):
        batch_hard_triplet(torch.zeros(3, 3), torch.tensor([1, 1, 1]), 0.3)
    with pytest.raises(ValueError, match="labels"):
        batch_hard_triplet(torch.zeros(3, 3), torch.tensor([1, 2]), 0.3)
    with pytest.raises(ValueError, match="square"):
        batch_hard_triplet(torch.zeros(3, 2), torch.tensor([1, 2, 3]), 0.3)


def test_softmax_ce_eq8():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    expected = -(torch.log_softmax(logits, 1)[0, 0] + torch.log_softmax(logits, 1)[1, 1]) / 2
    assert torch.allclose(softmax_ce(logits, labels), expected)
