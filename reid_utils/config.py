"""Profiles: one frozen, hashable config object for every experiment.

Three named profiles (the README, "Profiles"):

* ``smoke``   - tiny synthetic set, I3D topology at reduced width/resolution;
  every notebook runs in under a minute on 2 CPU cores (used by CI).
* ``default`` - the embedded synthetic benchmark with a reduced I3D sized for a
  CPU; the whole reproduction runs in about 20 minutes on 2 cores.
* ``paper``   - MARS / DukeMTMC-VideoReID / PRID2011 at full scale on a GPU:
  full-width I3D, 256x128 inputs, L=4, M=8, D=1024, hidden=1024 (Sec. 4.2).

Notebooks differ only in the profile they resolve. ``resolve_profile`` lets the
``REID_PROFILE`` environment variable override the notebook's ``PROFILE``
parameter, so ``REID_PROFILE=smoke pytest --nbval-lax notebooks`` works.
``REID_OVERRIDES`` (JSON) changes any field for a run, e.g. a dry run of ``paper``
with only sizes shrunk: ``REID_OVERRIDES='{"train": {"iterations": 2, "P": 2, "K": 2},
"ablation": {"train_lens": [4]}}'`` (lists become tuples; a bad key or type is an
error naming the variable and the key; ``python -m reid_utils.reproduce --overrides``).

Every field is a plain, JSON-serialisable value, so ``config_key`` can hash a
config (or a sub-config) into the cache key of the artifacts it produced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PROFILES = ("smoke", "default", "paper")
OVERRIDES_ENV = "REID_OVERRIDES"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SynthConfig:
    """Size and difficulty knobs of the synthetic benchmark (``reid_utils.synth``).

    Frequencies are per-frame probabilities unless stated otherwise.
    """

    seed: int = 0
    # Many training identities with few tracklets each: a CNN trained from scratch
    # generalises to unseen people only with enough identities (measured, see reid_utils.synth).
    num_train_ids: int = 230  # Config.val_ids of them are held out for validation
    num_test_ids: int = 75
    num_cameras: int = 6
    frame_height: int = 64
    frame_width: int = 32
    # Tracklet length ~ log-normal(log median_len, len_sigma) clipped to [min_len, max_len]:
    # MARS-like (reid_utils.synth.plan, "Lengths"): MARS has median 33, mean 58, p90 138,
    # max 920 frames; median 33 and sigma 1.0 give mean ~54, p90 ~119, p99 ~340.
    min_len: int = 6
    median_len: int = 33
    len_sigma: float = 1.0
    max_len: int = 600
    tracklets_per_id_cam: float = 0.8  # mean tracklets per identity per camera (over all cameras)
    lookalike_fraction: float = 0.3
    num_distractor_tracklets: int = 20
    num_junk_tracklets: int = 20
    p_occlusion: float = 0.08
    p_empty: float = 0.03
    p_id_switch: float = 0.03
    p_bad_crop: float = 0.05
    p_blur: float = 0.08
    jpeg_quality: int = 90
    camera_variation: float = 0.5  # strength of per-camera colour cast/exposure (0 = none, 1 = strong)


@dataclass(frozen=True)
class ModelConfig:
    """The I3D backbone (Sec. 4.2) at the profile's width and resolution."""

    width_mult: float = 1.0  # multiplies every conv's output channels
    input_height: int = 256
    input_width: int = 128
    feat_dim: int = 1024  # D: global-average-pooled Mixed_5c channels
    pretrained: bool = True  # Kinetics-400 initialisation (reid_utils.models.pretrained)


@dataclass(frozen=True)
class TrainConfig:
    """3D-CNN re-ID training (Sec. 3.2): P x K batches, triplet + softmax."""

    clip_len: int = 4  # L_train
    sampling: str = "consec"  # frame sampling for training clips (Sec. 4.3: consecutive)
    P: int = 8
    K: int = 4
    iterations: int = 2000
    lr: float = 3e-4
    weight_decay: float = 5e-4
    margin: float = 0.3
    lr_milestones: tuple = (0.5, 0.75)  # fractions of ``iterations``
    lr_gamma: float = 0.1
    eval_every: int = 500
    color_jitter: float = 0.0  # per-clip channel gain/offset amplitude (transforms.augment_clip)
    random_erasing: float = 0.0  # probability of erasing one random box per clip (Zhong et al. 2020)


