"""Predicting a prepared split (flat layout): the one iterator that `hfan infer` and training validation share.

`predict_samples` reads frame + flow image pairs in batches of one video (hence of one image size) and yields
each batch's predictions; `infer_dataset` is the paper's test on a prepared dataset (what the original
`infer.py` does), writing masks in the DAVIS layout, resumable and shardable over processes.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hfan.config import check_model_options
from hfan.datasets.layouts import FlatLayout, PredictionLayout, Sample
from hfan.datasets.prepare import check_prepared
from hfan.files import changed_fields, check_output_folder, file_digest, remove_temp_files, write_json
from hfan.inference.predictor import Prediction, Predictor
from hfan.io.images import probability_to_uint8, read_image, write_image, write_mask
from hfan.streams import Timings, prefetched


# ------------------------------------------------------------------------------------- prepared datasets
def batches_of_one_video(samples: list[Sample], batch_size: int) -> Iterator[list[tuple[Sample, np.ndarray, np.ndarray]]]:
    """Read frame + flow image pairs and group them in batches of one video, hence of one image size
    (docs/design.md#quirk-same-size-test-batches).

    A batch never spans two videos, so a video's masks do not depend on which other videos a process gets:
    sharded runs write the same bytes as a single process (batched forwards round differently by batch).
    """
    batch: list[tuple[Sample, np.ndarray, np.ndarray]] = []
    for sample in samples:
        frame, flow_image = read_image(sample.frame), read_image(sample.flow)
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


def predict_samples(predictor: Predictor, samples: Iterable[Sample], batch_size: int, prefetch: bool = False,
                    timings: Timings | None = None) -> Iterator[list[tuple[Sample, Prediction]]]:
    """Per batch (at most `batch_size` frames of one video), each sample with its prediction. With `prefetch`,
    the next batches are read in a background thread while the model runs; `timings` gets the model's seconds
    (GPU work included: the device is synchronised around each forward)."""
    batches = batches_of_one_video(list(samples), batch_size)
    for batch in prefetched(batches) if prefetch else batches:
        if timings is not None and predictor.device.type == "cuda":
            torch.cuda.synchronize(predictor.device)
        start = time.perf_counter()
        predictions = predictor.predict([frame for _, frame, _ in batch], [flow for _, _, flow in batch])
        if timings is not None:
            if predictor.device.type == "cuda":
                torch.cuda.synchronize(predictor.device)
            timings.add("model", start)
        yield [(sample, prediction) for (sample, _, _), prediction in zip(batch, predictions)]


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


INFER_RECORD = "hfan-infer.json"  # in the output folder: what made its masks


def infer_record(checkpoint: str | os.PathLike, preset: str | None, options: list[str] | tuple[str, ...],
                 data_root: str | os.PathLike, split: str, **test_flags) -> dict:
    """What decides the masks of `hfan infer`: the weights (by digest), the options and test flags, the data."""
    weights = Path(checkpoint)
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint {weights} does not exist")
    return {"weights": str(weights), "weights_sha256": file_digest(weights), "preset": preset,
            "options": list(options), "test": dict(sorted(test_flags.items())),
            "data": str(Path(data_root).resolve()), "split": split}


def check_infer_output(out: str | os.PathLike, record: dict, overwrite: bool = False) -> None:
    """`out` may resume only the same job: masks made by other weights, options or data are refused (ValueError
    saying what differs) unless `overwrite`, which removes them. Called before the model loads."""
    layout = PredictionLayout(check_output_folder(out))
    path = layout.root / INFER_RECORD
    previous = json.loads(path.read_text()) if path.is_file() else None
    holds_masks = layout.root.is_dir() and any(p.is_dir() for p in layout.root.iterdir())
    if previous == record or not (holds_masks or previous is not None):
        return
    if not overwrite:
        if previous is None:
            raise ValueError(f"{layout.root} already holds masks of an unknown run: pass --overwrite to replace "
                             "them, or give another --out")
        changed = changed_fields(previous, record)
        raise ValueError(f"{layout.root} holds masks of another run (different {', '.join(changed)}): pass "
                         "--overwrite to replace them, or give another --out")
    for root in (layout.root, layout.probability_root):
        if root.is_dir():
            shutil.rmtree(root)


def infer_dataset(predictor: Predictor, data_root: str | os.PathLike, split: str, out: str | os.PathLike,
                  batch_size: int = 4, save_probabilities: bool = False, rank: int = 0, world_size: int = 1,
                  progress: bool = True, record: dict | None = None) -> InferReport:
    """The paper's test on a prepared flat-layout dataset: `<out>/<video>/<frame>.png` (0/255, DAVIS layout),
    written straight from the prediction; with `save_probabilities` also `<out>-prob/<video>/<frame>.png`.

    Resumable: frames whose mask exists are skipped (masks are written atomically, so an existing one is
    complete) and temporary files of an interrupted run are removed. With `world_size` > 1, this process takes
    every world_size-th video (sharding by video keeps each video's frames together). `record` (see
    `infer_record`; check it first with `check_infer_output`) is written into `out` before the first mask.
    """
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size}: give at least 1 frame per forward")
    layout = PredictionLayout(out)
    if record is not None and rank == 0:
        write_json(layout.root / INFER_RECORD, record)
    samples = FlatLayout(data_root).samples(split, require_masks=False)
    videos = sorted({s.video for s in samples})[rank::world_size]
    mine = [s for s in samples if s.video in set(videos)]
    for video in videos:
        remove_temp_files(layout.root / video)
        remove_temp_files(layout.probability_root / video)
    todo = [s for s in mine if not layout.mask_path(s.video, s.index).is_file()
            or (save_probabilities and not layout.probability_path(s.video, s.index).is_file())]
    timings, wall_start = Timings(), time.perf_counter()
    bar = tqdm(total=len(todo), unit="frame", disable=not progress, desc=f"infer {split}")
    for batch in predict_samples(predictor, todo, batch_size, prefetch=True, timings=timings):
        for sample, prediction in batch:
            write_mask(layout.mask_path(sample.video, sample.index), prediction.mask, foreground_value=255)
            if save_probabilities:
                write_image(layout.probability_path(sample.video, sample.index),
                            probability_to_uint8(prediction.probability))
        bar.update(len(batch))
    bar.close()
    return InferReport(len(todo), len(mine) - len(todo), timings.seconds["model"], time.perf_counter() - wall_start)


def infer_checkpoint(checkpoint: str | os.PathLike, data_root: str | os.PathLike, split: str,
                     out: str | os.PathLike, preset: str | None = None, options: list[str] | tuple[str, ...] = (),
                     batch_size: int = 4, save_probabilities: bool = False, overwrite: bool = False,
                     progress: bool = True, **predictor_options) -> InferReport:
    """`hfan infer` as one call: the output folder and its previous masks are checked before the model loads
    (`check_infer_output`), then `infer_dataset`, sharded over torchrun's processes. `predictor_options` go to
    `hfan.inference.predictor.load_predictor`."""
    from hfan.inference.predictor import load_predictor

    check_model_options(options)
    check_prepared(data_root, split, FlatLayout(data_root).samples(split, require_masks=False))
    flags = {k: predictor_options.get(k, False) for k in ("aug_test", "whole_image")}
    record = infer_record(checkpoint, preset, options, data_root, split, **flags)
    rank, world_size = distributed_rank()
    if rank == 0:
        check_infer_output(out, record, overwrite)
    wait_for_shards(world_size)  # rank 0 may have cleared the folder
    predictor = load_predictor(checkpoint, preset=preset, options=options, frames_per_batch=batch_size,
                               **predictor_options)
    return infer_dataset(predictor, data_root, split, out, batch_size, save_probabilities, rank, world_size,
                         progress, record)


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) under torchrun, else (0, 1). Inference shards videos by rank; the gloo group is only
    there for the barrier of `wait_for_shards` (it works with CPU and CUDA processes alike)."""
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
    return rank, world_size


def wait_for_shards(world_size: int) -> None:
    """Under torchrun: return when every process has written its shard (before rank 0 scores them)."""
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()
