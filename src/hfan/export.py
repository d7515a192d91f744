"""Export the segmentor to ONNX for one window size: frame and flow image in, 1/4-resolution logits out.

The sliding window, resizing and softmax stay outside the graph (hfan.inference does them), so one exported
window size serves every frame size.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from hfan.data.io import atomic_path

ONNX_OPSET = 17


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, height: int = 512, width: int = 512,
                dynamic_batch: bool = True, check: bool = True) -> Path:
    """Write `model` (eval mode, fp32) as ONNX; with `check`, compare onnxruntime to PyTorch (<= 1e-4)."""
    if height % 32 or width % 32:
        raise ValueError(f"window size {height}x{width}: both sides must be multiples of 32")
    path = Path(path)
    model = model.eval().float().cpu()
    example = (torch.randn(1, 3, height, width), torch.randn(1, 3, height, width))
    axes = {name: {0: "batch"} for name in ("frame", "flow", "logits")} if dynamic_batch else None
    with atomic_path(path) as temporary:  # a failed export or check leaves no file behind
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape checks that are constant per export
            # The TorchScript-based exporter: the dynamo exporter needs onnxscript, which we do not depend on.
            torch.onnx.export(model, example, str(temporary), input_names=["frame", "flow"], output_names=["logits"],
                              dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)
        if check:
            difference = compare_with_onnxruntime(model, temporary, *example)
            if difference > 1e-4:
                raise RuntimeError(f"onnxruntime output differs from PyTorch by {difference:.2e} (> 1e-4)")
    return path


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("ONNX export needs the `onnx` extra: pip install 'hfan[onnx]'") from error
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare_with_onnxruntime(model: torch.nn.Module, path: str | os.PathLike, frames: torch.Tensor,
                             flows: torch.Tensor) -> float:
    """Max abs difference between PyTorch and onnxruntime logits on the same input."""
    with torch.no_grad():
        expected = model(frames, flows).numpy()
    actual = onnx_session(path).run(None, {"frame": frames.numpy(), "flow": flows.numpy()})[0]
    return float(np.abs(actual - expected).max())


class OnnxSegmentor:
    """The segmentor's forward through onnxruntime: torch tensors in and out, like the module it replaces.

    Each window size gets its own graph, exported to a private temporary folder on first use (the graph fixes
    height and width; the batch stays dynamic).
    """

    def __init__(self, model: torch.nn.Module, threads: int | None = None):
        self.model = model
        self.threads = threads
        self.folder = tempfile.TemporaryDirectory(prefix="hfan-onnx-")
        self.sessions: dict[tuple[int, int], object] = {}

    def session(self, height: int, width: int):
        if (height, width) not in self.sessions:
            path = export_onnx(self.model, Path(self.folder.name) / f"{height}x{width}.onnx", height, width,
                               check=False)
            self.sessions[height, width] = onnx_session(path, self.threads)
        return self.sessions[height, width]

    def __call__(self, frames: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        session = self.session(*frames.shape[2:])
        logits = session.run(None, {"frame": frames.float().cpu().numpy(), "flow": flows.float().cpu().numpy()})[0]
        return torch.from_numpy(logits)
