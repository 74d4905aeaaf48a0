from types import SimpleNamespace

import pandas as pd
import torch

from reid_utils.experiments import i3d_ablations as ex


def _ds(q, g):
    mk = lambda pid, cam: SimpleNamespace(pid=pid, camid=cam)  # noqa: E731
    return SimpleNamespace(query=[mk(*x) for x in q], gallery=[mk(*x) for x in g], protocol="torchreid")


def test_evaluate_features_ranks_by_euclidean_distance():
    ds = _ds([(1, 0), (2, 0)], [(1, 1), (2, 1), (3, 1)])
    qf = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    gf = torch.tensor([[0.1, 0.0], [5.0, 5.1], [2.0, 2.0]])
    r = ex.evaluate_features(qf, gf, ds)
    assert r["mAP"] == 1.0 and r["rank1"] == 1.0
    gf_bad = torch.tensor([[9.0, 9.0], [0.0, 0.0], [5.0, 5.0]])  # each query's match ranked last
    r = ex.evaluate_features(qf, gf_bad, ds)
    assert r["rank1"] == 0.0 and abs(r["mAP"] - 1 / 3) < 1e-9


def _fig3(values):
    rows = []
    for (lt, m, L), v in values.items():
        rows.append({"L_train": lt, "method": m, "L_test": L, "mAP": v, "rank1": v, "rank5": v})
    return pd.DataFrame(rows)


def test_findings_are_computed_from_the_numbers():
    vals = {}
    for lt in (4, 16):
        for m in ("consec", "random", "evenly"):
            for L in (4, 32):
                base = 50 + (10 if L == 32 else 0) + (5 if m != "consec" else 0)
                vals[(lt, m, L)] = base + (3 if (lt == 4 and L == 4) else 0)
    t = ex.sampling_findings(_fig3(vals))
    assert list(t.columns) == ["finding", "paper", "ours", "holds"] and len(t) == 4
    assert t["ours"][0] == "6/6 curves" and t["holds"][0]
    assert t["ours"][1] == "2/2 models" and t["holds"][1]
    assert t["ours"][2] == "L_train=4" and "L_train=4" in t["paper"][2] and t["holds"][2]
    assert t["ours"][3] == "within 0.0 mAP points (vs 3.0 at L_test=4)" and t["holds"][3]
    # flip the short-clip advantage: the finding must now be reported as not holding
    for m in ("consec", "random", "evenly"):
        vals[(16, m, 4)] += 10
    t = ex.sampling_findings(_fig3(vals))
    assert t["ours"][2] == "L_train=16" and not t["holds"][2]
    # longer clips hurting everywhere: finding 1 does not hold
    for key in vals:
        if key[2] == 32:
            vals[key] -= 40
    t = ex.sampling_findings(_fig3(vals))
    assert t["ours"][0] == "0/6 curves" and not t["holds"][0]
    # one model: only the findings that compare curves and methods
    one = ex.sampling_findings(_fig3({k: v for k, v in vals.items() if k[0] == 4}))
    assert len(one) == 2


def test_protocol_follows_the_dataset_split():
    assert ex.protocol_of(SimpleNamespace(protocol="official-mars")) == "mars_official"
    assert ex.protocol_of(SimpleNamespace(protocol="torchreid")) == "torchreid"
