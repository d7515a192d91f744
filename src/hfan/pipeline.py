"""From a video (or a prepared dataset) to masks: wires io, flow, inference and writing together.

`segment_video` streams any video through flow estimation and the model, yielding per-frame results lazily;
`segment_to_folder` writes them (masks, overlay video, probability maps); `infer_dataset` is the paper's test
on a prepared flat-layout dataset (what the original `infer.py` does), resumable and shardable over processes.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hfan.data import io
from hfan.data.layouts import FlatLayout, Sample
from hfan.config import FlowConfig
from hfan.flow import build_flow_estimator, video_flows
from hfan.flow.estimators import FlowEstimator
from hfan.flow.model_input import ScaledFlowEstimator, flow_image_for_model
from hfan.inference import Predictor
from hfan.streaming import in_batches, prefetched

CHECKPOINT_CACHE_ENV = "HFAN_HOME"
# The official released files and the presets they hold (SPEC §4.3).
OFFICIAL_FILES = {"hfan-small": "HFAN-s-converted.pth", "hfan-medium": "HFAN-m-converted.pth"}
OFFICIAL_WEIGHTS_HELP = (
    "The official HFAN checkpoints (HFAN-s-converted.pth = hfan-small, HFAN-m-converted.pth = hfan-medium) are "
    "linked from the README of github.com/NUST-Machine-Intelligence-Laboratory/HFAN (Baidu, and a OneDrive "
    "folder given in its issue #15). Download one and pass --checkpoint FILE, or put it in {cache}.")


def checkpoint_cache() -> Path:
    """Where `hfan segment` looks for weights when no --checkpoint is given: $HFAN_HOME/checkpoints or
    ~/.cache/hfan/checkpoints."""
    root = os.environ.get(CHECKPOINT_CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "hfan") / "checkpoints"


def find_checkpoint(preset: str) -> Path:
    cache = checkpoint_cache()
    candidates = [cache / OFFICIAL_FILES[preset]] if preset in OFFICIAL_FILES else []
    candidates.append(cache / f"{preset}.pth")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no weights for {preset} in {cache}. " + OFFICIAL_WEIGHTS_HELP.format(cache=cache))


@dataclass
class Timings:
    """Seconds spent per stage, for the speed breakdown (decode, flow, encode, model, write), and in all.

    With prefetching, decode / flow / encode run in a background thread beside the model, so the stages can sum
    to more than `wall_seconds`, the elapsed time that frames/s is computed from.
    """

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    frames: int = 0
    wall_seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds else float("nan")

    def add(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - start
        return now


@dataclass
class FrameResult:
    index: int
    frame: np.ndarray  # RGB uint8 HxWx3
    flow_image: np.ndarray  # RGB uint8 HxWx3, the colour-coded flow the model saw
    probability: np.ndarray  # float32 HxW, foreground probability
    mask: np.ndarray  # bool HxW


def _timed(iterable: Iterable, timings: Timings, stage: str) -> Iterator:
    iterator = iter(iterable)
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        timings.add(stage, start)
        yield item


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
    runs on a GPU. On the 2-core CPU the thread competes with torch's threads for the same cores: between 7 %
    slower and 10 % faster over three runs of benchmarks/segment_speed.py, so no gain to rely on.
    """
    predictor = model if isinstance(model, Predictor) else Predictor(model)
    flow_config = model_flow_config(predictor)
    estimator = flow if isinstance(flow, FlowEstimator) else build_model_flow(flow_config, flow, flow_options)
    timings = timings if timings is not None else Timings()
    frames = io.open_frames(source) if isinstance(source, (str, os.PathLike)) else source

    def flows_timed() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        pairs = iter(video_flows(_timed(frames, timings, "decode"), estimator))
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
        # The colour encoding (the colours HFAN was trained on) takes 13-20 ms per 854x480 frame on the host, more
        # than a GPU needs for the model: the frames of a batch are encoded in parallel threads.
        with ThreadPoolExecutor(max_workers=min(batch_size, os.cpu_count() or 1)) as pool:
            for batch in in_batches(flows_timed(), batch_size):
                start = time.perf_counter()
                flow_images = list(pool.map(
                    lambda pair: flow_image_for_model(pair[1], flow_config.camera_motion,
                                                      (pair[0].shape[1], pair[0].shape[0])), batch))
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


