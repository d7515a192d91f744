"""`hfan prepare`: DAVIS, YouTube-VOS or any video into the original's flat layout (docs/design.md#dataset-layout).

    <out>/frame/<split>/<video>_<00000>.jpg      the frame: a JPEG source copied byte for byte, else JPEG q95
    <out>/flow/<split>/<video>_<00000>.jpg       its flow (hfan.flow.video convention) as HFAN's colour image
                                                 (red and blue swapped, see hfan.flow.encoding), JPEG q95
    <out>/mask/<split>/<video>_<00000>.png       0/1 foreground, all objects merged (annotated datasets only)
    <out>/flow_raw/<split>/<video>_<00000>.npy   the raw flow, float16 HxWx2 (with save_raw)
    <out>/.prepare/<split>/<video>.json          written last: the video is complete (settings, frames, fps, size)

Resuming: a video whose record holds the same flow settings and all of whose files exist is skipped; any other
video is redone whole. Every file is written to a temporary name and renamed, so none is ever half-written.
Videos run in parallel worker processes for the CPU methods; RAFT batches frame pairs on one device instead.
"""
from __future__ import annotations

import functools
import json
import multiprocessing
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from hfan.files import check_output_folder, copy_file, remove_temp_files, save_array, write_json
from hfan.io.video import list_frame_files, open_frames
from hfan.io.images import read_image, read_mask, write_image, write_mask
from hfan.datasets.davis import DAVIS_RESOLUTION, davis_sequences
from hfan.datasets.layouts import FlatLayout, FLOW_DIR, FRAME_DIR, MASK_DIR, RAW_FLOW_DIR
from hfan.flow import FlowEstimator, build_flow_estimator, flows_at, video_flows
from hfan.flow.estimators import RAFT_DEFAULT_UPDATES, RAFT_DEFAULT_WEIGHTS
from hfan.flow.model_input import flow_image_for_model

RECORD_DIR = ".prepare"
_JPEG_SUFFIXES = (".jpg", ".jpeg")
_RUN_ONLY_OPTIONS = ("device", "batch_size")  # change how the flow is computed, not what it is


@dataclass(frozen=True)
class FlowSettings:
    """Which estimator, its options, and whether raw flow is kept; hashable and picklable for worker processes."""

    name: str = "dis"
    options: tuple[tuple[str, Any], ...] = ()
    save_raw: bool = False
    camera_motion: str = "none"  # removed before the colour encoding (hfan.flow.camera); the raw flow keeps it

    @classmethod
    def of(cls, name: str = "dis", save_raw: bool = False, camera_motion: str = "none",
           **options) -> "FlowSettings":
        return cls(name, tuple(sorted(options.items())), save_raw, camera_motion)

    @classmethod
    def from_options(cls, name: str = "dis", save_raw: bool = False, camera_motion: str = "none",
                     dis_preset: str = "medium", raft_weights: str = RAFT_DEFAULT_WEIGHTS,
                     raft_iters: int = RAFT_DEFAULT_UPDATES, batch_size: int = 4,
                     device: str | None = None) -> "FlowSettings":
        """The settings of `hfan prepare`'s flags: each method takes only its own options."""
        if name == "dis":
            return cls.of("dis", save_raw, camera_motion, preset=dis_preset)
        if name == "farneback":
            return cls.of("farneback", save_raw, camera_motion)
        return cls.of(name, save_raw, camera_motion, weights=raft_weights, num_flow_updates=raft_iters,
                      batch_size=batch_size, device=device)

    def build(self) -> FlowEstimator:
        return build_flow_estimator(self.name, **dict(self.options))

    def record(self) -> dict:
        """What decides the output: a rerun with another record redoes the videos."""
        options = {k: str(v) for k, v in self.options if k not in _RUN_ONLY_OPTIONS}
        record = {"method": self.name, "options": options, "raw": self.save_raw}
        if self.camera_motion != "none":  # absent for raw flow, so that earlier records still match
            record["camera_motion"] = self.camera_motion
        return record


