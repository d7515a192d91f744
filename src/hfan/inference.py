"""The official test path (SPEC §7): keep-ratio resize, resize to a multiple of 32, sliding window or whole
image, optional flip / multi-scale averaging of the softmax maps, back to the original size.

Knows nothing of files: RGB uint8 arrays in, foreground probabilities and masks out.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from hfan.config import InferenceConfig
from hfan.data.normalize import normalize_batch

PRECISIONS = ("fp32", "fp16", "bf16")
BACKENDS = ("torch", "onnx")


def rescale_size(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """mmcv `rescale_size`: the largest keep-ratio size inside box (long, short), rounded half up."""
    scale = min(max(box) / max(width, height), min(box) / min(width, height))
    return int(width * scale + 0.5), int(height * scale + 0.5)


def round_up(value: int, divisor: int) -> int:
    return int(math.ceil(value / divisor)) * divisor


def network_input_size(width: int, height: int, box: tuple[int, int], size_divisor: int) -> tuple[int, int]:
    """Network input size for an image: 854x480 -> 911x512 -> 928x512 at the official scale (SPEC §7)."""
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


def autocast_context(device: torch.device, precision: str):
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class Prediction:
    probability: np.ndarray  # (H, W) float32, foreground probability at the input frame's size
    mask: np.ndarray  # (H, W) bool, argmax of the two classes


class Predictor:
    """Runs a model the way the official test does; windows of several frames go through one forward.

    `max_batch` bounds how many windows (frame + flow each) one forward takes; `max_batch=1` is the faithful
    path, one window at a time as mmseg runs it. Fast paths, each computing the same logits:
    `compiled` runs a torch.compile'd model (hfan.perf.compile_segmentor) on chunks zero-padded to exactly
    `max_batch` windows, so one window size compiles once (CUDA graphs need fixed shapes too);
    `backend="onnx"` runs each chunk through onnxruntime (CPU, fp32), one exported graph per window size.
    """

    def __init__(self, model: torch.nn.Module, config: InferenceConfig | None = None, device: str | torch.device | None = None,
                 precision: str | None = None, max_batch: int = 8, backend: str = "torch", compiled: bool = False,
                 compile_backend: str | Callable = "inductor"):
        self.model = model.eval()
        self.config = config or getattr(model, "config").test
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.precision = precision or ("fp16" if self.device.type == "cuda" else "fp32")
        autocast_context(self.device, self.precision)  # validates the name
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.max_batch = max_batch
        self.model.to(self.device)
        self.backend, self.static_batch = backend, compiled
        self.network = self._build_network(backend, compiled, compile_backend)

    def _build_network(self, backend: str, compiled: bool, compile_backend):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
        if backend == "onnx":
            if compiled or self.device.type != "cpu" or self.precision != "fp32":
                raise ValueError("backend onnx runs fp32 on the CPU, uncompiled: drop --compile, use --device cpu "
                                 "and --precision fp32")
            from hfan.export import OnnxSegmentor

            return OnnxSegmentor(self.model, threads=torch.get_num_threads())
        if compiled:
            from hfan.perf import compile_segmentor

            return compile_segmentor(self.model, self.device, backend=compile_backend)
        return self.model

    # -- network passes on normalised tensors -------------------------------------------------------------
    def _run_chunk(self, frames: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        count = frames.shape[0]
        if self.static_batch:
            # Zero windows fill the chunk (samples do not interact in eval mode, so the real ones are unchanged).
            # Always concatenated, even with no padding: compiled graphs are guarded on the shape and on being
            # an inference-mode tensor, which a fresh tensor made here is and a caller's slice may not be.
            padding = frames.new_zeros((self.max_batch - count, *frames.shape[1:]))
            frames, flows = torch.cat([frames, padding]), torch.cat([flows, padding])
        return self.network(frames, flows)[:count]

    def _forward(self, frames: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        """Logits at the input size (encode_decode: decoder output bilinearly resized to the input)."""
        outputs = []
        with torch.inference_mode(), autocast_context(self.device, self.precision):
            for start in range(0, frames.shape[0], self.max_batch):
                logits = self._run_chunk(frames[start:start + self.max_batch], flows[start:start + self.max_batch])
                outputs.append(F.interpolate(logits.float(), size=frames.shape[2:], mode="bilinear",
                                             align_corners=False))
        return torch.cat(outputs)

    def logits(self, frames: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        """Whole-image or slide logits (B,2,H,W) at the network input size, as mmseg's inference computes them."""
        if self.config.mode == "whole":
            return self._forward(frames, flows)
        batch, _, height, width = frames.shape
        crop = self.config.crop_size
        windows = window_grid(height, width, crop, self.config.stride)
        crops_frame = torch.cat([frames[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in windows])
        crops_flow = torch.cat([flows[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in windows])
        crop_logits = self._forward(crops_frame, crops_flow)
        summed = frames.new_zeros((batch, crop_logits.shape[1], height, width), dtype=torch.float32)
        count = frames.new_zeros((1, 1, height, width), dtype=torch.float32)
        for index, (y1, y2, x1, x2) in enumerate(windows):
            summed[:, :, y1:y2, x1:x2] += crop_logits[index * batch:(index + 1) * batch]
            count[:, :, y1:y2, x1:x2] += 1
        return summed / count

    # -- from RGB arrays to probabilities ---------------------------------------------------------------
    def _prepare(self, images: list[np.ndarray], box: tuple[int, int]) -> torch.Tensor:
        resized = np.stack([resize_for_test(image, box, self.config.size_divisor) for image in images])
        return normalize_batch(resized, self.device)

    def probabilities(self, frames: list[np.ndarray], flows: list[np.ndarray]) -> torch.Tensor:
        """Softmax maps (B,2,H,W) at the frames' own size, averaged over the test augmentations."""
        _check_pairs(frames, flows)
        height, width = frames[0].shape[:2]
        total = None
        passes = 0
        for box in scale_boxes(self.config):
            frame_batch, flow_batch = self._prepare(frames, box), self._prepare(flows, box)
            for flip in ((False, True) if self.config.flip else (False,)):
                f, o = (frame_batch.flip(3), flow_batch.flip(3)) if flip else (frame_batch, flow_batch)
                logits = F.interpolate(self.logits(f, o), size=(height, width), mode="bilinear", align_corners=False)
                probs = logits.softmax(dim=1)
                probs = probs.flip(3) if flip else probs
                total = probs if total is None else total + probs
                passes += 1
        return total / passes

    def predict(self, frames: list[np.ndarray], flows: list[np.ndarray]) -> list[Prediction]:
        probs = self.probabilities(frames, flows).cpu()
        foreground = probs[:, 1].numpy().astype(np.float32)
        masks = (probs[:, 1] > probs[:, 0]).numpy()  # argmax; a tie goes to background as torch.argmax does
        return [Prediction(foreground[i], masks[i]) for i in range(len(frames))]


def _check_pairs(frames: list[np.ndarray], flows: list[np.ndarray]) -> None:
    if len(frames) != len(flows) or not frames:
        raise ValueError(f"got {len(frames)} frames and {len(flows)} flow images; give one flow image per frame")
    shape = frames[0].shape
    for index, (frame, flow) in enumerate(zip(frames, flows)):
        if frame.dtype != np.uint8 or flow.dtype != np.uint8:
            raise ValueError(f"pair {index}: frames and flow images must be uint8 RGB, got {frame.dtype}/{flow.dtype}")
        if frame.shape != shape or flow.shape != shape or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"pair {index}: frame {frame.shape} and flow {flow.shape} must both be {shape} (HxWx3); "
                             "a batch needs frames of one size")
