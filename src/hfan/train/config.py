"""Typed training configs and the presets of the original's two stages (SPEC §5, local_configs/hfan/*.py).

`<model>-160k` is stage 1 (YouTube2SEG train, 160k iterations, poly decay with warm-up, MiT ImageNet init);
`<model>-refine` is stage 2 (DAVIS2SEG train x15, 4k iterations at a constant rate, from the stage-1
checkpoint). Overrides: `optimizer.lr=1e-4`, `data.root=/data/DAVIS2SEG`, and `model.<field>=...` for the
model config (kept in `model_options`, so a checkpoint records how its model was built).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

from hfan.config import PRESETS, ModelConfig, _from_dict, apply_overrides, get_preset
from hfan.data.composites import CompositeConfig
from hfan.data.transforms import AugmentConfig

SUMMARY_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")

PRECISIONS = ("fp32", "bf16", "fp16")
LR_POLICIES = ("poly", "fixed")
DATA_SOURCES = ("flat", "composites")
WARMUPS = ("linear", "none")


@dataclass
class DataConfig:
    # flat: a prepared dataset (root, split); composites: clips drawn on the fly from real photos and shapes
    # (hfan.data.composites), validated on held-out composite videos unless val_root is given.
    source: str = "flat"
    root: str = "data/YouTube2SEG"  # flat layout, SPEC §6.1
    split: str = "train"
    repeat: int = 1  # stage 2: RepeatDataset times=15
    val_root: str | None = "data/DAVIS2SEG"  # None: no validation during training
    val_split: str = "val"
    batch_per_gpu: int = 16  # samples_per_gpu
    workers_per_gpu: int = 16
    pin_memory: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    composites: CompositeConfig = field(default_factory=CompositeConfig)


@dataclass
class ParamRule:
    lr_mult: float = 1.0
    decay_mult: float = 1.0


@dataclass
class ParamwiseRules:
    """mmcv custom_keys: a parameter whose full name contains a key takes that key's multipliers
    (longest key first, then alphabetical; see hfan.train.optim). Field names are the keys."""

    pos_block: ParamRule = field(default_factory=lambda: ParamRule(decay_mult=0.0))  # no such MiT params
    head: ParamRule = field(default_factory=lambda: ParamRule(lr_mult=10.0))
    norm: ParamRule = field(default_factory=lambda: ParamRule(decay_mult=0.0))

    def as_dict(self) -> dict[str, ParamRule]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass
class OptimizerConfig:
    """AdamW (the only optimiser of the original)."""

    lr: float = 6e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    paramwise: ParamwiseRules = field(default_factory=ParamwiseRules)


@dataclass
class ScheduleConfig:
    """mmcv LrUpdaterHook by iteration: `poly` or `fixed`, with an optional linear warm-up."""

    policy: str = "poly"
    power: float = 1.0
    min_lr: float = 0.0
    warmup: str = "linear"
    warmup_iters: int = 3000
    warmup_ratio: float = 1e-6


@dataclass
class TrainConfig:
    model: str = "hfan-small"  # a preset of hfan.config.PRESETS
    model_options: tuple[str, ...] = ()  # dotted overrides of that model config
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    iterations: int = 160_000
    grad_accum_steps: int = 1  # e.g. 1 GPU x 16 x 2 steps stands in for the paper's 2 GPUs x 16
    precision: str = "fp32"  # the original trains in fp32
    deterministic: bool = True  # the original's --deterministic
    seed: int = 1208
    checkpoint_interval: int = 16_000
    eval_interval: int = 16_000
    log_interval: int = 50
    tensorboard: bool = True  # besides the CSV logs, when tensorboard is installed
    pretrained: str | None = None  # stage 1: MiT ImageNet weights for the backbone
    load_from: str | None = None  # stage 2: weights of the stage-1 checkpoint; counters restart
    resume: str | None = None  # a checkpoint of this run: continue exactly
    keep_best: str | None = None  # a validation column (e.g. J-Mean): its best checkpoint is kept as best.pth
    threads: int | None = None  # torch threads of the training process (None: torch's default)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        config = _from_dict(cls, data)
        validate_train_config(config)
        return config


def model_config(config: TrainConfig) -> ModelConfig:
    """The model this run trains: its preset with `model_options` applied."""
    return apply_overrides(get_preset(config.model), config.model_options, strip_prefixes=())


def _stage1(model: str) -> TrainConfig:
    # The 160k configs validate (and, as saved, test) with whole-image inference.
    return TrainConfig(model=model, model_options=("test.mode=whole",))


def _stage2(model: str) -> TrainConfig:
    return TrainConfig(
        model=model,
        data=DataConfig(root="data/DAVIS2SEG", repeat=15, batch_per_gpu=8, workers_per_gpu=8),
        optimizer=OptimizerConfig(lr=1e-5),
        schedule=ScheduleConfig(policy="fixed", warmup="none"),
        iterations=4_000, checkpoint_interval=4_000, eval_interval=4_000,
    )


# hfan-b0-* are ours (no MiT-b0 config in the original): the same recipe on the smallest model, for tests.
TRAIN_PRESETS: dict[str, TrainConfig] = {}
for _size in ("b0", "small", "medium", "large"):
    TRAIN_PRESETS[f"hfan-{_size}-160k"] = _stage1(f"hfan-{_size}")
    TRAIN_PRESETS[f"hfan-{_size}-refine"] = _stage2(f"hfan-{_size}")


def _default_model_recipe() -> TrainConfig:
    """How the shipped default model was made (docs/default_model.md): hfan-default from scratch on composites,
    128 px, batch 8, one data worker beside two torch threads on a 2-core CPU; the checkpoint with the best
    J-Mean on the held-out composite videos is kept as best.pth."""
    return TrainConfig(
        model="hfan-default",
        # Clean motion labels (the better of the two variants, docs/default_model.md): the camera tracks the
        # primary object only when it moves itself, and no second, smaller mover is labelled background.
        data=DataConfig(source="composites", root="", val_root=None, batch_per_gpu=8, workers_per_gpu=1,
                        pin_memory=False,
                        composites=CompositeConfig(track_min_camera_speed=2.0, secondary_probability=0.0)),
        optimizer=OptimizerConfig(lr=5e-4),
        schedule=ScheduleConfig(policy="poly", power=1.0, min_lr=1e-6, warmup="linear", warmup_iters=100,
                                warmup_ratio=1e-3),
        iterations=6_000, checkpoint_interval=500, eval_interval=250, log_interval=25,
        deterministic=False, threads=2, keep_best="J-Mean", tensorboard=False,
    )


TRAIN_PRESETS["hfan-default-composites"] = _default_model_recipe()


def get_train_preset(name: str) -> TrainConfig:
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown training preset {name!r}; valid presets: {', '.join(TRAIN_PRESETS)}")
    return copy.deepcopy(TRAIN_PRESETS[name])


def _one_of(value: str, valid: tuple[str, ...], name: str) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


def validate_train_config(config: TrainConfig) -> None:
    if config.model not in PRESETS:
        raise ValueError(f"unknown model preset {config.model!r}; valid presets: {', '.join(PRESETS)}")
    model_config(config)  # a bad model option fails here, not when the model is built
    _one_of(config.precision, PRECISIONS, "precision")
    _one_of(config.data.source, DATA_SOURCES, "data.source")
    if config.keep_best is not None:
        _one_of(config.keep_best, tuple(SUMMARY_COLUMNS), "keep_best")
    if config.threads is not None and config.threads < 1:
        raise ValueError(f"threads must be >= 1, got {config.threads}")
    _one_of(config.schedule.policy, LR_POLICIES, "schedule.policy")
    _one_of(config.schedule.warmup, WARMUPS, "schedule.warmup")
    positive = {"iterations": config.iterations, "grad_accum_steps": config.grad_accum_steps,
                "checkpoint_interval": config.checkpoint_interval, "eval_interval": config.eval_interval,
                "log_interval": config.log_interval, "data.repeat": config.data.repeat,
                "data.batch_per_gpu": config.data.batch_per_gpu}
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if config.data.workers_per_gpu < 0:
        raise ValueError(f"data.workers_per_gpu must be >= 0, got {config.data.workers_per_gpu}")
    if config.schedule.warmup != "none" and not 0 < config.schedule.warmup_ratio <= 1:
        raise ValueError(f"schedule.warmup_ratio must be in (0, 1], got {config.schedule.warmup_ratio}")
    if config.load_from and config.resume:
        raise ValueError("give either load_from (new run from weights) or resume (continue a run), not both")


def apply_train_overrides(config: TrainConfig, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
    """Dotted `key=value` overrides in place; `model.<field>=...` goes to `model_options`."""
    for item in overrides:
        path = item.split("=", 1)[0].strip()
        if path.startswith("model."):
            config.model_options = (*config.model_options, item.strip()[len("model."):])
        else:
            apply_overrides(config, [item], strip_prefixes=())
    validate_train_config(config)
    return config
