"""Tiny flat-layout data sets and a fast training config for the training tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hfan.datasets.layouts import FlatLayout
from hfan.config import TrainConfig, apply_overrides
from hfan.presets import get_train_preset


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_flat_split(root: Path, split: str = "train", videos: int = 2, frames: int = 4,
                     size: tuple[int, int] = (48, 64), seed: int = 0) -> FlatLayout:
    """Random frames; a rectangle moving right is the object (mask 1) and has its own colour in the flow image."""
    rng = np.random.default_rng(seed)
    layout = FlatLayout(root)
    height, width = size
    for video in range(videos):
        top, left = (int(v) for v in rng.integers(2, height // 3, 2))
        for index in range(frames):
            frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            mask = np.zeros(size, np.uint8)
            mask[top:top + height // 2, left + index:left + index + width // 2] = 1
            flow = np.full((height, width, 3), 250, np.uint8)
            flow[mask == 1] = (220, 90, 40)
            _save(layout.frame_path(split, f"video{video}", index), frame)
            _save(layout.flow_path(split, f"video{video}", index), flow)
            _save(layout.mask_path(split, f"video{video}", index), mask)
    return layout


def tiny_config(root: Path, *overrides: str, preset: str = "hfan-b0-160k") -> TrainConfig:
    """hfan-b0 (stage 1 by default) on 64x64 crops, batch 2, no workers, no validation, every step logged."""
    config = get_train_preset(preset)
    return apply_overrides(config, [
        f"data.root={root}", "data.val_root=none", "data.batch_per_gpu=2", "data.workers_per_gpu=0",
        "data.augment.crop_size=64,64", "data.augment.img_scale=128,64", "model.test.img_scale=128,64",
        "iterations=4", "checkpoint_interval=2", "eval_interval=2", "log_interval=1", "tensorboard=false",
        *overrides])
