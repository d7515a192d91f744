"""Writers that cannot finish fail and leave nothing under the final name: a full disk is one ValueError
"no space left on <folder>: free space and rerun" from atomic_path (write_image, write_text, save_array, ...)
and from VideoWriter.close, which reads its file back before renaming it. Simulated (an OSError with errno
ENOSPC, an OpenCV writer that leaves an empty file) and, where this machine can mount one, on a real tiny
tmpfs. Issue 13."""
from __future__ import annotations

import errno
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
from collections import namedtuple

import numpy as np
import pytest

from hfan.files import atomic_path, save_array, write_text
from hfan.io.images import write_image, write_mask
from hfan.io.video import VideoWriter

Usage = namedtuple("Usage", "total used free")


def _frame(seed: int = 0, height: int = 96, width: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)


def _failing_write_bytes(code: int):
    original = pathlib.Path.write_bytes

    def write_bytes(self, data):
        original(self, bytes(data)[: len(data) // 2])  # half of it reached the disk, as on a full one
        raise OSError(code, os.strerror(code), str(self))

    return write_bytes


# ------------------------------------------------------------------------------------------- atomic_path
@pytest.mark.parametrize("code, extra", [(errno.ENOSPC, ""), (errno.EDQUOT, r" \(disk quota exceeded\)")])
def test_write_image_on_a_full_disk_is_a_value_error_and_leaves_nothing(tmp_path, monkeypatch, code, extra):
    folder = tmp_path / "masks"
    monkeypatch.setattr(pathlib.Path, "write_bytes", _failing_write_bytes(code))
    with pytest.raises(ValueError, match=rf"cannot write {re.escape(str(folder / '00000.png'))}: no space left on "
                                         rf"{re.escape(str(folder))}{extra}: free space and rerun"):
        write_image(folder / "00000.png", _frame())
    with pytest.raises(ValueError, match="no space left on"):
        write_mask(folder / "00001.png", np.ones((4, 4), bool))
    assert list(folder.iterdir()) == []  # neither the final names nor the temporary files


def test_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "frame.jpg"
    write_image(target, _frame(1))
    before = target.read_bytes()
    monkeypatch.setattr(pathlib.Path, "write_bytes", _failing_write_bytes(errno.ENOSPC))
    with pytest.raises(ValueError, match="no space left on"):
        write_image(target, _frame(2))
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["frame.jpg"]


def test_every_atomic_writer_reports_a_full_disk(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / 'a.npy'))}: no space left on "
                                         rf"{re.escape(str(tmp_path))}"):
        save_array(tmp_path / "a.npy", np.zeros(3))
    monkeypatch.setattr(pathlib.Path, "write_text", full)
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / 'notes.txt'))}: no space left on "
                                         rf"{re.escape(str(tmp_path))}"):
        write_text(tmp_path / "notes.txt", "hello")
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_pass_through_and_still_clean_up(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_path(tmp_path / "x.bin") as temp:
            temp.write_bytes(b"partial")
            raise PermissionError(errno.EACCES, "Permission denied")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_image_format_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"image\.xyz: OpenCV cannot encode images as \.xyz"):
        write_image(tmp_path / "image.xyz", _frame())
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- VideoWriter
class _EmptyFileWriter:
    """OpenCV's writer on a disk that is full: it opens, accepts every frame, reports nothing, writes nothing."""

    def __init__(self, path, fourcc, fps, size):
        open(path, "wb").close()

    def isOpened(self):  # noqa: N802 (OpenCV's name)
        return True

    def write(self, frame):
        pass

    def release(self):
        pass


@pytest.mark.parametrize("free, cause", [(0, "no space left on {folder}: free space and rerun"),
                                         (10**12, "the video writer failed silently")])
def test_video_writer_that_cannot_finish_fails_and_leaves_nothing(tmp_path, monkeypatch, free, cause):
    path = tmp_path / "out" / "overlay.avi"  # avi: OpenCV's writer (mp4 goes through PyAV, tested below)
    monkeypatch.setattr("hfan.io.video.cv2.VideoWriter", _EmptyFileWriter)
    monkeypatch.setattr("hfan.io.video.shutil.disk_usage", lambda folder: Usage(10**12, 10**12 - free, free))
    message = re.escape(f"{path}: " + cause.format(folder=path.parent) + " (0 of 3 frames could be read back")
    with pytest.raises(ValueError, match=message):
        with VideoWriter(path, fps=10) as writer:
            for seed in range(3):
                writer.write(_frame(seed))
    assert list(path.parent.iterdir()) == []


