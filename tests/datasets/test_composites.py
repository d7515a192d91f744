"""Synthetic training clips from Debian's photo and clip-art packages (hfan.datasets.composites).

The assets are real files from Debian packages (hfan.datasets.composites.DEBIAN_PACKAGES), not from ../shared: without
them these tests are skipped with the packages named, except under CI=true, where that is a failure. They load one
small photo folder and 30 shapes once per module (about 1 s) and draw clips of 128 px: the module takes seconds.
"""
import dataclasses
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers.shared import skip_or_fail
from hfan.datasets.composites import (CompositeGenerator, CompositeTrainDataset, DEBIAN_PACKAGES, _Attached,
                                      load_assets, photo_files, write_validation_videos)
from hfan.config import CompositeConfig, SHAPE_DIRS
from hfan.io.images import read_image
from hfan.datasets.layouts import FlatLayout
from hfan.preprocess import normalize_image, to_chw_tensor

# Small folders first: mate/nature holds 12 photos (0.7 s to load), gnome's 16 large webp files take ~4 s.
PHOTO_CANDIDATES = ("/usr/share/backgrounds/mate/nature", "/usr/share/backgrounds/mate", "/usr/share/backgrounds/gnome",
                    "/usr/share/backgrounds", "/usr/share/wallpapers")
MAX_SHAPES = 30


def _skip_or_fail(message: str):
    skip_or_fail(f"{message}; they come from the Debian packages {' '.join(DEBIAN_PACKAGES)} (apt-get install them)")


def _photo_dir() -> str:
    for folder in PHOTO_CANDIDATES:
        if Path(folder).is_dir() and len(photo_files((folder,))) >= 10:  # >= 10: one is held out
            return folder
    _skip_or_fail(f"needs photographs in one of {', '.join(PHOTO_CANDIDATES)}")


@pytest.fixture(scope="module")
def config() -> CompositeConfig:
    if not Path(SHAPE_DIRS[0]).is_dir():
        _skip_or_fail(f"needs the clip-art shapes in {SHAPE_DIRS[0]}")
    return CompositeConfig(max_shapes=MAX_SHAPES, photo_dirs=(_photo_dir(),))


@pytest.fixture(scope="module")
def assets(config):
    return load_assets(config, progress=False, cache=False)


