"""open_frames probes a video with PyAV before anything is decoded: the real frame count, and where a truncated
or damaged stream breaks (an error naming the file and the last good frame; allow_partial keeps the frames
before the break). Any container FFmpeg opens is accepted, whatever its extension; what is not a video is one
error naming the file. Issue 13, "no silent wrong output"; docs/bad_input.md lists the cases."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from helpers.shared import shared_path
from hfan.io.video import FrameSource, open_frames, probe_video

av = pytest.importorskip("av")


def _smooth_frame(seed: int, height: int = 96, width: int = 128) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    phase = seed * 0.7
    channels = [128 + 100 * np.sin(xs / 9 + phase + c) * np.cos(ys / 13 - c) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def _opencv_clip(path, fourcc: str, count: int = 20):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (128, 96))
    for seed in range(count):
        writer.write(cv2.cvtColor(_smooth_frame(seed), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _pyav_clip(path, codec: str, count: int = 10, container_format: str | None = None, pixel_format="yuv420p"):
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 128, 96, pixel_format
        for seed in range(count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(_smooth_frame(seed), format="rgb24")))
        container.mux(stream.encode())
    return path


def _cut_in_half(source, destination):
    data = source.read_bytes()
    destination.write_bytes(data[: len(data) // 2])
    return destination


# ------------------------------------------------------------------------------------------- intact videos
def test_tree_avi_counts_its_real_frames_not_its_header():
    path = shared_path("data/videos/tree.avi")
    source = open_frames(path)
    assert (source.frame_count, source.claimed_frame_count, source.broken) == (68, 444, None)
    probe = probe_video(path)
    assert (probe.frames, probe.packets, probe.problem) == (68, 68, None)
    assert sum(1 for _ in source) == 68  # OpenCV decodes exactly what the probe counted


@pytest.mark.parametrize("suffix, fourcc", [(".avi", "MJPG"), (".mp4", "mp4v"), (".mkv", "mp4v"), (".mov", "mp4v")])
def test_opencv_written_clips_yield_exactly_frame_count(tmp_path, suffix, fourcc):
    path = _opencv_clip(tmp_path / f"clip{suffix}", fourcc)
    source = open_frames(path)
    frames = list(source)
    assert source.frame_count == len(frames) == 20
    assert np.abs(frames[7].astype(int) - _smooth_frame(7)).mean() < 6  # lossy codecs, smooth content


@pytest.mark.parametrize("name, codec", [("clip.webm", "libvpx"), ("clip9.webm", "libvpx-vp9"),
                                         ("clip.m4v", "mpeg4"), ("clip264.m4v", "libx264")])
def test_any_extension_ffmpeg_opens_is_a_video(tmp_path, name, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"PyAV's FFmpeg has no {codec} encoder to write the test clip")
    path = _pyav_clip(tmp_path / name, codec)
    source = open_frames(path)
    frames = list(source)
    assert source.frame_count == len(frames) == 10 and source.size == (128, 96)
    assert source.fps == pytest.approx(10)
    assert np.abs(frames[4].astype(int) - _smooth_frame(4)).mean() < 8


def test_a_video_with_an_unknown_extension_is_read(tmp_path):
    clip = _opencv_clip(tmp_path / "clip.avi", "MJPG", count=5)
    renamed = clip.rename(tmp_path / "recording.clip")
    assert open_frames(renamed).frame_count == sum(1 for _ in open_frames(renamed)) == 5


# ------------------------------------------------------------------------------------------- broken videos
def test_tree_avi_cut_in_half_is_an_error_naming_the_last_good_frame(tmp_path):
    intact = shared_path("data/videos/tree.avi")
    half = _cut_in_half(intact, tmp_path / "tree_half.avi")
    with pytest.raises(ValueError, match=r"tree_half\.avi: the video stream is broken after frame 35 of 36 "
                                         r"\(truncated or damaged file: packet 36 is corrupt\); pass "
                                         r"--allow-partial to segment the 35 frames before it"):
        open_frames(half)
    partial = open_frames(half, allow_partial=True)
    assert (partial.frame_count, partial.claimed_frame_count) == (35, 444)
    assert partial.broken == "packet 36 is corrupt"
    frames = list(partial)
    assert len(frames) == 35
    reference = list(open_frames(intact))[:35]
    np.testing.assert_array_equal(frames[0], reference[0])
    np.testing.assert_array_equal(frames[-1], reference[-1])


def test_cut_mjpg_avi_is_an_error(tmp_path):
    cut = _cut_in_half(_opencv_clip(tmp_path / "clip.avi", "MJPG"), tmp_path / "cut.avi")
    with pytest.raises(ValueError, match=r"cut\.avi: the video stream is broken after frame 8 of 9 .*corrupt.*"
                                         r"--allow-partial to segment the 8 frames"):
        open_frames(cut)
    partial = open_frames(cut, allow_partial=True)
    assert partial.frame_count == len(list(partial)) == 8


def test_cut_matroska_is_an_error(tmp_path):
    cut = _cut_in_half(_opencv_clip(tmp_path / "clip.mkv", "mp4v"), tmp_path / "cut.mkv")
    with pytest.raises(ValueError, match=r"cut\.mkv: the video stream is broken after frame \d+ .*"
                                         r"File ended prematurely.*--allow-partial"):
        open_frames(cut)
    partial = open_frames(cut, allow_partial=True)
    assert 0 < partial.frame_count < 20 and len(list(partial)) == partial.frame_count


def test_cut_mp4_cannot_be_opened(tmp_path):
    cut = _cut_in_half(_opencv_clip(tmp_path / "clip.mp4", "mp4v"), tmp_path / "cut.mp4")
    for allow_partial in (False, True):  # its index (moov) is written last: nothing is left to read
        with pytest.raises(ValueError, match=r"cut\.mp4: cannot be opened as a video"):
            open_frames(cut, allow_partial=allow_partial)


def test_damaged_avi_whose_index_lists_unreadable_frames_is_an_error(tmp_path):
    clip = _opencv_clip(tmp_path / "clip.avi", "MJPG")
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 3000] = bytes(3000)  # about 1.5 frames zeroed: the demuxer skips them silently
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"damaged\.avi: the video stream is broken after frame \d+ .*"
                                         r"of the 20 frames its index lists are unreadable"):
        open_frames(damaged)
    partial = open_frames(damaged, allow_partial=True)
    assert 0 < partial.frame_count < 20 and len(list(partial)) == partial.frame_count


class _StoppingCapture:
    """OpenCV's capture of a file whose data stops decoding after `frames` frames."""

    def __init__(self, frames: int):
        self.left = frames

    def read(self):
        self.left -= 1
        return (True, np.zeros((96, 128, 3), np.uint8)) if self.left >= 0 else (False, None)

    def release(self):
        pass


