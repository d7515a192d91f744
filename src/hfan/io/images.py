"""The project's one set of image, mask and overlay readers and writers.

Reading: frames and flow images with Pillow, which raises on a truncated file where OpenCV returns a half-grey
image. Its JPEG decoding is libjpeg-turbo's, as OpenCV's (the original's mmcv loader) is: the same pixels on
DAVIS (tests/io/test_read_image.py checks that). Every pixel format becomes RGB uint8 as OpenCV's `imread`
makes it: 1-bit, grey, grey+alpha, palette, RGB(A) and CMYK through Pillow's RGB conversion (alpha dropped);
16-bit images by their high byte (value >> 8): Pillow reads 16-bit RGB(A) PNGs that way itself and keeps 16-bit
grey as mode I;16, which is shifted here (Pillow's own conversion of I;16 clips it to white). 32-bit integer
(I) and float (F) images have no agreed 8-bit meaning and are refused (tests/io/test_image_modes.py). Frame
folders are checked with `check_frame_image` (header only) before any frame is read.
Masks: `read_mask` (any non-zero pixel is foreground), `read_class_ids` (the training layout's 0/1 ids),
`read_gray` (8-bit saliency maps).

Writing: `write_image` encodes in memory and writes the bytes through `hfan.files.atomic_path`, so that a full
disk is an error (OpenCV's `imwrite` only returns False) and a file with its final name is always complete.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from hfan.files import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
JPEG_QUALITY = 95  # HFAN's own flow and frame JPEGs use IJG quality 95, 4:2:0 (their quantisation tables)


_RGB_CONVERTIBLE = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")
_SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I;16N")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_BIT_DEPTH = 24  # byte offsets in the IHDR chunk that every PNG starts with: bit depth,
_PNG_COLOUR_TYPE = 25  # colour type
_PNG_PALETTE = 3
_PNG_WITH_ALPHA = (4, 6)


def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as stream:
        head = stream.read(_PNG_BIT_DEPTH + 1)
    return head[_PNG_BIT_DEPTH] if head[:8] == _PNG_SIGNATURE and len(head) > _PNG_BIT_DEPTH else None


def _is_sixteen_bit_grey(path: Path, mode: str) -> bool:
    # Pillow before 10.3 opened 16-bit grey PNGs as 32-bit mode I; the PNG header says what they hold
    return mode in _SIXTEEN_BIT_GREY or (mode == "I" and _png_bit_depth(path) == 16)


def _check_mode(path: Path, mode: str) -> None:
    if mode in _RGB_CONVERTIBLE or _is_sixteen_bit_grey(path, mode):
        return
    kinds = {"I": "32-bit integer", "F": "32-bit float"}
    kind = kinds.get(mode, "an unsupported pixel format")
    raise ValueError(f"{path}: {kind} pixels (Pillow mode {mode}): hfan reads 8-bit and 16-bit images; "
                     f"convert it to 8-bit RGB or grey first")


def check_frame_image(path: Path) -> tuple[int, int]:
    """(width, height) of a frame file from its header, which must be readable and of a pixel format that
    `read_image` converts (so that a frame folder fails before any work starts)."""
    try:
        with Image.open(path) as image:
            size, mode = image.size, image.mode
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from None
    _check_mode(path, mode)
    return size


def _to_rgb(path: Path, image: Image.Image) -> np.ndarray:
    _check_mode(path, image.mode)
    if _is_sixteen_bit_grey(path, image.mode):
        grey = (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8)  # 65535 -> 255, as imread does
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 HxWx3; a missing, corrupt or truncated file, or an unsupported pixel format (32-bit integer or
    float), is one error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(path, image)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from None


def open_image(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError) as error:
        raise ValueError(f"cannot read {path}: {error}") from error
    return image


def read_mask(path: str | Path) -> np.ndarray:
    """A mask PNG as a bool array: 0/1, 0/255, soft 8-bit or palette images; any non-zero pixel is foreground.

    Palette images are read as their indices (index 0 is background), never through their colours.
    Colour images count a pixel as foreground when any colour channel is non-zero (alpha is ignored).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    data = path.read_bytes()
    colour_type = data[_PNG_COLOUR_TYPE] if data[:8] == _PNG_SIGNATURE and len(data) > _PNG_COLOUR_TYPE else None
    if colour_type is not None and colour_type != _PNG_PALETTE:
        # OpenCV decodes PNG faster than Pillow (docs/speed.md); Pillow keeps the palette case (indices, not
        # colours).
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise ValueError(f"cannot read {path}: not a valid PNG")
        has_alpha = colour_type in _PNG_WITH_ALPHA
    else:
        image = open_image(path)
        array, has_alpha = np.asarray(image), image.mode in ("RGBA", "LA", "PA")
    if array.ndim == 2:
        return array != 0
    colours = array[..., :-1] if has_alpha else array
    return colours.any(axis=2)


