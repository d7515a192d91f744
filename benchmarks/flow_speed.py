"""Per-frame optical-flow time at DAVIS 480p (854x480) on this machine's CPU, every method in one run.

DIS presets and Farneback (OpenCV), RAFT small and large from torchvision with random weights (the time does not
depend on the weights) at 20 and 12 refinement iterations, one pair per call; plus the colour encoding and the
JPEG write that `hfan prepare` adds to every frame. Medians over --repeats timed calls after one warm-up call.
glibc's allocator is tuned as `hfan prepare` does (`--no-malloc-tuning`: its defaults).

    PYTHONPATH=src python benchmarks/flow_speed.py [--repeats 5] [--raft-repeats 3] [--torch-threads N]
                                                   [--no-malloc-tuning]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from hfan.io.images import read_image, write_image
from hfan.flow import build_flow_estimator, flow_to_hfan_image
from hfan.inference.malloc import tune_malloc


def _frames(shared: Path) -> tuple[np.ndarray, np.ndarray]:
    folder = shared / "data/davis16_mini/JPEGImages/480p/blackswan"
    if folder.is_dir():
        return read_image(folder / "00000.jpg"), read_image(folder / "00001.jpg")
    rng = np.random.default_rng(0)  # without the shared data: a textured pair of the same size
    first = cv2.GaussianBlur(rng.integers(0, 256, (480, 854, 3), dtype=np.uint8), (0, 0), 2)
    return first, np.roll(first, (2, 3), axis=(0, 1))


def _median_ms(function, repeats: int) -> float:
    function()  # warm-up: allocations, lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_shared = Path(os.environ.get("HFAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--shared", type=Path, default=default_shared)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--raft-repeats", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=None, help="default: torch's own choice")
    parser.add_argument("--no-malloc-tuning", action="store_true",
                        help="leave glibc's allocator at its defaults (`hfan prepare` tunes it unless told not to)")
    args = parser.parse_args()
    if not args.no_malloc_tuning:
        tune_malloc()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    first, second = _frames(args.shared)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, OpenCV threads "
          f"{cv2.getNumThreads()}, torch threads {torch.get_num_threads()}, frames {first.shape[1]}x{first.shape[0]}")
    rows = []
    for preset in ("ultrafast", "fast", "medium"):
        estimator = build_flow_estimator("dis", preset=preset)
        rows.append((f"DIS {preset}", _median_ms(lambda: estimator(first, second), args.repeats), args.repeats))
    estimator = build_flow_estimator("farneback")
    rows.append(("Farneback", _median_ms(lambda: estimator(first, second), args.repeats), args.repeats))
    for variant in ("raft_small", "raft_large"):
        torch.manual_seed(0)
        for updates in (20, 12):
            estimator = build_flow_estimator(variant, weights=None, num_flow_updates=updates, device="cpu")
            rows.append((f"RAFT {variant.split('_')[1]}, {updates} iterations",
                         _median_ms(lambda: estimator(first, second), args.raft_repeats), args.raft_repeats))
    flow = build_flow_estimator("dis")(first, second)
    rows.append(("colour encoding (flow_to_hfan_image)", _median_ms(lambda: flow_to_hfan_image(flow), args.repeats),
                 args.repeats))
    image = flow_to_hfan_image(flow)
    with tempfile.TemporaryDirectory() as folder:
        rows.append(("JPEG q95 write (atomic)", _median_ms(lambda: write_image(Path(folder) / "f.jpg", image),
                                                            args.repeats), args.repeats))
    print("\n| step | median ms / frame | frames / s | timed calls |\n|---|---:|---:|---:|")
    for name, ms, repeats in rows:
        print(f"| {name} | {ms:.1f} | {1000 / ms:.2f} | {repeats} |")


if __name__ == "__main__":
    main()
