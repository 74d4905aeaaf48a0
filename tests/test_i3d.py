"""Tests of reid_utils.models.i3d: reference layout, TF SAME padding, shapes, width multiplier."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from reid_utils.models.i3d import InceptionI3d, MaxPool3dSame, Unit3D, same_padding, scaled_channels

# Parameter names and shapes of the widely used PyTorch I3D port (a copy of
# shared/reference/pytorch_i3d_rgb_state_dict.json, kept in the repo so CI always checks it).
REF = Path(
    os.environ.get(
        "REID_I3D_REFERENCE", Path(__file__).resolve().parent / "fixtures" / "pytorch_i3d_rgb_state_dict.json"
    )
)


@pytest.fixture(scope="module")
def reference_keys():
    if not REF.is_file():
        pytest.skip(f"reference layout {REF} not available")
    d = json.loads(REF.read_text())
    return [(k, tuple(s)) for k, s in d["keys"]], d


def test_state_dict_matches_reference_layout(reference_keys):
    ref, meta = reference_keys
    net = InceptionI3d()  # width 1, 400 classes: the port's layout
    mine = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert dict(mine) == dict(ref)
    assert [k for k, _ in mine] == [k for k, _ in ref]  # same registration order
    assert len(mine) == meta["num_keys"]
    assert sum(p.numel() for p in net.parameters()) == meta["num_parameters"]


def test_strict_load_of_reference_shaped_random_state_dict(reference_keys):
    ref, _ = reference_keys
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, shape in ref:
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(shape, generator=g)
    net = InceptionI3d()
    net.load_state_dict(sd, strict=True)
    for k, v in net.state_dict().items():
        assert torch.equal(v, sd[k]), k


@pytest.mark.parametrize("size", range(1, 12))
@pytest.mark.parametrize("kernel,stride", [(7, 2), (3, 1), (3, 2), (2, 2), (1, 1), (1, 2)])
def test_same_padding_output_size_is_ceil(size, kernel, stride):
    front, back = same_padding(size, kernel, stride)
    assert back - front in (0, 1)  # odd extra pixel at the end
    out = (size + front + back - kernel) // stride + 1
    assert out == math.ceil(size / stride)


def test_unit3d_symmetric_fast_path_equals_explicit_padding():
    torch.manual_seed(0)
    u = Unit3D(3, 4, kernel=(3, 3, 3), use_batch_norm=False, activation=False)
    x = torch.randn(1, 3, 3, 5, 4)
    explicit = F.conv3d(F.pad(x, (1, 1, 1, 1, 1, 1)), u.conv3d.weight)
    assert torch.allclose(u(x), explicit, atol=1e-6)


def test_unit3d_asymmetric_padding_puts_extra_at_end():
    # 7x7x7 stride 2 on an even size: total 5 -> front 2, back 3.
    torch.manual_seed(0)
    u = Unit3D(1, 1, kernel=(7, 7, 7), stride=(2, 2, 2), use_batch_norm=False, activation=False)
    x = torch.randn(1, 1, 4, 8, 6)
    explicit = F.conv3d(F.pad(x, (2, 3, 2, 3, 2, 3)), u.conv3d.weight, stride=2)
    y = u(x)
    assert y.shape[-3:] == (2, 4, 3)
    assert torch.allclose(y, explicit, atol=1e-5)


@pytest.mark.parametrize(
    "kernel,stride", [((3, 3, 3), (1, 1, 1)), ((1, 3, 3), (1, 2, 2)), ((2, 2, 2), (2, 2, 2)), ((3, 3, 3), (2, 2, 2))]
)
def test_maxpool_same_equals_zero_padding_on_nonnegative_input(kernel, stride):
    x = torch.rand(1, 2, 3, 7, 5)
    pool = MaxPool3dSame(kernel, stride)
    pads = [same_padding(n, k, s) for n, k, s in zip(x.shape[-3:], kernel, stride)]
    flat = [p for fb in reversed(pads) for p in fb]
    ref = F.max_pool3d(F.pad(x, flat), kernel, stride)  # the port: zero padding
    y = pool(x)
    assert y.shape[-3:] == tuple(math.ceil(n / s) for n, s in zip(x.shape[-3:], stride))
    assert torch.equal(y, ref)


def test_feature_and_logit_shapes_any_input_size():
    torch.manual_seed(0)
    net = InceptionI3d(num_classes=5, width_mult=0.125).eval()
    assert net.feat_dim == 128
    with torch.no_grad():
        for shape in [(2, 3, 4, 32, 16), (1, 3, 5, 33, 17)]:
            x = torch.rand(shape) * 2 - 1
            f = net.extract_features(x)
            assert f.shape == (shape[0], 128)
            assert torch.isfinite(f).all()
            assert net(x).shape == (shape[0], 5)
            m = net.feature_maps(x)
            assert torch.allclose(m.mean(dim=(2, 3, 4)), f)


def test_width_multiplier_changes_shapes_not_names():
    full = {k: v.shape for k, v in InceptionI3d().state_dict().items()}
    small = {k: v.shape for k, v in InceptionI3d(width_mult=0.25).state_dict().items()}
    assert full.keys() == small.keys()
    assert small["Mixed_5c.b0.conv3d.weight"][0] == scaled_channels(384, 0.25) == 96
    assert InceptionI3d(width_mult=0.25).feat_dim == 256


def test_bn_settings_and_bad_input():
    net = InceptionI3d(width_mult=0.125)
    bn = net.Conv3d_1a_7x7.bn
    assert bn.eps == 1e-3 and bn.momentum == 0.01
    assert net.Conv3d_1a_7x7.conv3d.bias is None and net.logits.conv3d.bias is not None
    with pytest.raises(ValueError, match="expected input of shape"):
        net.extract_features(torch.zeros(1, 4, 4, 32, 16))
    with pytest.raises(ValueError, match="width_mult"):
        InceptionI3d(width_mult=0)


def test_gradients_flow_in_training_mode():
    torch.manual_seed(0)
    net = InceptionI3d(width_mult=0.125).train()
    x = torch.rand(2, 3, 4, 32, 16) * 2 - 1
    net.extract_features(x).pow(2).sum().backward()
    g = net.Conv3d_1a_7x7.conv3d.weight.grad
    assert g is not None and g.abs().sum() > 0