@dataclass(frozen=True)
class SampleSource:
    position: int  # in the frames the flow is measured on
    index: int  # the number in the output name
    frame_file: Path
    mask_file: Path | None = None


@dataclass(frozen=True)
class VideoJob:
    """One video to prepare: frame files with chosen samples, or (no `flow_frames`) a video file streamed whole."""

    split: str
    video: str
    source: Path
    flow_frames: tuple[Path, ...] = ()
    samples: tuple[SampleSource, ...] = ()
    fps: float | None = None
    expected_frames: int | None = None  # for the progress bar only


@dataclass
class PrepareReport:
    out: Path
    videos_prepared: int = 0
    videos_skipped: int = 0
    samples_written: int = 0
    samples_total: int = 0
    prepared: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{self.out}: {self.samples_total} samples in {self.videos_prepared + self.videos_skipped} video(s) "
                f"({self.videos_prepared} prepared, {self.videos_skipped} already complete)")


def record_path(out: str | Path, split: str, video: str) -> Path:
    return Path(out) / RECORD_DIR / split / f"{video}.json"


def read_record(out: str | Path, split: str, video: str) -> dict:
    """What `hfan prepare` recorded about a finished video: frame indices, fps, size, flow settings."""
    path = record_path(out, split, video)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {video} of split {split} was not (completely) prepared")
    return json.loads(path.read_text())


def check_prepared(root: str | Path, split: str, samples: Iterable) -> None:
    """A dataset that `hfan prepare` made (it has a record folder for the split) is used only when every video
    among `samples` was finished: a ValueError naming the first unfinished one otherwise. Datasets made by other
    tools hold no records and are not checked."""
    records = Path(root) / RECORD_DIR / split
    if not records.is_dir():
        return
    frames: dict[str, list[int]] = {}
    for sample in samples:
        frames.setdefault(sample.video, []).append(sample.index)
    for video, indices in frames.items():
        path = record_path(root, split, video)
        if not path.is_file():
            raise ValueError(f"{root}: video {video!r} of split {split!r} is not completely prepared (hfan prepare "
                             f"was interrupted, {path} is missing): rerun the same `hfan prepare` command to "
                             "finish it")
        recorded = json.loads(path.read_text()).get("indices", [])
        if sorted(indices) != sorted(recorded):
            raise ValueError(f"{root}: video {video!r} of split {split!r} holds {len(indices)} frames but "
                             f"`hfan prepare` recorded {len(recorded)} ({path}): rerun `hfan prepare` to redo it")


def _outputs(out: Path, split: str, video: str, index: int, masks: bool, raw: bool) -> list[Path]:
    layout = FlatLayout(out)
    paths = [layout.frame_path(split, video, index), layout.flow_path(split, video, index)]
    if masks:
        paths.append(layout.mask_path(split, video, index))
    if raw:
        paths.append(layout.raw_flow_path(split, video, index))
    return paths


def _is_complete(out: Path, job: VideoJob, settings: FlowSettings) -> dict | None:
    try:
        record = read_record(out, job.split, job.video)
    except (FileNotFoundError, ValueError):
        return None
    if record.get("flow") != settings.record() or record.get("source_identity") != _source_identity(job):
        return None
    if job.flow_frames and record.get("indices") != [s.index for s in job.samples]:
        return None
    if all(p.is_file() for i in record.get("indices", []) for p in
           _outputs(out, job.split, job.video, i, record.get("masks", False), settings.save_raw)):
        return record
    return None


def _source_identity(job: VideoJob) -> list:
    """Size and modification time of the source video, or of every frame file read: another video under the
    same (sanitised) name is not taken for a complete one."""
    files = job.flow_frames or (job.source,)
    ends = [Path(f) for f in (files[0], files[-1])]
    return [len(files)] + [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in ends]


def _remove_previous(out: Path, job: VideoJob) -> None:
    try:
        record = read_record(out, job.split, job.video)
    except (FileNotFoundError, ValueError):
        return
    for index in record.get("indices", []):
        for path in _outputs(out, job.split, job.video, index, masks=True, raw=True):
            path.unlink(missing_ok=True)
    record_path(out, job.split, job.video).unlink(missing_ok=True)


