"""Presets: the paper's models and training recipes by name, where their weights come from, and the default
model that ships inside the package.

One record per model preset (like timm's pretrained configs): its config and its released weights file. The
official files cannot be downloaded by this package (they sit behind Baidu / OneDrive links): `hfan segment
--model hfan-small` looks for them in the cache (`checkpoint_cache()`), `--checkpoint FILE` takes them anywhere.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

from hfan.config import (BackboneConfig, CompositeConfig, DataConfig, FlowConfig, HeadConfig, InferenceConfig,
                         ModelConfig, OptimizerConfig, ScheduleConfig, TrainConfig, apply_overrides)


@dataclass(frozen=True)
class ModelPreset:
    config: ModelConfig
    weights_file: str | None = None  # the official release's file name, or the packaged file of the default model
    packaged: bool = False  # the weights ship inside the package (hfan/weights/)
    about: str = ""


def _paper(backbone: str, embed_dim: int) -> ModelConfig:
    return ModelConfig(BackboneConfig(name=backbone), HeadConfig(embed_dim=embed_dim))


def _default_model() -> ModelConfig:
    """Our default model (not in the paper): MiT-b0, flow branch only, trained on synthetic composites of real
    photographs and clip-art shapes (docs/default_model.md). Whole-image test at a short side of 128 pixels,
    the training scale; DIS flow with the camera motion removed, as in its training; the foreground probability
    averaged over 7 frames (docs/default_model.md: +0.05 J on davis16_mini)."""
    config = _paper("mit_b0", 256)
    config.decode_head.select_method = "fw"
    config.test = InferenceConfig(mode="whole", img_scale=(2048, 128), temporal_mean=3)
    config.flow = FlowConfig(method="dis", dis_preset="medium", camera_motion="affine", scale=1.0)
    return config


# The paper's models (docs/design.md#models, local_configs/hfan/hfan.{small,medium,large}; the released files,
# docs/design.md#released-files); hfan-b0 is ours, for fast tests; hfan-default is ours, trained here
# (docs/default_model.md).
MODEL_PRESETS: dict[str, ModelPreset] = {
    "hfan-b0": ModelPreset(_paper("mit_b0", 256), about="MiT-b0, decoder 256 (not in the paper: for tests)"),
    "hfan-small": ModelPreset(_paper("mit_b1", 256), "HFAN-s-converted.pth", about="HFAN-Small: MiT-b1, decoder 256"),
    "hfan-medium": ModelPreset(_paper("mit_b2", 768), "HFAN-m-converted.pth", about="HFAN-Medium: MiT-b2, decoder 768"),
    "hfan-large": ModelPreset(_paper("mit_b3", 768), about="HFAN-Large: MiT-b3, decoder 768 (no released file)"),
    "hfan-default": ModelPreset(_default_model(), "hfan-default.pth", packaged=True,
                                about="the default model: MiT-b0, flow only, trained on synthetic composites"),
}

# `load_model("default")` and `hfan segment` without --checkpoint: the packaged weights of this preset.
DEFAULT_MODEL = "default"
DEFAULT_PRESET = "hfan-default"


def list_presets() -> list[str]:
    return list(MODEL_PRESETS)


def get_preset(name: str) -> ModelConfig:
    """A fresh copy of a preset's model config."""
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {name!r}; valid presets: {', '.join(MODEL_PRESETS)}")
    return copy.deepcopy(MODEL_PRESETS[name].config)


def default_weights_path() -> Path:
    """The default model's weights inside the installed package (hfan/weights/hfan-default.pth)."""
    from importlib.resources import files

    return Path(str(files("hfan").joinpath("weights", MODEL_PRESETS[DEFAULT_PRESET].weights_file)))


CHECKPOINT_CACHE_ENV = "HFAN_HOME"
OFFICIAL_WEIGHTS_HELP = (
    "The official HFAN checkpoints (HFAN-s-converted.pth = hfan-small, HFAN-m-converted.pth = hfan-medium) are "
    "linked from the README of github.com/NUST-Machine-Intelligence-Laboratory/HFAN (Baidu, and a OneDrive "
    "folder given in its issue #15). Download one and pass --checkpoint FILE, or put it in {cache}.")


