"""Validation during training: predict a flat-layout split with the official test path and score it with the
DAVIS-2016 protocol (J and F per frame, first and last frame of every video skipped, statistics per video,
then averaged over videos) using the project's evaluation code.

The original's in-training `VOS` metric pools the frames of all videos instead (docs/design.md#in-training-metric);
we report the DAVIS protocol so that the numbers compare with `hfan eval davis` and the paper.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hfan.config import InferenceConfig
from hfan.datasets.davis import MIN_SCORED_SEQUENCE, scored_frames
from hfan.datasets.layouts import FlatLayout, Sample
from hfan.evaluation.davis import DavisResult, SequenceScores, f_measure, jaccard
from hfan.evaluation.predict import predict_samples
from hfan.inference.predictor import Predictor
from hfan.io.images import read_class_ids


def scored_samples(root: str | Path, split: str) -> dict[str, list[Sample]]:
    """Per video, the frames the DAVIS protocol scores (all but the first and the last); checks the files."""
    videos: dict[str, list[Sample]] = {}
    for sample in FlatLayout(root).samples(split, require_masks=True):
        videos.setdefault(sample.video, []).append(sample)
    scored = {video: scored_frames(samples) for video, samples in videos.items()
              if len(samples) >= MIN_SCORED_SEQUENCE}
    if not scored:
        raise ValueError(f"{root} split {split!r} has no video with {MIN_SCORED_SEQUENCE} or more frames to "
                         "validate on")
    return scored


def predict_and_score(predictor: Predictor, samples: list[Sample], frames_per_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F of the predictions for `samples` (one video) against their 0/1 masks."""
    j, f = [], []
    for batch in predict_samples(predictor, samples, frames_per_batch):
        for sample, prediction in batch:
            truth = read_class_ids(sample.mask) == 1
            j.append(jaccard(truth, prediction.mask))
            f.append(f_measure(truth, prediction.mask))
    return np.asarray(j), np.asarray(f)


def evaluate_split(model: torch.nn.Module, root: str | Path, split: str, inference: InferenceConfig,
                   frames_per_batch: int = 8, progress: bool = True) -> dict[str, float]:
    """DAVIS summary (J&F-Mean, J-Mean, J-Recall, J-Decay, F-...) of `model` on a flat-layout split.

    Leaves the model in eval mode (the caller puts a training model back into train mode).
    """
    videos = scored_samples(root, split)
    predictor = Predictor(model, config=inference, device=next(model.parameters()).device)
    scores = []
    for video, samples in tqdm(videos.items(), desc=f"validating on {Path(root).name}/{split}", unit="video",
                               disable=not progress, leave=False):
        j, f = predict_and_score(predictor, samples, frames_per_batch)
        scores.append(SequenceScores(video, tuple(s.stem for s in samples), j, f))
    return DavisResult(Path(root), Path(root), scores).summary()