@pytest.fixture(scope="module")
def generator(assets, config):
    return CompositeGenerator(assets, config)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _assert_same_clip(first, second):
    for name in ("frames", "masks", "flow_images"):
        a, b = getattr(first, name), getattr(second, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name


def test_assets_are_loaded(assets, config):
    assert 10 <= len(assets.photos) and len(assets.shapes) == MAX_SHAPES
    assert assets.source["photos"] == len(assets.photos) and assets.source["shapes"] == MAX_SHAPES
    for photo in assets.photos:
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3 and max(photo.shape[:2]) <= 512
    for shape in assets.shapes:
        assert shape.dtype == np.uint8 and shape.ndim == 3 and shape.shape[2] == 4 and max(shape.shape[:2]) <= 128
        assert (shape[..., 3] > 128).mean() >= 0.3  # solid: the filter of _load_shape


def test_the_same_seed_gives_the_same_clip(assets, config):
    # two generators: nothing carried between instances (DIS settles its per-size state the same way in each)
    first = CompositeGenerator(assets, config).clip(_rng(5), 3)
    second = CompositeGenerator(assets, config).clip(_rng(5), 3)
    _assert_same_clip(first, second)
    other = CompositeGenerator(assets, config).clip(_rng(6), 3)
    assert first.frames.tobytes() != other.frames.tobytes()
    assert first.masks.tobytes() != other.masks.tobytes()


def test_a_generator_gives_the_same_clip_after_drawing_others(generator):
    before = generator.clip(_rng(11), 2)
    generator.clip(_rng(12), 2, 96, 160)  # another size in between
    _assert_same_clip(before, generator.clip(_rng(11), 2))


def test_clip_shapes_and_dtypes(generator, config):
    clip = generator.clip(_rng(0), 3)
    size = config.size
    assert clip.frames.shape == (3, size, size, 3) and clip.frames.dtype == np.uint8
    assert clip.flow_images.shape == (3, size, size, 3) and clip.flow_images.dtype == np.uint8
    assert clip.masks.shape == (3, size, size) and clip.masks.dtype == bool
    wide = generator.clip(_rng(0), 2, 72, 120)
    assert wide.frames.shape == (2, 72, 120, 3) and wide.masks.shape == (2, 72, 120)
    assert wide.flow_images.shape == (2, 72, 120, 3)
    assert len(np.unique(clip.frames)) > 50  # a photograph, not a flat colour
    with pytest.raises(ValueError, match="at least 2 frames"):
        generator.clip(_rng(0), 1)


def test_render_scale_renders_and_computes_flow_larger_then_shrinks_to_the_size(assets, config):
    """render_scale=2 at 64x96 is the clip rendered (speeds included: they are in pixels at `size`) and its DIS
    flow computed at 128x192, then every image resized down as the test resizes and the mask by coverage."""
    large = CompositeGenerator(assets, config).clip(_rng(5), 2, 128, 192)
    scaled = CompositeGenerator(assets, dataclasses.replace(config, render_scale=2.0)).clip(_rng(5), 2, 64, 96)
    assert scaled.frames.shape == (2, 64, 96, 3) and scaled.flow_images.shape == (2, 64, 96, 3)
    assert scaled.masks.shape == (2, 64, 96) and scaled.masks.dtype == bool
    for t in range(2):
        np.testing.assert_array_equal(scaled.frames[t], cv2.resize(large.frames[t], (96, 64),
                                                                    interpolation=cv2.INTER_LINEAR))
        np.testing.assert_array_equal(scaled.flow_images[t], cv2.resize(large.flow_images[t], (96, 64),
                                                                         interpolation=cv2.INTER_LINEAR))
        coverage = large.masks[t].reshape(64, 2, 96, 2).mean(axis=(1, 3))
        np.testing.assert_array_equal(scaled.masks[t], coverage > 0.5)
    with pytest.raises(ValueError, match="render_scale"):
        dataclasses.replace(config, render_scale=0.5).validate()


def test_the_primary_mask_is_there_and_never_the_whole_frame(generator):
    present = 0
    for seed in range(10):
        clip = generator.clip(_rng(seed), 2)
        present += bool(clip.masks[0].any())
        assert not clip.masks.all(axis=(1, 2)).any(), f"seed {seed}: the mask covers a whole frame"
        assert clip.masks[0].mean() < 0.6, f"seed {seed}: primary object {clip.masks[0].mean():.0%} of the frame"
    assert present >= 8


def test_the_primary_object_moves_relative_to_the_camera_in_the_flow_image(generator):
    """With camera motion removed, the flow image is more saturated (less white) on the object than around it,
    on most clips (the flow is DIS on the rendered frames, so not all)."""
    stands_out = 0
    for seed in range(10):
        clip = generator.clip(_rng(seed), 2)
        mask = clip.masks[0]
        if mask.sum() < 100:
            continue
        saturation = cv2.cvtColor(clip.flow_images[0], cv2.COLOR_RGB2HSV)[..., 1].astype(float)
        stands_out += saturation[mask].mean() > saturation[~mask].mean()
    assert stands_out >= 8  # measured: 10 of 10, by 75-165 of 255 in saturation


def _with(config: CompositeConfig, **changes) -> CompositeConfig:
    return dataclasses.replace(config, **changes)


def test_the_extra_camera_effects_are_off_by_default_and_draw_nothing_when_off(assets, config):
    """Recipe B's clips do not depend on the fields added for recipe C (their draws happen only when on)."""
    assert (config.perspective, config.parallax_probability, config.ripple_probability, config.deform_probability,
            config.shadow_probability, config.reflection_probability) == (0, 0, 0, 0, 0, 0)
    # used only when ripple_probability / deform_probability > 0
    changed = _with(config, ripple_amplitude=9.0, deform_amplitude=0.4)
    _assert_same_clip(CompositeGenerator(assets, config).clip(_rng(3), 2),
                      CompositeGenerator(assets, changed).clip(_rng(3), 2))


def test_perspective_makes_the_camera_motion_projective(assets, config):
    flat = CompositeGenerator(assets, config)
    tilted = CompositeGenerator(assets, _with(config, perspective=0.08))
    for seed in range(5):
        assert not flat._layers(_rng(seed), 128, 128)[1][2, :2].any()
        camera = tilted._layers(_rng(seed), 128, 128)[1]
        assert camera[2, :2].any() and np.abs(camera[2, :2]).max() < 0.01
    clip = tilted.clip(_rng(0), 2)  # rendered through warpPerspective
    assert clip.frames.shape == (2, 128, 128, 3) and len(np.unique(clip.frames)) > 50


def test_the_parallax_layer_is_background_and_moves_faster_than_the_camera(assets, config):
    generator = CompositeGenerator(assets, _with(config, parallax_probability=1.0, secondary_probability=0.0))
    centre = np.array([63.5, 63.5, 1.0])
    checked = 0
    for seed in range(12):
        layers, camera = generator._layers(_rng(seed), 128, 128)
        camera_shift = (camera @ centre)[:2] - centre[:2]
        if np.hypot(*camera_shift) < 1:
            continue
        # the distractors move with the camera exactly, the primary object is flagged: the rest is near
        near = [layer for layer in layers[1:] if not layer.primary and not np.allclose(layer.motion, camera)]
        assert near, f"seed {seed}: no near layer"
        for layer in near:
            ratio = np.hypot(*((layer.motion @ centre)[:2] - centre[:2])) / np.hypot(*camera_shift)
            assert 1.29 <= ratio <= 2.51, f"seed {seed}: the near layer moves {ratio:.2f}x the camera"
        checked += 1
    assert checked >= 6
    # the primary mask never includes what lies in front of it: the clip's mask is the visible object
    clip = generator.clip(_rng(1), 2)
    assert clip.masks[0].mean() < 0.6


def test_a_fence_is_thin_periodic_bars(assets, config):
    generator = CompositeGenerator(assets, config)
    fence = generator._fence(_rng(4), 128, 128)
    assert fence.alpha.shape == fence.rgb.shape[:2] and not fence.primary
    cover = (fence.alpha > 127).mean()
    assert 0.1 < cover < 0.7
    columns = (fence.alpha[0] > 127).astype(int)
    assert np.abs(np.diff(columns)).sum() >= 4  # at least two bars across


def test_the_non_rigid_background_moves_the_bottom_of_the_frame(assets, config):
    """The same draws with and without displacement (amplitude 0): the frames differ, and most below the
    horizon (drawn in the upper 70 % of the frame), so the lowest rows always ripple."""
    bottom_minus_top = []
    for seed in range(6):
        still = CompositeGenerator(assets, _with(config, ripple_probability=1.0, ripple_amplitude=0.0))
        moving = CompositeGenerator(assets, _with(config, ripple_probability=1.0, ripple_amplitude=2.0))
        a = still.render(_rng(seed), 2, 128, 128)[0].astype(float)
        b = moving.render(_rng(seed), 2, 128, 128)[0].astype(float)
        difference = np.abs(a - b).mean(axis=(0, 2, 3))  # per row
        assert difference.max() > 0.5, f"seed {seed}: no displacement"
        bottom_minus_top.append(difference[-30:].mean() - difference[:30].mean())
    assert np.median(bottom_minus_top) > 0


def test_a_non_rigid_primary_object_changes_its_outline_and_nothing_else(assets, config):
    """The same draws with a deformation of amplitude 0 (rigid) and 0.15: the primary mask changes over the clip,
    the frames change only around the object, and the mask is still the object's (its colour where it is)."""
    rigid = CompositeGenerator(assets, _with(config, deform_probability=1.0, deform_amplitude=0.0,
                                             secondary_probability=0.0))
    bent = CompositeGenerator(assets, _with(config, deform_probability=1.0, deform_amplitude=0.15,
                                            secondary_probability=0.0))
    outline_changed = 0
    for seed in range(6):
        frames_a, masks_a, _ = rigid.render(_rng(seed), 4, 128, 128)
        frames_b, masks_b, _ = bent.render(_rng(seed), 4, 128, 128)
        if not masks_a.any():
            continue
        moved = (masks_a ^ masks_b).mean(axis=(1, 2))
        outline_changed += moved.max() > 0.002
        # JPEG's 16x16 colour blocks carry a change up to a block beyond the object
        near_object = np.stack([cv2.dilate((a | b).astype(np.uint8), np.ones((35, 35), np.uint8)) > 0
                                for a, b in zip(masks_a, masks_b)])
        far = np.abs(frames_a.astype(int) - frames_b.astype(int)).max(axis=-1)[~near_object]
        assert np.percentile(far, 99) <= 2, f"seed {seed}: the deformation changed the frame away from the object"
        layers, _ = bent._layers(_rng(seed), 128, 128)
        [primary] = [layer for layer in layers if layer.primary]
        assert primary.deformation is not None and primary.alpha.shape == primary.rgb.shape[:2]
        # padded so that parts may move out of the shape's box, and nothing sits on the padding at rest
        assert not primary.alpha[0].any() and not primary.alpha[:, -1].any()
    assert outline_changed >= 4


def test_the_train_dataset_is_deterministic_and_normalised(assets, config):
    dataset = CompositeTrainDataset(config, seed=7, assets=assets)
    assert len(dataset) == config.samples_per_epoch
    item = dataset[(3, 1)]
    assert set(item) == {"frame", "flow", "mask"}
    for name in ("frame", "flow"):
        assert item[name].dtype == torch.float32 and tuple(item[name].shape) == (3, 128, 128)
        assert item[name].min() < -1 and item[name].max() > 0.5  # ImageNet-normalised, not 0..255 or 0..1
    assert item["mask"].dtype == torch.int64 and tuple(item["mask"].shape) == (128, 128)
    assert set(torch.unique(item["mask"]).tolist()) <= {0, 1}

    again = CompositeTrainDataset(config, seed=7, assets=assets)[(3, 1)]
    for name in item:
        assert torch.equal(item[name], again[name]), name
    # item (index, epoch) is the first frame of the clip of seed (seed, epoch, index), on the training assets
    clip = dataset.generator.clip(np.random.default_rng([7, 1, 3]), 2)
    assert torch.equal(item["frame"], to_chw_tensor(normalize_image(clip.frames[0])))
    assert torch.equal(item["flow"], to_chw_tensor(normalize_image(clip.flow_images[0])))
    assert torch.equal(item["mask"], torch.from_numpy(clip.masks[0].astype(np.int64)))
    # another epoch, index or seed: another clip; a plain index is epoch 0
    assert not torch.equal(dataset[(3, 0)]["frame"], item["frame"])
    assert not torch.equal(dataset[(4, 1)]["frame"], item["frame"])
    assert not torch.equal(CompositeTrainDataset(config, seed=8, assets=assets)[(3, 1)]["frame"], item["frame"])
    assert torch.equal(dataset[3]["frame"], dataset[(3, 0)]["frame"])
    with pytest.raises(IndexError):
        dataset[(len(dataset), 0)]


def test_training_never_sees_the_held_out_assets(assets, config):
    held_out, training = assets.split(True), assets.split(False)
    for kind in ("photos", "shapes"):
        everything = {id(item) for item in getattr(assets, kind)}
        held = {id(item) for item in getattr(held_out, kind)}
        trained = {id(item) for item in getattr(training, kind)}
        assert held and trained, kind
        assert not held & trained, kind
        assert held | trained == everything, kind
        assert len(held) + len(trained) == len(everything), kind
        assert held == {id(item) for item in getattr(assets, kind)[9::10]}, kind  # every 10th
    dataset = CompositeTrainDataset(config, assets=assets)
    assert {id(p) for p in dataset.generator.assets.photos} == {id(p) for p in training.photos}
    assert {id(s) for s in dataset.generator.assets.shapes} == {id(s) for s in training.shapes}


def _validation_config(config: CompositeConfig, **changes) -> CompositeConfig:
    settings = dict(max_shapes=config.max_shapes, photo_dirs=config.photo_dirs, val_videos=2, val_frames=3)
    settings.update(changes)
    return CompositeConfig(**settings)


def test_validation_videos_are_written_once_in_the_flat_layout(tmp_path, assets, config):
    root = tmp_path / "composite_val"
    settings = _validation_config(config)
    assert write_validation_videos(root, settings, assets=assets, progress=False) == root
    samples = FlatLayout(root).samples("val")
    assert [(s.video, s.index) for s in samples] == [(v, i) for v in ("clip000", "clip001") for i in range(3)]
    for sample in samples:
        assert sample.frame.parent == root / "frame" / "val" and sample.flow.parent == root / "flow" / "val"
        assert sample.mask is not None and sample.mask.parent == root / "mask" / "val"
        assert read_image(sample.frame).shape == (144, 256, 3)  # val_size (h, w)
        assert read_image(sample.flow).shape == (144, 256, 3)
        mask = cv2.imread(str(sample.mask), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (144, 256) and set(np.unique(mask)) <= {0, 1}
    assert sum(cv2.imread(str(s.mask), cv2.IMREAD_UNCHANGED).any() for s in samples) >= 3

    # the same settings again: nothing is rewritten
    marker = samples[0].frame
    os.utime(marker, ns=(1_000_000_000, 1_000_000_000))
    stamps = {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    write_validation_videos(root, _validation_config(config), assets=assets, progress=False)
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()} == stamps

    # other settings: rewritten from scratch
    write_validation_videos(root, _validation_config(config, val_frames=2), assets=assets, progress=False)
    assert len(FlatLayout(root).samples("val")) == 4
    assert marker.stat().st_mtime_ns != 1_000_000_000
    os.utime(marker, ns=(1_000_000_000, 1_000_000_000))
    write_validation_videos(root, _validation_config(config, val_frames=2), seed=99, assets=assets, progress=False)
    assert marker.stat().st_mtime_ns != 1_000_000_000


def test_validation_videos_are_deterministic(tmp_path, assets, config):
    settings = _validation_config(config, val_videos=1, val_frames=2)
    first = write_validation_videos(tmp_path / "a", settings, assets=assets, progress=False)
    second = write_validation_videos(tmp_path / "b", settings, assets=assets, progress=False)
    names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_no_assets_is_an_error_naming_the_packages(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="openclipart-png") as raised:
        load_assets(CompositeConfig(photo_dirs=(str(empty),), shape_dirs=(str(empty),)), progress=False,
                    cache=False)
    assert "no photographs" in str(raised.value) and str(empty) in str(raised.value)
    assert "apt-get install" in str(raised.value)


def test_no_shapes_is_an_error_naming_the_packages(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "one.png"), np.zeros((8, 8, 3), np.uint8))  # listed only: never decoded
    shapes = tmp_path / "shapes"
    shapes.mkdir()
    with pytest.raises(FileNotFoundError, match="no shapes with alpha found in .*openclipart-png"):
        load_assets(CompositeConfig(photo_dirs=(str(photos),), shape_dirs=(str(shapes),)), progress=False,
                    cache=False)


def test_asset_cache_from_another_package_layout_is_rebuilt(tmp_path, monkeypatch):
    """A cache pickled when the classes lived elsewhere (hfan.data before the move) is decoded again, not a
    ModuleNotFoundError; the rewritten cache holds plain data and gives the same assets."""
    photos, shapes = tmp_path / "photos", tmp_path / "shapes"
    photos.mkdir(), shapes.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(photos / "noise.png"), rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    disc = np.zeros((64, 64, 4), np.uint8)
    cv2.circle(disc, (32, 32), 24, (40, 90, 200, 255), -1)
    cv2.imwrite(str(shapes / "disc.png"), disc)
    monkeypatch.setenv("HFAN_HOME", str(tmp_path / "home"))
    config = CompositeConfig(photo_dirs=(str(photos),), shape_dirs=(str(shapes),))
    fresh = load_assets(config, progress=False)
    (cache_file,) = (tmp_path / "home" / "composite_assets").glob("assets-*.pkl")
    # What an older layout wrote: a pickle naming a module that no longer exists.
    cache_file.write_bytes(b"chfan.data\nAssets\n.")
    rebuilt = load_assets(config, progress=False)
    assert len(rebuilt.photos) == len(fresh.photos) == 1 and len(rebuilt.shapes) == len(fresh.shapes) == 1
    assert np.array_equal(rebuilt.photos[0], fresh.photos[0]) and np.array_equal(rebuilt.shapes[0], fresh.shapes[0])
    with open(cache_file, "rb") as handle:
        assert type(pickle.load(handle)) is dict
    cached = load_assets(config, progress=False)
    assert np.array_equal(cached.shapes[0], fresh.shapes[0])


@pytest.mark.parametrize("kind", ["shadow", "reflection"])
def test_a_shadow_or_reflection_of_the_primary_object_is_drawn_and_labelled_background(kind, assets, config,
                                                                                        monkeypatch):
    """The same clips with the attached effect drawn and not drawn (its draw a no-op): identical masks (the effect
    is background), frames that differ over part of the image, a shadow only darker."""
    generator = CompositeGenerator(assets, _with(config, secondary_probability=0.0,
                                                 **{f"{kind}_probability": 1.0}))
    drawn = 0
    for seed in range(5):
        layers, _ = generator._layers(_rng(seed), 128, 128)
        [primary] = [layer for layer in layers if layer.primary]
        assert primary.attached is not None and primary.attached.kind == kind
        frames, masks, _ = generator.render(_rng(seed), 3, 128, 128)
        with monkeypatch.context() as patch:
            patch.setattr(_Attached, "draw", lambda *args: None)
            plain_frames, plain_masks, _ = generator.render(_rng(seed), 3, 128, 128)
        np.testing.assert_array_equal(masks, plain_masks)
        change = frames.astype(int).sum(-1) - plain_frames.astype(int).sum(-1)
        effect = np.abs(change) > 30
        if effect.mean() > 0.005:
            drawn += 1
            if kind == "shadow":
                assert change[effect].mean() < -30 and (change[effect] < 0).mean() > 0.9
    assert drawn >= 4


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_texture_probability_sets_how_many_objects_get_a_photo_texture(assets, config, probability):
    """Every object (primary, distractors) is drawn by `_shape`; it fills the outline with a photo crop as often as
    data.composites.texture_probability says: never at 0, always at 1."""
    generator = CompositeGenerator(assets, _with(config, texture_probability=probability))
    draw_shape, photo_crop = generator._shape, generator._photo_crop
    shapes, crops_in_shapes, inside = [], [], []

    def counting_shape(*args, **kwargs):
        shapes.append(1)
        inside.append(1)
        try:
            return draw_shape(*args, **kwargs)
        finally:
            inside.pop()

    def counting_crop(*args, **kwargs):
        if inside:
            crops_in_shapes.append(1)
        return photo_crop(*args, **kwargs)

    generator._shape, generator._photo_crop = counting_shape, counting_crop
    for seed in range(4):
        generator.clip(_rng(seed), 3)
    assert len(shapes) >= 4  # a primary object per clip at least
    assert len(crops_in_shapes) == (len(shapes) if probability == 1.0 else 0)