def checkpoint_cache() -> Path:
    """Where `hfan segment` looks for weights when no --checkpoint is given: $HFAN_HOME/checkpoints or
    ~/.cache/hfan/checkpoints."""
    root = os.environ.get(CHECKPOINT_CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "hfan") / "checkpoints"


def find_checkpoint(preset: str) -> Path:
    """The cached weights of a preset: its official file, else `<preset>.pth`, in `checkpoint_cache()`."""
    cache = checkpoint_cache()
    record = MODEL_PRESETS.get(preset)
    candidates = [cache / record.weights_file] if record is not None and record.weights_file and not record.packaged else []
    candidates.append(cache / f"{preset}.pth")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no weights for {preset} in {cache}. " + OFFICIAL_WEIGHTS_HELP.format(cache=cache))


def segment_weights(model: str | None, checkpoint: str | os.PathLike | None) -> tuple[str | Path, str | None]:
    """What `hfan segment` loads, as (checkpoint, expected preset): `checkpoint` when given (`model` then says
    what it should hold); else the packaged default model (`model` None or "default"), or the cached weights of
    the preset `model` (`find_checkpoint`)."""
    if checkpoint is not None:
        if model not in (None, DEFAULT_MODEL) and model not in MODEL_PRESETS:
            raise ValueError(f"--model {model}: not a preset; valid: {', '.join(MODEL_PRESETS)}")
        return checkpoint, None if model in (None, DEFAULT_MODEL) else model
    if model in (None, DEFAULT_MODEL):
        return DEFAULT_MODEL, None
    if model not in MODEL_PRESETS:
        raise ValueError(f"--model {model}: not a preset; valid: {DEFAULT_MODEL}, {', '.join(MODEL_PRESETS)}")
    return find_checkpoint(model), model


# --------------------------------------------------------------------------------------- training recipes
# The original's two stages (docs/design.md#training-stages, local_configs/hfan/*.py): `<model>-160k` is stage 1
# (YouTube2SEG train, 160k iterations, poly decay with warm-up, MiT ImageNet init); `<model>-refine` is stage 2
# (DAVIS2SEG train x15, 4k iterations at a constant rate, from the stage-1 checkpoint).
def _stage1(model: str) -> TrainConfig:
    # The 160k configs validate (and, as saved, test) with whole-image inference.
    return TrainConfig(model=apply_overrides(get_preset(model), ["test.mode=whole"]))


def _stage2(model: str) -> TrainConfig:
    return TrainConfig(
        model=get_preset(model),
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
        model=get_preset("hfan-default"),
        # Clean motion labels (run B, docs/default_model.md): the camera tracks the primary object only when it
        # moves itself, and no second, smaller mover is labelled background. A non-rigid (water-like) background
        # below a horizon in 30 % of clips (run F: it helped on real video where C's other additions did not). A
        # primary object that bends (up to 20 % of its side) in half of the clips (runs I and J: legs, a walker).
        data=DataConfig(source="composites", root="", val_root=None, batch_per_gpu=8, workers_per_gpu=1,
                        pin_memory=False,
                        composites=CompositeConfig(track_min_camera_speed=2.0, secondary_probability=0.0,
                                                   ripple_probability=0.3, deform_probability=0.5,
                                                   deform_amplitude=0.2)),
        optimizer=OptimizerConfig(lr=5e-4),
        schedule=ScheduleConfig(policy="poly", power=1.0, min_lr=1e-6, warmup="linear", warmup_iters=100,
                                warmup_ratio=1e-3),
        iterations=6_000, checkpoint_interval=500, eval_interval=250, log_interval=25,
        deterministic=False, threads=2, keep_best="J-Mean", tensorboard=False, ema_decay=0.999,
    )


TRAIN_PRESETS["hfan-default-composites"] = _default_model_recipe()


def get_train_preset(name: str) -> TrainConfig:
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown training preset {name!r}; valid presets: {', '.join(TRAIN_PRESETS)}")
    return copy.deepcopy(TRAIN_PRESETS[name])
