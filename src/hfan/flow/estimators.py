"""Optical-flow estimators behind one interface.

Every estimator takes two RGB uint8 HxWx3 frames and returns float32 HxWx2 flow (u, v in pixels, from the first
frame to the second). `compute_batch` takes lists of pairs; RAFT runs them as one batch, the OpenCV methods loop.

- `dis` (default): OpenCV's DIS optical flow, weight-free, works everywhere; presets ultrafast / fast / medium.
- `farneback`: OpenCV's Farneback flow (the parameters of OpenCV's own sample, with a deeper pyramid).
- `raft_small` / `raft_large`: torchvision's RAFT. HFAN's flow came from the original RAFT's `raft-things`
  checkpoint (docs/design.md#flow-images); torchvision's `C_T_V1` weights are that checkpoint ported
  (torchvision's weight metadata: "ported from the original paper", recipe github.com/princeton-vl/RAFT), so it
  is our default.
  `C_T_V2` (same data, retrained by torchvision, slightly lower error) and the other enum names are accepted, as
  is a local `.pth` state-dict file; `weights=None` gives random weights (tests, timing).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from hfan.config import DIS_PRESET_NAMES
from hfan.config import FLOW_METHODS as ESTIMATORS  # the names live with the model's flow settings

DIS_PRESETS = {name: getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{name.upper()}") for name in DIS_PRESET_NAMES}
RAFT_DEFAULT_WEIGHTS = "C_T_V1"
RAFT_DEFAULT_UPDATES = 20  # the RAFT demo / HFAN-era scripts
# torchvision's correlation pyramid needs feature maps of at least 16 px, i.e. images of at least 8 * 16 px.
_RAFT_MIN_SIDE = 128


class FlowEstimator:
    """Base class: checks the frames, then `_compute_batch` does the work."""

    name = "base"
    batch_size = 1  # pairs per call that suit the method (RAFT: more)

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return self.compute_batch([first], [second])[0]

    def compute_batch(self, firsts: Sequence[np.ndarray], seconds: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(firsts) != len(seconds):
            raise ValueError(f"{len(firsts)} first frames but {len(seconds)} second frames")
        for first, second in zip(firsts, seconds):
            for frame in (first, second):
                if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                    raise ValueError(f"frames must be RGB uint8 HxWx3, got {frame.dtype} {frame.shape}")
            if first.shape != second.shape:
                raise ValueError(f"the two frames of a pair differ in size: {first.shape} vs {second.shape}")
        return self._compute_batch(firsts, seconds)

    def _compute_batch(self, firsts, seconds) -> list[np.ndarray]:
        raise NotImplementedError


class _OpenCVEstimator(FlowEstimator):
    def _compute_batch(self, firsts, seconds):
        return [self._pair(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)).astype(np.float32)
                for a, b in zip(firsts, seconds)]

    def _pair(self, first_gray: np.ndarray, second_gray: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class DisEstimator(_OpenCVEstimator):
    name = "dis"

    def __init__(self, preset: str = "medium"):
        if preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; valid: {', '.join(DIS_PRESETS)}")
        self.preset = preset
        self._by_size: dict[tuple[int, int], cv2.DISOpticalFlow] = {}

    def _pair(self, first_gray, second_gray):
        # OpenCV's DIS changes its own patch size and scales during its first call on an image too small for
        # the preset (under ~200 px with ultrafast/fast), so that first call differs from all later ones: the
        # same pair gave flows 0.8 px apart. One instance per size, settled by a call on a blank pair, makes
        # the flow of a pair independent of what was computed before.
        dis = self._by_size.get(first_gray.shape)
        if dis is None:
            dis = self._by_size[first_gray.shape] = cv2.DISOpticalFlow_create(DIS_PRESETS[self.preset])
            dis.calc(np.zeros_like(first_gray), np.zeros_like(first_gray), None)
        return dis.calc(first_gray, second_gray, None)


class FarnebackEstimator(_OpenCVEstimator):
    name = "farneback"

    def __init__(self, levels: int = 5, winsize: int = 15, iterations: int = 3, poly_n: int = 5,
                 poly_sigma: float = 1.2):
        self.params = dict(pyr_scale=0.5, levels=levels, winsize=winsize, iterations=iterations, poly_n=poly_n,
                           poly_sigma=poly_sigma, flags=0)

    def _pair(self, first_gray, second_gray):
        return cv2.calcOpticalFlowFarneback(first_gray, second_gray, None, **self.params)


class RaftEstimator(FlowEstimator):
    """torchvision RAFT; frames are padded like the original RAFT's InputPadder (replicate, centred) to a
    multiple of 8 (and to torchvision's 128 px minimum), and the flow is cropped back."""

    def __init__(self, variant: str = "raft_large", weights: str | Path | None = RAFT_DEFAULT_WEIGHTS,
                 num_flow_updates: int = RAFT_DEFAULT_UPDATES, device: str | None = None, batch_size: int = 4):
        import torch

        if num_flow_updates < 1:
            raise ValueError(f"num_flow_updates must be >= 1, got {num_flow_updates}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.name = variant
        self.num_flow_updates = num_flow_updates
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_raft(variant, weights).eval().to(self.device)

    def _compute_batch(self, firsts, seconds):
        import torch
        import torch.nn.functional as F

        height, width = firsts[0].shape[:2]
        if any(frame.shape[:2] != (height, width) for frame in list(firsts) + list(seconds)):
            raise ValueError("all frames of one RAFT batch must have the same size")
        padding = raft_padding(height, width)

        def to_tensor(frames):
            batch = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).float()
            # RAFT's input scaling: 2 * (x / 255) - 1, as torchvision's weight transforms do.
            return F.pad(2 * (batch / 255.0) - 1, padding, mode="replicate")

        with torch.inference_mode():
            flow = self.model(to_tensor(firsts), to_tensor(seconds), num_flow_updates=self.num_flow_updates)[-1]
        left, _, top, _ = padding
        flow = flow[:, :, top:top + height, left:left + width]
        return list(flow.permute(0, 2, 3, 1).float().cpu().numpy())


def raft_padding(height: int, width: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) to reach a multiple of 8 (at least 128), split as RAFT's InputPadder does."""
    def total(side):
        return max(_RAFT_MIN_SIDE, -(-side // 8) * 8) - side

    pad_w, pad_h = total(width), total(height)
    return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2


def raft_weights_cached(variant: str, weights: str = RAFT_DEFAULT_WEIGHTS) -> bool:
    """Whether torchvision's RAFT weights `weights` of `variant` are in torch's cache (no download needed)."""
    import torch
    from torchvision.models import optical_flow

    enum = {"raft_small": optical_flow.Raft_Small_Weights, "raft_large": optical_flow.Raft_Large_Weights}[variant]
    url = enum[weights].url
    return (Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]).is_file()


def load_raft(variant: str, weights: str | Path | None):
    """A torchvision RAFT model with weights from a file, an enum name (downloaded once to torch's cache), or
    random weights (`None`)."""
    import torch
    from torchvision.models import optical_flow

    builders = {"raft_small": (optical_flow.raft_small, optical_flow.Raft_Small_Weights),
                "raft_large": (optical_flow.raft_large, optical_flow.Raft_Large_Weights)}
    if variant not in builders:
        raise ValueError(f"unknown RAFT variant {variant!r}; valid: {', '.join(builders)}")
    builder, enum = builders[variant]
    if weights is None:
        return builder(weights=None)
    names = [member.name for member in enum]
    if str(weights) in names:
        member = enum[str(weights)]
        try:
            return builder(weights=member, progress=False)
        except OSError as error:  # no network and not in the cache (URLError is an OSError)
            raise FileNotFoundError(
                f"RAFT weights {variant} {member.name} are not in torch's cache ({torch.hub.get_dir()}) and could not "
                f"be downloaded from {member.url} ({error}); download that file where there is network and pass "
                f"its path as the weights") from None
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"RAFT weights {path} not found; pass a torchvision RAFT state-dict file or one of "
                                f"{', '.join(names)}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {key.removeprefix("module."): value for key, value in state.items()}
    model = builder(weights=None)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path} is not a torchvision {variant} state dict ({str(error).splitlines()[0]}); the "
                         f"original RAFT's raft-things.pth uses other key names: use torchvision's C_T_V1, which "
                         f"is that checkpoint ported") from None
    return model


def build_flow_estimator(name: str = "dis", **options) -> FlowEstimator:
    """`dis` (preset=), `farneback` (levels=, winsize=, ...), `raft_small` / `raft_large` (weights=,
    num_flow_updates=, device=, batch_size=)."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown flow estimator {name!r}; valid: {', '.join(ESTIMATORS)}")
    try:
        if name == "dis":
            return DisEstimator(**options)
        if name == "farneback":
            return FarnebackEstimator(**options)
        return RaftEstimator(name, **options)
    except TypeError as error:  # an option the estimator does not take
        raise ValueError(f"flow estimator {name!r}: {error}") from None
