"""Lazy streams: grouping items into batches, and producing them ahead in a background thread."""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

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
