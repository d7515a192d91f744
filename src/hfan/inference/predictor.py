"""The official test path (docs/design.md#test-path) on RGB arrays, and the policy that picks device, batch and
precision.

A Predictor resizes (keep ratio, then to a multiple of 32), runs sliding windows or the whole image, averages
the softmax maps over optional flips and scales, and resizes back to the frame: foreground probabilities and
masks out. It knows nothing of files. `hfan segment`, `hfan infer`, `segment_video` and training validation all
build their Predictor here, so they run a model the same way: `default_device`, `default_max_batch`.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hfan.config import AUG_TEST_RATIOS, InferenceConfig
from hfan.preprocess import autocast_context, normalize_batch, resize_for_test, scale_boxes, window_grid

BACKENDS = ("torch", "onnx")


def default_device(device: str | torch.device | None = None) -> torch.device:
    """`device` when given; else the GPU of this process when CUDA is available (cuda:<LOCAL_RANK> under
    torchrun, one GPU per process), else the CPU."""
    if device is not None:
        return check_device(device)
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def check_device(device: str | torch.device) -> torch.device:
    """`device` as a torch.device, if this machine has it; else a ValueError saying what to give instead."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {device}: not a device name; give cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA GPU is visible to torch here; give --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type != "cpu":
        raise ValueError(f"--device {device}: hfan runs on cpu or cuda")
    return parsed


def default_max_batch(device: torch.device, compiled: bool = False, frames_per_batch: int = 4) -> int:
    """Windows per forward. CPU: 8 (faster than one by one, and than all windows of a batch at once:
    docs/speed.md); a compiled model pads every chunk to this size, so 1 there. GPU: all windows of a batch of
    frames (3 per DAVIS frame at the official scale) in one forward, the same chunk for CUDA graphs."""
    if device.type == "cpu":
        return 1 if compiled else 8
    return max(8, 3 * frames_per_batch)


def test_options(aug_test: bool = False, whole_image: bool = False) -> list[str]:
    """Dotted test overrides: `aug_test`, the official multi-scale (0.75, 1, 1.75) + flip test; `whole_image`,
    one whole-image forward instead of sliding windows."""
    options = []
    if aug_test:
        options += ["test.flip=true", "test.ratios=" + ",".join(map(str, AUG_TEST_RATIOS))]
    if whole_image:
        options.append("test.mode=whole")
    return options


@dataclass
class Prediction:
    probability: np.ndarray  # (H, W) float32, foreground probability at the input frame's size
    mask: np.ndarray  # (H, W) bool, argmax of the two classes


class Predictor:
    """Runs a model the way the official test does; windows of several frames go through one forward.

    `max_batch` bounds how many windows (frame + flow each) one forward takes; `max_batch=1` is the faithful
    path, one window at a time as mmseg runs it. Fast paths, each computing the same logits:
    `compiled` runs a torch.compile'd model (hfan.inference.backends.compile_segmentor) on chunks zero-padded to exactly
    `max_batch` windows, so one window size compiles once (CUDA graphs need fixed shapes too);
    `backend="onnx"` runs each chunk through onnxruntime (CPU, fp32), one exported graph per window size
    (exported on first use and checked against the model there: <= 1e-4). torch stays the default: across
    same-run comparisons onnxruntime was not reliably faster (docs/speed.md).

    Process-wide side effect: with `tune_allocator` (the default, as in every `hfan` command) the constructor calls
    `hfan.inference.malloc.tune_malloc()`, which changes glibc's allocator for the whole process, for good: freed
    memory stays in the process, so each forward reuses its pages instead of faulting them in anew (the faster
    path on the CPU: docs/speed.md), and the process keeps its peak memory until it exits. `tune_allocator=False`
    (`--no-malloc-tuning`) leaves the allocator alone. Thread counts are torch's own (one per core): a Predictor
    does not change them.
    """

    def __init__(self, model: torch.nn.Module, config: InferenceConfig | None = None,
                 device: str | torch.device | None = None, precision: str | None = None, max_batch: int | None = None,
                 backend: str = "torch", compiled: bool = False, compile_backend: str | Callable = "inductor",
                 frames_per_batch: int = 4, tune_allocator: bool = True):
        if tune_allocator:
            from hfan.inference import malloc

            malloc.tune_malloc()
        self.allocator_tuned = tune_allocator
        self.model = model.eval()
        self.config = config or getattr(model, "config").test
        placed = next(model.parameters()).device
        # a model the caller put on a GPU stays there; otherwise the policy's device
        self.device = default_device(device if device is not None or placed.type == "cpu" else placed)
        self.precision = precision or ("fp16" if self.device.type == "cuda" else "fp32")
        autocast_context(self.device, self.precision)  # validates the name
        if self.device.type == "cpu" and self.precision != "fp32":
            warnings.warn(f"{self.precision} on the CPU is far slower than fp32 on CPUs without native support for "
                          "it (docs/speed.md); give --precision fp32", stacklevel=2)
        max_batch = default_max_batch(self.device, compiled, frames_per_batch) if max_batch is None else max_batch
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
            from hfan.inference.backends import OnnxSegmentor

            return OnnxSegmentor(self.model, threads=torch.get_num_threads())
        if compiled:
            from hfan.inference.backends import compile_segmentor

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


def load_predictor(checkpoint, preset: str | None = None, options: list[str] | tuple[str, ...] = (),
                   device: str | torch.device | None = None, precision: str | None = None, frames_per_batch: int = 4,
                   backend: str = "torch", compiled: bool = False, aug_test: bool = False, whole_image: bool = False,
                   tune_allocator: bool = True) -> Predictor:
    """A checkpoint (or "default", the packaged model) loaded strictly and wrapped in a Predictor with the
    default policy: what `hfan segment` and `hfan infer` run, and what `Predictor(load_model(checkpoint))` runs.
    `tune_allocator`: see Predictor (process-wide)."""
    from hfan.models.checkpoints import load_model

    device = default_device(device)
    model = load_model(checkpoint, preset=preset, options=[*options, *test_options(aug_test, whole_image)],
                       device=device)
    return Predictor(model, device=device, precision=precision, backend=backend, compiled=compiled,
                     frames_per_batch=frames_per_batch, tune_allocator=tune_allocator)
