import cv2
import numpy as np
import pytest
import torch
from torchvision.utils import flow_to_image as torchvision_flow_to_image

from helpers.shared import shared_path
from hfan.io.images import read_image
from hfan.flow import build_flow_estimator
from hfan.flow.encoding import flow_to_hfan_image, flow_to_image, flow_uv_to_colors, flows_to_images, make_colorwheel


def _field(*vectors):
    return np.array([vectors], np.float32)  # 1 x N x 2


def _raft_flow_uv_to_colors(u, v):
    """RAFT's core/utils/flow_viz.py `flow_uv_to_colors` (convert_to_bgr=False), verbatim but for names."""
    flow_image = np.zeros((u.shape[0], u.shape[1], 3), np.uint8)
    colorwheel = make_colorwheel()
    ncols = colorwheel.shape[0]
    rad = np.sqrt(np.square(u) + np.square(v))
    a = np.arctan2(-v, -u) / np.pi
    fk = (a + 1) / 2 * (ncols - 1)
    k0 = np.floor(fk).astype(np.int32)
    k1 = k0 + 1
    k1[k1 == ncols] = 0
    f = fk - k0
    for i in range(colorwheel.shape[1]):
        tmp = colorwheel[:, i]
        col0 = tmp[k0] / 255.0
        col1 = tmp[k1] / 255.0
        col = (1 - f) * col0 + f * col1
        idx = rad <= 1
        col[idx] = 1 - rad[idx] * (1 - col[idx])
        col[~idx] = col[~idx] * 0.75
        flow_image[:, :, i] = np.floor(255 * col)
    return flow_image


@pytest.mark.parametrize("scale", [0.0, 1e-3, 0.3, 1.0, 3.0])
def test_colours_are_rafts_byte_for_byte(scale):
    # Normalised flow (as flow_to_image gives it), exact wheel rows, and magnitudes past 1 (RAFT's darkening).
    rng = np.random.default_rng(int(scale * 10))
    u, v = (rng.normal(size=(2, 96, 160)) * scale).astype(np.float32)
    u[0, :8], v[0, :8] = np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)  # wheel edges
    ours = flow_uv_to_colors(u, v)
    assert ours.dtype == np.uint8 and ours.shape == (96, 160, 3)
    np.testing.assert_array_equal(ours, _raft_flow_uv_to_colors(u, v))
    flow = np.stack([u, v], axis=2) * 7
    largest = np.max(np.sqrt(np.square(flow[..., 0]) + np.square(flow[..., 1])))
    np.testing.assert_array_equal(flow_to_image(flow), _raft_flow_uv_to_colors(flow[..., 0] / (largest + 1e-5),
                                                                               flow[..., 1] / (largest + 1e-5)))


def test_colorwheel_primaries_at_raft_positions():
    wheel = make_colorwheel()
    assert wheel.shape == (55, 3)
    # Row offsets RY=15, YG=6, GC=4, CB=11, BM=13, MR=6: red, yellow, green, cyan, blue, magenta start there.
    starts = {0: (255, 0, 0), 15: (255, 255, 0), 21: (0, 255, 0), 25: (0, 255, 255), 36: (0, 0, 255),
              49: (255, 0, 255)}
    for row, colour in starts.items():
        assert tuple(wheel[row]) == colour


def test_directions_map_to_expected_colours():
    # Unit vectors right, down, left, up (image coordinates): wheel rows 0, 13.5, 27, 40.5, worked out by hand
    # from RAFT's formula fk = (atan2(-v, -u) / pi + 1) / 2 * 54.
    image = flow_to_image(_field((1, 0), (0, 1), (-1, 0), (0, -1)))
    assert image.dtype == np.uint8 and image.shape == (1, 4, 3)
    assert tuple(image[0, 0]) == (255, 0, 0)  # right: red
    assert tuple(image[0, 1]) == (255, 229, 0)  # down: yellow, between rows 13 (255,221,0) and 14 (255,238,0)
    assert tuple(image[0, 2]) == (0, 209, 255)  # left: cyan-blue, row 27
    assert tuple(image[0, 3]) == (88, 0, 255)  # up: blue-violet, between rows 40 (78,0,255) and 41 (98,0,255)


def test_zero_flow_is_white_and_saturation_follows_magnitude():
    assert (flow_to_image(np.zeros((5, 7, 2), np.float32)) == 255).all()
    image = flow_to_image(_field((0, 0), (1, 0), (0.5, 0)))
    assert tuple(image[0, 0]) == (255, 255, 255)
    assert tuple(image[0, 2]) == (255, 127, 127)  # half the largest magnitude: half-way from white to red


def test_each_image_of_a_batch_is_normalised_on_its_own():
    rng = np.random.default_rng(0)
    pattern = rng.normal(size=(24, 32, 2)).astype(np.float32)
    small, large = 0.05 * pattern, 20 * pattern
    ours = flows_to_images(np.stack([small, large]))
    # Both reach full saturation: the same directions give the same image whatever the scale (up to the
    # 1e-5 epsilon's rounding).
    assert np.abs(ours[0].astype(int) - ours[1]).max() <= 1
    assert ours[0].min() == 0
    # torchvision normalises by the batch's largest magnitude: the small flow comes out almost white.
    batch = torchvision_flow_to_image(torch.from_numpy(np.stack([small, large])).permute(0, 3, 1, 2))
    assert batch[0].min() > 200


def test_agrees_with_torchvision_on_single_images():
    # torchvision implements the same wheel independently (float32, another epsilon): at most 1 level apart.
    rng = np.random.default_rng(1)
    flow = (rng.normal(size=(48, 64, 2)) * 4).astype(np.float32)
    theirs = torchvision_flow_to_image(torch.from_numpy(flow).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    difference = np.abs(flow_to_image(flow).astype(int) - theirs)
    assert difference.max() <= 1
    assert (difference == 0).mean() > 0.99


def test_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="HxWx2"):
        flow_to_image(np.zeros((4, 4, 3), np.float32))


def _hue_and_saturation(image):
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.float64)
    return hsv[..., 0] * 360 / 256, hsv[..., 1] / 255


@pytest.mark.parametrize("video", ["blackswan", "libby"])
def test_hfan_flow_files_hold_raft_colours_with_red_and_blue_swapped(video):
    # HFAN's own flow image of frame 0 (RAFT, 0 -> 1) against DIS on the same DAVIS frames: the directions agree
    # once red and blue are swapped, and are far apart in RAFT's channel order.
    hfan = read_image(shared_path(f"data/hfan_demo/{video}_00000_fw.jpg"))
    frames = [read_image(shared_path(f"data/davis16_mini/JPEGImages/480p/{video}/{i:05d}.jpg")) for i in (0, 1)]
    flow = build_flow_estimator("dis", preset="fast")(*frames)
    hfan_hue, hfan_saturation = _hue_and_saturation(hfan)
    for image, agrees in ((flow_to_hfan_image(flow), True), (flow_to_image(flow), False)):
        hue, saturation = _hue_and_saturation(image)
        coloured = (hfan_saturation > 0.2) & (saturation > 0.2)  # direction is defined where there is colour
        difference = np.abs((hue - hfan_hue + 180) % 360 - 180)[coloured]
        if agrees:
            assert np.median(difference) < 5 and (difference < 20).mean() > 0.85  # measured 0-1.4 deg, 0.94-0.98
        else:
            assert np.median(difference) > 90  # measured 125-153 deg
