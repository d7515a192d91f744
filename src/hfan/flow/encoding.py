"""Optical flow to a colour image: the Middlebury colour wheel exactly as RAFT's `core/utils/flow_viz.py` draws it.

HFAN's flow images were drawn by RAFT's visualiser (docs/design.md#flow-images), so we repeat its arithmetic
operation by operation (same wheel, same float32/float64 mix, same floor) to get the same bytes. torchvision's `flow_to_image` is not
used: it normalises a batch by the largest magnitude over the WHOLE batch (one image's colours would then depend
on the other images in its batch) and uses another epsilon.

HFAN's own flow files hold these colours with red and blue exchanged (RAFT's RGB array was evidently saved with
`cv2.imwrite`, which expects BGR): on both of its demo frames our flow, drawn here and R/B-swapped, has the
same hue as HFAN's image to a median 0-1.4 degrees, against 125-153 degrees unswapped (benchmarks/flow_look.py).
HFAN's loader then reads the file with OpenCV and converts BGR to RGB, so its released models were trained on
the swapped colours. `flow_to_hfan_image` gives that image; the flat layout stores it.

Colours: hue = direction (flow to the right is red, down yellow, left cyan-blue, up blue-violet; image
coordinates, v points down), saturation = magnitude / the largest magnitude of the image; zero flow is
white. Output is RGB uint8.
"""
from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

# Number of hues between the six primary colours of the wheel (Baker et al., ICCV 2007).
RY, YG, GC, CB, BM, MR = 15, 6, 4, 11, 13, 6
# RAFT's flow_to_image divides by (largest magnitude + 1e-5), so an all-zero flow stays white instead of NaN.
NORMALISATION_EPSILON = 1e-5


def make_colorwheel() -> np.ndarray:
    """The 55 x 3 wheel, float64 values 0..255, rows in RAFT's order (red -> yellow -> ... -> magenta -> red).

    Each segment holds one channel at 255 and ramps another up (floor(255 k / n)) or down (255 minus that).
    """
    segments = [(RY, 0, 1, "up"), (YG, 1, 0, "down"), (GC, 1, 2, "up"), (CB, 2, 1, "down"), (BM, 2, 0, "up"),
                (MR, 0, 2, "down")]  # (length, channel at 255, ramping channel, ramp)
    wheel = np.zeros((sum(s[0] for s in segments), 3))
    row = 0
    for length, full, ramping, ramp in segments:
        steps = np.floor(255 * np.arange(length) / length)
        wheel[row:row + length, full] = 255
        wheel[row:row + length, ramping] = steps if ramp == "up" else 255 - steps
        row += length
    return wheel


_COLORWHEEL = make_colorwheel()
# Per channel, the wheel / 255 as a 256-entry cv2.LUT table (entries past 55 unused). Dividing the table once gives
# the same float64 values as RAFT's per-pixel `colorwheel[k] / 255.0`.
_WHEEL_LUTS = [np.pad(_COLORWHEEL[:, channel] / 255.0, (0, 256 - _COLORWHEEL.shape[0])) for channel in range(3)]


def flow_uv_to_colors(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Colour of already-normalised flow components (magnitude <= 1 inside the wheel); RGB uint8 HxWx3.

    Magnitudes above 1 (never produced by `flow_to_image`) are darkened by 0.75, as in RAFT.
    Every value is RAFT's own float32/float64 operation in RAFT's order, so the bytes are RAFT's
    (tests/flow/test_flow_encoding.py holds RAFT's loop verbatim and compares). Only the how differs, because this runs
    on the host for every frame: cv2.LUT instead of numpy's fancy indexing for the wheel look-ups, two reused
    float64 planes with in-place arithmetic instead of fresh temporaries (each a page-faulting allocation), and
    whole-plane operations instead of boolean-mask assignments (the rare magnitude > 1 pixels are patched after).
    Faster than RAFT's loop with glibc's default allocator, and more so with `hfan.inference.malloc.tune_malloc`
    (docs/speed.md).
    """
    ncols = _COLORWHEEL.shape[0]
    rad = np.sqrt(np.square(u) + np.square(v))
    angle = np.arctan2(-v, -u) / np.pi
    fk = (angle + 1) / 2 * (ncols - 1)
    k0 = np.floor(fk).astype(np.int32)
    k1 = k0 + 1
    k1[k1 == ncols] = 0
    f = fk - k0  # float32 - int32: float64, as in RAFT
    one_minus_f = 1 - f
    k0, k1 = k0.astype(np.uint8), k1.astype(np.uint8)  # 0..54: cv2.LUT indices
    outside = ~(rad <= 1)  # RAFT's `~idx`, NaN included
    any_outside = outside.any()
    rad = rad.astype(np.float64)  # what numpy promotes it to in RAFT's `rad * (1 - col)`
    image = np.empty(u.shape + (3,), np.uint8)
    col, col1 = np.empty(u.shape, np.float64), np.empty(u.shape, np.float64)
    for channel, lut in enumerate(_WHEEL_LUTS):
        cv2.LUT(k0, lut, dst=col)
        col *= one_minus_f
        cv2.LUT(k1, lut, dst=col1)
        col1 *= f
        col += col1  # (1 - f) * col0 + f * col1
        darkened = col[outside] * 0.75 if any_outside else None
        np.subtract(1, col, out=col)  # 1 - rad * (1 - col), in place
        col *= rad
        np.subtract(1, col, out=col)
        if darkened is not None:
            col[outside] = darkened
        col *= 255
        image[:, :, channel] = np.floor(col, out=col)
    return image


def flow_to_image(flow: np.ndarray) -> np.ndarray:
    """HxWx2 flow (u, v in pixels) -> RGB uint8 HxWx3, normalised by this image's largest magnitude."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape HxWx2, got {flow.shape}")
    u, v = flow[:, :, 0], flow[:, :, 1]
    largest = np.max(np.sqrt(np.square(u) + np.square(v)))
    return flow_uv_to_colors(u / (largest + NORMALISATION_EPSILON), v / (largest + NORMALISATION_EPSILON))


def flows_to_images(flows: Iterable[np.ndarray] | np.ndarray) -> np.ndarray:
    """NxHxWx2 flows -> NxHxWx3 images, each normalised by ITS OWN largest magnitude (unlike torchvision)."""
    return np.stack([flow_to_image(flow) for flow in flows])


def flow_to_hfan_image(flow: np.ndarray) -> np.ndarray:
    """The flow image as HFAN's files hold it (decoded as RGB): `flow_to_image` with red and blue swapped.
    This is what HFAN's models saw as their RGB flow input."""
    return np.ascontiguousarray(flow_to_image(flow)[:, :, ::-1])
