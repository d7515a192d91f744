"""Video files and frame folders: reading them frame by frame, and writing videos.

Reading: `open_frames(path)` takes a video file (any file FFmpeg opens with a video stream, whatever its
extension: mp4, avi, mov, mkv, webm, m4v, gif, ...) or a folder of frames and yields RGB uint8 frames one at a
time, so memory does not grow with the video's length.

Probe, then decode. `open_frames` first demuxes the video stream with PyAV WITHOUT decoding it (the file is
read once, nothing is decoded; docs/speed.md). The packets that carry data are the frames the file really
holds: that count is `frame_count`, whatever the header claims (tree.avi claims 444 frames and holds 68, kept
as `claimed_frame_count`). The probe also finds where a stream breaks: the first packet FFmpeg flags corrupt
(the last, cut-off packet of a truncated AVI), a demuxer error, an error the demuxer reports while reading
(a Matroska/WebM file that ends inside a cluster), or frames the file's own index lists but the demuxer cannot
read (an AVI with damaged data, whose frames would otherwise be skipped silently). A broken stream is an error at open time, before any model
loads, that names the file and the last good frame; `allow_partial=True` keeps the frames before the break
(`frame_count` says how many, `broken` says why). A truncated MP4/MOV has lost its index (moov, written last)
and cannot be opened at all: that is the "cannot be opened" error.

Decoder: OpenCV's `VideoCapture` (its FFmpeg backend), not PyAV. It decoded our test video faster than PyAV
followed by PyAV's RGB conversion (docs/speed.md), and on every intact file the tests use (tree.avi,
Megamind.avi, mp4/avi/mkv/mov/m4v/webm clips) it yields exactly the probe's `frame_count`
(tests/io/test_video_probe.py). Iteration checks that agreement on every file rather than trusting it: it
stops after `frame_count` frames, and a decoder that ends before them raises an error naming the file (with
`allow_partial`, the frames it gave are kept). Known limit: damage inside a frame's data that neither the
container nor the demuxer notices is decoded as the codec conceals it.

Writing: `VideoWriter` encodes mp4 / mov / mkv as H.264 (yuv420p, even sizes) through PyAV's libx264, what
browsers play; OpenCV's MPEG-4 part 2 is the fallback where PyAV lacks libx264 (with a warning). It writes a
temporary name, then on `close()` opens it again and counts its decodable
frames; only a complete video is renamed to its final name. Otherwise (a full disk, a writer that failed
silently: OpenCV's writer reports no error) the temporary file is removed and the error names the path.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.logging
import cv2
import numpy as np

from hfan.files import temp_path
from hfan.io.images import IMAGE_SUFFIXES, check_frame_image, read_image

# mp4v plays everywhere except in browsers (which want H.264, which OpenCV's wheels cannot encode).
_FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
# Below this much free space after a failed write, the cause is taken to be a full disk: a write that fails
# for want of space leaves (nearly) none; OpenCV's writer does not report errno.
_FULL_DISK_BYTES = 1 << 20
# Cover art of an audio file is a one-picture "video" stream, not a video.
_ATTACHED_PICTURE = getattr(getattr(av.stream, "Disposition", None), "attached_pic", 0)


# ----------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class FrameSource:
    """A video file or a folder of frames. Iterating yields RGB uint8 HxWx3 frames, lazily, each time anew."""

    path: Path
    size: tuple[int, int]  # (width, height)
    fps: float | None  # None for a folder unless given
    frame_count: int  # the frames iteration yields: a folder's files; a video's frames (before a break, if any)
    frame_paths: tuple[Path, ...] | None = None  # the frame files of a folder source
    claimed_frame_count: int | None = None  # a video: what its header claims (may be wrong), None if it says nothing
    broken: str | None = None  # a video opened with allow_partial: why it ends after frame_count frames
    allow_partial: bool = False  # a video: a decoder that stops early ends the iteration instead of raising

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.frame_paths is not None:
            yield from map(read_image, self.frame_paths)  # sizes and pixel formats were checked by open_frames
            return
        capture = _open_capture(self.path)
        try:
            for index in range(self.frame_count):
                ok, frame = capture.read()
                if not ok:
                    if self.allow_partial:  # the partial result was asked for
                        return
                    raise ValueError(f"{self.path}: the decoder stopped after frame {index} of {self.frame_count} "
                                     f"(damaged file: the frames after it do not decode); pass --allow-partial to "
                                     f"keep the {index} frames before it")
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
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)  # the backend the probe's FFmpeg agrees with
    if not capture.isOpened():
        raise ValueError(f"{path}: cannot be opened as a video (corrupt, truncated, or not a video file)")
    return capture


@dataclass(frozen=True)
class VideoProbe:
    frames: int  # packets with data before the break (all of them when the stream is intact)
    packets: int  # packets with data in the whole file
    claimed: int | None  # the header's frame count
    problem: str | None  # why the stream breaks after `frames` frames; None when intact


def _is_still_image(container: av.container.InputContainer) -> bool:
    # FFmpeg opens a single PNG or JPEG as a one-frame "video" through its image demuxers
    return container.format.name == "image2" or container.format.name.endswith("_pipe")


def probe_video(path: Path) -> VideoProbe:
    """Demux the video stream without decoding: its real frame count and where, if anywhere, it breaks."""
    previous_level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # errors only: they are captured below, not printed
    try:
        with av.logging.Capture() as logs:
            try:
                container = av.open(str(path))
            except av.error.FFmpegError as error:
                raise ValueError(f"{path}: cannot be opened as a video (not a video file, or one damaged or "
                                 f"truncated: {error.strerror})") from None
            with container:
                return _demux(path, container, logs)
    finally:
        av.logging.set_level(previous_level)


def _demux(path: Path, container: av.container.InputContainer, logs: list) -> VideoProbe:
    if _is_still_image(container):
        raise ValueError(f"{path}: a still image, not a video; put it in a folder to segment it as a one-frame video")
    streams = [s for s in container.streams.video if not getattr(s, "disposition", 0) & _ATTACHED_PICTURE]
    if not streams:
        raise ValueError(f"{path}: not a video (it holds no video stream)")
    best = container.streams.best("video") if hasattr(container.streams, "best") else None  # PyAV >= 13
    stream = best if best in streams else streams[0]  # best: the stream OpenCV decodes (av_find_best_stream)
    codecs = set(av.codecs_available)
    # The file's own index, copied before demuxing (which may reallocate it): AVI's idx1 and MP4's sample table
    # list every frame (Matroska's cues only keyframes: fewer than the packets, never a finding). Older PyAV
    # versions do not expose it: that check is then skipped.
    listed = [entry.size for entry in getattr(stream, "index_entries", ()) if entry.size > 0 and not entry.is_discard]

    def demuxer_errors() -> list[str]:  # errors of the demuxer and the I/O layer; decoder messages are not ours
        return [message.strip() for level, name, message in logs
                if level <= av.logging.ERROR and name not in codecs]

    sizes: list[int] = []  # of the packets read, in order
    good, problem = None, None  # frames before the break, and why it breaks
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            if good is None:
                if packet.is_corrupt:
                    good, problem = len(sizes), f"packet {len(sizes) + 1} is corrupt"
                elif demuxer_errors():
                    good, problem = len(sizes), f"FFmpeg reports: {demuxer_errors()[0]}"
            sizes.append(packet.size)
    except av.error.FFmpegError as error:
        if good is None:
            good, problem = len(sizes), f"demuxer error: {error.strerror}"
    if good is None and demuxer_errors():  # reported while opening, or after the last packet
        good, problem = len(sizes), f"FFmpeg reports: {demuxer_errors()[0]}"
    if len(listed) > len(sizes):  # frames the index lists but the demuxer could not read (damaged data)
        lost = next((i for i, (a, b) in enumerate(zip(listed, sizes)) if a != b), len(sizes))
        if good is None or lost < good:
            missing = len(listed) - len(sizes)
            good, problem = lost, f"{missing} of the {len(listed)} frames its index lists are unreadable"
    return VideoProbe(len(sizes) if good is None else good, len(sizes), stream.frames or None, problem)


def open_frames(path: str | Path, fps: float | None = None, allow_partial: bool = False) -> FrameSource:
    """Open a video file or a frame folder; errors name the file. `fps` sets or overrides the frame rate.

    A video whose stream breaks (truncated or damaged) is an error, unless `allow_partial`: then the source
    yields the frames before the break. Everything is checked here, before any frame is decoded for use.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise ValueError(f"{path} holds no frames ({', '.join(IMAGE_SUFFIXES)})")
        size = check_frame_image(files[0])
        for file in files[1:]:  # headers only: cheap, and a mixed-size folder fails before any work starts
            if (file_size := check_frame_image(file)) != size:
                raise ValueError(f"{file} is {file_size[0]}x{file_size[1]} but {files[0]} is "
                                 f"{size[0]}x{size[1]}: all frames of {path} must have one size")
        return FrameSource(path, size, fps, len(files), tuple(files))
    probe = probe_video(path)
    if probe.problem is not None:
        if probe.frames == 0:
            raise ValueError(f"{path}: the video stream is broken at its first frame (truncated or damaged "
                             f"file: {probe.problem}): there is nothing to segment")
        if not allow_partial:
            of = f" of {probe.packets}" if probe.packets > probe.frames else ""
            raise ValueError(f"{path}: the video stream is broken after frame {probe.frames}{of} (truncated or "
                             f"damaged file: {probe.problem}); pass --allow-partial to segment the {probe.frames} "
                             f"frames before it")
    if probe.packets == 0:
        raise ValueError(f"{path}: the video stream holds no frames")
    capture = _open_capture(path)
    try:
        ok, frame = capture.read()
        if not ok:
            raise ValueError(f"{path}: no frame could be decoded (corrupt or empty video)")
        claimed_fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return FrameSource(path, (frame.shape[1], frame.shape[0]), fps or (claimed_fps if claimed_fps > 0 else None),
                       probe.frames, claimed_frame_count=probe.claimed, broken=probe.problem,
                       allow_partial=allow_partial)


