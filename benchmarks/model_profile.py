"""Where the CPU time of one DAVIS frame goes, by operator: the profile behind docs/speed.md's choices.

    python benchmarks/model_profile.py [--preset hfan-small] [--threads 2] [--repeats 3] [--max-batch 8]
                                       [--top 15]

One 854x480 frame through the official test path (928x512, 3 sliding windows) with random weights, fp32, the
allocator tuned as the commands tune it, after a warm-up; torch.profiler's self CPU time per operator summed over
`--repeats` calls, then grouped: matmuls (linear layers), attention (fused SDPA), depth-wise convolutions (the 3x3
of every Mix-FFN), other convolutions (patch embeddings, spatial reduction, the decoder), resizes, layer/batch
norms, element-wise, softmax, copies (layout changes, contiguous), other.
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

GROUPS = [
    ("matmul (linear layers)", ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::matmul",
                                "_linear_pointwise")),
    ("attention (fused SDPA)", ("scaled_dot_product", "flash_attention")),
    ("resize (bilinear)", ("upsample", "grid_sampler")),
    ("norms", ("layer_norm", "batch_norm", "native_batch_norm")),
    ("softmax", ("softmax",)),
    ("copies (layout, contiguous)", ("aten::copy_", "aten::clone", "aten::contiguous", "aten::cat")),
    ("element-wise", ("aten::add", "aten::mul", "aten::gelu", "aten::relu", "aten::sigmoid", "aten::div",
                      "aten::sub", "aten::clamp", "aten::fill_", "aten::zero_")),
]


def group_of(name: str, shapes: list) -> str:
    if "conv" in name:
        weight = shapes[1] if len(shapes) > 1 else []
        return "conv depth-wise 3x3" if len(weight) == 4 and weight[1] == 1 else "conv (other)"
    for group, keys in GROUPS:
        if any(key in name for key in keys):
            return group
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="hfan-small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    from hfan.inference.malloc import tune_malloc
    from hfan.inference.predictor import Predictor
    from hfan.models import build_model
    from hfan.presets import get_preset

    torch.set_num_threads(args.threads)
    tune_malloc()
    torch.manual_seed(0)
    model = build_model(get_preset(args.preset)).eval()
    predictor = Predictor(model, device="cpu", max_batch=args.max_batch)
    rng = np.random.default_rng(0)
    frame, flow = (rng.integers(0, 256, (480, 854, 3), dtype=np.uint8) for _ in range(2))
    predictor.probabilities([frame], [flow])  # warm-up
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(args.repeats):
            predictor.probabilities([frame], [flow])
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events) / args.repeats / 1e6
    groups: dict[str, float] = defaultdict(float)
    operators: dict[str, float] = defaultdict(float)
    for event in events:
        seconds = event.self_cpu_time_total / args.repeats / 1e6
        groups[group_of(event.key, event.input_shapes)] += seconds
        operators[event.key] += seconds
    print(f"{args.preset}, one DAVIS frame (3 windows of 512x512), {args.threads} threads, max_batch "
          f"{args.max_batch}: {total:.3f} s of operator self time per frame\n")
    print("| group | s / frame | share |\n|---|---:|---:|")
    for group, seconds in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"| {group} | {seconds:.3f} | {100 * seconds / total:.1f} % |")
    print(f"\n| operator (top {args.top}) | s / frame | share |\n|---|---:|---:|")
    for name, seconds in sorted(operators.items(), key=lambda item: -item[1])[:args.top]:
        print(f"| `{name}` | {seconds:.3f} | {100 * seconds / total:.1f} % |")


if __name__ == "__main__":
    main()
