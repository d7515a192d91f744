"""Fast paths of a Predictor, each computing the same logits as the eager model: a torch.compile'd segmentor,
and the segmentor's forward through onnxruntime (tests/inference/test_fast_paths.py and benchmarks/model_speed.py compare
both with eager PyTorch)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from hfan.inference.export import export_onnx, onnx_session, run_session


def compile_segmentor(model: torch.nn.Module, device: torch.device, backend="inductor", mode: str | None = None):
    """torch.compile for fixed shapes (`dynamic=False`): each window size and batch compiles once.

    CPU: inductor with freezing (weights folded into the graph as constants; only valid for inference, which is
    all a Predictor does). CUDA: mode "reduce-overhead" (CUDA graphs) unless `mode` says otherwise, e.g.
    "max-autotune". `backend` other than inductor (e.g. "eager", or a counting function in tests) skips the
    inductor options.
    """
    if backend != "inductor":
        return torch.compile(model, backend=backend, dynamic=False)
    if device.type == "cuda":
        return torch.compile(model, mode=mode or "reduce-overhead", dynamic=False)
    if mode is not None:
        return torch.compile(model, mode=mode, dynamic=False)
    return torch.compile(model, dynamic=False, options={"freezing": True})


class OnnxSegmentor:
    """The segmentor's forward through onnxruntime: torch tensors in and out, like the module it replaces.

    Each window size gets its own graph, exported to a private temporary folder on first use (the graph fixes
    height and width; the batch stays dynamic) and checked against the model there (export_onnx: <= 1e-4 on a
    random window), so a graph that computes something else is never used.
    """

    def __init__(self, model: torch.nn.Module, threads: int | None = None):
        self.model = model
        self.threads = threads
        self.folder = tempfile.TemporaryDirectory(prefix="hfan-onnx-")
        self.sessions: dict[tuple[int, int], object] = {}

    def session(self, height: int, width: int):
        if (height, width) not in self.sessions:
            path = export_onnx(self.model, Path(self.folder.name) / f"{height}x{width}.onnx", height, width)
            self.sessions[height, width] = onnx_session(path, self.threads)
        return self.sessions[height, width]

    def __call__(self, frames: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        session = self.session(*frames.shape[2:])
        return torch.from_numpy(run_session(session, frames, flows))
