"""Speed of the HFAN model on this machine: one 512x512 forward and the full DAVIS-size slide inference.

    python benchmarks/model_speed.py [--preset hfan-small] [--threads 2] [--repeats 5] [--batches 1,4]

Random weights (speed does not depend on them). Prints a table: median seconds per call and per frame, the
FLOPs of one call (torch.utils.flop_counter) and the achieved GFLOP/s. Variants run interleaved, so a
change in machine load hits them alike.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from hfan.config import get_preset
from hfan.inference import Predictor
from hfan.models import build_model


def count_flops(function) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="hfan-small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,4", help="comma-separated batch sizes (frames per call)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default=None, help="fp32 | fp16 | bf16 (default: fp16 on CUDA, fp32 on CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(get_preset(args.preset)).eval().to(device)
    predictor = Predictor(model, device=device, precision=args.precision, max_batch=16)
    rng = np.random.default_rng(0)

    cases = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        window = torch.randn(batch, 3, 512, 512, device=device)
        frames = list(rng.integers(0, 256, (batch, 480, 854, 3), dtype=np.uint8))
        flows = list(rng.integers(0, 256, (batch, 480, 854, 3), dtype=np.uint8))
        cases[f"forward 512x512, batch {batch}"] = (batch, lambda w=window: predictor._forward(w, w))
        cases[f"slide 854x480 -> 928x512 (3 windows), batch {batch}"] = (
            batch, lambda f=frames, o=flows: predictor.probabilities(f, o))

    flops = {name: count_flops(fn) for name, (_, fn) in cases.items()}
    for _, fn in cases.values():  # warm-up
        fn()
    times = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (_, fn) in cases.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"{args.preset}, {device_name}, precision {predictor.precision}, median of {args.repeats} runs")
    print(f"| {'case':52s} | s / call | s / frame | GFLOP / call | GFLOP/s |")
    print(f"|{'-' * 54}|---------:|----------:|-------------:|--------:|")
    for name, (batch, _) in cases.items():
        median = statistics.median(times[name])
        print(f"| {name:52s} | {median:8.3f} | {median / batch:9.3f} | {flops[name] / 1e9:12.1f} | "
              f"{flops[name] / 1e9 / median:7.1f} |")


if __name__ == "__main__":
    main()
