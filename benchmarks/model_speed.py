"""Speed of HFAN inference: the faithful path and each fast path, in one run, interleaved.

    python benchmarks/model_speed.py [--preset hfan-small] [--threads 2] [--repeats 5] [--batches 1,4]
                                     [--variants faithful,batched,malloc,unfolded,default,onnx,whole] [--compile]
    python benchmarks/model_speed.py --device cuda --compile     # fp16 autocast, batched frames, CUDA graphs

Cases: one 512x512 window (frame + flow, logits out) and one DAVIS frame through the whole official test path
(854x480 -> 928x512, 3 sliding windows, softmax at 854x480), for 1 and 4 frames per call. Variants:
  faithful        the original's computation: one window per forward as mmseg runs them, the decoder's
                  concatenation (HFANHead.concat_fuse), glibc's allocator at its defaults
  batched         up to 8 windows per forward (4 DAVIS frames = 12 windows: 8 + 4), concatenation, glibc defaults
  malloc          faithful + hfan.inference.malloc.tune_malloc
  unfolded        batched + tune_malloc: the default with the decoder fold, the fused oneDNN kernels and MiT's
                  channels-last outputs off (the commands' default before them; called malloc-batched in earlier runs)
  default         what `hfan segment`, `hfan infer`, `Predictor(model)` and `segment_video` run on the CPU:
                  8 windows per forward, tune_malloc, the decoder fold (HFANHead.folded_fuse), MiT's fused oneDNN
                  kernels: Mix-FFN's depth-wise convolution and GELU as one call, linear layers with the bias and
                  the block's residual inside, the fusion modules' conv + BN + ReLU as one call (the `fused_kernels`
                  flags, hfan.models.onednn.set_fused_kernels), the decode head's BN folded into the fold, MiT's
                  stage outputs as channels-last views of the tokens (no NCHW copy; the same flag)
  onnx            onnxruntime for the forward (CPU), windows batched, tune_malloc, the fold (exported in eval mode)
  compiled        (--compile) torch.compile: inductor + freezing on CPU (one window per forward), CUDA graphs on
                  CUDA (12 windows per forward), tune_malloc, the fold
  compiled-batched  (--compile, CPU) compiled with 3 windows per forward (one DAVIS frame), tune_malloc, the fold
  whole           the --fast mode: one whole-image forward at 928x512 (not the same output: a different method)
glibc's allocator settings are per process and cannot be undone, so two worker processes hold the variants
(defaults / tuned); the parent asks them in turn, one call at a time, so both see the same machine load.
Random weights (speed does not depend on them). "max diff" is the largest difference from the faithful output:
logits for window rows, foreground probability for frame rows. GFLOP from torch.utils.flop_counter: "GFLOP /
call" is the original's (faithful) count for every variant, so GFLOP/s is the original's work per second (the fold
does less: "own GFLOP" is what a variant itself computes). "% of 70" is
the share of the 70 GFLOP/s the issue measured as this machine's fp32 rate (--floor-gflops); "% of matmul" the
share of a 2048x2048 fp32 matrix product timed in the same run, interleaved with the cases (the true peak).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import multiprocessing
import os
import statistics
import time

import numpy as np
import torch

from hfan.presets import get_preset
from torch.utils.flop_counter import FlopCounterMode

# variant -> (tuned allocator, decoder fold, Predictor options); max_batch 8 is what the hfan commands use.
# One forward of all 12 windows of 4 DAVIS frames was slower on the CPU (2.6 s per frame against 1.4-1.8 s).
VARIANTS = {
    "faithful": (False, False, {"max_batch": 1}),
    "batched": (False, False, {"max_batch": 8}),
    "malloc": (True, False, {"max_batch": 1}),
    "unfolded": (True, False, {"max_batch": 8}),
    "default": (True, True, {}),
    "onnx": (True, True, {"max_batch": 8, "backend": "onnx"}),
    "compiled": (True, True, {"max_batch": 1, "compiled": True}),
    "compiled-batched": (True, True, {"max_batch": 3, "compiled": True}),
    "whole": (True, True, {"max_batch": 8, "whole": True}),
}
CUDA_COMPILED = {"max_batch": 12, "compiled": True}  # 4 DAVIS frames = 12 windows: one padded chunk
CUDA_MAX_BATCH = 48  # on a GPU the batched variants take all windows of 16 DAVIS frames in one forward


def make_cases(batches: list[int], device: torch.device) -> dict[str, tuple[int, str, tuple]]:
    """case name -> (frames per call, kind, inputs); the same seed in every process gives the same inputs."""
    rng, generator = np.random.default_rng(0), torch.Generator().manual_seed(0)
    cases = {}
    for batch in batches:
        window = torch.randn(batch, 3, 512, 512, generator=generator).to(device)
        cases[f"window 512x512, {batch} frame(s)"] = (batch, "window", (window, window.flip(2)))
    for batch in batches:
        frames = list(rng.integers(0, 256, (batch, 480, 854, 3), dtype=np.uint8))
        flows = list(rng.integers(0, 256, (batch, 480, 854, 3), dtype=np.uint8))
        cases[f"DAVIS frame 854x480, {batch} frame(s)"] = (batch, "frame", (frames, flows))
    return cases


MATMUL = "matmul"
MATMUL_SIZE = 2048


def time_matmul() -> float:
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    start = time.perf_counter()
    torch.mm(a, b)
    return time.perf_counter() - start


def run_case(predictor, kind: str, inputs) -> torch.Tensor:
    if kind == "window":
        return predictor._forward(*inputs)
    return predictor.probabilities(*inputs)[:, 1]


def worker(connection, tuned: bool, variants: list[str], args) -> None:
    """Holds the predictors of one allocator setting; answers (variant, case, what) requests."""
    if tuned:
        from hfan.inference.malloc import tune_malloc

        tune_malloc()
    from hfan.inference.predictor import Predictor
    from hfan.models import build_model
    from hfan.models.onednn import set_fused_kernels

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    folded = build_model(get_preset(args.preset)).eval().to(device)
    unfolded = copy.deepcopy(folded)  # the original's operators: no decoder fold, no fused oneDNN kernels
    unfolded.decode_head.fold_linear_fuse = False
    set_fused_kernels(unfolded, False)
    predictors = {}
    for name in variants:
        _, fold, options = VARIANTS[name]
        model = folded if fold else unfolded
        options = dict(CUDA_COMPILED if device.type == "cuda" and name == "compiled" else options)
        if device.type == "cuda" and name in ("batched", "unfolded", "whole"):
            options["max_batch"] = CUDA_MAX_BATCH
        config = model.config.test
        if options.pop("whole", False):
            config = dataclasses.replace(config, mode="whole")
        # The allocator is this worker's setting (tuned above or not), never the Predictor's own default.
        predictors[name] = Predictor(model, config, device=device, precision=args.precision, tune_allocator=False,
                                     **options)
    cases = make_cases(args.batch_list, device)
    while True:
        request = connection.recv()
        if request is None:
            return
        name, case, what = request
        if case == MATMUL:
            connection.send((time_matmul(), None))
            continue
        _, kind, inputs = cases[case]
        predictor = predictors[name]
        if what == "flops":
            # counted on the eager twin of a variant: onnxruntime runs no torch operators to count
            twin = predictor if predictor.backend == "torch" else Predictor(
                predictor.model, predictor.config, device=device, precision=predictor.precision,
                max_batch=predictor.max_batch, tune_allocator=False)
            # FlopCounterMode does not know oneDNN's fused kernels (convolution + GELU, linear + bias + residual):
            # counted with the operators they replace (the same FLOPs), then the variant's setting is restored
            fusable = [layer for layer in twin.model.modules() if hasattr(layer, "fused_kernels")]
            states = [layer.fused_kernels for layer in fusable]
            set_fused_kernels(twin.model, False)
            with FlopCounterMode(display=False) as counter:
                run_case(twin, kind, inputs)
            for layer, state in zip(fusable, states):
                layer.fused_kernels = state
            connection.send(counter.get_total_flops())
            continue
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        output = run_case(predictor, kind, inputs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        connection.send((seconds, output.float().cpu().numpy() if what == "output" else None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="hfan-small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,4", help="comma-separated frames per call")
    parser.add_argument("--variants", default=None, help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile variant (minutes of compile)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default=None, help="fp32 | fp16 | bf16 (default: fp16 on CUDA, fp32 on CPU)")
    parser.add_argument("--floor-gflops", type=float, default=70.0,
                        help="fp32 matrix-product GFLOP/s of this CPU (70 on the 2 project cores)")
    args = parser.parse_args()
    args.batch_list = [int(b) for b in args.batches.split(",")]
    default = ["faithful", "batched", "malloc", "unfolded", "default", "onnx", "whole"]
    if args.device.startswith("cuda"):
        default = ["faithful", "batched", "unfolded", "default", "whole"]
    variants = args.variants.split(",") if args.variants else default + (["compiled"] if args.compile else [])
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or "faithful" not in variants:
        parser.error(f"--variants: unknown {unknown}; valid {list(VARIANTS)}; faithful must be one of them")

    load_before = os.getloadavg()
    context = multiprocessing.get_context("spawn")
    workers = {}
    for tuned in (False, True):
        names = [v for v in variants if VARIANTS[v][0] == tuned]
        if names:
            mine, theirs = context.Pipe()
            process = context.Process(target=worker, args=(theirs, tuned, names, args), daemon=True)
            process.start()
            workers.update({name: mine for name in names})

    def ask(name, case, what):
        workers[name].send((name, case, what))
        return workers[name].recv()

    case_names = [f"window 512x512, {b} frame(s)" for b in args.batch_list]
    case_names += [f"DAVIS frame 854x480, {b} frame(s)" for b in args.batch_list]
    counted = [v for v in ("faithful", "default", "whole") if v in variants]
    flops = {(v, c): ask(v, c, "flops") for v in counted for c in case_names}
    first_call, difference = {}, {}
    for case in case_names:  # warm-up: first calls (compile, ONNX export) and the outputs for the check
        outputs = {}
        for name in variants:
            first_call[name, case], outputs[name] = ask(name, case, "output")
        for name in variants:
            difference[name, case] = float(np.abs(outputs[name] - outputs["faithful"]).max())
    times = {(v, c): [] for v in variants for c in case_names}
    matmul = []
    ask("faithful", MATMUL, "time")
    for _ in range(args.repeats):
        matmul.append(ask("faithful", MATMUL, "time")[0])
        for case in case_names:
            for name in variants:
                times[name, case].append(ask(name, case, "time")[0])
    for connection in set(workers.values()):
        connection.send(None)

    if args.device.startswith("cuda"):
        device_name = torch.cuda.get_device_name(torch.device(args.device))
    else:
        device_name = f"CPU ({os.cpu_count()} cores visible), {args.threads} threads"
    precision = args.precision or ("fp16" if args.device.startswith("cuda") else "fp32")
    peak = 2 * MATMUL_SIZE ** 3 / statistics.median(matmul) / 1e9
    test = get_preset(args.preset).test
    test_path = ("whole image" if test.mode == "whole" else
                 f"{test.crop_size}x{test.crop_size} windows at stride {test.stride}") + f", scale {test.img_scale}"
    print(f"{args.preset} (DAVIS frames through its test path: {test_path}) on {device_name}, {precision}, median "
          f"of {args.repeats} runs after a warm-up; load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; fp32 {MATMUL_SIZE}^3 matmul "
          f"on the CPU {peak:.0f} GFLOP/s")
    print(f"| case | variant | s / call | s / frame | vs faithful | GFLOP / call | own GFLOP | GFLOP/s "
          f"| % of {args.floor_gflops:.0f} | % of matmul | max diff |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in case_names:
        frames = int(case.split(", ")[-1].split()[0])
        baseline = statistics.median(times["faithful", case])
        for name in variants:
            median = statistics.median(times[name, case])
            gflop = flops["whole" if name == "whole" else "faithful", case] / 1e9
            own = flops.get((name if name == "whole" else "default" if VARIANTS[name][1] else "faithful", case))
            own = "-" if own is None else f"{own / 1e9:.1f}"
            rate = gflop / median
            floor = ("- | -" if args.device.startswith("cuda")
                     else f"{100 * rate / args.floor_gflops:.0f} | {100 * rate / peak:.0f}")
            diff = "other method" if name == "whole" else f"{difference[name, case]:.1e}"
            print(f"| {case} | {name} | {median:.3f} | {median / frames:.3f} | {baseline / median:.2f}x | "
                  f"{gflop:.1f} | {own} | {rate:.1f} | {floor} | {diff} |")
    slow_starts = {name: max(first_call[name, c] - statistics.median(times[name, c]) for c in case_names)
                   for name in variants}
    print("first-call overhead (compile / export), s: "
          + ", ".join(f"{name} {seconds:.1f}" for name, seconds in slow_starts.items()))


if __name__ == "__main__":
    main()
