"""One flow per frame, the HFAN way (the maintainers' answer in the original's issue #7; docs/design.md#flow-images).

Frame t gets the forward flow t -> t+1; the last frame, which has no successor, gets the backward flow
t -> t-1. So N frames give N flows. A one-frame video has no motion to measure: it gets a zero flow (which the
colour encoding draws as a white image).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import TypeVar

import numpy as np

from hfan.flow.estimators import FlowEstimator
from hfan.streams import in_batches

Key = TypeVar("Key")


def flow_partner(position: int, num_frames: int) -> int | None:
    """The frame that frame `position`'s flow points to: the next one, the previous one for the last frame,
    None for a one-frame video."""
    if not 0 <= position < num_frames:
        raise ValueError(f"frame {position} is outside a video of {num_frames} frames")
    if num_frames == 1:
        return None
    return position + 1 if position < num_frames - 1 else position - 1


def _flows_in_batches(pairs: Iterable[tuple[Key, np.ndarray, np.ndarray]], estimator: FlowEstimator,
                      batch_size: int) -> Iterator[tuple[Key, np.ndarray]]:
    for batch in in_batches(pairs, batch_size):
        flows = estimator.compute_batch([first for _, first, _ in batch], [second for _, _, second in batch])
        yield from ((key, flow) for (key, _, _), flow in zip(batch, flows))


def _zero_flow(frame: np.ndarray) -> np.ndarray:
    return np.zeros(frame.shape[:2] + (2,), np.float32)


def video_flows(frames: Iterable[np.ndarray], estimator: FlowEstimator,
                batch_size: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame, its flow) for every frame of a stream, in order.

    Streaming: holds at most `batch_size` + 1 frames (default: the estimator's batch size), so a video of any
    length fits in memory.
    """
    batch_size = batch_size or estimator.batch_size
    count = 0
    last_frame = None

    def pairs():
        nonlocal count, last_frame
        previous = before_previous = None
        for frame in frames:
            count += 1
            if previous is not None:
                yield previous, previous, frame
            before_previous, previous = previous, frame
        last_frame = previous
        if before_previous is not None:
            yield previous, previous, before_previous  # the last frame: backward flow

    yield from _flows_in_batches(pairs(), estimator, batch_size)
    if count == 1:
        yield last_frame, _zero_flow(last_frame)


def flows_at(load_frame: Callable[[int], np.ndarray], num_frames: int, positions: Sequence[int],
             estimator: FlowEstimator, batch_size: int | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(position, frame, flow) for chosen frames of a video whose frames can be loaded by position.

    Used where only some frames become samples (YouTube-VOS: the annotated ones) while the flow must be measured
    against the true next frame of the full video. Frames are loaded once each while positions ascend.
    """
    batch_size = batch_size or estimator.batch_size
    load = lru_cache(maxsize=2 * batch_size + 2)(load_frame)
    if num_frames == 1:
        for position in positions:
            flow_partner(position, num_frames)  # checks the position
            yield position, load(position), _zero_flow(load(position))
        return

    def pairs():
        for position in positions:
            frame = load(position)
            yield (position, frame), frame, load(flow_partner(position, num_frames))

    for (position, frame), flow in _flows_in_batches(pairs(), estimator, batch_size):
        yield position, frame, flow