def test_a_decoder_that_stops_early_is_an_error_not_a_short_video(tmp_path, monkeypatch):
    path = _opencv_clip(tmp_path / "clip.mp4", "mp4v", count=10)
    source, partial = open_frames(path), open_frames(path, allow_partial=True)
    assert source.frame_count == partial.frame_count == 10
    monkeypatch.setattr("hfan.io.video._open_capture", lambda path: _StoppingCapture(6))
    with pytest.raises(ValueError, match=r"clip\.mp4: the decoder stopped after frame 6 of 10 .*--allow-partial"):
        list(source)
    assert len(list(partial)) == 6


def test_iteration_stops_at_frame_count(monkeypatch, tmp_path):
    source = FrameSource(tmp_path / "x.avi", (128, 96), 10.0, 3, allow_partial=True)
    monkeypatch.setattr("hfan.io.video._open_capture", lambda path: _StoppingCapture(100))
    assert len(list(source)) == 3


# ------------------------------------------------------------------------------------------- not videos
def test_what_is_not_a_video_is_one_error_naming_it(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    zeros = tmp_path / "zeros"
    zeros.write_bytes(bytes(1000))
    for path in (text, garbage, zeros):
        with pytest.raises(ValueError, match=rf"{path.name}: cannot be opened as a video"):
            open_frames(path)
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), _smooth_frame(0))
    with pytest.raises(ValueError, match=r"still\.png: a still image, not a video; put it in a folder"):
        open_frames(image)
    sound = tmp_path / "sound.wav"
    with av.open(str(sound), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(ValueError, match=r"sound\.wav: not a video \(it holds no video stream\)"):
        open_frames(sound)


def test_audio_with_cover_art_is_not_a_video(tmp_path):
    song = tmp_path / "song.m4a"
    with av.open(str(song), "w", format="mp4") as container:
        cover = container.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 16, 16, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        audio = container.add_stream("aac", rate=8000)
        container.mux(cover.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")))
        container.mux(cover.encode())
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(audio.encode(frame))
        container.mux(audio.encode())
    with av.open(str(song)) as container:  # the file really holds a (cover picture) video stream
        assert [s.type for s in container.streams] == ["audio", "video"]
    with pytest.raises(ValueError, match=r"song\.m4a: not a video \(it holds no video stream\)"):
        open_frames(song)
