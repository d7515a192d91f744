"""How far the --fast whole-image mode is from the official sliding window, and how much faster, on real frames.

    python benchmarks/fast_mode_agreement.py [--checkpoint FILE | --preset hfan-small] [--every 4] [--threads 2]

DAVIS-2016 frames of davis16_mini (854x480) with DIS flow images made by hfan.flow (the test convention:
forward flow, backward for the last frame), every `--every`-th frame of each sequence. Both modes see the same
928x512 input; slide = 3 windows of 512x512 (the official refine-config test), whole = one forward at 928x512.
Prints per sequence: mask pixel agreement, IoU between the two masks, mean |p_slide - p_whole|, the correlation
of the two foreground-probability maps, J of each mode against the ground truth, and the median seconds per
frame of each mode (interleaved, frame by frame). Without --checkpoint the weights are random (seed 0): their
masks are nearly all foreground, so mask agreement says little; the correlation of the maps says a bit more,
and J is meaningless.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from hfan.io.images import read_mask
from hfan.io.video import open_frames
from hfan.evaluation.davis import jaccard
from hfan.flow import build_flow_estimator, flow_to_hfan_image, video_flows
from hfan.inference.predictor import Predictor
from hfan.models.checkpoints import load_model
from hfan.models.segmentor import build_model
from hfan.inference.malloc import tune_malloc

DEFAULT_DATA = Path(os.environ.get("HFAN_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / \
    "davis16_mini"


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--checkpoint", default=None, help="trained weights (default: random hfan-small)")
    parser.add_argument("--preset", default="hfan-small")
    parser.add_argument("--every", type=int, default=4, help="use every n-th frame of each sequence")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_malloc()
    torch.manual_seed(0)
    model = build_model(args.preset) if args.checkpoint is None else load_model(args.checkpoint)
    slide = Predictor(model, max_batch=16)
    whole = Predictor(model, dataclasses.replace(model.config.test, mode="whole"), max_batch=16)
    estimator = build_flow_estimator("dis")
    print(f"{'random ' if args.checkpoint is None else ''}{model.config.backbone.name} weights, "
          f"{args.threads} threads, every {args.every}th frame; load average {os.getloadavg()[0]:.1f}")
    print("| sequence | frames | pixel agreement | mask IoU | mean abs dp | corr(p) | J slide | J whole | s slide "
          "| s whole |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for sequence in sorted(p.name for p in (args.data / "JPEGImages" / "480p").iterdir()):
        frames_dir = args.data / "JPEGImages" / "480p" / sequence
        pairs = list(video_flows(open_frames(frames_dir), estimator))
        scores = []
        for index in range(0, len(pairs), args.every):
            frame, flow = pairs[index]
            flow_image = flow_to_hfan_image(flow)
            timed = {}
            for name, predictor in (("slide", slide), ("whole", whole)):
                start = time.perf_counter()
                timed[name] = (predictor.predict([frame], [flow_image])[0], time.perf_counter() - start)
            (a, ta), (b, tb) = timed["slide"], timed["whole"]
            gt = read_mask(args.data / "Annotations" / "480p" / sequence / f"{index:05d}.png") > 0
            scores.append((float((a.mask == b.mask).mean()), mask_iou(a.mask, b.mask),
                           float(np.abs(a.probability - b.probability).mean()),
                           float(np.corrcoef(a.probability.ravel(), b.probability.ravel())[0, 1]), jaccard(gt, a.mask),
                           jaccard(gt, b.mask), ta, tb))
        rows.append((sequence, scores))
    everything = [s for _, scores in rows for s in scores]
    for name, scores in rows + [("all", everything)]:
        columns = list(zip(*scores))
        means = [float(np.mean(c)) for c in columns[:6]]
        medians = [statistics.median(c) for c in columns[6:]]
        print(f"| {name} | {len(scores)} | {means[0]:.4f} | {means[1]:.3f} | {means[2]:.4f} | {means[3]:.3f} | "
              f"{means[4]:.3f} | {means[5]:.3f} | {medians[0]:.2f} | {medians[1]:.2f} |")


if __name__ == "__main__":
    main()