_WORKER_ESTIMATORS: dict[FlowSettings, FlowEstimator] = {}


def _cached_estimator(settings: FlowSettings) -> FlowEstimator:
    """One estimator per worker process, built when the first video that needs work arrives."""
    if settings not in _WORKER_ESTIMATORS:
        _WORKER_ESTIMATORS[settings] = settings.build()
    return _WORKER_ESTIMATORS[settings]


def write_flat_sample(layout: FlatLayout, split: str, video: str, index: int, frame: np.ndarray, flow: np.ndarray,
                      mask: np.ndarray | None = None, frame_file: Path | None = None,
                      save_raw_flow: bool = False, camera_motion: str = "none") -> None:
    """One sample of the flat layout: the frame (`frame_file` copied byte for byte when it is a JPEG, else
    `frame` encoded), the flow's colour image in HFAN's channel order, the 0/1 mask when given, the float16
    raw flow when asked. The colour image is `flow_image_for_model` of the flow with `camera_motion` removed."""
    if frame_file is not None and frame_file.suffix.lower() in _JPEG_SUFFIXES:
        copy_file(frame_file, layout.frame_path(split, video, index))
    else:
        write_image(layout.frame_path(split, video, index), frame)
    if mask is not None:
        write_mask(layout.mask_path(split, video, index), mask, foreground_value=1)
    if save_raw_flow:
        save_array(layout.raw_flow_path(split, video, index), flow.astype(np.float16))
    write_image(layout.flow_path(split, video, index), flow_image_for_model(flow, camera_motion))


def _read_sample_mask(source: SampleSource, frame: np.ndarray) -> np.ndarray | None:
    if source.mask_file is None:
        return None
    mask = read_mask(source.mask_file)
    if mask.shape != frame.shape[:2]:
        raise ValueError(f"{source.mask_file} is {mask.shape[1]}x{mask.shape[0]} but its frame is "
                         f"{frame.shape[1]}x{frame.shape[0]}")
    return mask


def prepare_job(job: VideoJob, out: Path, settings: FlowSettings,
                get_estimator: Callable[[FlowSettings], FlowEstimator] | None = None,
                on_frame: Callable[[], None] | None = None) -> tuple[int, bool]:
    """Prepare one video unless it is complete; returns (number of samples, skipped)."""
    record = _is_complete(out, job, settings)
    if record is not None:
        return len(record["indices"]), True
    _remove_previous(out, job)  # another video, or other settings, under this name: none of its files stay
    estimator = (get_estimator or _cached_estimator)(settings)
    layout = FlatLayout(out)
    indices = []
    if job.flow_frames:
        by_position = {s.position: s for s in job.samples}
        frames = flows_at(lambda p: read_image(job.flow_frames[p]), len(job.flow_frames), sorted(by_position),
                          estimator)
        for position, frame, flow in frames:
            source = by_position[position]
            write_flat_sample(layout, job.split, job.video, source.index, frame, flow,
                              _read_sample_mask(source, frame), source.frame_file, settings.save_raw,
                              settings.camera_motion)
            indices.append(source.index)
            if on_frame:
                on_frame()
        size = frame.shape[1::-1]
    else:
        stream = open_frames(job.source, job.fps)
        size = stream.size
        for index, (frame, flow) in enumerate(video_flows(stream, estimator)):
            write_flat_sample(layout, job.split, job.video, index, frame, flow, save_raw_flow=settings.save_raw,
                              camera_motion=settings.camera_motion)
            indices.append(index)
            if on_frame:
                on_frame()
    has_masks = any(s.mask_file is not None for s in job.samples)
    write_json(record_path(out, job.split, job.video),
               {"source": str(job.source), "source_identity": _source_identity(job), "indices": indices,
                "masks": has_masks, "flow": settings.record(), "fps": job.fps, "size": list(size)})
    return len(indices), False


def _prepare_in_worker(arguments) -> tuple[str, int, bool]:
    job, out, settings = arguments
    count, skipped = prepare_job(job, out, settings)
    return job.video, count, skipped


