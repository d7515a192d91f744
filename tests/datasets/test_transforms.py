import cv2
import numpy as np
import pytest
import torch
from helpers.scripted_rng import ScriptedRng

from hfan.preprocess import normalize_batch, normalize_image, to_chw_tensor
from hfan.config import AugmentConfig
from hfan.datasets.transforms import (TrainTransform, choose_crop_box, draw_scale_box, photometric_distortion, resize_keep_ratio)
from hfan.preprocess import rescale_size


def _random_inputs(height, width, seed=0):
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    flow = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4: 3 * height // 4, width // 5: width // 2] = 1  # off-centre: flips are visible
    return frame, flow, mask


# --- resize -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width, height, box, expected", [
    (854, 480, (2048, 512), (911, 512)),  # DAVIS at ratio 1: the short side binds (SPEC §7: 911x512)
    (854, 480, (1024, 256), (455, 256)),  # ratio 0.5: 854 * 0.5333 = 455.47 -> 455
    (100, 4000, (2048, 512), (51, 2048)),  # very tall: the long side binds, 100 * 0.512 + 0.5 -> 51
    (640, 512, (3000, 750), (938, 750)),  # 640 * 1.4648 = 937.5 -> rounds half up to 938
])
def test_rescale_size_follows_mmcv(width, height, box, expected):
    assert rescale_size(width, height, box) == expected


def test_scale_box_is_the_truncated_ratio_times_the_base():
    for seed in range(20):
        ratio = np.random.default_rng(seed).random() * 1.5 + 0.5
        box = draw_scale_box(np.random.default_rng(seed), (2048, 512), (0.5, 2.0))
        assert box == (int(2048 * ratio), int(512 * ratio))
        assert 1024 <= box[0] <= 4096 and 256 <= box[1] <= 1024


def test_resize_uses_the_six_channel_bilinear_and_nearest_mask():
    frame, flow, mask = _random_inputs(480, 854)
    out_frame, out_flow, out_mask = resize_keep_ratio(frame, flow, mask, (1024, 240))  # exactly half size
    assert out_frame.shape == out_flow.shape == (240, 427, 3) and out_mask.shape == (240, 427)
    joint = cv2.resize(np.concatenate([frame, flow], axis=2), (427, 240), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out_frame, joint[..., :3])
    np.testing.assert_array_equal(out_flow, joint[..., 3:])
    np.testing.assert_array_equal(out_mask, mask[::2, ::2])  # nearest: no new values, no blending


# --- crop ---------------------------------------------------------------------------------------------

def _striped_mask():
    """4x12 mask: window x=0 (cols 0-3) all background; x=4: half foreground; x=5: 75 % foreground."""
    mask = np.zeros((4, 12), np.uint8)
    mask[:, 6:] = 1
    return mask


def test_crop_takes_the_first_window_that_satisfies_the_ratio():
    # each window is drawn as (offset_h, offset_w); offset_h is always 0 since the heights are equal
    rng = ScriptedRng([0, 0, 0, 5, 0, 4, 0, 1])
    box = choose_crop_box(_striped_mask(), (4, 4), rng, 0.75, 255)
    assert box == (0, 4, 4, 8)  # x=0: one class; x=5: 3/4 is not < 0.75; x=4: 1/2 accepted
    assert rng.values == [0, 1]  # no further draw after acceptance


def test_crop_excludes_the_ignore_index_from_the_count():
    mask = np.zeros((4, 4), np.uint8)
    mask[:, 2:] = 255  # background + ignore: one labelled class only -> rejected
    rng = ScriptedRng([0, 0] * 11)
    choose_crop_box(mask, (4, 4), rng, 0.75, 255)
    assert rng.values == []  # all 10 checks failed, then the 11th window was drawn
    mask[:, 3] = 1  # background 2, foreground 1, ignore 1 -> 2/3 < 0.75 accepted
    rng = ScriptedRng([0, 0, 0, 0])
    choose_crop_box(mask, (4, 4), rng, 0.75, 255)
    assert rng.values == [0, 0]


