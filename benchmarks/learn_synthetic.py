"""It learns: hfan-b0 trained from scratch on synthetic videos for a fixed budget on the CPU, then scored (DAVIS
protocol, J and F) on held-out synthetic videos and on ../shared/data/davis16_mini.

    PYTHONPATH=src python benchmarks/learn_synthetic.py --threads 1     # ~13 min on one CPU core
    PYTHONPATH=src python benchmarks/learn_synthetic.py --iterations 200 --png /tmp/curve.png

Everything goes through the real training path (`hfan.train.loop.train`: augmentation, data stream, AdamW with
the param-wise rules, poly schedule, checkpoints, periodic validation). Only the scale is shrunk: 128x128 crops
of 128x160 videos (keep-ratio box 320x128 instead of 2048x512), a 100-iteration warm-up, a higher learning rate
because there are no ImageNet weights. Synthetic videos (`hfan.datasets.synthetic`) have exact flow; DAVIS flow is
computed with DIS (`hfan prepare davis`), so the DAVIS number says how far the synthetic lesson carries to real
videos, not how good HFAN is. Work files (data, checkpoints, logs) go to --work-dir; the curve to --png.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hfan.datasets.prepare import prepare_davis
from hfan.datasets.synthetic import write_synthetic_split
from hfan.config import apply_overrides
from hfan.presets import get_train_preset
from hfan.train.loop import train
from hfan.train.validate import evaluate_split, scored_samples

ROOT = Path(__file__).resolve().parents[1]
DAVIS_MINI = ROOT.parent / "shared" / "data" / "davis16_mini"


def synthetic_data(root: Path, train_videos: int, val_videos: int, frames: int) -> Path:
    marker = root / f".complete-{train_videos}-{val_videos}-{frames}"
    if not marker.exists():
        write_synthetic_split(root, "train", train_videos, seed=1, num_frames=frames)
        write_synthetic_split(root, "val", val_videos, seed=2, num_frames=frames)  # other seeds: held out
        marker.touch()
    return root


def davis_mini_flat(davis_root: Path, out: Path) -> Path:
    """davis16_mini has no ImageSets list: give `prepare_davis` one in a scratch root that links the data."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for folder in ("JPEGImages", "Annotations"):
            (scratch / folder).symlink_to(davis_root / folder)
        sequences = sorted(p.name for p in (davis_root / "JPEGImages" / "480p").iterdir() if p.is_dir())
        (scratch / "ImageSets" / "2016").mkdir(parents=True)
        (scratch / "ImageSets" / "2016" / "val.txt").write_text("\n".join(sequences) + "\n")
        print(prepare_davis(scratch, out, ["val"]))  # DIS flow; resumable, so a rerun skips finished videos
    return out


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def plot(train_rows: list[dict], val_rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iterations = [int(r["iteration"]) for r in train_rows]
    losses = [float(r["loss"]) for r in train_rows]
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.plot(iterations, losses, color="tab:blue", lw=1)
    loss_axis.set_xlabel("iteration")
    loss_axis.set_ylabel("training loss (mean per log interval)", color="tab:blue")
    j_axis = loss_axis.twinx()
    j_axis.plot([int(r["iteration"]) for r in val_rows], [float(r["J-Mean"]) for r in val_rows], "o-",
                color="tab:red", label="J-Mean, held-out synthetic")
    j_axis.plot([int(r["iteration"]) for r in val_rows], [float(r["F-Mean"]) for r in val_rows], "s--",
                color="tab:orange", label="F-Mean, held-out synthetic")
    j_axis.set_ylim(0, 1)
    j_axis.set_ylabel("J / F")
    j_axis.legend(loc="center right")
    loss_axis.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4, help="base rate (decode head x10)")
    parser.add_argument("--train-videos", type=int, default=128)
    parser.add_argument("--val-videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--eval-interval", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's); 1 is steadier when other jobs share the cores")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "hfan_learn_synthetic")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "learn_synthetic.png")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = synthetic_data(args.work_dir / "synthetic", args.train_videos, args.val_videos, args.frames)
    davis = davis_mini_flat(DAVIS_MINI, args.work_dir / "davis16_mini") if DAVIS_MINI.is_dir() else None
    run_dir = args.work_dir / f"run-{args.iterations}-{args.batch}-{args.lr:g}"
    config = apply_overrides(get_train_preset("hfan-b0-160k"), [
        f"data.root={data}", f"data.val_root={data}", "data.val_split=val",
        f"data.batch_per_gpu={args.batch}", f"data.workers_per_gpu={args.workers}",
        "data.augment.img_scale=320,128", "data.augment.crop_size=128,128", "model.test.img_scale=320,128",
        f"optimizer.lr={args.lr}", "schedule.warmup_iters=100", f"iterations={args.iterations}",
        f"checkpoint_interval={args.iterations}", f"eval_interval={args.eval_interval}", "log_interval=10",
        "tensorboard=false",
    ])
    started = time.perf_counter()
    result = train(config, run_dir, device="cpu")
    minutes = (time.perf_counter() - started) / 60

    scores = {"held-out synthetic": (result.validation, data)}
    if davis is not None:
        summary = evaluate_split(result.model, davis, "val", config.model.test)
        scores["davis16_mini (DIS flow)"] = (summary, davis)
    train_rows, val_rows = read_rows(run_dir / "train_log.csv"), read_rows(run_dir / "val_log.csv")
    plot(train_rows, val_rows, args.png,
         f"hfan-b0 from scratch, {args.iterations} it x batch {args.batch}, 128x128 crops, CPU")
    seconds = statistics.median(float(r["seconds_per_iter"]) for r in train_rows)

    print(f"\nhfan-b0 from scratch: {args.iterations} iterations x batch {args.batch} (128x128 crops), "
          f"{args.train_videos} synthetic videos x {args.frames} frames; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {minutes:.1f} min, median {seconds:.2f} s/iteration")
    print(f"final training loss {float(train_rows[-1]['loss']):.4f} (first logged {float(train_rows[0]['loss']):.4f})")
    print("| data | frames scored | J-Mean | J-Recall | F-Mean | J&F-Mean |")
    print("|---|---|---|---|---|---|")
    for name, (summary, root) in scores.items():
        frames = sum(len(samples) for samples in scored_samples(root, "val").values())
        print(f"| {name} | {frames} | {summary['J-Mean']:.3f} | "
              f"{summary['J-Recall']:.3f} | {summary['F-Mean']:.3f} | {summary['J&F-Mean']:.3f} |")
    print(f"curve: {args.png}")


if __name__ == "__main__":
    main()