def _init_worker(parent_pid: int) -> None:
    cv2.setNumThreads(1)  # the processes already use every core
    # A pool's workers outlive a parent killed with SIGKILL and would finish their videos unseen (their files are
    # written atomically; a rerun resumes). On Linux the kernel kills each worker with its parent
    # (PR_SET_PDEATHSIG): a polling thread alone lets a worker write samples for up to its interval after the kill.
    # The thread stays as the fallback elsewhere, and covers a parent that died before the prctl call.
    _die_with_parent()
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # no prctl in this libc: the polling thread below still ends the worker


def _exit_when_orphaned(parent_pid: int, interval: float = 0.2) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)


def run_jobs(jobs: list[VideoJob], out: str | Path, settings: FlowSettings, workers: int = 1,
             description: str = "prepare") -> PrepareReport:
    out = check_output_folder(out)
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if workers > 1 and settings.name.startswith("raft"):
        raise ValueError("--workers > 1 is for the CPU methods (dis, farneback); RAFT batches pairs on one device "
                         "instead (--batch-size)")
    for split in {job.split for job in jobs}:
        for folder in (FRAME_DIR, FLOW_DIR, MASK_DIR, RAW_FLOW_DIR, RECORD_DIR):
            remove_temp_files(out / folder / split)
        # Made before any frame, so that a user of a partly prepared split can tell it is unfinished.
        (out / RECORD_DIR / split).mkdir(parents=True, exist_ok=True)
    report = PrepareReport(out)
    expected = sum(len(job.samples) or job.expected_frames or 0 for job in jobs)

    def account(video: str, count: int, skipped: bool) -> None:
        report.samples_total += count
        if skipped:
            report.videos_skipped += 1
        else:
            report.videos_prepared += 1
            report.samples_written += count
            report.prepared.append(video)

    with tqdm(total=expected or None, unit="frame", desc=description, dynamic_ncols=True) as bar:
        if workers == 1:
            get_estimator = functools.cache(FlowSettings.build)  # built only if some video needs work
            for job in jobs:
                count, skipped = prepare_job(job, out, settings, get_estimator, on_frame=lambda: bar.update(1))
                if skipped:
                    bar.update(count)
                account(job.video, count, skipped)
        else:
            # spawn, not fork: a forked child of a process that has started torch or OpenCV threads can hang.
            context = multiprocessing.get_context("spawn")
            with context.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(os.getpid(),)) as pool:
                arguments = [(job, out, settings) for job in jobs]
                for video, count, skipped in pool.imap_unordered(_prepare_in_worker, arguments):
                    bar.update(count)
                    account(video, count, skipped)
        bar.total = bar.n  # a video's header may have claimed more frames than it holds
        bar.refresh()
    return report


# --------------------------------------------------------------------------------------------------- DAVIS
def _frame_number(path: Path, position: int) -> int:
    return int(path.stem) if path.stem.isdigit() else position


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist ({what})")
    return path


def davis_jobs(davis_root: str | Path, splits: Iterable[str]) -> list[VideoJob]:
    root = _require_dir(Path(davis_root), "the DAVIS root: JPEGImages/, Annotations/, ImageSets/")
    jobs = []
    for split in splits:
        for sequence in davis_sequences(root, split):
            frame_dir = _require_dir(root / "JPEGImages" / DAVIS_RESOLUTION / sequence, f"frames of {sequence}")
            mask_dir = _require_dir(root / "Annotations" / DAVIS_RESOLUTION / sequence, f"masks of {sequence}")
            frames = list_frame_files(frame_dir)
            if not frames:
                raise ValueError(f"{frame_dir} holds no frames")
            samples = []
            for position, frame in enumerate(frames):
                mask = mask_dir / f"{frame.stem}.png"
                if not mask.is_file():
                    raise FileNotFoundError(f"{mask} does not exist: every DAVIS frame needs its annotation")
                samples.append(SampleSource(position, _frame_number(frame, position), frame, mask))
            jobs.append(VideoJob(split, sequence, frame_dir, tuple(frames), tuple(samples)))
    return jobs


