"""read_image turns every pixel format into the RGB uint8 frame OpenCV's imread gives (the original's loader):
16-bit images by their high byte (65535 -> 255, never clipped to white), palette, CMYK, grey+alpha, RGBA, 1-bit
and grey images through their colours; 32-bit integer and float images are refused with an error naming the
file, and a frame folder holding one fails when it is opened. Real files, written here. Issue 13."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from hfan.io.images import read_image
from hfan.io.video import open_frames

RNG = np.random.default_rng(13)


def _imread_rgb(path) -> np.ndarray:
    """What the original's mmcv loader reads: cv2.imread (8-bit colour), BGR -> RGB."""
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _png16(path, array: np.ndarray, colour_type: int):
    """A 16-bit PNG written byte by byte (for grey+alpha, which neither OpenCV nor Pillow writes at 16 bits)."""
    height, width = array.shape[:2]
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


# ------------------------------------------------------------------------------------------- 16 bits
def test_16_bit_grey_png_is_shifted_not_white(tmp_path):
    grey = RNG.integers(0, 65536, (6, 7), np.uint16)
    grey[0, :3] = (0, 255, 65535)
    path = tmp_path / "grey16.png"
    assert cv2.imwrite(str(path), grey)
    assert Image.open(path).mode in ("I;16", "I")  # really a 16-bit file
    ours = read_image(path)
    expected = np.repeat((grey >> 8).astype(np.uint8)[..., None], 3, axis=2)
    np.testing.assert_array_equal(ours, expected)
    assert ours[0, :3, 0].tolist() == [0, 0, 255]  # 65535 -> 255, 255 -> 0
    np.testing.assert_array_equal(ours, _imread_rgb(path))


def test_16_bit_grey_png_read_as_mode_i_by_older_pillow(tmp_path, monkeypatch):
    grey = RNG.integers(0, 65536, (4, 5), np.uint16)
    path = tmp_path / "grey16.png"
    cv2.imwrite(str(path), grey)
    monkeypatch.setitem(PngImagePlugin._MODES, (16, 0), ("I", "I;16B"))  # Pillow < 10.3 opened it as int32
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(read_image(path)[..., 0], (grey >> 8).astype(np.uint8))


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_png_keeps_its_high_byte(tmp_path, channels):
    bgr = RNG.integers(0, 65536, (5, 6, channels), np.uint16)
    bgr[0, 0, :3] = (65535, 256, 255)
    path = tmp_path / f"colour16_{channels}.png"
    assert cv2.imwrite(str(path), bgr)
    ours = read_image(path)
    rgb = bgr[..., 2::-1]  # alpha dropped, as imread drops it
    np.testing.assert_array_equal(ours, (rgb >> 8).astype(np.uint8))
    assert ours[0, 0].tolist() == [0, 1, 255]
    np.testing.assert_array_equal(ours, _imread_rgb(path))


def test_16_bit_grey_alpha_png(tmp_path):
    grey_alpha = RNG.integers(0, 65536, (4, 5, 2), np.uint16)
    path = _png16(tmp_path / "la16.png", grey_alpha, colour_type=4)
    expected = np.repeat((grey_alpha[..., :1] >> 8).astype(np.uint8), 3, axis=2)
    np.testing.assert_array_equal(read_image(path), expected)
    np.testing.assert_array_equal(read_image(path), _imread_rgb(path))


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 3)])
def test_16_bit_tiff(tmp_path, shape):
    pixels = RNG.integers(0, 65536, shape, np.uint16)
    path = tmp_path / "frame16.tif"
    assert cv2.imwrite(str(path), pixels)
    rgb = pixels[..., ::-1] if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
    np.testing.assert_array_equal(read_image(path), (rgb >> 8).astype(np.uint8))


