"""Training curve of a run: loss (train_log.csv) and J-Mean on the held-out validation videos (val_log.csv), of
the trained weights and, for a run with ema_decay, of their moving average.

    python benchmarks/plot_training.py runs/default --out docs/default_model_training.png
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path: Path) -> dict[str, list[float]]:
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="work dir of hfan train")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    train, val = read(args.run / "train_log.csv"), read(args.run / "val_log.csv")
    figure, loss_axes = plt.subplots(figsize=(7, 3.6))
    loss_axes.plot(train["iteration"], train["loss"], color="tab:blue", lw=1, label="training loss")
    loss_axes.set_xlabel("iteration (batch of 8 composites, 128x128)")
    loss_axes.set_ylabel("cross-entropy", color="tab:blue")
    j_axes = loss_axes.twinx()
    j_axes.plot(val["iteration"], val["J-Mean"], "o-", color="tab:red", ms=3, label="J-Mean, held-out composites")
    j_axes.set_ylabel("J-Mean (held-out synthetic videos)", color="tab:red")
    j_axes.set_ylim(0, 1)
    curves = [("J-Mean", "best.pth", "tab:red", 12)]
    if "ema J-Mean" in val:
        j_axes.plot(val["iteration"], val["ema J-Mean"], "s-", color="tab:green", ms=3,
                    label="J-Mean of the weight average (ema), held-out composites")
        curves.append(("ema J-Mean", "best_ema.pth", "tab:green", -22))
    for column, name, colour, offset in curves:
        best = max(range(len(val[column])), key=lambda i: val[column][i])
        j_axes.annotate(f"{name}: {val[column][best]:.3f} @ {int(val['iteration'][best])}",
                        (val["iteration"][best], val[column][best]), textcoords="offset points",
                        xytext=(-110, offset), arrowprops={"arrowstyle": "->", "color": colour}, fontsize=8)
    figure.legend(loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, 0.0))
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