def prepare_davis(davis_root: str | Path, out: str | Path, splits: Iterable[str] = ("train", "val"),
                  flow: FlowSettings = FlowSettings(), workers: int = 1) -> PrepareReport:
    """DAVIS (480p frames and annotations, ImageSets) -> DAVIS2SEG flat layout."""
    return run_jobs(davis_jobs(davis_root, splits), out, flow, workers, "prepare davis")


# ---------------------------------------------------------------------------------------------- YouTube-VOS
def youtube_vos_jobs(root: str | Path) -> list[VideoJob]:
    """The train split: samples are the annotated frames (`train/Annotations/<vid>/*.png`); the flow is measured
    on `train_all_frames/JPEGImages/<vid>` (every frame) when that folder exists, else between the annotated
    frames themselves (every 5th frame in the official release)."""
    root = _require_dir(Path(root), "the YouTube-VOS root with train/JPEGImages and train/Annotations")
    images = _require_dir(root / "train" / "JPEGImages", "YouTube-VOS train frames")
    annotations = _require_dir(root / "train" / "Annotations", "YouTube-VOS train annotations")
    all_frames = root / "train_all_frames" / "JPEGImages"
    videos = sorted(d.name for d in annotations.iterdir() if d.is_dir())
    if not videos:
        raise ValueError(f"{annotations} holds no video folders")
    jobs = []
    for video in videos:
        masks = {p.stem: p for p in (annotations / video).glob("*.png") if not p.name.startswith(".")}
        frames = [p for p in list_frame_files(_require_dir(images / video, f"frames of {video}")) if p.stem in masks]
        if not frames:
            raise ValueError(f"{images / video} has no frame with an annotation in {annotations / video}")
        flow_frames = frames
        if all_frames.is_dir():
            flow_frames = list_frame_files(_require_dir(all_frames / video, f"{all_frames} exists, so every "
                                                                             f"video must be in it"))
        positions = {p.stem: i for i, p in enumerate(flow_frames)}
        missing = [f.stem for f in frames if f.stem not in positions]
        if missing:
            raise FileNotFoundError(f"{all_frames / video} lacks annotated frame(s) {', '.join(missing[:5])}")
        samples = tuple(SampleSource(positions[f.stem], _frame_number(f, positions[f.stem]), f, masks[f.stem])
                        for f in frames)
        jobs.append(VideoJob("train", video, images / video, tuple(flow_frames), samples))
    return jobs


def prepare_youtube_vos(root: str | Path, out: str | Path, flow: FlowSettings = FlowSettings(),
                        workers: int = 1) -> PrepareReport:
    """YouTube-VOS train -> YouTube2SEG flat layout (split `train`)."""
    return run_jobs(youtube_vos_jobs(root), out, flow, workers, "prepare youtube-vos")


# ----------------------------------------------------------------------------------------------- any video
def safe_video_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    if not name:
        raise ValueError(f"cannot make a video name of ASCII letters, digits, '_', '.' and '-' from {text!r}; "
                         "give one with --name")
    return name


def prepare_video(source: str | Path, out: str | Path, flow: FlowSettings = FlowSettings(), split: str = "val",
                  name: str | None = None, fps: float | None = None) -> PrepareReport:
    """Frames and flow of one video file or frame folder, for inference (`<out>/{frame,flow}/<split>/`; the
    original's inference reads split `val`). Frames are numbered from 0 in decoding order."""
    frames = open_frames(source, fps)  # checks the input before anything is written
    video = safe_video_name(name or frames.path.stem)
    if frames.frame_paths is not None:
        samples = tuple(SampleSource(i, i, p) for i, p in enumerate(frames.frame_paths))
        job = VideoJob(split, video, frames.path, frames.frame_paths, samples, frames.fps)
    else:
        job = VideoJob(split, video, frames.path, fps=frames.fps, expected_frames=frames.frame_count)
    return run_jobs([job], out, flow, 1, f"prepare {video}")