@dataclass(frozen=True)
class AggConfig:
    """The clip-similarity aggregation module (Sec. 3.1, 3.2, 4.2, 4.4)."""

    num_clips: int = 8  # M
    clip_len: int = 4  # L
    sampling: str = "evenly"
    hidden: int = 1024
    dropout: float = 0.5
    P: int = 16
    K: int = 4
    iterations: int = 2000
    lr: float = 1e-4
    margin: float = 0.3
    # top-t% baselines: standardise the projected clip features (BatchNorm, no affine) before
    # the cosine. Without it the projection learns to squeeze every cosine towards 1 under
    # heavy corruption (the batch-hard loss's trivial solution; models.baseline_aggregators).
    topt_neck: bool = True
    # torch CPU threads of one aggregator training (0: torch's default). With 1 a trained model
    # does not depend on the machine's core count (BLAS splits its sums differently with more
    # threads) and trainings run side by side, one per core (experiments.aggregators.train_all):
    # on 2 cores two 1-thread trainings of 200 iterations finish 1.4x sooner, process start-up
    # included, than the same two one after the other on 2 threads (benchmarks/bench_agg_parallel.py).
    train_threads: int = 1
    max_corrupted: tuple = tuple(range(8))  # M_c^max values of Table 2
    t_percents: tuple = tuple(range(10, 101, 10))


@dataclass(frozen=True)
class AblationConfig:
    """The grids of the Sec. 4.3 experiments (Fig. 3, Fig. 4); smaller in ``smoke``."""

    train_lens: tuple = (4, 8, 16)  # L_train of the three I3D models
    test_lens: tuple = (4, 8, 16, 32)  # L_test of Fig. 3
    avg_num_clips: tuple = (1, 2, 4, 8, 16)  # clip counts averaged in Fig. 4 (M is AggConfig.num_clips)
    # CPU profiles only: > 0 gives every L_train model a shared trunk (the training of
    # ``train``, on clips of train.clip_len) plus this many iterations at ``finetune_lr``
    # on clips of its own length (training.i3d.trained_i3d); 0 trains each one from the
    # profile's initialisation, as the paper does.
    finetune_iterations: int = 0
    finetune_lr: float = 3e-4