# ------------------------------------------------------------------------------------------- 8-bit modes
def test_palette_grey_alpha_rgba_one_bit_and_grey_become_the_right_rgb(tmp_path):
    palette = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    palette.save(tmp_path / "palette.png")
    palette.save(tmp_path / "palette_transparent.png", transparency=1)
    Image.fromarray(np.dstack([np.full((2, 2), 100, np.uint8), np.full((2, 2), 7, np.uint8)]), mode="LA").save(
        tmp_path / "la.png")
    Image.new("RGBA", (2, 2), (10, 20, 30, 0)).save(tmp_path / "rgba.png")  # fully transparent: colour kept
    Image.fromarray(np.array([[True, False], [False, True]])).save(tmp_path / "one_bit.png")
    Image.fromarray(np.array([[0, 77], [128, 255]], np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.array([[0, 77], [128, 255]], np.uint8)).save(tmp_path / "grey.bmp")
    expected = {
        "palette.png": [[[0, 0, 0], [255, 0, 0]], [[0, 255, 0], [255, 0, 0]]],
        "palette_transparent.png": [[[0, 0, 0], [255, 0, 0]], [[0, 255, 0], [255, 0, 0]]],
        "la.png": [[[100] * 3] * 2] * 2,
        "rgba.png": [[[10, 20, 30]] * 2] * 2,
        "one_bit.png": [[[255] * 3, [0] * 3], [[0] * 3, [255] * 3]],
        "grey.png": [[[0] * 3, [77] * 3], [[128] * 3, [255] * 3]],
        "grey.bmp": [[[0] * 3, [77] * 3], [[128] * 3, [255] * 3]],
    }
    assert {Image.open(tmp_path / name).mode for name in expected} == {"P", "LA", "RGBA", "1", "L"}
    for name, rgb in expected.items():
        ours = read_image(tmp_path / name)
        assert ours.dtype == np.uint8 and ours.shape == (2, 2, 3), name
        assert ours.tolist() == rgb, name
        np.testing.assert_array_equal(ours, _imread_rgb(tmp_path / name), err_msg=name)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path, quality=100)  # no cyan, full magenta + yellow: red
    assert Image.open(path).mode == "CMYK"
    ours = read_image(path)
    assert ours.shape == (8, 8, 3)
    assert np.abs(ours.astype(int) - [255, 0, 0]).max() <= 2
    assert np.abs(ours.astype(int) - _imread_rgb(path)).max() <= 2  # libjpeg's CMYK conversion rounds apart


# ------------------------------------------------------------------------------------------- refused
def test_32_bit_integer_and_float_images_are_refused_naming_the_file(tmp_path):
    Image.fromarray(RNG.integers(0, 2**20, (4, 5)).astype(np.int32)).save(tmp_path / "depth32.tif")
    Image.fromarray(RNG.random((4, 5)).astype(np.float32)).save(tmp_path / "float.tif")
    assert (Image.open(tmp_path / "depth32.tif").mode, Image.open(tmp_path / "float.tif").mode) == ("I", "F")
    with pytest.raises(ValueError, match=r"depth32\.tif: 32-bit integer pixels \(Pillow mode I\)"):
        read_image(tmp_path / "depth32.tif")
    with pytest.raises(ValueError, match=r"float\.tif: 32-bit float pixels \(Pillow mode F\)"):
        read_image(tmp_path / "float.tif")


def test_frame_folder_with_a_float_frame_fails_at_open(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(RNG.integers(0, 256, (4, 5, 3), np.uint8)).save(folder / f"{index:05d}.tif")
    Image.fromarray(RNG.random((4, 5)).astype(np.float32)).save(folder / "00003.tif")
    with pytest.raises(ValueError, match=r"00003\.tif: 32-bit float pixels"):
        open_frames(folder)  # before any frame is read


def test_frame_folder_of_16_bit_pngs_goes_through_read_image(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = [RNG.integers(0, 65536, (4, 5, 3), np.uint16) for _ in range(3)]
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{index:05d}.png"), frame)
    decoded = list(open_frames(folder))
    for frame, ours in zip(frames, decoded):
        np.testing.assert_array_equal(ours, (frame[..., ::-1] >> 8).astype(np.uint8))


def test_truncated_16_bit_png_is_an_error(tmp_path):
    path = tmp_path / "grey16.png"
    cv2.imwrite(str(path), RNG.integers(0, 65536, (64, 64), np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"grey16\.png: not a readable image"):
        read_image(path)
