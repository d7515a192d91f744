"""Synthetic videos with exact masks and exact optical flow, for tests and training smoke runs.

A video is a textured background and several textured elliptical objects, each layer moving with its own
affine motion (translation, rotation and scale change, linear in time). The primary object (instance 1) stays
inside the frame; every other object is sent on a collision course with it, so objects pass in front of or
behind each other. Everything is drawn from one seed: the same seed gives the same video, bit for bit.

Exactness: a pixel x of frame t shows texture point q = P_t(x) of the topmost layer whose shape contains q
(masks are evaluated analytically at pixel centres). Its flow is P_s^-1(P_t(x)) - x for the frame s its flow
points to (the next frame; the previous one for the last frame, as HFAN does), computed from the layer's
transforms, not estimated. Where the surface visible at t is hidden at s, the flow still follows that surface.
Colours are bilinear samples of smooth textures (OpenCV's warpAffine), so brightness constancy holds to about
a grey level.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hfan.datasets.layouts import FlatLayout
from hfan.datasets.prepare import write_flat_sample
from hfan.flow.video import flow_partner

MAX_OBJECT_SPEED = 3.5  # px / frame: within what DIS measures reliably on textures at this scale


@dataclass(frozen=True)
class SyntheticVideo:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    instances: np.ndarray  # (T, H, W) uint8: 0 background, 1 the primary object, 2.. the others
    flows: np.ndarray  # (T, H, W, 2) float32, one flow per frame (hfan.flow.video convention)

    @property
    def primary_masks(self) -> np.ndarray:
        return self.instances == 1

    @property
    def union_masks(self) -> np.ndarray:
        return self.instances > 0


@dataclass(frozen=True)
class _Layer:
    texture: np.ndarray  # float32 (h, w, 3), 0..255
    centre: np.ndarray  # frame position of the texture centre at t = 0
    velocity: np.ndarray  # px / frame
    angle: float  # radians at t = 0
    angular_velocity: float  # radians / frame
    log_scale_rate: float  # scale(t) = exp(rate * t)
    semi_axes: tuple[float, float] | None  # ellipse in texture pixels; None: the background, everywhere

    @property
    def texture_centre(self) -> np.ndarray:
        return (np.array(self.texture.shape[1::-1], np.float64) - 1) / 2

    def frame_to_texture(self, t: float) -> np.ndarray:
        """2x3 affine P_t with texture point = P_t @ (x, y, 1); the inverse of x = c_t + s_t R(a_t) (q - q0)."""
        angle = self.angle + self.angular_velocity * t
        scale = np.exp(self.log_scale_rate * t)
        cos, sin = np.cos(angle), np.sin(angle)
        linear = np.array([[cos, sin], [-sin, cos]]) / scale
        return np.hstack([linear, (self.texture_centre - linear @ (self.centre + self.velocity * t))[:, None]])

    def texture_to_frame(self, t: float) -> np.ndarray:
        return cv2.invertAffineTransform(self.frame_to_texture(t))

    def render(self, t: int, size: tuple[int, int]) -> np.ndarray:
        return cv2.warpAffine(self.texture, self.frame_to_texture(t), size[::-1],
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT101)

    def covers(self, texture_points: np.ndarray) -> np.ndarray:
        if self.semi_axes is None:
            return np.ones(texture_points.shape[:-1], bool)
        offset = (texture_points - self.texture_centre) / np.array(self.semi_axes)
        return np.sum(np.square(offset), axis=-1) <= 1


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ affine[:, :2].T + affine[:, 2]


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth multi-scale colour noise around a random base colour: trackable, but not aliased by bilinear
    sampling."""
    noise = np.zeros((height, width, 3), np.float32)
    for cell, weight in ((32, 0.35), (16, 0.3), (8, 0.2), (4, 0.15)):
        coarse = rng.random((height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        noise += weight * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    hsv = np.array([[[rng.uniform(0, 360), rng.uniform(0.5, 0.9), rng.uniform(0.45, 0.85)]]], np.float32)
    base = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]  # a distinct colour per layer
    texture = 255 * np.clip(base + 0.8 * (noise - 0.5), 0, 1)
    return cv2.GaussianBlur(texture, (0, 0), 0.7)


def _unit(rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return np.array([np.cos(angle), np.sin(angle)])


def _layers(rng: np.random.Generator, num_frames: int, height: int, width: int, num_objects: int) -> list[_Layer]:
    span = max(num_frames - 1, 1)
    # Background: slow drift, slight rotation and zoom; its texture covers the frame at every t.
    velocity = _unit(rng) * rng.uniform(0.3, 1.5)
    rate = rng.uniform(-0.004, 0.004)
    reach = (np.hypot(height, width) / 2 + np.linalg.norm(velocity) * span) / np.exp(-abs(rate) * span)
    side = int(2 * reach) + 16
    layers = [_Layer(_texture(rng, side, side), np.array([width - 1, height - 1]) / 2, velocity, 0.0,
                     rng.uniform(-0.004, 0.004), rate, None)]
    shortest = min(height, width)
    # The primary object: whole inside the frame from the first frame to the last.
    rate = np.sign(rng.uniform(-1, 1)) * min(rng.uniform(0.015, 0.035), np.log(1.4) / span)
    semi_axes = tuple(rng.uniform(0.16, 0.24, 2) * shortest)
    margin = max(semi_axes) * np.exp(abs(rate) * span) + 2
    low, high = np.array([margin, margin]), np.array([width - 1 - margin, height - 1 - margin])
    start, end = rng.uniform(low, high), rng.uniform(low, high)
    step = (end - start) / span
    if np.linalg.norm(step) > MAX_OBJECT_SPEED:
        step *= MAX_OBJECT_SPEED / np.linalg.norm(step)
    objects = [(semi_axes, start, step, rate)]
    # The others: cross the primary object's path at a random time.
    for _ in range(num_objects - 1):
        semi_axes = tuple(rng.uniform(0.1, 0.18, 2) * shortest)
        velocity = _unit(rng) * rng.uniform(1.0, MAX_OBJECT_SPEED)
        meet = rng.uniform(0.3, 0.7) * span
        # Met off-centre, so that each hides only part of the other.
        meeting_point = objects[0][1] + objects[0][2] * meet + _unit(rng) * rng.uniform(0.6, 1.0) * max(objects[0][0])
        objects.append((semi_axes, meeting_point - velocity * meet, velocity, rng.uniform(-0.02, 0.02)))
    for semi_axes, centre, velocity, rate in objects:
        side = 2 * int(np.ceil(max(semi_axes))) + 8  # margin: bilinear samples just outside the ellipse
        layers.append(_Layer(_texture(rng, side, side), centre, velocity, rng.uniform(0, 2 * np.pi),
                             rng.uniform(-0.04, 0.04), rate, semi_axes))
    return layers


def make_video(seed: int | Sequence[int], num_frames: int = 8, size: tuple[int, int] = (128, 160),
               num_objects: int = 2) -> SyntheticVideo:
    """A deterministic synthetic video; `size` is (height, width)."""
    if num_frames < 1 or num_objects < 1:
        raise ValueError(f"need num_frames >= 1 and num_objects >= 1, got {num_frames}, {num_objects}")
    height, width = size
    rng = np.random.default_rng(seed)
    layers = _layers(rng, num_frames, height, width, num_objects)
    # Depth order: the background at the bottom, the objects shuffled (the primary one is not always on top).
    order = [0] + list(1 + rng.permutation(num_objects))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    pixels = np.stack([xs, ys], axis=-1)
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    instances = np.zeros((num_frames, height, width), np.uint8)
    flows = np.zeros((num_frames, height, width, 2), np.float32)
    for t in range(num_frames):
        partner = flow_partner(t, num_frames)
        image = np.zeros((height, width, 3), np.float32)
        for layer_id in order:
            layer = layers[layer_id]
            texture_points = _apply(layer.frame_to_texture(t), pixels)
            visible = layer.covers(texture_points)
            image[visible] = layer.render(t, size)[visible]
            instances[t][visible] = layer_id
            if partner is not None:
                moved = _apply(layer.texture_to_frame(partner), texture_points) - pixels
                flows[t][visible] = moved[visible]
        frames[t] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return SyntheticVideo(frames, instances, flows)


def write_synthetic_split(root: str | Path, split: str, num_videos: int, seed: int = 0, num_frames: int = 8,
                          size: tuple[int, int] = (128, 160), num_objects: int = 2, mask: str = "union",
                          save_raw_flow: bool = False) -> list[str]:
    """Synthetic videos in the flat layout (frames and flow images as JPEG q95, 0/1 masks), named
    `synth<seed>-<k>`; `mask` is "union" (all objects, like DAVIS-2016's foreground) or "primary"."""
    if mask not in ("union", "primary"):
        raise ValueError(f"mask must be 'union' or 'primary', got {mask!r}")
    layout = FlatLayout(root)
    names = []
    for k in range(num_videos):
        video = make_video([seed, k], num_frames, size, num_objects)
        masks = video.union_masks if mask == "union" else video.primary_masks
        name = f"synth{seed}-{k:03d}"
        for t in range(num_frames):
            write_flat_sample(layout, split, name, t, video.frames[t], video.flows[t], masks[t],
                              save_raw_flow=save_raw_flow)
        names.append(name)
    return names
