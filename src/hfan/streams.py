"""Lazy streams: batches of consecutive items, items produced ahead by a background thread, time per stage."""
from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

_END = object()


def prefetched(iterable: Iterable, depth: int = 2) -> Iterator:
    """The items of `iterable`, produced by a background thread up to `depth` items ahead.

    While the model runs (on a GPU, or in torch's own threads), the next frames are decoded, their flow measured
    and encoded: OpenCV, numpy and torch release the GIL for that work. An exception in the producer is raised
    here; stopping early (closing this generator) stops the producer and closes `iterable` in its thread.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        iterator = iter(iterable)
        try:
            for item in iterator:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as error:  # handed to the consumer, raised there
            put((_END, error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="hfan-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        producer.join()


def in_batches(iterable: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` consecutive items (the last one shorter), lazily."""
    batch: list = []
    for item in iterable:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


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


def timed(iterable: Iterable, timings: Timings, stage: str) -> Iterator:
    """The items of `iterable`; the time spent producing each one is added to `timings` under `stage`."""
    iterator = iter(iterable)
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        timings.add(stage, start)
        yield item