def segment_to_folder(source: str | os.PathLike, out: str | os.PathLike, model: torch.nn.Module | Predictor,
                      flow: str | FlowEstimator | None = None, flow_options: dict | None = None, batch_size: int = 4,
                      overlay: bool = True, save_probabilities: bool = False, save_flow: bool = False,
                      progress: bool = True, prefetch: bool | None = None) -> Timings:
    """`hfan segment`: masks (0/255 PNG) in <out>/masks, <out>/overlay.mp4 at the source frame rate,
    optionally 8-bit probabilities in <out>/probabilities and flow images in <out>/flow.

    With `prefetch` (default: when the model runs on a GPU) the next frames are prepared ahead (see
    `segment_video`) and the files are written by a background thread, in order, so that the GPU does not
    wait for the host.
    """
    wall_start = time.perf_counter()
    predictor = model if isinstance(model, Predictor) else Predictor(model)
    prefetch = _prefetches(predictor, prefetch)
    video = io.open_frames(source)
    out = Path(out)
    timings = Timings()
    fps = video.fps or 25.0
    writer = io.VideoWriter(out / "overlay.mp4", fps) if overlay else None

    def write(result: FrameResult) -> None:
        start = time.perf_counter()
        name = f"{result.index:05d}.png"
        io.write_mask(out / "masks" / name, result.mask, foreground_value=255)
        if save_probabilities:
            io.write_image(out / "probabilities" / name, probability_to_uint8(result.probability))
        if save_flow:
            io.write_image(out / "flow" / f"{result.index:05d}.jpg", result.flow_image)
        if writer is not None:
            writer.write(io.overlay_mask(result.frame, result.mask))
        timings.add("write", start)

    results = segment_video(video, predictor, flow, batch_size, flow_options, timings, prefetch)
    # One writing thread keeps the overlay's frames in order; at most two batches wait for it.
    writing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfan-write") if prefetch else None
    pending: deque[Future] = deque()
    try:
        for result in tqdm(results, total=video.frame_count, unit="frame", disable=not progress,
                           desc=Path(source).name):
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
        if writer is not None:
            writer.abort()
        raise
    finally:
        if writing is not None:
            writing.shutdown()
    if writer is not None:
        start = time.perf_counter()
        writer.close()
        timings.add("write", start)
    timings.wall_seconds = time.perf_counter() - wall_start
    return timings


def probability_to_uint8(probability: np.ndarray) -> np.ndarray:
    """8-bit saliency map for VSOD evaluation: round(255 p)."""
    return np.clip(np.rint(probability * 255.0), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------- prepared datasets
def _batches_of_one_video(samples: list[Sample], batch_size: int) -> Iterator[list[tuple[Sample, np.ndarray, np.ndarray]]]:
    """Read frame + flow image pairs and group them in batches of one video, hence of one image size (SPEC §9.23).

    A batch never spans two videos, so a video's masks do not depend on which other videos a process gets:
    sharded runs write the same bytes as a single process (batched forwards round differently by batch).
    """
    batch: list[tuple[Sample, np.ndarray, np.ndarray]] = []
    for sample in samples:
        frame, flow_image = io.read_image(sample.frame), io.read_image(sample.flow)
        if frame.shape != flow_image.shape:
            raise ValueError(f"{sample.frame} is {frame.shape[1]}x{frame.shape[0]} but its flow {sample.flow} is "
                             f"{flow_image.shape[1]}x{flow_image.shape[0]}: re-run hfan prepare for this video")
        if batch and (sample.video != batch[0][0].video or frame.shape != batch[0][1].shape
                      or len(batch) == batch_size):
            yield batch
            batch = []
        batch.append((sample, frame, flow_image))
    if batch:
        yield batch


@dataclass
class InferReport:
    frames_done: int
    frames_skipped: int
    model_seconds: float
    wall_seconds: float

    @property
    def model_fps(self) -> float:
        return self.frames_done / self.model_seconds if self.model_seconds else float("nan")

    @property
    def wall_fps(self) -> float:
        return self.frames_done / self.wall_seconds if self.wall_seconds else float("nan")


def infer_dataset(predictor: Predictor, data_root: str | os.PathLike, split: str, out: str | os.PathLike,
                  batch_size: int = 4, save_probabilities: bool = False, rank: int = 0, world_size: int = 1,
                  progress: bool = True) -> InferReport:
    """The paper's test on a prepared flat-layout dataset: `<out>/<video>/<frame>.png` (0/255, DAVIS layout),
    written straight from the prediction; with `save_probabilities` also `<out>-prob/<video>/<frame>.png`.

    Resumable: frames whose mask exists are skipped (masks are written atomically, so an existing one is
    complete) and temporary files of an interrupted run are removed. With `world_size` > 1, this process takes
    every world_size-th video (sharding by video keeps each video's frames together).
    """
    out = Path(out)
    probability_out = out.with_name(out.name + "-prob")
    samples = FlatLayout(data_root).samples(split, require_masks=False)
    videos = sorted({s.video for s in samples})[rank::world_size]
    mine = [s for s in samples if s.video in set(videos)]

    def mask_path(sample: Sample) -> Path:
        return out / sample.video / f"{sample.index:05d}.png"

    for video in videos:
        io.remove_temp_files(out / video)
        io.remove_temp_files(probability_out / video)
    todo = [s for s in mine if not mask_path(s).is_file()
            or (save_probabilities and not (probability_out / s.video / f"{s.index:05d}.png").is_file())]
    model_seconds, wall_start = 0.0, time.perf_counter()
    bar = tqdm(total=len(todo), unit="frame", disable=not progress, desc=f"infer {split}")
    # Frames and flow images of the next batches are read in a background thread while the model runs.
    for batch in prefetched(_batches_of_one_video(todo, batch_size)):
        if predictor.device.type == "cuda":
            torch.cuda.synchronize(predictor.device)
        start = time.perf_counter()
        predictions = predictor.predict([frame for _, frame, _ in batch], [flow for _, _, flow in batch])
        if predictor.device.type == "cuda":
            torch.cuda.synchronize(predictor.device)
        model_seconds += time.perf_counter() - start
        for (sample, _, _), prediction in zip(batch, predictions):
            io.write_mask(mask_path(sample), prediction.mask, foreground_value=255)
            if save_probabilities:
                io.write_image(probability_out / sample.video / f"{sample.index:05d}.png",
                               probability_to_uint8(prediction.probability))
        bar.update(len(batch))
    bar.close()
    return InferReport(len(todo), len(mine) - len(todo), model_seconds, time.perf_counter() - wall_start)
