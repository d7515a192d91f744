"""Synthetic training videos from real pictures: the data our default model learns motion segmentation from.

A clip is a layered composite. The background is a crop of a real photograph (Debian's wallpaper packages) that
the camera moves: translation, rotation and zoom, constant per frame. On it lie real object shapes with alpha
(Debian's `openclipart-png`), filled with their own colours or with a photo texture:

* exactly one primary object (label 1): the largest, moving differently from the background. Half of the time
  the camera tracks it (it stays nearly still in the frame while the background moves), as in most real videos;
* 0-2 distractors fixed to the scene (they move with the camera: background);
* sometimes a smaller secondary object that moves on its own (background: the primary object is THE one);
* objects may leave the frame or pass in front of each other (the mask is what is visible);
* optionally, what an affine camera model does not explain (off in recipe B, on in recipe C): a perspective
  component of the camera motion (`perspective`, a plane seen at an angle), a near layer with parallax
  (`parallax_probability`: a fence of bars or clip-art shapes fixed to the scene but closer to the camera, so it
  moves faster than the background; labelled background) and a non-rigid background (`ripple_probability`: a
  smooth displacement field, new every frame, below a random horizon, as water or foliage);
* optionally a non-rigid primary object (`deform_probability`): a smooth displacement field over the shape that
  swings back and forth, so that the object's flow is not one motion and its outline changes (legs, a walker);
* optionally what moves with the primary object and is not it, labelled background: its cast shadow
  (`shadow_probability`: the outline flattened onto its base line and sheared, or shifted onto a wall, softened,
  darkening what lies below) or its reflection (`reflection_probability`: mirrored about its base line, dimmed).

Then the nuisances a real camera adds: gain change, sensor noise, defocus or motion blur along the camera
motion, JPEG compression. The flow a model trains on is what it gets at test time: DIS estimated on the RENDERED
frames (not the exact layer motion), then `hfan.flow.model_input.flow_image_for_model` with the model's camera
motion removal. Everything is drawn from one `numpy.random.Generator`: the same seed gives the same clip.

Every 10th photograph and every 10th shape (in sorted file order) is kept for the held-out validation videos,
on which checkpoints are picked; training never sees them.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from hfan.config import PHOTO_DIRS, CompositeConfig
from hfan.files import atomic_path
from hfan.io.images import write_image, write_mask
from hfan.datasets.layouts import FlatLayout, FLOW_DIR, FRAME_DIR, MASK_DIR
from hfan.preprocess import normalize_image, to_chw_tensor
from hfan.flow.estimators import build_flow_estimator
from hfan.flow.model_input import flow_image_for_model
from hfan.flow.video import flow_partner

DEBIAN_PACKAGES = ("gnome-backgrounds", "mate-backgrounds", "plasma-workspace-wallpapers", "ukui-wallpapers",
                   "openclipart-png")
INSTALL_HELP = ("install them with: sudo apt-get install " + " ".join(DEBIAN_PACKAGES)
                + " (or set data.composites.photo_dirs / shape_dirs)")
_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
PHOTO_MAX_SIDE = 512  # photos are kept at this size: crops of them fill frames of up to ~300 px
SHAPE_MAX_SIDE = 128
HELD_OUT_EVERY = 10  # every 10th asset is for validation only
ASSET_CACHE_VERSION = 1


@dataclass
class Assets:
    photos: list[np.ndarray]  # RGB uint8, longest side <= PHOTO_MAX_SIDE
    shapes: list[np.ndarray]  # RGBA uint8, cropped to the shape, longest side <= SHAPE_MAX_SIDE
    source: dict = field(default_factory=dict)  # counts and folders, for logs

    def split(self, held_out: bool) -> "Assets":
        """The validation assets (every HELD_OUT_EVERY-th) or the training ones (the rest)."""
        if min(len(self.photos), len(self.shapes)) < HELD_OUT_EVERY:
            raise ValueError(f"{len(self.photos)} photos and {len(self.shapes)} shapes loaded: at least "
                             f"{HELD_OUT_EVERY} of each are needed to hold some out for validation")

        def pick(items):
            return [item for i, item in enumerate(items) if (i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1) == held_out]
        return Assets(pick(self.photos), pick(self.shapes), self.source)


def _files(folders: tuple[str, ...], suffixes: tuple[str, ...]) -> list[Path]:
    found = []
    for folder in folders:
        root = Path(folder)
        if root.is_dir():
            found.extend(p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    return sorted(found)


def photo_files(folders: tuple[str, ...] = PHOTO_DIRS) -> list[Path]:
    """One file per picture: wallpaper packages ship a picture at several sizes (KDE: <name>/contents/images/
    <w>x<h>.jpg; MATE: <name>_<w>x<h>.jpg); the first of each group in sorted order is kept."""
    chosen: dict[tuple[Path, str], Path] = {}
    for path in _files(folders, _PHOTO_SUFFIXES):
        if "images" in path.parts[-2:-1]:  # KDE layout: the picture's name is the folder above contents/
            key = (path.parents[2], "")
        else:
            stem = path.stem.split("_")[0] if "x" in path.stem.split("_")[-1] else path.stem
            key = (path.parent, stem)
        chosen.setdefault(key, path)
    return sorted(chosen.values())


def _load_photo(path: Path) -> np.ndarray | None:
    bgr = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_2 if path.stat().st_size > 3_000_000 else cv2.IMREAD_COLOR)
    if bgr is None or min(bgr.shape[:2]) < 200:
        return None
    scale = PHOTO_MAX_SIDE / max(bgr.shape[:2])
    if scale < 1:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if float(np.std(bgr)) < 12:  # nearly flat colour: nothing for flow to track
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _load_shape(path: Path) -> np.ndarray | None:
    """A compact, solid object: one main component, not too thin, enough pixels."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] != 4:
        return None
    alpha = image[..., 3]
    ys, xs = np.nonzero(alpha > 128)
    if len(ys) < 400:
        return None
    image = image[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    solid = (image[..., 3] > 128).astype(np.uint8)
    height, width = solid.shape
    if max(height, width) / min(height, width) > 3.5 or solid.mean() < 0.3:
        return None
    count, _, stats, _ = cv2.connectedComponentsWithStats(solid)
    if count < 2 or stats[1:, cv2.CC_STAT_AREA].max() < 0.85 * solid.sum():
        return None
    scale = SHAPE_MAX_SIDE / max(height, width)
    if scale < 1:
        image = cv2.resize(image, (max(2, round(width * scale)), max(2, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
    rgba = image.copy()
    rgba[..., :3] = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
    return rgba


def _cache_dir() -> Path:
    root = os.environ.get("HFAN_HOME")
    return (Path(root) if root else Path.home() / ".cache" / "hfan") / "composite_assets"


def load_assets(config: CompositeConfig, progress: bool = True, cache: bool = True) -> Assets:
    """Photos and shapes of the configured folders, decoded and resized once, then cached (keyed by the file
    list and sizes) under $HFAN_HOME/composite_assets."""
    photos = photo_files(tuple(config.photo_dirs))
    shapes = _files(tuple(config.shape_dirs), (".png",))
    if not photos or not shapes:
        missing = "photographs" if not photos else "shapes with alpha"
        folders = config.photo_dirs if not photos else config.shape_dirs
        raise FileNotFoundError(f"no {missing} found in {', '.join(folders)}: the training data come from Debian "
                                f"packages; {INSTALL_HELP}")
    digest = hashlib.sha256(repr((ASSET_CACHE_VERSION, config.max_shapes, [(str(p), p.stat().st_size)
                                  for p in photos + shapes])).encode()).hexdigest()[:16]
    cache_file = _cache_dir() / f"assets-{digest}.pkl"
    if cache and cache_file.is_file():
        cached = _read_cache(cache_file)
        if cached is not None:
            return cached
    loaded_photos = [p for p in (_load_photo(f) for f in tqdm(photos, desc="photos", disable=not progress))
                     if p is not None]
    order = np.random.default_rng(0).permutation(len(shapes))  # a seeded subset spread over all categories
    loaded_shapes = []
    for i in tqdm(order, desc="shapes", disable=not progress, total=len(order)):
        if len(loaded_shapes) >= config.max_shapes:
            break
        shape = _load_shape(shapes[i])
        if shape is not None:
            loaded_shapes.append(shape)
    assets = Assets(loaded_photos, loaded_shapes,
                    {"photos": len(loaded_photos), "shapes": len(loaded_shapes),
                     "photo_dirs": list(config.photo_dirs), "shape_dirs": list(config.shape_dirs)})
    if cache:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_file) as temporary, open(temporary, "wb") as handle:
            # Plain lists and arrays, not the Assets class: a cache must survive this module moving.
            pickle.dump({"photos": assets.photos, "shapes": assets.shapes, "source": assets.source}, handle,
                        protocol=pickle.HIGHEST_PROTOCOL)
    return assets


def _read_cache(cache_file: Path) -> Assets | None:
    """The cached assets, or None when the file is unreadable or was written by another layout of the package
    (then they are decoded again and the cache rewritten)."""
    try:
        with open(cache_file, "rb") as handle:
            cached = pickle.load(handle)
    except (OSError, EOFError, ImportError, AttributeError, pickle.UnpicklingError):
        return None
    if not isinstance(cached, dict) or set(cached) != {"photos", "shapes", "source"}:
        return None
    return Assets(cached["photos"], cached["shapes"], cached["source"])


# ----------------------------------------------------------------------------------------------- rendering
def _about(cx: float, cy: float, angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    """3x3 similarity about (cx, cy), then a translation."""
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, cx - c * cx + s * cy + tx], [s, c, cy - s * cx - c * cy + ty], [0, 0, 1.0]])


def _random_motion(rng: np.random.Generator, cx: float, cy: float, speed: float, turn: float,
                   zoom: float) -> np.ndarray:
    direction = rng.uniform(0, 2 * np.pi)
    return _about(cx, cy, rng.normal(0, turn), np.exp(rng.normal(0, zoom)),
                  speed * np.cos(direction), speed * np.sin(direction))


def _colour_jitter(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-15, 15)) % 180
    hsv[..., 1] *= rng.uniform(0.6, 1.3)
    hsv[..., 2] *= rng.uniform(0.7, 1.2)
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)


