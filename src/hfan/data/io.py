"""Video and frame-folder input, and the project's one set of image / mask / overlay / video writers.

Reading: `open_frames(path)` takes a video file (mp4, avi, mov, mkv) or a folder of frames and yields RGB uint8
frames one at a time, so memory does not grow with the video's length.

Decoder: OpenCV's `VideoCapture` (the FFmpeg build inside opencv-python-headless), not PyAV. OpenCV is already a
core dependency and decodes all four containers; on this machine it decoded Megamind.avi (720x528, 270 frames)
3x faster than PyAV with its RGB conversion (0.12 s vs 0.38 s). PyAV's advantages (error messages from FFmpeg,
H.264 encoding) do not outweigh a new dependency: OpenCV's silent failures are turned into one clear error here
(the file cannot be opened, or no first frame decodes). Known limit: a file that breaks off mid-stream ends early
without an error (both decoders do that), and the frame count in a header can be wrong: tree.avi claims 444
frames and holds 68. `frame_count` is therefore only the container's claim.

Frame images are read with Pillow, which raises on a truncated file where OpenCV returns a half-grey image.

Writing: every writer writes a temporary name in the destination folder (same extension, so the encoder is
chosen right; a leading dot hides it from the dataset listing) and renames it over the destination: a file
with the final name is always complete.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
JPEG_QUALITY = 95  # HFAN's own flow and frame JPEGs use IJG quality 95, 4:2:0 (their quantisation tables)
_TEMP_MARK = ".tmp-"
# mp4v plays everywhere except in browsers (which want H.264, which OpenCV's wheels cannot encode).
_FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


# ----------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class FrameSource:
    """A video file or a folder of frames. Iterating yields RGB uint8 HxWx3 frames, lazily, each time anew."""

    path: Path
    size: tuple[int, int]  # (width, height)
    fps: float | None  # None for a folder unless given
    frame_count: int | None  # a folder: exact; a video: what the container claims (may be wrong), None if unknown
    frame_paths: tuple[Path, ...] | None = None  # the frame files of a folder source

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.frame_paths is not None:
            yield from map(read_image, self.frame_paths)  # sizes were checked by open_frames
            return
        capture = _open_capture(self.path)
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_frame_files(folder: Path) -> list[Path]:
    """Image files of a folder in natural order (frame2 before frame10); hidden files are skipped."""
    return sorted((p for p in Path(folder).iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")), key=_natural_key)


def _open_capture(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{path}: cannot be opened as a video (corrupt, truncated, or not a video file)")
    return capture


def open_frames(path: str | Path, fps: float | None = None) -> FrameSource:
    """Open a video file or a frame folder; errors name the file. `fps` sets or overrides the frame rate."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise ValueError(f"{path} holds no frames ({', '.join(IMAGE_SUFFIXES)})")
        size = _image_size(files[0])
        for file in files[1:]:  # headers only: cheap, and a mixed-size folder fails before any work starts
            if _image_size(file) != size:
                raise ValueError(f"{file} is {_image_size(file)[0]}x{_image_size(file)[1]} but {files[0]} is "
                                 f"{size[0]}x{size[1]}: all frames of {path} must have one size")
        return FrameSource(path, size, fps, len(files), tuple(files))
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"{path}: not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames")
    capture = _open_capture(path)
    try:
        ok, frame = capture.read()
        if not ok:
            raise ValueError(f"{path}: no frame could be decoded (corrupt or empty video)")
        claimed_fps = capture.get(cv2.CAP_PROP_FPS)
        claimed_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return FrameSource(path, (frame.shape[1], frame.shape[0]), fps or (claimed_fps if claimed_fps > 0 else None),
                       claimed_count if claimed_count > 0 else None)


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from None


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 HxWx3; a missing, corrupt or truncated file is one error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPE = 25  # byte offset of the colour type in the IHDR chunk that every PNG starts with
_PNG_PALETTE = 3
_PNG_WITH_ALPHA = (4, 6)


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
        # OpenCV decodes PNG about a third faster than Pillow, which keeps the palette case (indices, not colours).
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



# ----------------------------------------------------------------------------------------------- writing
def temp_path(path: Path) -> Path:
    """A unique hidden name next to `path`, with its extension."""
    return path.with_name(f".{path.stem}{_TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def is_temp_path(path: Path) -> bool:
    return path.name.startswith(".") and _TEMP_MARK in path.name


def remove_temp_files(folder: Path) -> int:
    """Delete what interrupted writers left in `folder` (not recursive); returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir() if p.is_file() and is_temp_path(p)]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(path)
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_image(path: str | Path, image: np.ndarray, jpeg_quality: int = JPEG_QUALITY) -> None:
    """RGB HxWx3 or grey HxW uint8 image; the format comes from the extension."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"{path}: expected a uint8 HxW or HxWx3 image, got {image.dtype} {image.shape}")
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    is_jpeg = Path(path).suffix.lower() in (".jpg", ".jpeg")
    with atomic_path(path) as temp:
        if not cv2.imwrite(str(temp), pixels, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if is_jpeg else []):
            raise ValueError(f"{path}: OpenCV could not write this image format")


def copy_file(source: str | Path, destination: str | Path) -> None:
    with atomic_path(destination) as temp:
        shutil.copyfile(source, temp)


def save_array(path: str | Path, array: np.ndarray) -> None:
    """`.npy` file written atomically."""
    with atomic_path(path) as temp:
        np.save(temp, array)


def write_json(path: str | Path, data: dict) -> None:
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(data, indent=1, sort_keys=True))


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


def write_overlay(path: str | Path, frame: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 0, 0),
                  alpha: float = 0.5) -> None:
    write_image(path, overlay_mask(frame, mask, color, alpha))


class VideoWriter:
    """RGB frames to a video file (mp4, mov, mkv: MPEG-4 part 2; avi: MJPEG) at a given frame rate, atomically:
    the frames go to a temporary file that replaces `path` on `close()`; an error inside `with` removes it."""

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        if self.path.suffix.lower() not in _FOURCC:
            raise ValueError(f"{self.path}: video extension must be one of {', '.join(_FOURCC)}")
        if not fps or fps <= 0:
            raise ValueError(f"{self.path}: frame rate must be > 0, got {fps}")
        self.fps = float(fps)
        self.frames_written = 0
        self._temp = temp_path(self.path)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*_FOURCC[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self._temp), fourcc, self.fps, size)
            if not self._writer.isOpened():
                raise ValueError(f"{self.path}: OpenCV cannot open a video writer for it")
            self._size = size
        elif size != self._size:
            raise ValueError(f"{self.path}: frame {self.frames_written} is {size[0]}x{size[1]}, the video is "
                             f"{self._size[0]}x{self._size[1]}")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is None:
            raise ValueError(f"{self.path}: no frame was written")
        self._writer.release()
        self._writer = None
        os.replace(self._temp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._temp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
