"""The one normalisation of the project: ImageNet mean/std on RGB, for frames and flow images alike (SPEC §6.2.6)."""
from __future__ import annotations

import numpy as np
import torch

from hfan.config import IMAGENET_MEAN, IMAGENET_STD

_MEAN = np.asarray(IMAGENET_MEAN, np.float32)
_INV_STD = 1.0 / np.asarray(IMAGENET_STD, np.float32)


def normalize_image(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxWx3 float32, (x - mean) / std as mmcv's imnormalize computes it."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    return (rgb.astype(np.float32) - _MEAN) * _INV_STD


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWxC array -> CxHxW contiguous float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