# ----------------------------------------------------------------------------------------------- writing
def count_decodable_frames(path: Path) -> int:
    """How many frames OpenCV decodes from a video file (0 when it cannot be opened)."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        count = 0
        while capture.isOpened() and capture.grab():  # grab decodes; no colour conversion
            count += 1
        return count
    finally:
        capture.release()


def _is_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < _FULL_DISK_BYTES
    except OSError:
        return False


def h264_available() -> bool:
    """Whether PyAV can encode H.264 (its wheels carry libx264; a source build may not)."""
    try:
        av.codec.Codec("libx264", "w")
        return True
    except Exception:  # PyAV raises its own error types for an unknown codec
        return False


class VideoWriter:
    """RGB frames to a video file at a given frame rate, atomically: the frames go to a temporary file that
    replaces `path` on `close()` once it has been read back complete; an error inside `with`, or an incomplete
    file, removes it.

    mp4, mov, mkv: H.264 (yuv420p, what browsers play) through PyAV's libx264, odd sizes padded by one edge
    pixel; where PyAV has no libx264, OpenCV's MPEG-4 part 2 (`codec` says "mp4v"; browsers do not play it) with
    a warning. avi: MJPEG through OpenCV."""

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
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None
        fourcc = _FOURCC[self.path.suffix.lower()]
        if fourcc == "mp4v" and h264_available():
            self.codec = "h264"
        else:
            self.codec = fourcc.lower().replace("mjpg", "mjpeg")
            if fourcc == "mp4v":
                warnings.warn(f"{self.path}: PyAV has no libx264 encoder, so this video is MPEG-4 part 2 "
                              "(mp4v), which browsers do not play: install PyAV's wheel (pip install av)")

    @property
    def _open(self) -> bool:
        return self._writer is not None or self._container is not None

    def write(self, frame: np.ndarray) -> None:
        size = (frame.shape[1], frame.shape[0])
        if not self._open:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._size = size
            if self.codec == "h264":
                self._guarded(self._open_h264, size)
            else:
                self._open_opencv(size)
        elif size != self._size:
            raise ValueError(f"{self.path}: frame {self.frames_written} is {size[0]}x{size[1]}, the video is "
                             f"{self._size[0]}x{self._size[1]}")
        if self.codec == "h264":
            self._guarded(self._encode, frame)
        else:
            self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def _open_opencv(self, size: tuple[int, int]) -> None:
        fourcc = cv2.VideoWriter_fourcc(*_FOURCC[self.path.suffix.lower()])
        self._writer = cv2.VideoWriter(str(self._temp), fourcc, self.fps, size)
        if not self._writer.isOpened():
            self.abort()
            if _is_full(self.path.parent):
                raise ValueError(f"{self.path}: no space left on {self.path.parent}: free space and rerun")
            raise ValueError(f"{self.path}: OpenCV cannot open a video writer for it")

    def _open_h264(self, size: tuple[int, int]) -> None:
        # faststart puts the index first, so that a browser starts playing before the whole file has arrived
        options = {"movflags": "+faststart"} if self.path.suffix.lower() in (".mp4", ".mov") else {}
        self._container = av.open(str(self._temp), mode="w", options=options)
        self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        self._stream.width, self._stream.height = size[0] + size[0] % 2, size[1] + size[1] % 2
        self._stream.pix_fmt = "yuv420p"  # 4:2:0 needs even sizes; the only chroma layout every browser decodes
        self._stream.options = {"crf": "20", "preset": "veryfast"}

    def _encode(self, frame: np.ndarray | None) -> None:
        if frame is not None:
            height, width = frame.shape[:2]
            if width % 2 or height % 2:
                frame = cv2.copyMakeBorder(frame, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _finish_h264(self) -> None:
        self._encode(None)  # flush the encoder's delayed frames
        self._container.close()

    def _guarded(self, step, *arguments) -> None:
        """FFmpeg's errors (a full disk among them) as one line naming the file; the temporary file removed."""
        try:
            step(*arguments)
        except (av.error.FFmpegError, OSError) as error:
            full = _is_full(self.path.parent) or getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
            self.abort()
            if full:
                raise ValueError(f"{self.path}: no space left on {self.path.parent}: free space and rerun") from None
            raise ValueError(f"{self.path}: the H.264 encoder failed: {error}") from None

    def close(self) -> None:
        """Finish the file, read it back, and give it its final name only when it holds every frame written."""
        if not self._open:
            raise ValueError(f"{self.path}: no frame was written")
        if self._container is not None:
            self._guarded(self._finish_h264)
            self._container = self._stream = None
        else:
            self._writer.release()
            self._writer = None
        decodable = count_decodable_frames(self._temp) if self._temp.exists() else 0
        if decodable != self.frames_written:
            full = _is_full(self.path.parent)  # before removing the temporary file frees its space
            self._temp.unlink(missing_ok=True)
            cause = (f"no space left on {self.path.parent}: free space and rerun" if full else
                     "the video writer failed silently")
            raise ValueError(f"{self.path}: {cause} ({decodable} of {self.frames_written} frames could be read "
                             f"back; nothing was kept)")
        os.replace(self._temp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._container is not None:
            try:
                self._container.close()
            except (av.error.FFmpegError, OSError):
                pass  # the file is removed anyway
            self._container = self._stream = None
        self._temp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
