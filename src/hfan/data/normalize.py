"""The one normalisation of the project: ImageNet mean/std on RGB, for frames and flow images alike (SPEC §6.2.6).

The original runs `mmcv.imnormalize` on BGR input with `to_rgb=True` (cv2.subtract, then cv2.multiply by a
float64 1/std). On an RGB array that equals `(x - mean) / std` in float32 bit for bit, whereas multiplying by a
float32 1/std differs by one ulp for about a quarter of the values (checked in tests/test_transforms.py).
"""
from __future__ import annotations

import numpy as np
import torch

from hfan.config import IMAGENET_MEAN, IMAGENET_STD

_MEAN = np.asarray(IMAGENET_MEAN, np.float32)
_STD = np.asarray(IMAGENET_STD, np.float32)


def normalize_image(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxWx3 float32, (x - mean) / std as mmcv's imnormalize computes it."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    return (rgb.astype(np.float32) - _MEAN) / _STD


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWxC array -> CxHxW contiguous float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
