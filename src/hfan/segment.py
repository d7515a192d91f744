"""From a video to masks: wires frames, flow, the model's flow settings, a Predictor and writing together.

`segment_video` streams any video through flow estimation and the model, yielding per-frame results lazily;
`segment_to_folder` writes them (masks, overlay video, probability maps) in the `SegmentOutput` layout. The
paper's test on a prepared dataset is `hfan.evaluation.predict.infer_dataset`.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hfan.config import FLOW_METHODS, FlowConfig, check_model_options
from hfan.datasets.layouts import SegmentOutput, frame_name
from hfan.files import changed_fields, check_output_folder, file_digest, is_temp_path, write_json
from hfan.flow import build_flow_estimator, video_flows
from hfan.flow.estimators import FlowEstimator
from hfan.flow.model_input import ScaledFlowEstimator, flow_image_for_model
from hfan.inference.predictor import Predictor
from hfan.io.images import cutout_on_colour, cutout_rgba, overlay_mask, probability_to_uint8, write_image, write_mask
from hfan.io.video import FrameSource, VideoWriter, open_frames
from hfan.preprocess import rescale_size
from hfan.streams import Timings, in_batches, prefetched, timed

@dataclass
class FrameResult:
    index: int
    frame: np.ndarray  # RGB uint8 HxWx3
    flow_image: np.ndarray  # RGB uint8 HxWx3, the colour-coded flow the model saw
    probability: np.ndarray  # float32 HxW, foreground probability
    mask: np.ndarray  # bool HxW


def _prefetches(predictor: Predictor, prefetch: bool | None) -> bool:
    """The prefetch default of segment_video and segment_to_folder: on when the model runs on a GPU."""
    return predictor.device.type != "cpu" if prefetch is None else prefetch


def model_flow_config(model: torch.nn.Module | Predictor) -> FlowConfig:
    """The flow settings a model was trained with (its config's `flow`; raw flow for models without one)."""
    network = model.model if isinstance(model, Predictor) else model
    config = getattr(network, "config", None)
    return getattr(config, "flow", None) or FlowConfig()


def build_model_flow(flow_config: FlowConfig, method: str | None = None,
                     flow_options: dict | None = None) -> FlowEstimator:
    """The estimator of `flow_config` (or of `method`), at the config's scale. DIS takes the config's preset
    unless `flow_options` names one."""
    method = method or flow_config.method
    options = dict(flow_options or {})
    if method == "dis":
        options.setdefault("preset", flow_config.dis_preset)
    estimator = build_flow_estimator(method, **options)
    return ScaledFlowEstimator(estimator, flow_config.scale) if flow_config.scale < 1 else estimator


def segment_video(source: str | os.PathLike | Iterable[np.ndarray], model: torch.nn.Module | Predictor,
                  flow: str | FlowEstimator | None = None, batch_size: int = 4, flow_options: dict | None = None,
                  timings: Timings | None = None, prefetch: bool | None = None) -> Iterator[FrameResult]:
    """Segment every frame of a video file, a frame folder, or an iterable of RGB uint8 frames, lazily.

    The flow is made as the model's `flow` config says (estimator, DIS preset, scale, camera-motion removal):
    `flow` (a method name or an estimator) replaces only the estimator.

    Flow follows HFAN's convention (forward flow, backward for the last frame; a one-frame video gets a zero
    flow, drawn white). Memory is bounded by a few batches of `batch_size` frames whatever the video's length.
    With `prefetch`, decoding, flow and its colour encoding for the next batches run in a background thread while
    the model works on this one; the results are the same either way. Default (None): prefetch when the model
    runs on a GPU. On a CPU the thread competes with torch's threads for the same cores, so it brings no gain to
    rely on there (docs/speed.md).
    """
    predictor = model if isinstance(model, Predictor) else Predictor(model, frames_per_batch=batch_size)
    flow_config = model_flow_config(predictor)
    if not isinstance(flow, FlowEstimator) and (flow or flow_config.method).startswith("raft"):
        flow_options = {"device": predictor.device, **(flow_options or {})}  # RAFT beside the model
    estimator = flow if isinstance(flow, FlowEstimator) else build_model_flow(flow_config, flow, flow_options)
    timings = timings if timings is not None else Timings()
    frames = open_frames(source) if isinstance(source, (str, os.PathLike)) else source

    def flows_timed() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        pairs = iter(video_flows(timed(frames, timings, "decode"), estimator))
        while True:
            start, decoded_before = time.perf_counter(), timings.seconds["decode"]
            try:
                pair = next(pairs)
            except StopIteration:
                return
            # video_flows pulls frames (timed as decode) while it estimates flow: count only the rest as flow.
            timings.seconds["flow"] += time.perf_counter() - start - (timings.seconds["decode"] - decoded_before)
            yield pair

    def encoded_batches() -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
        # The colour encoding (the colours HFAN was trained on) costs the host more per frame than a GPU needs for
        # the model (docs/speed.md): the frames of a batch are encoded in parallel threads.
        def encode(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
            height, width = pair[0].shape[:2]
            encode_size = (rescale_size(width, height, predictor.config.img_scale)
                           if flow_config.encode_at == "model" else None)
            return flow_image_for_model(pair[1], flow_config.camera_motion, (width, height), encode_size)

        with ThreadPoolExecutor(max_workers=min(batch_size, os.cpu_count() or 1)) as pool:
            for batch in in_batches(flows_timed(), batch_size):
                start = time.perf_counter()
                flow_images = list(pool.map(encode, batch))
                timings.add("encode", start)
                yield [(frame, flow_image) for (frame, _), flow_image in zip(batch, flow_images)]

    batches = prefetched(encoded_batches()) if _prefetches(predictor, prefetch) else encoded_batches()

    def predicted() -> Iterator[FrameResult]:
        index = 0
        for batch in batches:
            start = time.perf_counter()
            predictions = predictor.predict([frame for frame, _ in batch], [flow_image for _, flow_image in batch])
            timings.add("model", start)
            for (frame, flow_image), prediction in zip(batch, predictions):
                timings.frames += 1
                yield FrameResult(index, frame, flow_image, prediction.probability, prediction.mask)
                index += 1

    try:
        yield from mean_over_time(predicted(), predictor.config.temporal_mean)
    finally:
        batches.close()  # both are generators: stops the prefetching thread, or the encoding pool


def _centred_mean(window: deque[FrameResult], centre: int, radius: int) -> FrameResult:
    members = [result for result in window if abs(result.index - centre) <= radius]
    probability = np.mean([result.probability for result in members], axis=0, dtype=np.float32)
    [result] = [result for result in members if result.index == centre]
    return dataclasses.replace(result, probability=probability, mask=probability > 0.5)


def mean_over_time(results: Iterable[FrameResult], radius: int) -> Iterator[FrameResult]:
    """`test.temporal_mean`: each frame's probability averaged with those of `radius` frames on each side (fewer
    at the ends of the video), the mask that mean > 0.5. Holds 2 x radius + 1 results; 0 passes them through."""
    if radius <= 0:
        yield from results
        return
    window: deque[FrameResult] = deque()
    last = -1
    for result in results:
        window.append(result)
        last = result.index
        centre = last - radius
        if centre >= 0:
            yield _centred_mean(window, centre, radius)
            while window[0].index < centre + 1 - radius:
                window.popleft()
    for centre in range(max(last - radius + 1, 0), last + 1):
        yield _centred_mean(window, centre, radius)


@dataclass(frozen=True)
class FrameRange:
    """Which frames of a video to segment: `start` to `end` (exclusive, None: to the end), every `stride`-th. The
    selected frames are segmented as a video of their own (flow between consecutive selected frames)."""

    start: int = 0
    end: int | None = None
    stride: int = 1

    def __post_init__(self):
        if self.start < 0 or self.stride < 1 or (self.end is not None and self.end <= self.start):
            raise ValueError(f"frame range: need 0 <= --start < --end and --stride >= 1, got start {self.start}, "
                             f"end {self.end}, stride {self.stride}")

    def original_index(self, position: int) -> int:
        return self.start + position * self.stride

    def count(self, frames: int | None) -> int | None:
        if frames is None:
            return None
        end = frames if self.end is None else min(self.end, frames)
        return max(0, -(-(end - self.start) // self.stride))


def select_frames(video: FrameSource, frames: FrameRange) -> tuple[Iterable[np.ndarray], int | None]:
    """The selected frames (a frame folder reads only those files) and how many there are, if known."""
    if frames == FrameRange():
        return video, video.frame_count
    if video.frame_paths is not None:
        paths = video.frame_paths[frames.start:frames.end:frames.stride]
        return dataclasses.replace(video, frame_paths=paths, frame_count=len(paths)), len(paths)
    return itertools.islice(video, frames.start, frames.end, frames.stride), frames.count(video.frame_count)


def frame_names(video: FrameSource, frames: FrameRange = FrameRange()):
    """The output name of the frame at each position: a frame folder's file stems (img_99.jpg -> img_99), else
    the frame's number in the video (00012)."""
    if video.frame_paths is not None:
        return lambda position: video.frame_paths[frames.original_index(position)].stem
    return lambda position: frame_name(frames.original_index(position), "")


def check_segment_output(out: str | os.PathLike, record: dict | None = None, overwrite: bool = False) -> SegmentOutput:
    """Make `out` ready for new outputs, so that they never mix with a previous run's. A folder that holds
    outputs is cleared when `overwrite` is set or when its record equals `record` (the same job again);
    otherwise it is refused with a ValueError that says what differs."""
    layout = SegmentOutput(check_output_folder(out))
    for leftover in [p for p in layout.existing() if is_temp_path(p)]:  # of a killed run: never complete
        leftover.unlink()
    existing = layout.existing()
    if not existing:
        return layout
    previous = json.loads(layout.record_path.read_text()) if layout.record_path.is_file() else None
    if not overwrite and (record is None or previous != record):
        if previous is None:
            what = f"holds outputs ({', '.join(p.name for p in existing[:4])}) of an unknown run"
        else:
            changed = changed_fields(previous, record or {})
            what = f"holds the output of another run (different {', '.join(changed)})"
        raise ValueError(f"{layout.root} {what}: pass --overwrite to replace it, or give another --out")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return layout


def segment_to_folder(source: str | os.PathLike | FrameSource, out: str | os.PathLike,
                      model: torch.nn.Module | Predictor, flow: str | FlowEstimator | None = None,
                      flow_options: dict | None = None, batch_size: int = 4, overlay: bool = True,
                      save_probabilities: bool = False, save_flow: bool = False, progress: bool = True,
                      prefetch: bool | None = None, frames: FrameRange = FrameRange(), overwrite: bool = False,
                      record: dict | None = None, cutout: bool = False) -> Timings:
    """`hfan segment`: masks (0/255 PNG) in <out>/masks, <out>/overlay.mp4 at the source frame rate,
    optionally 8-bit probabilities in <out>/probabilities, flow images in <out>/flow and, with `cutout`, the
    object as RGBA PNGs (transparent background) in <out>/cutouts plus <out>/cutout.mp4 on a green background
    (hfan.datasets.layouts). Videos are H.264 where PyAV has libx264 (hfan.io.video.VideoWriter).

    Outputs never mix with an earlier run's: `check_segment_output(out, record, overwrite)` first; `record` (what
    made the outputs) is written last, as <out>/hfan-segment.json. With `prefetch` (default: when the model runs
    on a GPU) the next frames are prepared ahead (see `segment_video`) and the files are written by a background
    thread, in order, so that the GPU does not wait for the host.
    """
    wall_start = time.perf_counter()
    predictor = model if isinstance(model, Predictor) else Predictor(model, frames_per_batch=batch_size)
    prefetch = _prefetches(predictor, prefetch)
    video = source if isinstance(source, FrameSource) else open_frames(source)
    layout = check_segment_output(out, record, overwrite)
    selected, total = select_frames(video, frames)
    name = frame_names(video, frames)
    timings = Timings()
    fps = (video.fps or 25.0) / frames.stride
    writer = VideoWriter(layout.overlay_path, fps) if overlay else None
    cutout_writer = VideoWriter(layout.cutout_video_path, fps) if cutout else None
    writers = [w for w in (writer, cutout_writer) if w is not None]

    def write(result: FrameResult) -> None:
        start = time.perf_counter()
        write_mask(layout.mask_path(name(result.index)), result.mask, foreground_value=255)
        if save_probabilities:
            write_image(layout.probability_path(name(result.index)), probability_to_uint8(result.probability))
        if save_flow:
            write_image(layout.flow_path(name(result.index)), result.flow_image)
        if cutout:
            write_image(layout.cutout_path(name(result.index)), cutout_rgba(result.frame, result.mask))
            cutout_writer.write(cutout_on_colour(result.frame, result.mask))
        if writer is not None:
            writer.write(overlay_mask(result.frame, result.mask))
        timings.add("write", start)

    results = segment_video(selected, predictor, flow, batch_size, flow_options, timings, prefetch)
    # One writing thread keeps the overlay's frames in order; at most two batches wait for it.
    writing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfan-write") if prefetch else None
    pending: deque[Future] = deque()
    try:
        for result in tqdm(results, total=total, unit="frame", disable=not progress, desc=video.path.name):
            if writing is None:
                write(result)
                continue
            pending.append(writing.submit(write, result))
            while len(pending) > 2 * batch_size or (pending and pending[0].done()):
                pending.popleft().result()  # raises a failed write here
        while pending:
            pending.popleft().result()
    except BaseException:
        results.close()  # stops the prefetching thread before the partial video is removed
        if writing is not None:
            writing.shutdown(cancel_futures=True)
        for open_writer in writers:
            open_writer.abort()
        raise
    finally:
        if writing is not None:
            writing.shutdown()
    for open_writer in writers:
        start = time.perf_counter()
        open_writer.close()
        timings.add("write", start)
    if timings.frames == 0:
        raise ValueError(f"{video.path}: no frame in the range asked for (--start {frames.start}, --end "
                         f"{frames.end}, --stride {frames.stride})")
    if record is not None:
        write_json(layout.record_path, record)
    timings.wall_seconds = time.perf_counter() - wall_start
    return timings


def segment_file(source: str | os.PathLike, out: str | os.PathLike | None = None, checkpoint: str | os.PathLike = "default",
                 preset: str | None = None, options: list[str] | tuple[str, ...] = (), flow: str | None = None,
                 flow_options: dict | None = None, batch_size: int = 4, frames: FrameRange = FrameRange(),
                 fps: float | None = None, allow_partial: bool = False, overwrite: bool = False,
                 overlay: bool = True, save_probabilities: bool = False, save_flow: bool = False,
                 cutout: bool = False, progress: bool = True, **predictor_options) -> tuple[Path, Timings]:
    """`hfan segment` as one call: every input is checked (the video, the output folder and its previous
    contents, the weights file, the device) BEFORE the model loads; then `segment_to_folder`. Returns the output
    folder (default `<input>_hfan` next to the input) and the timings. `predictor_options` go to
    `hfan.inference.predictor.load_predictor` (device, precision, backend, compiled, aug_test, whole_image,
    tune_allocator)."""
    from hfan.inference.predictor import check_device, load_predictor
    from hfan.presets import DEFAULT_MODEL, default_weights_path

    if flow is not None and flow not in FLOW_METHODS:
        raise ValueError(f"--flow {flow}: unknown flow method; valid: {', '.join(FLOW_METHODS)}")
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size}: give at least 1 frame per forward")
    check_model_options(options)
    video = open_frames(source, fps=fps, allow_partial=allow_partial)
    out = Path(out) if out is not None else SegmentOutput.default_root(video.path)
    weights = default_weights_path() if str(checkpoint) == DEFAULT_MODEL else Path(checkpoint)
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint {weights} does not exist")
    if predictor_options.get("device") is not None:
        check_device(predictor_options["device"])
    record = {"input": str(video.path.resolve()), "input_frames": video.frame_count,
              "frames": dataclasses.asdict(frames), "weights": str(weights), "weights_sha256": file_digest(weights),
              "preset": preset, "options": list(options), "flow": flow,
              "test": {k: predictor_options.get(k, False) for k in ("aug_test", "whole_image")}}
    check_segment_output(out, record, overwrite)  # refuses before the model loads
    predictor = load_predictor(checkpoint, preset=preset, options=options, frames_per_batch=batch_size,
                               **predictor_options)
    timings = segment_to_folder(video, out, predictor, flow, flow_options, batch_size, overlay, save_probabilities,
                                save_flow, progress, frames=frames, overwrite=True, record=record, cutout=cutout)
    return out, timings
