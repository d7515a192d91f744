"""Video files and frame folders: reading them frame by frame, and writing videos.

Reading: `open_frames(path)` takes a video file (mp4, avi, mov, mkv) or a folder of frames and yields RGB uint8
frames one at a time, so memory does not grow with the video's length.

Decoder: OpenCV's `VideoCapture` (the FFmpeg build inside opencv-python-headless), not PyAV. OpenCV is already a
core dependency, decodes all four containers, and decoded our test video faster than PyAV followed by PyAV's
RGB conversion (docs/speed.md). PyAV's advantages (error messages from FFmpeg, H.264 encoding) do not outweigh a
new dependency: OpenCV's silent failures are turned into one clear error here (the file cannot be opened, or no
first frame decodes). Known limit: a file that breaks off mid-stream ends early
without an error (both decoders do that), and the frame count in a header can be wrong: tree.avi claims 444
frames and holds 68. `frame_count` is therefore only the container's claim.

Writing: `VideoWriter` writes a temporary name and renames it on `close()`: a video with its final name is
complete.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hfan.files import temp_path
from hfan.io.images import IMAGE_SUFFIXES, image_size, read_image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
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
        size = image_size(files[0])
        for file in files[1:]:  # headers only: cheap, and a mixed-size folder fails before any work starts
            if image_size(file) != size:
                raise ValueError(f"{file} is {image_size(file)[0]}x{image_size(file)[1]} but {files[0]} is "
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
