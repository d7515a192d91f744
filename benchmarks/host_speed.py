"""What the host does per frame around the model in `hfan segment`, stage by stage: the budget that bounds the
end-to-end frames/s once the model runs on a GPU.

    python benchmarks/host_speed.py [--repeats 15] [--threads 2]

One 854x480 DAVIS frame pair (blackswan 0 -> 1; HFAN_SHARED overrides the shared folder). Each stage runs in a
fresh process twice, glibc's allocator at its defaults and tuned (`hfan.inference.malloc.tune_malloc`, what the commands
do), interleaved, median of --repeats calls after a warm-up. Stages, in pipeline order:
  decode        JPEG -> RGB (OpenCV)
  flow dis      OpenCV DIS medium, the default estimator (RAFT runs on the GPU there)
  encode        flow -> HFAN's colour image (RAFT's colour wheel, exact; hfan.flow.flow_to_hfan_image)
  resize        the official two uint8 resizes to 928x512, frame and flow image
  normalise     numpy per image (training's path) vs torch on the batch (inference's; on a GPU the host only copies)
  write mask    0/255 PNG, atomic
  overlay       mask tinted over the frame + one frame into overlay.mp4
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(os.environ.get("HFAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))
STAGES = ("decode", "flow dis", "encode", "resize", "normalise numpy x2", "normalise torch x2", "write mask",
          "overlay")


def measure(tuned: bool, repeats: int, threads: int) -> dict[str, float]:
    """ms per frame for each stage, in this process."""
    if tuned:
        from hfan.inference.malloc import tune_malloc

        tune_malloc()
    import numpy as np
    import torch

    from hfan.io.images import overlay_mask, read_image, write_mask
    from hfan.io.video import VideoWriter
    from hfan.preprocess import normalize_batch, normalize_image
    from hfan.flow import build_flow_estimator, flow_to_hfan_image
    from hfan.preprocess import resize_for_test

    torch.set_num_threads(threads)
    folder = SHARED / "data/davis16_mini/JPEGImages/480p/blackswan"
    first, second = read_image(folder / "00000.jpg"), read_image(folder / "00001.jpg")
    dis = build_flow_estimator("dis")
    flow = dis(first, second)
    flow_image = flow_to_hfan_image(flow)
    resized = [resize_for_test(image, (2048, 512), 32) for image in (first, flow_image)]
    mask = np.zeros(first.shape[:2], bool)
    mask[100:300, 200:500] = True
    work = Path(tempfile.mkdtemp(prefix="hfan_host_speed_"))
    video = VideoWriter(work / "overlay.mp4", 25.0)
    stages = {
        "decode": lambda i: read_image(folder / "00000.jpg"),
        "flow dis": lambda i: dis(first, second),
        "encode": lambda i: flow_to_hfan_image(flow),
        "resize": lambda i: [resize_for_test(image, (2048, 512), 32) for image in (first, flow_image)],
        "normalise numpy x2": lambda i: [torch.from_numpy(normalize_image(r).transpose(2, 0, 1).copy())
                                         for r in resized],
        "normalise torch x2": lambda i: normalize_batch(np.stack(resized)),
        "write mask": lambda i: write_mask(work / "masks" / f"{i:05d}.png", mask, foreground_value=255),
        "overlay": lambda i: video.write(overlay_mask(first, mask)),
    }
    medians = {}
    for name, stage in stages.items():
        stage(-1)
        times = []
        for index in range(repeats):
            start = time.perf_counter()
            stage(index)
            times.append(time.perf_counter() - start)
        medians[name] = 1000 * statistics.median(times)
    video.abort()
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=["default", "tuned"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker == "tuned", args.repeats, args.threads)))
        return
    runs: dict[str, list[dict[str, float]]] = {"default": [], "tuned": []}
    for _ in range(2):  # two processes of each, interleaved; the median of the two per stage
        for setting in runs:
            output = subprocess.run([sys.executable, __file__, "--worker", setting, "--repeats", str(args.repeats),
                                     "--threads", str(args.threads)], capture_output=True, text=True, check=True)
            runs[setting].append(json.loads(output.stdout.strip().splitlines()[-1]))
    print(f"host work per 854x480 frame, ms (median of {args.repeats} calls, 2 processes each; {os.cpu_count()} "
          f"CPUs, torch {args.threads} threads; load average {os.getloadavg()[0]:.1f} at the end)")
    print("| stage | malloc default | malloc tuned (the commands) |")
    print("|---|---:|---:|")
    for stage in STAGES:
        cells = [statistics.median(run[stage] for run in runs[setting]) for setting in runs]
        print(f"| {stage} | {cells[0]:.1f} | {cells[1]:.1f} |")
    for setting in runs:
        total = sum(statistics.median(run[s] for run in runs[setting]) for s in STAGES if s != "normalise numpy x2")
        print(f"{setting}: host total with torch normalisation {total:.0f} ms per frame (one thread, no overlap)")


if __name__ == "__main__":
    main()
