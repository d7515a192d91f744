"""Camera-motion removal: fit the dominant (camera) motion of a flow field and keep the residual.

In most real videos the camera pans, zooms or follows the object, so the raw flow of the background is large and
the object's may be small. A model trained on videos from many cameras sees the object more reliably in the
residual flow `flow - camera(x)`, where `camera` is a global parametric motion fitted robustly to the whole
field: the background dominates the fit, the object is an outlier. Our default model is trained and tested on
this residual (its config: `flow.camera_motion`); the official checkpoints were trained on raw RAFT flow
(`none`).

- `affine`: 6 parameters, fitted by iteratively re-weighted least squares with weights 1 / max(|r|, 0.5 px),
  i.e. a least-absolute-deviation fit. Measured (tests/flow/test_camera_motion.py): a block moving on its own over
  40 % of the image leaves the fit within 0.02 px; at 45 % it breaks (1.6 px).
- `homography`: 8 parameters (a plane seen by a moving camera), OpenCV's RANSAC on a grid of correspondences
  x -> x + flow(x), then the affine fit's fallback when too few points agree; holds at 45 %.
The fit runs on every `step`-th pixel of every `step`-th row, so it costs little next to the flow estimate
itself (docs/speed.md).
"""
from __future__ import annotations

import cv2
import numpy as np

from hfan.config import CAMERA_MOTION_MODELS as CAMERA_MODELS  # the names live with the model's flow settings
_MIN_RESIDUAL = 0.5  # px: below this a point counts as fitted (caps the weights of the L1 fit)


def _grid(height: int, width: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height:step, 0:width:step]
    return xs.ravel().astype(np.float64), ys.ravel().astype(np.float64)


def fit_affine(flow: np.ndarray, step: int = 4, iterations: int = 5) -> np.ndarray:
    """The 2x3 matrix A of the dominant motion: flow(x, y) ~ A @ (x, y, 1)."""
    height, width = flow.shape[:2]
    xs, ys = _grid(height, width, step)
    design = np.stack([xs, ys, np.ones_like(xs)], axis=1)
    targets = flow[::step, ::step].reshape(-1, 2).astype(np.float64)
    weights = np.ones(len(design))
    for _ in range(iterations):
        params = np.linalg.lstsq(design * weights[:, None], targets * weights[:, None], rcond=None)[0]
        residual = np.linalg.norm(targets - design @ params, axis=1)
        weights = 1.0 / np.maximum(residual, _MIN_RESIDUAL)
    return params.T  # (2, 3)


def affine_flow(matrix: np.ndarray, height: int, width: int) -> np.ndarray:
    """The flow field of a 2x3 motion matrix, float32 HxWx2."""
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    m = matrix.astype(np.float32)
    u = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    v = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    return np.stack([u, v], axis=-1)


def _homography_flow(flow: np.ndarray, step: int) -> np.ndarray | None:
    height, width = flow.shape[:2]
    xs, ys = _grid(height, width, step)
    source = np.stack([xs, ys], axis=1).astype(np.float32)
    target = source + flow[::step, ::step].reshape(-1, 2)
    matrix, inliers = cv2.findHomography(source, target, cv2.RANSAC, 1.0, maxIters=500, confidence=0.99)
    if matrix is None or inliers is None or inliers.sum() < 0.2 * len(source):
        return None
    grid = np.stack(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)), -1)
    warped = cv2.perspectiveTransform(grid.reshape(1, -1, 2), matrix).reshape(height, width, 2)
    return (warped - grid).astype(np.float32)


def camera_flow(flow: np.ndarray, model: str = "affine", step: int = 4) -> np.ndarray:
    """The fitted camera motion as a flow field (HxWx2 float32); zeros for `none`."""
    if model not in CAMERA_MODELS:
        raise ValueError(f"unknown camera motion model {model!r}; valid: {', '.join(CAMERA_MODELS)}")
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"expected an HxWx2 flow field, got shape {flow.shape}")
    height, width = flow.shape[:2]
    if model == "none":
        return np.zeros_like(flow, dtype=np.float32)
    if model == "homography":
        fitted = _homography_flow(flow, step)
        if fitted is not None:
            return fitted
    return affine_flow(fit_affine(flow, step), height, width)


def remove_camera_motion(flow: np.ndarray, model: str = "affine", step: int = 4) -> np.ndarray:
    """The residual flow `flow - camera_flow(flow)`, float32; `none` returns the flow unchanged."""
    if model == "none":
        if flow.ndim != 3 or flow.shape[2] != 2:
            raise ValueError(f"expected an HxWx2 flow field, got shape {flow.shape}")
        return flow.astype(np.float32, copy=False)
    return (flow - camera_flow(flow, model, step)).astype(np.float32)
