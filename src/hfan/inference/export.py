"""Export the segmentor to ONNX for one window size: frame and flow image in, 1/4-resolution logits out.

The sliding window, resizing and softmax stay outside the graph (hfan.inference.predictor does them), so one exported
window size serves every frame size.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from hfan.files import atomic_path, check_output_file

ONNX_OPSET = 17


def parse_window_size(text: str) -> tuple[int, int]:
    """`512x512` -> (512, 512): the window height and width of an export."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {text!r}: expected HxW, e.g. 512x512") from None
    return height, width


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, height: int = 512, width: int = 512,
                dynamic_batch: bool = True, check: bool = True) -> Path:
    """Write `model` (eval mode, fp32) as ONNX; with `check`, compare onnxruntime to PyTorch (<= 1e-4)."""
    if height % 32 or width % 32:
        raise ValueError(f"window size {height}x{width}: both sides must be multiples of 32")
    path = check_output_file(path)
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


def run_session(session, frames: torch.Tensor, flows: torch.Tensor) -> np.ndarray:
    """The session's logits. An input the model never reads (the frame of a flow-only `select_method=fw` model)
    is dropped by the exporter, so only the inputs the graph declares are fed."""
    arrays = {"frame": frames, "flow": flows}
    return session.run(None, {item.name: arrays[item.name].float().cpu().numpy() for item in session.get_inputs()})[0]


def compare_with_onnxruntime(model: torch.nn.Module, path: str | os.PathLike, frames: torch.Tensor,
                             flows: torch.Tensor) -> float:
    """Max abs difference between PyTorch and onnxruntime logits on the same input."""
    with torch.no_grad():
        expected = model(frames, flows).numpy()
    actual = run_session(onnx_session(path), frames, flows)
    return float(np.abs(actual - expected).max())
