"""Validation during training: predict a flat-layout split with the official test path and score it with the
DAVIS-2016 protocol (J and F per frame, first and last frame of every video skipped, statistics per video,
then averaged over videos) using the project's evaluation code.

The original's in-training `VOS` metric pools the frames of all videos instead (SPEC §8); we report the DAVIS
protocol so that the numbers compare with `hfan eval davis` and the paper.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hfan.config import InferenceConfig
from hfan.data.datasets import read_class_ids, read_rgb
from hfan.data.layouts import FlatLayout, Sample
from hfan.inference import Predictor
from hfan.train.config import SUMMARY_COLUMNS as COLUMNS

SUMMARY_COLUMNS = list(COLUMNS)


def scored_samples(root: str | Path, split: str) -> dict[str, list[Sample]]:
    """Per video, the frames the DAVIS protocol scores (all but the first and the last); checks the files."""
    videos: dict[str, list[Sample]] = {}
    for sample in FlatLayout(root).samples(split, require_masks=True):
        videos.setdefault(sample.video, []).append(sample)
    scored = {video: samples[1:-1] for video, samples in videos.items() if len(samples) > 2}
    if not scored:
        raise ValueError(f"{root} split {split!r} has no video with 3 or more frames to validate on")
    return scored


def _chunks(items: list[Sample], size: int) -> Iterator[list[Sample]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def predict_and_score(predictor: Predictor, samples: list[Sample], frames_per_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F of the predictions for `samples` (one video) against their 0/1 masks."""
    from hfan.evaluation.davis import f_measure, jaccard

    j, f = [], []
    for chunk in _chunks(samples, frames_per_batch):
        predictions = predictor.predict([read_rgb(s.frame) for s in chunk], [read_rgb(s.flow) for s in chunk])
        for sample, prediction in zip(chunk, predictions):
            truth = read_class_ids(sample.mask) == 1
            j.append(jaccard(truth, prediction.mask))
            f.append(f_measure(truth, prediction.mask))
    return np.asarray(j), np.asarray(f)


def evaluate_split(model: torch.nn.Module, root: str | Path, split: str, inference: InferenceConfig,
                   frames_per_batch: int = 8, progress: bool = True) -> dict[str, float]:
    """DAVIS summary (J&F-Mean, J-Mean, J-Recall, J-Decay, F-...) of `model` on a flat-layout split.

    Leaves the model in eval mode (the caller puts a training model back into train mode).
    """
    from hfan.evaluation.davis import DavisResult, SequenceScores

    videos = scored_samples(root, split)
    predictor = Predictor(model, config=inference)
    scores = []
    for video, samples in tqdm(videos.items(), desc=f"validating on {Path(root).name}/{split}", unit="video",
                               disable=not progress, leave=False):
        j, f = predict_and_score(predictor, samples, frames_per_batch)
        scores.append(SequenceScores(video, tuple(s.stem for s in samples), j, f))
    return DavisResult(Path(root), Path(root), scores).summary()