def test_crop_uses_the_eleventh_window_unchecked_when_all_ten_fail():
    rng = ScriptedRng([0, 0] * 10 + [0, 1])
    assert choose_crop_box(_striped_mask(), (4, 4), rng, 0.75, 255) == (0, 4, 1, 5)  # single-class, kept
    assert rng.values == []


def test_crop_without_ratio_rule_draws_once_and_keeps_short_sides_whole():
    rng = ScriptedRng([0, 3])
    assert choose_crop_box(np.zeros((3, 10), np.uint8), (4, 4), rng, 1.0, 255) == (0, 4, 3, 7)
    assert rng.values == []


def test_crops_of_a_real_generator_respect_the_ratio():
    mask = np.zeros((512, 1200), np.uint8)
    mask[:, 500:650] = 1  # about 59 % of the window positions are balanced enough
    for seed in range(20):
        box = choose_crop_box(mask, (512, 512), np.random.default_rng(seed), 0.75, 255)
        window = mask[box[0]:box[1], box[2]:box[3]]
        assert 0.25 < window.mean() < 0.75, seed


# --- photometric distortion ---------------------------------------------------------------------------

def test_brightness_then_contrast_truncate_and_clip_after_each_step():
    image = np.array([[[0, 100, 200]]], np.uint8)
    # brightness on +10.7; mode 1 (contrast first) on x1.49; saturation off; hue off
    rng = ScriptedRng([1, 10.7, 1, 1, 1.49, 0, 0])
    out = photometric_distortion(image, rng, AugmentConfig())
    np.testing.assert_array_equal(out, [[[14, 163, 255]]])  # 10->14.9->14, 110->163.9->163, 210->312.9->255
    assert rng.values == []


def test_contrast_comes_last_in_mode_zero():
    image = np.array([[[100, 100, 100]]], np.uint8)
    # brightness off; mode 0; saturation off; hue off; contrast (last) on x0.5
    rng = ScriptedRng([0, 0, 0, 0, 1, 0.5])
    np.testing.assert_array_equal(photometric_distortion(image, rng, AugmentConfig()), [[[50, 50, 50]]])
    assert rng.values == []


def test_hue_and_saturation_act_on_rgb_as_the_original_on_bgr():
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255  # RGB red; read as BGR it would be blue and turn magenta, not yellow
    # brightness off; mode 1, contrast off; saturation off; hue +30 (60 degrees: red -> yellow)
    rng = ScriptedRng([0, 1, 0, 0, 1, 30])
    np.testing.assert_array_equal(photometric_distortion(red, rng, AugmentConfig(hue_delta=60))[0, 0],
                                  [255, 255, 0])
    # saturation x0.5 (127 after truncation): red -> (255, 128, 128)
    rng = ScriptedRng([0, 1, 0, 1, 0.5, 0])
    np.testing.assert_array_equal(photometric_distortion(red, rng, AugmentConfig())[0, 0], [255, 128, 128])


def test_hue_shift_stays_in_the_original_range():
    image = np.zeros((1, 1, 3), np.uint8)
    rng = ScriptedRng([0, 1, 0, 0, 1, 18])
    with pytest.raises(AssertionError):  # numpy randint(-18, 18) never gives 18
        photometric_distortion(image, rng, AugmentConfig())


# --- the whole pipeline -------------------------------------------------------------------------------

def test_output_shapes_dtypes_and_padding():
    frame, flow, mask = _random_inputs(480, 854)
    cfg = AugmentConfig(ratio_range=(0.5, 0.5))  # 854x480 -> 455x256, smaller than the crop
    out_frame, out_flow, out_mask = TrainTransform(cfg)(frame, flow, mask, np.random.default_rng(0))
    assert out_frame.shape == out_flow.shape == (3, 512, 512)
    assert out_frame.dtype == out_flow.dtype == torch.float32
    assert out_mask.shape == (512, 512) and out_mask.dtype == torch.int64
    for padded in (out_frame[:, 256:], out_frame[:, :, 455:], out_flow[:, 256:], out_mask[256:], out_mask[:, 455:]):
        assert torch.all(padded == 0)
    assert set(out_mask[:256, :455].unique().tolist()) == {0, 1}
    assert (out_frame[:, :256, :455] != 0).float().mean() > 0.99  # the image itself is not blank

    for seed in range(3):
        outputs = TrainTransform()(frame, flow, mask, np.random.default_rng(seed))
        assert [tuple(o.shape) for o in outputs] == [(3, 512, 512), (3, 512, 512), (512, 512)]


