"""read_image (Pillow) decodes real DAVIS JPEGs to the pixels OpenCV gives (cv2.imread + BGR->RGB, what the
original's mmcv loader reads): training, prepare and inference all read frames through read_image."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from helpers.shared import shared_path
from hfan.io.images import read_image

SEQUENCES = ("blackswan", "car-shadow", "libby")  # davis16_mini


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_read_image_equals_opencv_on_davis_jpegs(sequence):
    folder = shared_path(f"data/davis16_mini/JPEGImages/480p/{sequence}")
    files = sorted(folder.glob("*.jpg"))
    assert len(files) >= 3
    for path in (files[0], files[len(files) // 2], files[-1]):  # a few per sequence
        ours = read_image(path)
        expected = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert ours.dtype == np.uint8 and ours.shape == expected.shape == (480, 854, 3), path
        assert np.array_equal(ours, expected), f"{path}: max difference {np.abs(ours.astype(int) - expected).max()}"
