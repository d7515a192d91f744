"""The one image normalisation of the project, shared by training and inference (SPEC §6.2 step 6, §9.14).

Frame and flow image alike: RGB, ImageNet mean/std. The original runs `mmcv.imnormalize` on BGR input with
`to_rgb=True`; on an RGB array that is `(x - mean) / std` in float32, bit for bit (checked in the tests
against mmcv's own cv2 call sequence).
"""
from __future__ import annotations

import numpy as np
import torch

from hfan.config import IMAGENET_MEAN, IMAGENET_STD

_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32)
_STD = np.asarray(IMAGENET_STD, dtype=np.float32)


def normalize_image(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (H, W, 3), ImageNet-normalised."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {rgb.shape}")
    return (rgb.astype(np.float32) - _MEAN) / _STD


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) array -> contiguous (C, H, W) tensor of the same dtype."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def normalize_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 RGB (H, W, 3) -> float32 (3, H, W) tensor, ready for the model."""
    return image_to_tensor(normalize_image(rgb))
