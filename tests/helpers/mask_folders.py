"""Small DAVIS-layout mask folders written on the fly for the evaluation tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_sequence(root: Path, sequence: str, masks: list[np.ndarray]) -> list[Path]:
    """`masks` (uint8 or bool arrays) as <root>/<sequence>/00000.png, 00001.png, ..."""
    folder = root / sequence
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, mask in enumerate(masks):
        path = folder / f"{index:05d}.png"
        array = mask.astype(np.uint8) * 255 if mask.dtype == bool else mask
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def moving_squares(n_frames: int, height: int = 48, width: int = 64, size: int = 16,
                   shift: int = 0) -> list[np.ndarray]:
    """A square moving right by 2 pixels a frame; `shift` moves it down (a deliberately imperfect copy)."""
    masks = []
    for index in range(n_frames):
        mask = np.zeros((height, width), dtype=bool)
        top, left = 10 + shift, 4 + 2 * index
        mask[top:top + size, left:left + size] = True
        masks.append(mask)
    return masks


def soft_maps(masks: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """8-bit saliency maps: the mask blurred into probabilities plus noise, never exactly binary."""
    import cv2

    rng = np.random.default_rng(seed)
    maps = []
    for mask in masks:
        blurred = cv2.GaussianBlur(mask.astype(np.float32), (9, 9), 3)
        noisy = np.clip(0.85 * blurred + 0.1 * rng.random(mask.shape), 0, 1)
        maps.append(np.round(noisy * 255).astype(np.uint8))
    return maps


def synthetic_dataset(root: Path, lengths: dict[str, int], shift: int = 0) -> Path:
    for sequence, n_frames in lengths.items():
        write_sequence(root, sequence, moving_squares(n_frames, shift=shift))
    return root
