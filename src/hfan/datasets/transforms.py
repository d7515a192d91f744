"""The training augmentation of the original, step by step, on numpy arrays (docs/design.md#training-augmentation).

Inputs: frame and flow image as uint8 RGB (H, W, 3), mask uint8 (H, W) with class ids 0/1 (255 = ignore).
Every random draw comes from a `numpy.random.Generator` passed in, in the original's order: resize ratio,
crop window(s), flip, photometric draws of the frame, then of the flow image. The formulas are mmseg v0.11 /
mmcv 1.3.8's, re-written rather than taken from a library because they must match bit for bit (the integer
rounding of the rescale, the crop retry rule, uint8 truncation after each photometric op).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from hfan.config import AugmentConfig
from hfan.preprocess import normalize_image, rescale_size, to_chw_tensor

CropBox = tuple[int, int, int, int]  # y1, y2, x1, x2


def draw_scale_box(rng: np.random.Generator, img_scale: tuple[int, int],
                   ratio_range: tuple[float, float]) -> tuple[int, int]:
    """mmseg Resize.random_sample_ratio: box = int(img_scale * r), r ~ U(ratio_range)."""
    low, high = ratio_range
    ratio = rng.random() * (high - low) + low
    return int(img_scale[0] * ratio), int(img_scale[1] * ratio)


def resize_keep_ratio(frame: np.ndarray, flow: np.ndarray, mask: np.ndarray,
                      box: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    height, width = mask.shape
    size = rescale_size(width, height, box)
    # The original resizes frame and flow as one 6-channel array; cv2 rounds a few pixels differently
    # that way than channel by channel (exact 2x down-scaling), so keep the stack.
    stacked = cv2.resize(np.concatenate([frame, flow], axis=2), size, interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    return stacked[..., :3], stacked[..., 3:], mask


def draw_crop_box(shape: tuple[int, int], crop_size: tuple[int, int], rng: np.random.Generator) -> CropBox:
    """mmseg RandomCrop.get_crop_bbox; a side shorter than the crop is kept whole."""
    margin_h = max(shape[0] - crop_size[0], 0)
    margin_w = max(shape[1] - crop_size[1], 0)
    offset_h = int(rng.integers(0, margin_h + 1))
    offset_w = int(rng.integers(0, margin_w + 1))
    return offset_h, offset_h + crop_size[0], offset_w, offset_w + crop_size[1]


def crop(array: np.ndarray, box: CropBox) -> np.ndarray:
    y1, y2, x1, x2 = box
    return array[y1:y2, x1:x2, ...]


def balanced_enough(mask: np.ndarray, cat_max_ratio: float, ignore_index: int) -> bool:
    """At least two classes, and none covers cat_max_ratio or more of the labelled pixels."""
    labels, counts = np.unique(mask, return_counts=True)
    counts = counts[labels != ignore_index]
    return len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio


def choose_crop_box(mask: np.ndarray, crop_size: tuple[int, int], rng: np.random.Generator,
                    cat_max_ratio: float, ignore_index: int) -> CropBox:
    """mmseg RandomCrop with cat_max_ratio: 10 windows are checked; when all fail, an 11th, unchecked,
    random window is used (the original redraws after every failed check)."""
    box = draw_crop_box(mask.shape, crop_size, rng)
    if cat_max_ratio < 1.0:
        for _ in range(10):
            if balanced_enough(crop(mask, box), cat_max_ratio, ignore_index):
                break
            box = draw_crop_box(mask.shape, crop_size, rng)
    return box


def _scale_and_clip(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    # float32 arithmetic, then truncation to uint8: mmseg PhotoMetricDistortion.convert
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """mmseg PhotoMetricDistortion on one 3-channel uint8 image.

    The original works on BGR with COLOR_BGR2HSV; brightness and contrast act per channel and
    COLOR_RGB2HSV on RGB is the same conversion as COLOR_BGR2HSV on BGR, so RGB input gives identical
    pixels without flipping the channel order twice.
    """
    img = rgb
    if rng.integers(2):
        img = _scale_and_clip(img, beta=rng.uniform(-cfg.brightness_delta, cfg.brightness_delta))
    contrast_last = rng.integers(2) == 0  # mmseg: mode 1 -> contrast before the HSV ops, mode 0 -> after
    if not contrast_last and rng.integers(2):
        img = _scale_and_clip(img, alpha=rng.uniform(*cfg.contrast_range))
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = _scale_and_clip(hsv[..., 1], alpha=rng.uniform(*cfg.saturation_range))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        # OpenCV hue units (0..179); numpy's randint upper bound is exclusive: shift in [-18, 17]
        shift = int(rng.integers(-cfg.hue_delta, cfg.hue_delta))
        hsv[..., 0] = (hsv[..., 0].astype(int) + shift) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if contrast_last and rng.integers(2):
        img = _scale_and_clip(img, alpha=rng.uniform(*cfg.contrast_range))
    return img


def pad_bottom_right(array: np.ndarray, size: tuple[int, int], value: float) -> np.ndarray:
    """mmcv.impad to a fixed (h, w): the padding goes below and to the right."""
    pad_h, pad_w = size[0] - array.shape[0], size[1] - array.shape[1]
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"cannot pad an array of shape {array.shape} to {size}")
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, widths, mode="constant", constant_values=value)


def _check_inputs(frame: np.ndarray, flow: np.ndarray, mask: np.ndarray) -> None:
    for name, array in (("frame", frame), ("flow", flow)):
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"{name} must be uint8 (H, W, 3), got {array.dtype} {array.shape}")
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"mask must be uint8 (H, W), got {mask.dtype} {mask.shape}")
    if frame.shape[:2] != flow.shape[:2] or frame.shape[:2] != mask.shape:
        raise ValueError(f"frame {frame.shape[:2]}, flow {flow.shape[:2]} and mask {mask.shape} differ in size")


class TrainTransform:
    """Resize -> RandomCrop -> RandomFlip -> PhotoMetricDistortion (frame, then flow, independent draws)
    -> Normalize -> Pad -> tensors: frame and flow (3, h, w) float32, mask (h, w) int64."""

    def __init__(self, cfg: AugmentConfig | None = None):
        self.cfg = cfg or AugmentConfig()

    def __call__(self, frame: np.ndarray, flow: np.ndarray, mask: np.ndarray,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        _check_inputs(frame, flow, mask)
        box = draw_scale_box(rng, cfg.img_scale, cfg.ratio_range)
        frame, flow, mask = resize_keep_ratio(frame, flow, mask, box)

        window = choose_crop_box(mask, cfg.crop_size, rng, cfg.cat_max_ratio, cfg.ignore_index)
        frame, flow, mask = crop(frame, window), crop(flow, window), crop(mask, window)

        if rng.random() < cfg.flip_prob:  # flow colours are not mirrored (docs/design.md#quirk-flow-augmentation)
            frame, flow, mask = (np.ascontiguousarray(a[:, ::-1]) for a in (frame, flow, mask))

        if cfg.photometric:
            frame = photometric_distortion(frame, rng, cfg)
            flow = photometric_distortion(flow, rng, cfg)

        frame = pad_bottom_right(normalize_image(frame), cfg.crop_size, 0.0)
        flow = pad_bottom_right(normalize_image(flow), cfg.crop_size, 0.0)
        mask = pad_bottom_right(mask, cfg.crop_size, cfg.seg_pad_val)
        return to_chw_tensor(frame), to_chw_tensor(flow), torch.from_numpy(mask.astype(np.int64))
