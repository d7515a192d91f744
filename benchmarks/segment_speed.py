"""End-to-end speed of `hfan segment` on a DAVIS sequence (854x480), broken into decode, flow, model, write.

    python benchmarks/segment_speed.py [--frames 12] [--presets hfan-b0,hfan-small] [--flow dis] [--threads 2]

Random weights (speed does not depend on them), the official single-scale sliding window, fp32 on CPU,
malloc tuning and 4 frames per batch as `hfan segment` by default.
The input is the first --frames frames of ../shared/data/davis16_mini/JPEGImages/480p/blackswan (a frame folder;
HFAN_SHARED overrides the shared folder). Prints one table row per preset.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import torch

from hfan import build_model, get_preset
from hfan.data import io
from hfan.inference import Predictor
from hfan.perf import tune_malloc
from hfan.pipeline import segment_to_folder

SHARED = Path(os.environ.get("HFAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--presets", default="hfan-b0,hfan-small")
    parser.add_argument("--flow", default="dis")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sequence", default=str(SHARED / "data/davis16_mini/JPEGImages/480p/blackswan"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_malloc()  # as `hfan segment` does by default
    work = Path(tempfile.mkdtemp(prefix="hfan_segment_speed_"))
    try:
        source = work / "frames"
        source.mkdir()
        for path in io.list_frame_files(Path(args.sequence))[: args.frames]:
            shutil.copy(path, source / path.name)
        rows = []
        for preset in args.presets.split(","):
            torch.manual_seed(0)
            predictor = Predictor(build_model(get_preset(preset)))
            segment_to_folder(source, work / "warmup", predictor, args.flow, progress=False)  # first-call costs
            timings = segment_to_folder(source, work / preset, predictor, args.flow, progress=False)
            rows.append((preset, timings))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    stages = ("decode", "flow", "model", "write")
    print(f"`hfan segment` on {args.frames} frames of {Path(args.sequence).name} (854x480), flow {args.flow}, "
          f"CPU {args.threads} threads, fp32, sliding window 928x512 (3 windows)")
    print("| preset | frames/s | " + " | ".join(f"{s} ms/frame" for s in stages) + " |")
    print("|---|---:|" + "---:|" * len(stages))
    for preset, timings in rows:
        total = sum(timings.seconds.values())
        cells = " | ".join(f"{1000 * timings.seconds.get(s, 0.0) / timings.frames:.0f}" for s in stages)
        print(f"| {preset} | {timings.frames / total:.2f} | {cells} |")


if __name__ == "__main__":
    main()