def test_flip_applies_to_frame_flow_and_mask_together():
    frame, flow, mask = _random_inputs(512, 640)
    for seed in range(3):  # ratio >= 1: the crop is full-size, no padding to break the mirror
        kept = TrainTransform(AugmentConfig(ratio_range=(1.0, 2.0), flip_prob=0.0))(
            frame, flow, mask, np.random.default_rng(seed))
        flipped = TrainTransform(AugmentConfig(ratio_range=(1.0, 2.0), flip_prob=1.0))(
            frame, flow, mask, np.random.default_rng(seed))
        for a, b in zip(kept, flipped):
            assert not torch.equal(a, b)
            assert torch.equal(torch.flip(a, dims=[-1]), b)


def test_photometric_draws_differ_between_frame_and_flow():
    frame, _, mask = _random_inputs(480, 854)
    plain = TrainTransform(AugmentConfig(photometric=False))(frame, frame.copy(), mask, np.random.default_rng(1))
    assert torch.equal(plain[0], plain[1])  # same input, no distortion: same output
    differing = 0
    for seed in range(6):
        out_frame, out_flow, _ = TrainTransform()(frame, frame.copy(), mask, np.random.default_rng(seed))
        differing += not torch.equal(out_frame, out_flow)
    assert differing == 6


def test_seeded_generator_makes_it_deterministic():
    frame, flow, mask = _random_inputs(480, 854)
    first = TrainTransform()(frame, flow, mask, np.random.default_rng(7))
    again = TrainTransform()(frame, flow, mask, np.random.default_rng(7))
    other = TrainTransform()(frame, flow, mask, np.random.default_rng(8))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_bad_inputs_are_named():
    frame, flow, mask = _random_inputs(48, 64)
    with pytest.raises(ValueError, match="differ in size"):
        TrainTransform()(frame, flow[:40], mask, np.random.default_rng(0))
    with pytest.raises(ValueError, match="mask must be uint8"):
        TrainTransform()(frame, flow, mask.astype(np.int64), np.random.default_rng(0))


# --- normalisation ------------------------------------------------------------------------------------

def test_normalisation_matches_mmcv_bit_for_bit():
    values = np.arange(256, dtype=np.uint8)
    rgb = np.stack([values, values[::-1], values], axis=-1)[None]
    # mmcv.imnormalize(bgr, mean, std, to_rgb=True): BGR->RGB, then cv2.subtract / cv2.multiply in place
    expected = cv2.cvtColor(rgb[..., ::-1].copy(), cv2.COLOR_BGR2RGB).astype(np.float32)
    mean = np.float64(np.array([123.675, 116.28, 103.53], np.float32).reshape(1, -1))
    std = np.float64(np.array([58.395, 57.12, 57.375], np.float32).reshape(1, -1))
    cv2.subtract(expected, mean, expected)
    cv2.multiply(expected, 1 / std, expected)
    np.testing.assert_array_equal(normalize_image(rgb), expected)


def test_batch_normalisation_in_torch_has_the_same_bits():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 17, 29, 3), dtype=np.uint8)
    images[0, 0, :3] = [[0, 0, 0], [255, 255, 255], [124, 116, 104]]  # both ends, and next to the means
    batch = normalize_batch(images)
    assert batch.shape == (3, 3, 17, 29) and batch.dtype == torch.float32 and batch.is_contiguous()
    expected = np.stack([to_chw_tensor(normalize_image(image)).numpy() for image in images])
    np.testing.assert_array_equal(batch.numpy(), expected)
    with pytest.raises(ValueError, match="NxHxWx3 uint8"):
        normalize_batch(images.astype(np.float32))


def test_normalisation_uses_imagenet_statistics_in_rgb_order():
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    tensor = to_chw_tensor(normalize_image(red))
    assert tensor.shape == (3, 1, 1) and tensor.dtype == torch.float32
    np.testing.assert_allclose(tensor[:, 0, 0].numpy(), [2.2489083, -2.0357144, -1.8044444], rtol=1e-6)