def test_video_writer_that_loses_frames_fails(tmp_path, monkeypatch):
    """A file that holds fewer frames than were written (a disk filling up mid-video) is not kept."""
    import cv2

    real_writer = cv2.VideoWriter

    class DroppingWriter:
        def __init__(self, *args):
            self.writer, self.count = real_writer(*args), 0

        def isOpened(self):  # noqa: N802
            return self.writer.isOpened()

        def write(self, frame):
            self.count += 1
            if self.count <= 2:  # the rest never reaches the disk
                self.writer.write(frame)

        def release(self):
            self.writer.release()

    monkeypatch.setattr("hfan.io.video.cv2.VideoWriter", DroppingWriter)
    path = tmp_path / "overlay.avi"
    with pytest.raises(ValueError, match=re.escape(f"{path}: the video writer failed silently (2 of 5 frames")):
        with VideoWriter(path, fps=10) as writer:
            for seed in range(5):
                writer.write(_frame(seed))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- a real full disk
_ON_TINY_TMPFS = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np
    from hfan.files import write_text
    from hfan.io.images import write_image
    from hfan.io.video import VideoWriter

    folder = Path(sys.argv[1])
    rng = np.random.default_rng(0)
    results = {}
    write_text(folder / "small.txt", "fits")
    try:  # 512x512 noise: a 768 kB PNG on a 256 kB file system
        write_image(folder / "big.png", rng.integers(0, 256, (512, 512, 3), np.uint8))
    except ValueError as error:
        results["image"] = str(error)
    try:  # 40 noise frames as MJPEG: far more than 256 kB
        with VideoWriter(folder / "overlay.avi", fps=10) as writer:
            for _ in range(40):
                writer.write(rng.integers(0, 256, (240, 320, 3), np.uint8))
    except ValueError as error:
        results["video"] = str(error)
    try:  # the same as H.264 through PyAV
        with VideoWriter(folder / "overlay.mp4", fps=10) as writer:
            for _ in range(40):
                writer.write(rng.integers(0, 256, (240, 320, 3), np.uint8))
    except ValueError as error:
        results["h264"] = str(error)
    import torch
    from hfan import build_model, get_preset, save_checkpoint

    try:  # a 16 MB checkpoint: torch.save given a path would say "unexpected pos ..."
        save_checkpoint(folder / "model.pth", build_model("hfan-b0"), get_preset("hfan-b0"))
    except ValueError as error:
        results["checkpoint"] = str(error)
    results["left"] = sorted(p.name for p in folder.iterdir())
    print(json.dumps(results))
""")


def _tiny_tmpfs_command(folder, *command):
    mount = f"mount -t tmpfs -o size=256k hfan-test {folder}"
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mount} && exec "$@"', "sh", *command]


def test_real_full_tmpfs(tmp_path):
    """Images, videos and checkpoints written onto a real 256 kB file system."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a tiny tmpfs in a private mount namespace")
    probe = subprocess.run(_tiny_tmpfs_command(folder, "true"), capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tiny tmpfs here (root or user namespaces needed): {probe.stderr.strip()}")
    run = subprocess.run(_tiny_tmpfs_command(folder, sys.executable, "-c", _ON_TINY_TMPFS, str(folder)),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert results["image"] == (f"cannot write {folder / 'big.png'}: no space left on {folder}: "
                                f"free space and rerun")
    assert results["video"].startswith(f"{folder / 'overlay.avi'}: no space left on {folder}: free space and rerun")
    assert results["h264"].startswith(f"{folder / 'overlay.mp4'}: no space left on {folder}: free space and rerun")
    assert results["checkpoint"] == (f"cannot write {folder / 'model.pth'}: no space left on {folder}: "
                                     f"free space and rerun")
    assert results["left"] == ["small.txt"]  # no partial file under a final name, no temporary file