@dataclass(frozen=True)
class Config:
    """Everything an experiment depends on. Frozen and hashable."""

    profile: str = "default"
    seed: int = 0
    dataset: str = "synthetic"  # synthetic | mars | dukemtmc-videoreid | prid2011
    data_root: str | None = None  # real datasets: where they live on disk
    device: str = "auto"  # auto | cpu | cuda
    num_workers: int = 0
    # Identities of the training split held out (before any training) as a validation
    # query/gallery set, where knobs such as top-t%'s t are chosen (data.validation).
    val_ids: int = 0
    synth: SynthConfig = field(default_factory=SynthConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    agg: AggConfig = field(default_factory=AggConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    artifacts_dir: str = str(REPO_ROOT / "artifacts")
    figures_dir: str = str(REPO_ROOT / "figures")

    # -- derived -----------------------------------------------------------
    @property
    def cache_root(self) -> Path:
        """``artifacts/<profile>``: where this profile's cached artifacts live."""
        return Path(self.artifacts_dir) / self.profile

    @property
    def figures_path(self) -> Path:
        """Where figures and tables go: the repo's committed ``figures/`` for the default
        profile, ``figures/<profile>/`` (git-ignored) for any other, so a smoke or paper run
        never overwrites the committed files; ``$REID_FIGURES`` is used as given."""
        p = Path(self.figures_dir)
        if self.profile != "default" and p == REPO_ROOT / "figures":
            return p / self.profile
        return p

    def torch_device(self):
        """The ``torch.device`` this config asks for (``auto``: CUDA if present)."""
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self, *parts: str) -> str:
        """Cache key of the sub-configs named in ``parts`` (all of it if none)."""
        d = self.to_dict()
        if parts:
            d = {p: d[p] for p in parts}
        return config_key(d)


def config_key(obj: Any, length: int = 16) -> str:
    """Stable short hash of a JSON-serialisable object (or a dataclass)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    blob = json.dumps(obj, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def _json_default(o):
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"config_key: cannot hash object of type {type(o).__name__}")


def _profile(name: str) -> Config:
    if name == "smoke":
        return Config(
            profile="smoke",
            val_ids=3,
            synth=SynthConfig(
                num_train_ids=12,
                num_test_ids=12,
                min_len=4,
                median_len=12,
                len_sigma=0.8,
                max_len=40,
                tracklets_per_id_cam=0.7,
                num_distractor_tracklets=4,
                num_junk_tracklets=4,
            ),
            model=ModelConfig(width_mult=0.125, input_height=64, input_width=32, feat_dim=128, pretrained=False),
            train=TrainConfig(P=4, K=2, iterations=12, eval_every=12, lr=1e-3),
            ablation=AblationConfig(train_lens=(4, 8), test_lens=(4, 8), avg_num_clips=(1, 2, 4)),
            agg=AggConfig(
                num_clips=4, hidden=64, P=4, K=2, iterations=20, lr=1e-3, max_corrupted=(0, 3), t_percents=(20, 50, 100)
            ),
        )
    if name == "default":
        return Config(
            profile="default",
            val_ids=30,
            synth=SynthConfig(),
            model=ModelConfig(width_mult=0.25, input_height=64, input_width=32, feat_dim=256, pretrained=False),
            # Trained from scratch: 2000 iterations at a high constant rate, no weight
            # decay (Adam's L2 form held the small network back), decayed late. Measured
            # on the default benchmark (one evenly sampled 4-frame clip): 1200 iterations
            # 21.8 % mAP, 1500 24.5 %, 2000 30.8 % (colour-histogram baseline: 22.3 %).
            train=TrainConfig(
                P=8, K=4, iterations=2000, eval_every=500, lr=3e-3, weight_decay=0.0, lr_milestones=(0.7, 0.9)
            ),
            ablation=AblationConfig(finetune_iterations=250, finetune_lr=3e-4),
            # Measured on the validation identities (notebook 04, 04_validation_curves): the
            # learned aggregator's validation mAP plateaus within 300 iterations at lr 1e-3. The
            # margin does not matter here (04_margin): the I3D's clip cosines crowd near 1, so the
            # mined positive and negative similarities differ by < 0.01 and no hinge is ever met,
            # neither the paper's 0.3 nor 0.05; the loss is then a plain mean of s_neg - s_pos
            # and both margins train the identical model.
            agg=AggConfig(num_clips=8, hidden=128, P=8, K=4, iterations=300, lr=1e-3, margin=0.05),
        )
    if name == "paper":
        return Config(
            profile="paper",
            dataset="mars",
            model=ModelConfig(width_mult=1.0, input_height=256, input_width=128, feat_dim=1024, pretrained=True),
            train=TrainConfig(P=8, K=4, iterations=60000, eval_every=5000, lr=3e-4),
            agg=AggConfig(num_clips=8, hidden=1024, P=16, K=4, iterations=20000, lr=1e-4, train_threads=0),
        )
    raise ValueError(f"unknown profile {name!r}: expected one of {', '.join(PROFILES)}")


def get_config(profile: str = "default", **overrides: Any) -> Config:
    """The named profile's config, with top-level fields replaced by ``overrides``.

    Sub-configs can be overridden with dicts, e.g. ``synth={"seed": 3}``; lists
    become tuples (configs stay hashable, cache keys stable) and each value must
    have its field's type.
    """
    return _apply_overrides(_profile(profile), overrides, "get_config")


#: Fields an override may not set: the profile's name (it decides ``cache_root``).
_NOT_OVERRIDABLE = ("profile",)


def _apply_overrides(cfg: Config, overrides: dict, source: str) -> Config:
    """``cfg`` with ``overrides`` applied; errors name ``source`` and the bad key."""
    return replace(cfg, **{k: _coerce(cfg, k, v, source, k) for k, v in overrides.items()})


def _coerce(obj, name: str, value: Any, source: str, path: str) -> Any:
    """``value`` checked and converted for field ``name`` of dataclass ``obj`` (``path``: dotted, for errors)."""
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if name in _NOT_OVERRIDABLE and "." not in path:
        raise ValueError(f"{source}: {path!r} cannot be overridden (set $REID_PROFILE or the PROFILE parameter)")
    if name not in fields:
        where, known = f"{type(obj).__name__} field" if "." in path else "field", set(fields) - {*_NOT_OVERRIDABLE}
        raise ValueError(f"{source}: unknown {where} {path!r}; expected one of {sorted(known)}")
    cur = getattr(obj, name)
    if dataclasses.is_dataclass(cur):
        if isinstance(value, type(cur)):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{source}: {path!r} expects a dict of {type(cur).__name__} fields, got {value!r}")
        return replace(cur, **{k: _coerce(cur, k, v, source, f"{path}.{k}") for k, v in value.items()})
    value = os.fspath(value) if isinstance(value, os.PathLike) else _tuples(value)
    optional = "None" in str(fields[name].type)  # data_root: str | None
    if optional and (value is None or isinstance(value, str)):
        return value
    want = str if optional else type(cur)
    ok = isinstance(value, want) and not (isinstance(value, bool) and want is not bool)
    if not ok and not (want is float and type(value) is int):
        raise ValueError(
            f"{source}: {path!r} expects {want.__name__}{' or null' * optional} (like {cur!r}), got {value!r}"
        )
    return float(value) if want is float else value


def _tuples(value: Any) -> Any:
    """JSON lists (at any depth) as tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def env_overrides(var: str = OVERRIDES_ENV) -> dict:
    """The overrides held by the environment variable ``var`` (JSON object; ``{}`` if unset).

    Example: ``REID_OVERRIDES='{"train": {"iterations": 2, "P": 2, "K": 2}, "ablation": {"train_lens": [4]}}'``.
    Keys and value types are checked when the overrides are applied (:func:`resolve_profile`).
    """
    text = os.environ.get(var, "").strip()
    if not text:
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f'${var}: not valid JSON ({e}); expected an object such as \'{{"train": {{"iterations": 2}}}}\''
        ) from None
    if not isinstance(obj, dict):
        raise ValueError(f"${var}: expected a JSON object of config fields, got {type(obj).__name__}")
    return obj


