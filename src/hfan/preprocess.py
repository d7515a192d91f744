"""What every image goes through before the network: the test path's resizing rules, the window grid, the one
normalisation, and the numeric precision of a forward.

Resizing (docs/design.md#resizing): keep-ratio resize into a box, then up to a multiple of 32, both cv2 bilinear
on uint8.

Normalisation (docs/design.md#normalisation): ImageNet mean/std on RGB, for frames and flow images alike. The
original runs `mmcv.imnormalize` on BGR input with `to_rgb=True` (cv2.subtract, then cv2.multiply by a float64 1/std). On an
RGB array that equals `(x - mean) / std` in float32 bit for bit, whereas multiplying by a float32 1/std differs by one ulp for about a quarter of the values (checked in tests/datasets/test_transforms.py).
`normalize_batch` is the same arithmetic in torch, for inference: the uint8 images go to the device as they are
(a quarter of the float32 bytes) and are normalised there; subtraction and division are exactly rounded in
IEEE float32 on any device, so both give the same bits (also checked there).
"""
from __future__ import annotations

import contextlib
import math

import cv2
import numpy as np
import torch

from hfan.config import IMAGENET_MEAN, IMAGENET_STD, PRECISIONS, InferenceConfig

_MEAN = np.asarray(IMAGENET_MEAN, np.float32)
_STD = np.asarray(IMAGENET_STD, np.float32)


def rescale_size(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """mmcv `rescale_size`: the largest keep-ratio size inside box (long, short), rounded half up."""
    scale = min(max(box) / max(width, height), min(box) / min(width, height))
    return int(width * scale + 0.5), int(height * scale + 0.5)


def round_up(value: int, divisor: int) -> int:
    return int(math.ceil(value / divisor)) * divisor


def network_input_size(width: int, height: int, box: tuple[int, int], size_divisor: int) -> tuple[int, int]:
    """Network input size for an image, e.g. 854x480 -> 911x512 -> 928x512 at the official scale
    (docs/design.md#resizing)."""
    resized = rescale_size(width, height, box)
    return round_up(resized[0], size_divisor), round_up(resized[1], size_divisor)


def resize_for_test(image: np.ndarray, box: tuple[int, int], size_divisor: int) -> np.ndarray:
    """Two cv2 bilinear resizes on uint8, as the original pipeline does (Resize, then ResizeToMultiple)."""
    height, width = image.shape[:2]
    resized_w, resized_h = rescale_size(width, height, box)
    if (resized_w, resized_h) != (width, height):
        image = cv2.resize(image, (resized_w, resized_h), interpolation=cv2.INTER_LINEAR)
    target = (round_up(resized_w, size_divisor), round_up(resized_h, size_divisor))
    if target != (resized_w, resized_h):
        image = cv2.resize(image, target, interpolation=cv2.INTER_LINEAR)
    return image


def scale_boxes(config: InferenceConfig) -> list[tuple[int, int]]:
    """MultiScaleFlipAug's boxes: (int(2048 r), int(512 r)) for every ratio r."""
    return [(int(config.img_scale[0] * r), int(config.img_scale[1] * r)) for r in config.ratios]


def window_grid(height: int, width: int, crop: int, stride: int) -> list[tuple[int, int, int, int]]:
    """mmseg's slide_inference windows (y1, y2, x1, x2); the last window is shifted back to end at the border."""
    rows = max(height - crop + stride - 1, 0) // stride + 1
    cols = max(width - crop + stride - 1, 0) // stride + 1
    windows = []
    for row in range(rows):
        for col in range(cols):
            y2, x2 = min(row * stride + crop, height), min(col * stride + crop, width)
            windows.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return windows


def normalize_image(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxWx3 float32, (x - mean) / std as mmcv's imnormalize computes it."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    return (rgb.astype(np.float32) - _MEAN) / _STD


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWxC array -> CxHxW contiguous float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def normalize_batch(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """NxHxWx3 uint8 RGB -> Nx3xHxW float32 on `device`, (x - mean) / std: `normalize_image`'s bits.

    On the CPU this is faster than `normalize_image` per image (torch's threads, no float64 detour of the
    layout; docs/speed.md); on a GPU the host only copies bytes.
    """
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected NxHxWx3 uint8 RGB images, got {images.dtype} {images.shape}")
    batch = torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True)
    mean = torch.as_tensor(_MEAN, device=batch.device)
    std = torch.as_tensor(_STD, device=batch.device)
    return ((batch.float() - mean) / std).permute(0, 3, 1, 2).contiguous()


def autocast_context(device: torch.device, precision: str):
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)