def read_class_ids(path: Path, ignore_index: int = 255) -> np.ndarray:
    """Class-id mask, uint8 (H, W), values 0/1 (ignore_index allowed)."""
    try:
        with Image.open(path) as image:
            mask = np.array(image)
    except OSError as error:
        raise ValueError(f"cannot read mask {path}: {error}") from None
    if mask.ndim != 2:
        raise ValueError(f"mask {path} has shape {mask.shape}; expected one channel of class ids 0/1")
    mask = mask.astype(np.uint8)
    if mask.max() > 1:
        values = set(np.unique(mask).tolist())
        if values - {0, 1, ignore_index}:
            raise ValueError(f"mask {path} holds values {sorted(values)}; expected class ids 0/1 "
                             f"({ignore_index} = ignore)")
        if 1 not in values:
            # 0/255 annotations (DAVIS `Annotations`) would silently train on 'ignore' instead of foreground
            raise ValueError(f"mask {path} holds only 0 and {ignore_index}: it looks like a 0/255 annotation; "
                             f"the flat layout wants 0/1 masks (write them with `hfan prepare`)")
    return mask


def read_gray(path: str | Path) -> np.ndarray:
    """An 8-bit saliency map as uint8; colour maps give their first (red) channel, as the MATLAB toolbox does."""
    image = open_image(Path(path))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"{path} has {array.dtype} pixels ({image.mode}): expected an 8-bit saliency map")
    return array[..., 0] if array.ndim == 3 else array


def write_image(path: str | Path, image: np.ndarray, jpeg_quality: int = JPEG_QUALITY) -> None:
    """RGB HxWx3, RGBA HxWx4 (PNG keeps the alpha) or grey HxW uint8 image; the format comes from the
    extension."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"{path}: expected a uint8 HxW, HxWx3 or HxWx4 image, got {image.dtype} {image.shape}")
    if image.ndim == 2:
        pixels = image
    else:
        pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    suffix = Path(path).suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if suffix in (".jpg", ".jpeg") else []
    try:
        ok, encoded = cv2.imencode(suffix, pixels, params)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"{path}: OpenCV cannot encode images as {suffix or 'a file without extension'}")
    with atomic_path(path) as temp:  # written by Python: a full disk raises (ENOSPC), it is not lost in OpenCV
        temp.write_bytes(encoded.data)


def write_mask(path: str | Path, mask: np.ndarray, foreground_value: int = 1) -> None:
    """Single-channel PNG: 0 background, `foreground_value` foreground (1: the training layout's class ids,
    255: DAVIS Annotations / VSOD results)."""
    if foreground_value not in (1, 255):
        raise ValueError(f"foreground_value must be 1 or 255, got {foreground_value}")
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"{path}: masks are written as .png (a lossy format would change the labels)")
    write_image(path, np.asarray(mask).astype(bool).astype(np.uint8) * np.uint8(foreground_value))


def overlay_mask(frame: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 0, 0),
                 alpha: float = 0.5) -> np.ndarray:
    """The frame with the mask's pixels tinted: (1 - alpha) * frame + alpha * color there, untouched elsewhere."""
    mask = np.asarray(mask).astype(bool)
    if mask.shape != frame.shape[:2]:
        raise ValueError(f"mask {mask.shape} and frame {frame.shape[:2]} differ in size")
    out = frame.copy()
    tinted = (1 - alpha) * frame[mask].astype(np.float32) + alpha * np.asarray(color, np.float32)
    out[mask] = np.clip(np.rint(tinted), 0, 255).astype(np.uint8)
    return out


CUTOUT_GREEN = (0, 177, 64)  # chroma-key green: video editors key it out


def cutout_rgba(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The frame as RGBA, opaque on the mask and fully transparent elsewhere."""
    mask = np.asarray(mask).astype(bool)
    if mask.shape != frame.shape[:2]:
        raise ValueError(f"mask {mask.shape} and frame {frame.shape[:2]} differ in size")
    return np.dstack([frame, mask.astype(np.uint8) * np.uint8(255)])


def cutout_on_colour(frame: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = CUTOUT_GREEN) -> np.ndarray:
    """The frame's pixels on the mask, `colour` elsewhere: the cut-out for a video codec without alpha."""
    mask = np.asarray(mask).astype(bool)
    if mask.shape != frame.shape[:2]:
        raise ValueError(f"mask {mask.shape} and frame {frame.shape[:2]} differ in size")
    out = np.empty_like(frame)
    out[...] = np.asarray(colour, np.uint8)
    out[mask] = frame[mask]
    return out


def write_overlay(path: str | Path, frame: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 0, 0),
                  alpha: float = 0.5) -> None:
    write_image(path, overlay_mask(frame, mask, color, alpha))


def probability_to_uint8(probability: np.ndarray) -> np.ndarray:
    """8-bit saliency map for VSOD evaluation: round(255 p)."""
    return np.clip(np.rint(probability * 255.0), 0, 255).astype(np.uint8)
