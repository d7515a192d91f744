"""End-to-end speed of `hfan segment` on a DAVIS sequence (854x480): frames/s, and the time of each stage.

    python benchmarks/segment_speed.py [--frames 12] [--presets hfan-default,hfan-b0,hfan-small] [--flow dis]
                                       [--threads 2] [--repeats 3] [--device cpu]
    python benchmarks/segment_speed.py --presets hfan-default --frames 50    # the default model, whole clip
    python benchmarks/segment_speed.py --device cuda --flow raft_large --frames 48   # on a GPU machine
    python benchmarks/segment_speed.py --presets hfan-default --backends torch,onnx --prefetch no   # eager vs ONNX

Random weights (speed does not depend on them), each preset's own test settings (the official single-scale
sliding window; hfan-default: whole image at short side 128) and flow settings (hfan-default: DIS with the
camera motion removed) unless --flow replaces the estimator, fp32 on CPU (fp16 autocast on CUDA), malloc tuning,
the CLI's windows per forward and 4 frames per batch as `hfan segment` by default, the Predictor's backend
(--backends: torch, the default of every command, or onnx: onnxruntime). Each preset and backend runs with the
next batches prefetched in a background thread and without (--prefetch), interleaved, median of --repeats runs
after a warm-up run (the ONNX export happens there: its cost is printed apart). frames/s is elapsed time; the
stage columns are each stage's own time per frame (with prefetching, decode / flow / encode run beside the model,
so they add up to more than the elapsed time).
"host ms/frame" is what the host does per frame besides the model (decode + flow + encode + write): on a GPU,
without prefetching, frames/s cannot exceed 1000 / (host + model).
The input is the first --frames frames of ../shared/data/davis16_mini/JPEGImages/480p/blackswan (a frame folder;
HFAN_SHARED overrides the shared folder; a folder with fewer frames is used whole).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import torch

from hfan.models.segmentor import build_model
from hfan.io.video import list_frame_files
from hfan.flow import build_flow_estimator
from hfan.inference.predictor import Predictor
from hfan.inference.malloc import tune_malloc
from hfan.segment import segment_to_folder

SHARED = Path(os.environ.get("HFAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))
STAGES = ("decode", "flow", "encode", "model", "write")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--presets", default="hfan-default,hfan-b0,hfan-small")
    parser.add_argument("--flow", default=None,
                        help="dis | farneback | raft_small | raft_large (random weights); default: each model's own")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--backends", default="torch", help="comma-separated Predictor backends: torch, onnx")
    parser.add_argument("--prefetch", choices=["both", "yes", "no"], default="both")
    parser.add_argument("--options", nargs="*", default=[], help="dotted model overrides, e.g. test.img_scale=2048,160")
    parser.add_argument("--sequence", default=str(SHARED / "data/davis16_mini/JPEGImages/480p/blackswan"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_malloc()  # as `hfan segment` does by default
    device = torch.device(args.device)
    # RAFT with random weights: its speed does not depend on them, and no download is needed.
    estimator = args.flow
    if args.flow and args.flow.startswith("raft"):
        estimator = build_flow_estimator(args.flow, weights=None, device=device, batch_size=args.batch_size)
    work = Path(tempfile.mkdtemp(prefix="hfan_segment_speed_"))
    try:
        source = work / "frames"
        source.mkdir()
        for path in list_frame_files(Path(args.sequence))[: args.frames]:
            shutil.copy(path, source / path.name)
        frames = len(list(source.iterdir()))
        runs: dict[tuple[str, str, bool], list] = {}
        first_run: dict[tuple[str, str], float] = {}
        prefetches = {"both": (True, False), "yes": (True,), "no": (False,)}[args.prefetch]
        predictors = {}
        for preset in args.presets.split(","):
            for backend in args.backends.split(","):
                torch.manual_seed(0)
                # the policy of hfan segment (hfan.inference.predictor.default_max_batch)
                predictor = Predictor(build_model(preset, args.options), device=device,
                                      frames_per_batch=args.batch_size, backend=backend)
                warmup = segment_to_folder(source, work / "warmup", predictor, estimator, batch_size=args.batch_size,
                                           progress=False, overwrite=True)  # first calls: allocator, ONNX export
                first_run[preset, predictor.backend] = warmup.seconds.get("model", 0.0)
                predictors[preset, predictor.backend] = predictor
        for _ in range(args.repeats):
            for (preset, backend), predictor in predictors.items():
                for prefetch in prefetches:
                    timings = segment_to_folder(source, work / preset, predictor, estimator,
                                                batch_size=args.batch_size, progress=False, prefetch=prefetch,
                                                overwrite=True)  # each run replaces the last
                    runs.setdefault((preset, backend, prefetch), []).append(timings)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    precision = "fp16 autocast" if device.type == "cuda" else "fp32"
    print(f"`hfan segment` on {frames} frames of {Path(args.sequence).name} (854x480), flow "
          f"{args.flow or 'each model own'}, {where}, {precision}, {args.batch_size} frames per batch, median of "
          f"{args.repeats} runs; load average {os.getloadavg()[0]:.1f} at the end")
    print("| preset | test | flow | backend | prefetch | frames/s | " + " | ".join(f"{s} ms/frame" for s in STAGES)
          + " | host ms/frame |")
    print("|---|---|---|---|---|---:|" + "---:|" * (len(STAGES) + 1))
    for (preset, backend, prefetch), timings in runs.items():
        fps = statistics.median(t.frames_per_second for t in timings)
        per_frame = {s: statistics.median(1000 * t.seconds.get(s, 0.0) / t.frames for t in timings) for s in STAGES}
        host = sum(v for s, v in per_frame.items() if s != "model")
        cells = " | ".join(f"{per_frame[s]:.0f}" for s in STAGES)
        config = predictors[preset, backend].model.config
        test = f"{config.test.mode} {min(config.test.img_scale)}"
        flow = (f"{args.flow or config.flow.method} x{config.flow.scale:g}, camera {config.flow.camera_motion}")
        print(f"| {preset} | {test} | {flow} | {backend} | {'yes' if prefetch else 'no'} | {fps:.2f} | {cells} "
              f"| {host:.0f} |")
    print("model time of the warm-up run (first calls: allocator, ONNX export), s: "
          + ", ".join(f"{preset} {backend} {seconds:.1f}" for (preset, backend), seconds in first_run.items()))


if __name__ == "__main__":
    main()