def _warp(image: np.ndarray, matrix: np.ndarray, width: int, height: int, border: int) -> np.ndarray:
    if np.allclose(matrix[2], [0, 0, 1], rtol=0, atol=0):  # affine: the exact call recipe B was rendered with
        return cv2.warpAffine(image, matrix[:2], (width, height), flags=cv2.INTER_LINEAR, borderMode=border)
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=border)


@dataclass
class _Layer:
    rgb: np.ndarray
    alpha: np.ndarray | None  # None: the background, opaque everywhere
    start: np.ndarray  # 3x3: layer pixels -> frame at t = 0
    motion: np.ndarray  # 3x3 in frame coordinates, applied once per frame
    primary: bool = False
    deformation: "_Deformation | None" = None  # non-rigid: the layer's pixels move within it
    attached: "_Attached | None" = None  # a shadow or reflection that moves with it, drawn just below it

    def transform(self, t: int) -> np.ndarray:
        return np.linalg.matrix_power(self.motion, t) @ self.start

    def pixels(self, t: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The layer's colour and alpha at frame t, in its own coordinates."""
        if self.deformation is None:
            return self.rgb, self.alpha
        return self.deformation.apply(self.rgb, t, cv2.BORDER_REFLECT101), self.deformation.apply(
            self.alpha, t, cv2.BORDER_CONSTANT)


@dataclass
class _Deformation:
    """A displacement field that swings between two smooth random fields: cos(wt + p) A + sin(wt + p) B, so the
    motion it adds is smooth in time (a limb or a flag, not noise) and of a size that varies over the shape."""

    fields: np.ndarray  # (2, 2, h, w) float32: A and B, x and y displacements in layer pixels
    speed: float  # w, radians per frame
    phase: float

    def apply(self, image: np.ndarray, t: int, border: int) -> np.ndarray:
        angle = self.speed * t + self.phase
        dx, dy = np.float32(np.cos(angle)) * self.fields[0] + np.float32(np.sin(angle)) * self.fields[1]
        h, w = dx.shape
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        return cv2.remap(image, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR, borderMode=border)


@dataclass
class _Attached:
    """A cast shadow or a reflection of a layer: its own pixels (alpha, and colour for a reflection) through
    `placement` (3x3, layer pixels -> layer pixels) before the layer's transform, so it moves and bends with the
    layer; drawn softened (Gaussian `blur`, px) onto what lies below the layer. Labelled background, as in DAVIS
    (the shadow of car-shadow, the reflection of blackswan)."""

    kind: str  # "shadow": darkens by `strength`; "reflection": the layer's colours, dimmed, at `strength` opacity
    placement: np.ndarray
    strength: float
    blur: float
    dim: float = 1.0

    def draw(self, image: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, matrix: np.ndarray) -> None:
        height, width = image.shape[:2]
        placed = matrix @ self.placement
        weight = _warp(alpha, placed, width, height, cv2.BORDER_CONSTANT).astype(np.float32) / 255.0
        weight = cv2.GaussianBlur(weight, (0, 0), self.blur)[..., None] * self.strength
        if self.kind == "shadow":
            image *= 1 - weight
            return
        colour = _warp(rgb, placed, width, height, cv2.BORDER_REFLECT101).astype(np.float32) * self.dim
        image *= 1 - weight
        image += cv2.GaussianBlur(colour, (0, 0), self.blur) * weight


@dataclass
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    masks: np.ndarray  # (T, H, W) bool: the visible primary object
    flow_images: np.ndarray  # (T, H, W, 3) uint8: what the model sees (DIS + camera removal + colours)


class CompositeGenerator:
    """Draws clips from `assets`; `clip(rng, ...)` is a pure function of the generator's state.

    The flow is DIS (`dis_preset`) on the rendered frames, made into the model's input with `camera_motion`
    removed: the model's `flow` settings, so that it trains on what `hfan segment` will give it.
    """

    def __init__(self, assets: Assets, config: CompositeConfig, camera_motion: str = "affine",
                 dis_preset: str = "medium"):
        if not assets.photos or not assets.shapes:
            raise ValueError(f"no photos or shapes to compose from; {INSTALL_HELP}")
        self.assets, self.config = assets, config
        self.camera_motion, self.dis_preset = camera_motion, dis_preset
        self._estimator = None

    @property
    def estimator(self):
        if self._estimator is None:  # built lazily: DataLoader workers each get their own
            self._estimator = build_flow_estimator("dis", preset=self.dis_preset)
        return self._estimator

    def _photo_crop(self, rng: np.random.Generator, height: int, width: int, margin: float) -> np.ndarray:
        photo = self.assets.photos[rng.integers(len(self.assets.photos))]
        out_h, out_w = int(height * margin), int(width * margin)
        zoom = rng.uniform(1.0, 2.5)  # how much of the photo the frame shows
        crop_h = min(photo.shape[0], int(out_h * zoom))
        crop_w = min(photo.shape[1], int(crop_h * out_w / out_h))
        crop_h = min(crop_h, int(crop_w * out_h / out_w))
        y = rng.integers(0, photo.shape[0] - crop_h + 1)
        x = rng.integers(0, photo.shape[1] - crop_w + 1)
        crop = cv2.resize(photo[y:y + crop_h, x:x + crop_w], (out_w, out_h), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return np.ascontiguousarray(_colour_jitter(rng, np.ascontiguousarray(crop)))

    def _shape(self, rng: np.random.Generator, area: float, frame_area: float) -> tuple[np.ndarray, np.ndarray, float]:
        rgba = self.assets.shapes[rng.integers(len(self.assets.shapes))]
        rgb, alpha = rgba[..., :3], rgba[..., 3]
        if rng.random() < self.config.texture_probability:  # a photo texture inside the real outline
            rgb = self._photo_crop(rng, *alpha.shape, margin=1.0)
        rgb = _colour_jitter(rng, np.ascontiguousarray(rgb))
        if rng.random() < 0.5:
            rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        solid = max(float((alpha > 128).sum()), 1.0)
        return np.ascontiguousarray(rgb), np.ascontiguousarray(alpha), float(np.sqrt(area * frame_area / solid))

    def _object(self, rng, height, width, area, motion_in_frame: np.ndarray | None, camera: np.ndarray,
                primary: bool = False) -> _Layer:
        rgb, alpha, scale = self._shape(rng, area, height * width)
        h, w = alpha.shape
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
        start = _about(0, 0, rng.uniform(-0.4, 0.4), scale, 0, 0)
        start[:2, 2] += np.array([cx, cy]) - start[:2, :2] @ [(w - 1) / 2, (h - 1) / 2]
        motion = camera if motion_in_frame is None else motion_in_frame
        return _Layer(rgb, alpha, start, motion, primary)

    def _fence(self, rng: np.random.Generator, height: int, width: int) -> _Layer:
        """Bars of a photo texture across the frame (poles, railings): thin, periodic, in front of everything."""
        margin = 1.6
        rgb = self._photo_crop(rng, height, width, margin)
        rgb = np.ascontiguousarray((rgb * rng.uniform(0.4, 1.0)).astype(np.uint8))
        bh, bw = rgb.shape[:2]
        side = min(height, width)
        period = rng.uniform(0.12, 0.4) * side
        bar = rng.uniform(0.15, 0.45) * period
        position = (np.arange(bw) + rng.uniform(0, period)) % period
        alpha = np.repeat((position < bar)[None, :], bh, axis=0).astype(np.uint8) * 255
        if rng.random() < 0.5:  # rails across the poles
            rows = (np.arange(bh) + rng.uniform(0, bh)) % (bh * rng.uniform(0.3, 0.7)) < bar
            alpha[rows] = 255
        alpha = cv2.GaussianBlur(alpha, (0, 0), 0.7)
        cx, cy = (width - 1) / 2, (height - 1) / 2
        angle = rng.normal(0, 0.15) + (np.pi / 2 if rng.random() < 0.25 else 0.0)  # mostly upright
        centred = np.array([[1, 0, cx - (bw - 1) / 2], [0, 1, cy - (bh - 1) / 2], [0, 0, 1.0]])
        start = _about(cx, cy, angle, 1.0, 0, 0) @ centred
        return _Layer(rgb, alpha, start, np.eye(3))

    def _layers(self, rng: np.random.Generator, height: int, width: int) -> tuple[list[_Layer], np.ndarray]:
        cfg = self.config
        unit = min(height, width) / cfg.size  # speeds are in pixels at `size`
        cx, cy = (width - 1) / 2, (height - 1) / 2
        if rng.random() < 0.2:  # a nearly static camera
            camera_speed = abs(rng.normal(0, 0.3))
            camera = _random_motion(rng, cx, cy, camera_speed * unit, 0.002, 0.003)
        else:
            camera_speed = rng.uniform(0, cfg.max_speed)
            camera = _random_motion(rng, cx, cy, camera_speed * unit, 0.02, 0.03)
        if cfg.perspective > 0:  # projective terms about the centre: one side of the frame moves faster
            gx, gy = rng.normal(0, cfg.perspective, 2) * (min(camera_speed, cfg.max_speed) / cfg.max_speed + 0.25)
            centre = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]])
            tilt = np.array([[1, 0, 0], [0, 1, 0], [gx / width, gy / height, 1.0]])
            camera = camera @ centre @ tilt @ np.linalg.inv(centre)
        margin = 1.6
        background = self._photo_crop(rng, height, width, margin)
        bh, bw = background.shape[:2]
        start = np.array([[1, 0, cx - (bw - 1) / 2], [0, 1, cy - (bh - 1) / 2], [0, 0, 1.0]])
        layers = [_Layer(background, None, start, camera)]

        objects = []
        for _ in range(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2])):  # scene-fixed distractors
            objects.append(self._object(rng, height, width, rng.uniform(0.02, 0.12), None, camera))
        primary_area = rng.uniform(0.04, 0.3)
        tracked = rng.random() < cfg.track_probability
        if tracked and camera_speed >= cfg.track_min_camera_speed:  # the camera follows it: little motion in frame
            own = _random_motion(rng, cx, cy, abs(rng.normal(0, 0.5)) * unit, 0.02, 0.02)
        else:
            own = _random_motion(rng, cx, cy, rng.uniform(1.0, cfg.max_speed) * unit, 0.05, 0.05) @ camera
        primary = self._object(rng, height, width, primary_area, own, camera, primary=True)
        if cfg.deform_probability > 0 and rng.random() < cfg.deform_probability:
            self._make_non_rigid(rng, primary)
        if cfg.shadow_probability > 0 and rng.random() < cfg.shadow_probability:
            primary.attached = self._attached(rng, primary, "shadow", unit)
        elif cfg.reflection_probability > 0 and rng.random() < cfg.reflection_probability:
            primary.attached = self._attached(rng, primary, "reflection", unit)
        objects.append(primary)
        if rng.random() < cfg.secondary_probability:
            secondary_motion = _random_motion(rng, cx, cy, rng.uniform(1.0, cfg.max_speed / 2) * unit, 0.05, 0.05)
            objects.append(self._object(rng, height, width, primary_area * rng.uniform(0.1, 0.35),
                                        secondary_motion @ camera, camera))
        order = rng.permutation(len(objects))  # occlusions either way
        layers.extend(objects[i] for i in order)
        if cfg.parallax_probability > 0 and rng.random() < cfg.parallax_probability:
            # closer to the camera than the background: the camera's translation, 1.3-2.5x
            centre = camera @ [cx, cy, 1.0]
            shift = (centre[:2] / centre[2] - [cx, cy]) * rng.uniform(0.3, 1.5)
            near_motion = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1.0]]) @ camera
            if rng.random() < 0.6:
                fence = self._fence(rng, height, width)
                fence.motion = near_motion
                near = [fence]
            else:
                near = [self._object(rng, height, width, rng.uniform(0.02, 0.1), near_motion, camera)
                        for _ in range(rng.integers(1, 3))]
            if rng.random() < 0.7:  # usually in front of everything, as near things are
                layers.extend(near)
            else:
                layers[1:1] = near
        return layers, camera

    def _attached(self, rng: np.random.Generator, layer: _Layer, kind: str, unit: float) -> _Attached:
        """A shadow cast on the ground (the outline flattened onto its base line and sheared sideways) or on a
        wall behind (shifted), or a reflection (mirrored about the base line, shortened, dimmed), placed in the
        layer's pixels; `unit` scales the softening (px at `size`) to the frame."""
        rows = np.nonzero((layer.alpha > 127).any(axis=1))[0]
        base = float(rows.max()) if len(rows) else layer.alpha.shape[0] - 1.0
        side = max(layer.alpha.shape)
        if kind == "reflection":
            shorten = rng.uniform(0.6, 1.0)  # y -> base + shorten (base - y): mirrored about the base line
            flip = np.array([[1, 0, 0], [0, -shorten, (1 + shorten) * base], [0, 0, 1.0]])
            return _Attached("reflection", flip, float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.5, 2.0) * unit),
                             float(rng.uniform(0.4, 0.8)))
        if rng.random() < 0.7:  # on the ground: squashed onto the base line, sheared away from the light
            squash, shear = rng.uniform(0.15, 0.6), rng.uniform(-1.5, 1.5)
            placement = np.array([[1, shear * squash, -shear * squash * base], [0, squash, base * (1 - squash)],
                                  [0, 0, 1.0]])
        else:  # on a wall behind: the outline shifted
            placement = np.array([[1, 0, rng.uniform(-0.25, 0.25) * side], [0, 1, rng.uniform(0.05, 0.25) * side],
                                  [0, 0, 1.0]])
        return _Attached("shadow", placement, float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.7, 3.0) * unit))

    def _make_non_rigid(self, rng: np.random.Generator, layer: _Layer) -> None:
        """Pads the layer (its parts may move out of the shape's box) and gives it a deformation."""
        pad = int(np.ceil(self.config.deform_amplitude * max(layer.alpha.shape))) + 1
        layer.rgb = cv2.copyMakeBorder(layer.rgb, pad, pad, pad, pad, cv2.BORDER_REFLECT101)
        layer.alpha = cv2.copyMakeBorder(layer.alpha, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        layer.start = layer.start @ np.array([[1, 0, -pad], [0, 1, -pad], [0, 0, 1.0]])
        layer.deformation = self._deformation(rng, *layer.alpha.shape, reach=max(layer.alpha.shape) - 2 * pad)

    def _deformation(self, rng: np.random.Generator, height: int, width: int, reach: int) -> _Deformation:
        """Two smooth fields of 2-4 cells a side over a layer of height x width, displacing by up to
        deform_amplitude x `reach` (the shape's side): a few parts that move apart."""
        cells = int(rng.integers(2, 5))
        fields = rng.normal(0, 1, (2, 2, cells, cells)).astype(np.float32)
        fields = np.stack([[cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in pair]
                           for pair in fields])
        largest = self.config.deform_amplitude * reach * rng.uniform(0.4, 1.0)
        fields *= largest / max(float(np.abs(fields).max()), 1e-6)
        # 0.3-1 radians per frame: one full swing every 6-21 frames
        return _Deformation(fields, float(rng.uniform(0.3, 1.0)), float(rng.uniform(0, 2 * np.pi)))

    def _ripple(self, rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """A smooth displacement field (x and y maps for cv2.remap) below a random horizon."""
        unit = min(height, width) / self.config.size
        cells = int(rng.integers(3, 9))
        field = rng.normal(0, 1, (2, cells, cells)).astype(np.float32)
        field = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in field])
        field *= self.config.ripple_amplitude * unit / max(float(np.abs(field).max()), 1e-6)
        return field

    def _ripple_setup(self, rng: np.random.Generator, height: int) -> np.ndarray:
        horizon = rng.uniform(0.0, 0.7) * height
        return np.clip((np.arange(height, dtype=np.float32) - horizon) / (0.05 * height), 0, 1)[:, None]

    def render(self, rng: np.random.Generator, num_frames: int, height: int,
               width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames (T, H, W, 3) uint8, primary masks (T, H, W) bool and the camera's 3x3 motion."""
        layers, camera = self._layers(rng, height, width)
        ripple_weight = None
        if self.config.ripple_probability > 0 and rng.random() < self.config.ripple_probability:
            ripple_weight = self._ripple_setup(rng, height)
        grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
        frames = np.zeros((num_frames, height, width, 3), np.float32)
        masks = np.zeros((num_frames, height, width), bool)
        for t in range(num_frames):
            image = frames[t]
            for layer in layers:
                matrix = layer.transform(t)
                layer_rgb, layer_alpha = layer.pixels(t)
                colour = _warp(layer_rgb, matrix, width, height, cv2.BORDER_REFLECT101).astype(np.float32)
                if layer_alpha is None:
                    if ripple_weight is not None:  # a new field each frame: it does not move coherently
                        dx, dy = self._ripple(rng, height, width) * ripple_weight
                        colour = cv2.remap(colour, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR,
                                           borderMode=cv2.BORDER_REFLECT101)
                    image[...] = colour
                    continue
                if layer.attached is not None:
                    layer.attached.draw(image, layer_rgb, layer_alpha, matrix)
                alpha = _warp(layer_alpha, matrix, width, height, cv2.BORDER_CONSTANT)
                weight = alpha.astype(np.float32)[..., None] / 255.0
                image *= 1 - weight
                image += colour * weight
                covered = alpha > 127
                masks[t] = np.where(covered, layer.primary, masks[t])
        return self._camera_nuisances(rng, frames, camera), masks, camera

    def _camera_nuisances(self, rng: np.random.Generator, frames: np.ndarray, camera: np.ndarray) -> np.ndarray:
        gain = np.exp(np.cumsum(rng.normal(0, 0.03, len(frames))))[:, None, None, None]
        frames = frames * gain
        sigma = rng.uniform(0, 4)
        blur = rng.choice(["none", "defocus", "motion"], p=[0.6, 0.2, 0.2])
        quality = int(rng.integers(40, 96)) if rng.random() < 0.5 else None
        out = np.empty(frames.shape, np.uint8)
        for t, frame in enumerate(frames):
            if blur == "defocus":
                frame = cv2.GaussianBlur(frame, (0, 0), rng.uniform(0.5, 1.2))
            elif blur == "motion":  # along the camera's translation, as long as one frame's motion
                dx, dy = camera[0, 2], camera[1, 2]
                length = int(min(9, max(2, round(np.hypot(dx, dy)))))
                kernel = np.zeros((length, length), np.float32)
                angle = np.arctan2(dy, dx)
                c = (length - 1) / 2
                for k in np.linspace(-c, c, 2 * length):
                    kernel[int(round(c + k * np.sin(angle))), int(round(c + k * np.cos(angle)))] = 1
                frame = cv2.filter2D(frame, -1, kernel / kernel.sum())
            frame = frame + rng.normal(0, sigma, frame.shape).astype(np.float32)
            frame = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
            if quality is not None:
                _, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
                frame = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
            out[t] = frame
        return out

    def clip(self, rng: np.random.Generator, num_frames: int = 2, height: int | None = None,
             width: int | None = None) -> Clip:
        """A clip with HFAN's one flow per frame (forward, backward for the last), as the model will see it."""
        if num_frames < 2:
            raise ValueError(f"a clip needs at least 2 frames, got {num_frames}")
        height = height or self.config.size
        width = width or self.config.size
        scale = self.config.render_scale
        rendered_h, rendered_w = round(height * scale), round(width * scale)
        frames, masks, _ = self.render(rng, num_frames, rendered_h, rendered_w)
        flow_images = np.empty_like(frames)
        for t in range(num_frames):
            flow = self.estimator(frames[t], frames[flow_partner(t, num_frames)])
            flow_images[t] = flow_image_for_model(flow, self.camera_motion)
        if (rendered_h, rendered_w) != (height, width):
            def shrink(image: np.ndarray) -> np.ndarray:
                return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            frames = np.stack([shrink(frame) for frame in frames])
            flow_images = np.stack([shrink(image) for image in flow_images])
            # a pixel is the object where it covers most of it
            masks = np.stack([cv2.resize(m.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) > 0.5
                              for m in masks])
        return Clip(frames, masks, flow_images)


class CompositeTrainDataset(torch.utils.data.Dataset):
    """Training samples drawn on the fly: item `(index, epoch)` is the first frame of the 2-frame clip of seed
    (seed, epoch, index), so a resumed run replays the same stream (hfan.train.sampler.TrainStream)."""

    def __init__(self, config: CompositeConfig, seed: int = 1208, camera_motion: str = "affine",
                 dis_preset: str = "medium", assets: Assets | None = None, progress: bool = True):
        self.config, self.seed = config, seed
        self.assets = assets if assets is not None else load_assets(config, progress=progress)  # all of them
        self.generator = CompositeGenerator(self.assets.split(held_out=False), config, camera_motion, dis_preset)
        self._pid = None

    def __len__(self) -> int:
        return self.config.samples_per_epoch

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for {len(self)} items")
        if self._pid != os.getpid():  # one OpenCV thread per DataLoader worker: the workers are the parallelism
            self._pid = os.getpid()
            if torch.utils.data.get_worker_info() is not None:
                cv2.setNumThreads(1)
        clip = self.generator.clip(np.random.default_rng([self.seed, epoch, index]), 2)
        return {"frame": to_chw_tensor(normalize_image(clip.frames[0])),
                "flow": to_chw_tensor(normalize_image(clip.flow_images[0])),
                "mask": torch.from_numpy(clip.masks[0].astype(np.int64))}


VALIDATION_SEED_OFFSET = 7_919  # validation clips come from another stream than any training item


def write_validation_videos(root: str | Path, config: CompositeConfig, seed: int = 1208,
                            camera_motion: str = "affine", dis_preset: str = "medium",
                            assets: Assets | None = None, split: str = "val", progress: bool = True) -> Path:
    """Held-out clips (held-out photos and shapes) in the flat layout under `root`, for `hfan.train.validate`.

    Skipped when `root/done-<split>.txt` records the same settings; otherwise the split's frame, flow and mask
    folders are rewritten (nothing else under `root` is touched)."""
    root = Path(root)
    stamp = repr((config, camera_motion, dis_preset, seed, split, assets.source if assets is not None else None))
    done = root / f"done-{split}.txt"
    if done.is_file() and done.read_text() == stamp:
        return root
    done.unlink(missing_ok=True)
    layout = FlatLayout(root)
    for kind in (FRAME_DIR, FLOW_DIR, MASK_DIR):
        if (root / kind / split).is_dir():
            shutil.rmtree(root / kind / split)
    assets = assets if assets is not None else load_assets(config, progress=progress)
    generator = CompositeGenerator(assets.split(held_out=True), config, camera_motion, dis_preset)
    height, width = config.val_size
    for number in tqdm(range(config.val_videos), desc="validation clips", disable=not progress):
        clip = generator.clip(np.random.default_rng([seed, VALIDATION_SEED_OFFSET, number]), config.val_frames,
                              height, width)
        video = f"clip{number:03d}"
        for t in range(config.val_frames):
            write_image(layout.frame_path(split, video, t), clip.frames[t])
            write_image(layout.flow_path(split, video, t), clip.flow_images[t])
            write_mask(layout.mask_path(split, video, t), clip.masks[t], foreground_value=1)
    with atomic_path(done) as temporary:
        temporary.write_text(stamp)
    return root
