"""From an estimated flow field to the image a model sees: the one function that training, `hfan prepare` and
`hfan segment` share, so that a model is always tested on the flow it was trained on.

Steps: remove the camera motion when the model's `flow.camera_motion` says so (hfan.flow.camera), draw the
residual with HFAN's colours (hfan.flow.encoding.flow_to_hfan_image), and, for a flow estimated on smaller
frames (`flow.scale` < 1), resize the colour image to the frame's size. The colours normalise by the largest
magnitude of the field, so a flow measured at a smaller scale gives the same picture, only coarser.
"""
from __future__ import annotations

import cv2
import numpy as np

from hfan.flow.camera import remove_camera_motion
from hfan.flow.encoding import flow_to_hfan_image
from hfan.flow.estimators import FlowEstimator


def flow_image_for_model(flow: np.ndarray, camera_motion: str = "none",
                         size: tuple[int, int] | None = None,
                         encode_size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB uint8 flow image of `flow` (HxWx2), camera motion removed as asked, resized to `size` (w, h).

    With `encode_size` (w, h) the field itself is first shrunk to that size (area average, vectors scaled with it),
    and the camera fit and the colours' normalisation work there: what a model trained on small frames saw."""
    if encode_size is not None and (flow.shape[1], flow.shape[0]) != tuple(encode_size):
        factor = np.array([encode_size[0] / flow.shape[1], encode_size[1] / flow.shape[0]], np.float32)
        flow = cv2.resize(flow, tuple(encode_size), interpolation=cv2.INTER_AREA) * factor
    image = flow_to_hfan_image(remove_camera_motion(flow, camera_motion))
    if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
        image = cv2.resize(image, tuple(size), interpolation=cv2.INTER_LINEAR)
    return image


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """Frame size for flow estimation at `scale`, at least 16 px a side."""
    return max(16, int(round(width * scale))), max(16, int(round(height * scale)))


class ScaledFlowEstimator(FlowEstimator):
    """Another estimator run on frames resized by `scale` (area interpolation): returns the flow at that smaller
    size, in its pixels. `flow_image_for_model(..., size=frame size)` brings its image back to the frame."""

    def __init__(self, estimator: FlowEstimator, scale: float):
        if not 0 < scale <= 1:
            raise ValueError(f"flow scale must be in (0, 1], got {scale}")
        self.estimator, self.scale = estimator, scale
        self.name, self.batch_size = estimator.name, estimator.batch_size

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        size = scaled_size(frame.shape[1], frame.shape[0], self.scale)
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

    def _compute_batch(self, firsts, seconds):
        if self.scale == 1:
            return self.estimator.compute_batch(firsts, seconds)
        return self.estimator.compute_batch([self._resize(f) for f in firsts], [self._resize(s) for s in seconds])
