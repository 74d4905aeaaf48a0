"""Inception-V1 I3D (Carreira & Zisserman 2017), the 3D CNN of the paper (Sec. 4.2).

The module and parameter names, the parameter shapes (at ``width_mult=1``) and
the registration order follow the widely used PyTorch port
(``piergiaj/pytorch-i3d``, recorded in
``shared/reference/pytorch_i3d_rgb_state_dict.json``), so checkpoints in that
layout load with ``strict=True``. The code is written from the architecture.

Conventions (a converted checkpoint depends on them; details in
:func:`same_padding`, :class:`MaxPool3dSame` and :class:`InceptionI3d`):

* Input: RGB in ``[-1, 1]``, layout ``(B, C, T, H, W)``.
* TF ``"SAME"`` padding computed per forward pass, the odd extra pixel at the end.
* BatchNorm: ``eps=1e-3``, ``momentum=0.01`` (the port's values); convs have no
  bias except the final ``logits`` 1x1x1 conv (bias, no BN, no ReLU).
* Global average pooling over ``(T, H, W)`` after ``Mixed_5c`` (Sec. 4.2)
  instead of the port's fixed ``AvgPool3d([2, 7, 7])``, so any input size works.
* ``width_mult`` multiplies every conv's output channels (CPU profiles); names
  and topology never change, only shapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

# Inception block widths, in the port's order:
# (b0, b1a, b1b, b2a, b2b, b3b); output channels = b0 + b1b + b2b + b3b.
INCEPTION_SPECS: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

# The end points in forward order: (name, kind, args).
#   conv: (out_channels, kernel, stride); pool: (kernel, stride); mixed: spec name.
END_POINTS: tuple[tuple[str, str, tuple], ...] = (
    ("Conv3d_1a_7x7", "conv", (64, (7, 7, 7), (2, 2, 2))),
    ("MaxPool3d_2a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", "conv", (64, (1, 1, 1), (1, 1, 1))),
    ("Conv3d_2c_3x3", "conv", (192, (3, 3, 3), (1, 1, 1))),
    ("MaxPool3d_3a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", "mixed", ()),
    ("Mixed_3c", "mixed", ()),
    ("MaxPool3d_4a_3x3", "pool", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", "mixed", ()),
    ("Mixed_4c", "mixed", ()),
    ("Mixed_4d", "mixed", ()),
    ("Mixed_4e", "mixed", ()),
    ("Mixed_4f", "mixed", ()),
    ("MaxPool3d_5a_2x2", "pool", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", "mixed", ()),
    ("Mixed_5c", "mixed", ()),
)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF ``"SAME"`` padding of one dimension: ``(front, back)``, extra pixel at the end.

    The padded output has ``ceil(size / stride)`` elements; the total padding is
    ``max(k - s, 0)`` if ``size % s == 0`` else ``max(k - size % s, 0)``, with
    ``front = total // 2`` and ``back = total - front``. When the padding is
    symmetric (every stride-1 conv and pool of the network) the layers pass it
    to the convolution / pool itself, which is numerically identical and avoids
    a copy.
    """
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    front = total // 2
    return front, total - front


def _same_pads(shape: Sequence[int], kernel: Sequence[int], stride: Sequence[int]):
    """Per-dimension (front, back) pads for a ``(T, H, W)`` shape."""
    return [same_padding(n, k, s) for n, k, s in zip(shape, kernel, stride)]


def _pad_same(x: torch.Tensor, pads) -> torch.Tensor:
    # F.pad wants (W_front, W_back, H_front, H_back, T_front, T_back).
    flat = [p for fb in reversed(pads) for p in fb]
    return F.pad(x, flat)


def scaled_channels(channels: int, width_mult: float) -> int:
    """Output channels of a conv at ``width_mult`` (rounded half-up, at least 1)."""
    return max(1, int(math.floor(channels * width_mult + 0.5)))


class Unit3D(nn.Module):
    """Conv3d (TF SAME padding) -> BatchNorm3d -> ReLU; names ``conv3d``, ``bn``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: ``(kT, kH, kW)``.
        stride: ``(sT, sH, sW)``.
        activation: apply ReLU.
        use_batch_norm: add ``bn`` (eps 1e-3, momentum 0.01).
        use_bias: conv bias (only the ``logits`` unit has one).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel=(1, 1, 1),
        stride=(1, 1, 1),
        activation: bool = True,
        use_batch_norm: bool = True,
        use_bias: bool = False,
    ):
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.activation = activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, stride=self.stride, padding=0, bias=use_bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if use_batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Cin, T, H, W) -> (B, Cout, ceil(T/sT), ceil(H/sH), ceil(W/sW))."""
        pads = _same_pads(x.shape[-3:], self.kernel, self.stride)
        if all(f == b for f, b in pads):
            x = F.conv3d(x, self.conv3d.weight, self.conv3d.bias, self.stride, tuple(f for f, _ in pads))
        else:
            x = self.conv3d(_pad_same(x, pads))
        if self.bn is not None:
            x = self.bn(x)
        if self.activation:
            x = F.relu(x, inplace=True)
        return x


