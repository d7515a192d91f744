"""Speed of the DAVIS-2016 evaluation (`hfan eval davis`) on this machine, with a check that it stays exact.

    python benchmarks/eval_speed.py [--data ../shared/data/davis16_mini] [--repeats 7] [--workers 1,2] [--copies 10]

Evaluates the OSVOS masks of davis16_mini (3 sequences, 139 frames, 133 scored) against its ground truth.
Variants: `evaluate_davis` with each worker count, and the whole `hfan eval davis` path (evaluation plus
tables, CSV, JSON and the PNG chart). They run interleaved, so a change in machine load hits them alike.
Then the same sequences linked `--copies` times under other names (30 sequences, 1390 frames: the size of
DAVIS-2016 val, 1376 frames in 20 sequences) measure the full-size run directly, pool balancing included.
Prints the median seconds, frames per second (frames of the set, first and last included, as the 1376) and
the time for 1376 frames, and the largest deviation of the per-frame J and F from the official values.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
from pathlib import Path

from hfan.evaluation import evaluate_davis, report

DAVIS16_VAL_FRAMES = 1376
DEFAULT_DATA = Path(os.environ.get("HFAN_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / \
    "davis16_mini"


def largest_deviation(result, reference_csv: Path) -> float:
    with open(reference_csv) as file:
        official = {(row["sequence"], row["frame"]): (float(row["J"]), float(row["F"]))
                    for row in csv.DictReader(file)}
    return max(max(abs(j - official[(seq.name, frame)][0]), abs(f - official[(seq.name, frame)][1]))
               for seq in result.sequences for frame, j, f in zip(seq.frames, seq.j, seq.f))


def linked_copies(data: Path, copies: int, root: Path) -> tuple[Path, Path]:
    """`copies` symbolic links to each prediction and ground-truth sequence, named <sequence>-<k>."""
    for kind, source in (("pred", data / "predictions" / "osvos_bin"), ("gt", data / "Annotations" / "480p")):
        (root / kind).mkdir(parents=True)
        for sequence in sorted(path for path in source.iterdir() if path.is_dir()):
            for copy in range(copies):
                (root / kind / f"{sequence.name}-{copy}").symlink_to(sequence, target_is_directory=True)
    return root / "pred", root / "gt"


def time_variants(variants: dict, repeats: int, frames: int, title: str) -> None:
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    header = f"{title:<36} {'median s':>9} {'min s':>7} {'frames/s':>9} {'1376 frames s':>14}"
    print(header)
    print("-" * len(header))
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<36} {median:>9.3f} {min(values):>7.3f} {frames / median:>9.1f} "
              f"{DAVIS16_VAL_FRAMES * median / frames:>14.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workers", default=f"1,{os.cpu_count() or 1}", help="comma-separated worker counts")
    parser.add_argument("--copies", type=int, default=10, help="copies of the sequences for the full-size run")
    args = parser.parse_args()
    pred, gt = args.data / "predictions" / "osvos_bin", args.data
    frames = sum(1 for _ in (gt / "Annotations" / "480p").glob("*/*.png"))
    with tempfile.TemporaryDirectory(prefix="hfan-eval-speed-") as scratch:
        run_all(args, pred, gt, frames, Path(scratch))


def run_all(args, pred: Path, gt: Path, frames: int, scratch: Path) -> None:
    worker_counts = [int(n) for n in dict.fromkeys(args.workers.split(","))]

    deviation = largest_deviation(evaluate_davis(pred, gt, progress=False),
                                  args.data / "reference" / "osvos_bin_perframe_official.csv")
    print(f"DAVIS evaluation speed, {os.cpu_count()} CPUs; max |J,F - official| = {deviation:.1e}\n")
    variants = {f"evaluate_davis, {n} worker(s)": (lambda n=n: evaluate_davis(pred, gt, workers=n,
                                                                                progress=False))
                for n in worker_counts}
    variants["hfan eval davis (+ files, chart)"] = lambda: report("davis", [pred], gt, out_dir=scratch / "out",
                                                                  progress=False)
    time_variants(variants, args.repeats, frames, f"{args.data.name}: {frames} frames")
    if args.copies > 1:
        big_pred, big_gt = linked_copies(args.data, args.copies, scratch / "copies")
        big = {f"evaluate_davis, {n} worker(s)": (lambda n=n: evaluate_davis(big_pred, big_gt, workers=n,
                                                                               progress=False))
               for n in worker_counts}
        big["hfan eval davis (+ files, chart)"] = lambda: report("davis", [big_pred], big_gt,
                                                                out_dir=scratch / "out-copies", progress=False)
        print()
        time_variants(big, max(1, args.repeats // 2), frames * args.copies,
                      f"x{args.copies}: {frames * args.copies} frames")


if __name__ == "__main__":
    main()