def resolve_profile(profile: str | None = None, **overrides: Any) -> Config:
    """Config for a notebook: ``$REID_PROFILE`` wins over the ``profile`` argument.

    Also honours ``$REID_ARTIFACTS`` / ``$REID_FIGURES`` (used by the tests to
    keep artifacts and figures in a temporary directory) and
    ``$REID_DATA_ROOT`` / ``$REID_DATASET`` for the ``paper`` profile, and
    ``$REID_OVERRIDES`` (:func:`env_overrides`): any other field, applied first (the
    variables above and the explicit ``overrides`` win; sub-config dicts are merged).
    """
    name = os.environ.get("REID_PROFILE") or profile or "default"
    cfg = _apply_overrides(_profile(name), env_overrides(), f"${OVERRIDES_ENV}")
    env = {
        "artifacts_dir": os.environ.get("REID_ARTIFACTS"),
        "figures_dir": os.environ.get("REID_FIGURES"),
        "data_root": os.environ.get("REID_DATA_ROOT"),
        "dataset": os.environ.get("REID_DATASET"),
    }
    for k, v in env.items():
        if v and k not in overrides:
            overrides[k] = v
    return _apply_overrides(cfg, overrides, "resolve_profile")


def describe(cfg: Config) -> str:
    """One-paragraph summary printed by every notebook's setup cell."""
    import platform

    import numpy as np
    import torch

    dev = cfg.torch_device()
    lines = [
        f"profile={cfg.profile}  dataset={cfg.dataset}  seed={cfg.seed}  device={dev}",
        f"python {platform.python_version()}  torch {torch.__version__}  numpy {np.__version__}",
        f"artifacts: {cfg.cache_root}   figures: {cfg.figures_path}",
    ]
    if env_overrides():
        lines.append(f"overrides (${OVERRIDES_ENV}): {json.dumps(env_overrides(), sort_keys=True)}")
    return "\n".join(lines)