class MaxPool3dSame(nn.Module):
    """Max-pool with TF ``"SAME"`` padding (inputs are post-ReLU, so >= 0).

    The port pads max-pools with zeros; we use the implicit ``-inf`` of
    :func:`torch.nn.functional.max_pool3d` (symmetric case) or zeros (``F.pad``,
    asymmetric case). Every max-pool of I3D follows a ReLU (or a concatenation
    of ReLU outputs), so its input is ``>= 0`` and both give the port's result.
    """

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _same_pads(x.shape[-3:], self.kernel, self.stride)
        if all(f == b for f, b in pads) and all(2 * f <= k for (f, _), k in zip(pads, self.kernel)):
            return F.max_pool3d(x, self.kernel, self.stride, tuple(f for f, _ in pads))
        return F.max_pool3d(_pad_same(x, pads), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels (names b0, b1a/b1b, b2a/b2b, b3b).

    b0: 1x1x1 conv; b1: 1x1x1 -> 3x3x3; b2: 1x1x1 -> 3x3x3;
    b3: 3x3x3 max-pool (stride 1, SAME) -> 1x1x1 conv.
    """

    def __init__(self, in_channels: int, widths: Sequence[int]):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = widths
        self.b0 = Unit3D(in_channels, c0)
        self.b1a = Unit3D(in_channels, c1a)
        self.b1b = Unit3D(c1a, c1b, kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, c2a)
        self.b2b = Unit3D(c2a, c2b, kernel=(3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c3b)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-V1 I3D with global average pooling (Sec. 4.2).

    Args:
        num_classes: outputs of the ``logits`` 1x1x1 conv (400 for Kinetics).
        in_channels: input channels (3 for RGB).
        width_mult: multiplies every conv's output channels (rounded half-up, at
            least 1; CPU profiles).
        dropout_keep_prob: keep probability of the dropout before ``logits``
            (``p = 1 - dropout_keep_prob``; the port passes its keep probability
            to ``nn.Dropout`` as the *drop* probability, harmless at 0.5).

    Attributes:
        feat_dim: dimension of :meth:`extract_features`: 1024 at width 1, the
            sum of the scaled ``Mixed_5c`` branch widths otherwise (256 at 0.25,
            128 at 0.125).

    Example:
        >>> net = InceptionI3d(width_mult=0.125).eval()
        >>> net.extract_features(torch.zeros(2, 3, 4, 32, 16)).shape
        torch.Size([2, 128])
    """

    def __init__(
        self, num_classes: int = 400, in_channels: int = 3, width_mult: float = 1.0, dropout_keep_prob: float = 0.5
    ):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"InceptionI3d: width_mult must be > 0, got {width_mult}")
        if not 0.0 < dropout_keep_prob <= 1.0:
            raise ValueError(f"InceptionI3d: dropout_keep_prob must be in (0, 1], got {dropout_keep_prob}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.width_mult = width_mult
        w = lambda c: scaled_channels(c, width_mult)  # noqa: E731

        feat_dim = sum(w(INCEPTION_SPECS["Mixed_5c"][i]) for i in (0, 2, 4, 5))
        # Registered first, as in the port (its state_dict starts with logits.*).
        self.dropout = nn.Dropout(1.0 - dropout_keep_prob)
        self.logits = Unit3D(feat_dim, num_classes, activation=False, use_batch_norm=False, use_bias=True)
        self.end_points = []
        c = in_channels
        for name, kind, args in END_POINTS:
            if kind == "conv":
                out, k, s = args
                mod = Unit3D(c, w(out), kernel=k, stride=s)
                c = w(out)
            elif kind == "pool":
                mod = MaxPool3dSame(*args)
            else:
                mod = InceptionModule(c, [w(v) for v in INCEPTION_SPECS[name]])
                c = mod.out_channels
            self.add_module(name, mod)
            self.end_points.append(name)
        assert c == feat_dim
        self.feat_dim = feat_dim

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"InceptionI3d: expected input of shape (B, {self.in_channels}, T, H, W), got {tuple(x.shape)}"
            )

    def feature_maps(self, x: torch.Tensor, end_point: str = "Mixed_5c") -> torch.Tensor:
        """Activations at ``end_point`` (default ``Mixed_5c``).

        Args:
            x: (B, C, T, H, W) clips, RGB in [-1, 1].

        Returns:
            (B, C', T', H', W'); at 4x256x128 and width 1: (B, 1024, 1, 8, 4).
        """
        self._check_input(x)
        if end_point not in self.end_points:
            raise ValueError(f"feature_maps: unknown end_point {end_point!r}; expected one of {self.end_points}")
        for name in self.end_points:
            x = getattr(self, name)(x)
            if name == end_point:
                break
        return x

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip features: global average pool of ``Mixed_5c``.

        Args:
            x: (B, C, T, H, W) clips, RGB in [-1, 1].

        Returns:
            (B, feat_dim) features (1024-D at width 1), not normalised.
        """
        return self.feature_maps(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits: GAP features -> dropout -> ``logits`` 1x1x1 conv.

        Args:
            x: (B, C, T, H, W) clips, RGB in [-1, 1].

        Returns:
            (B, num_classes) logits.
        """
        f = self.extract_features(x)
        f = self.dropout(f)[:, :, None, None, None]
        return self.logits(f).flatten(1)
