"""J and F per DAVIS sequence, one bar per method: the picture of docs/default_model.md and the README.

    python benchmarks/davis_mini.py --out runs/davis_mini
    python benchmarks/motion_baseline.py --json runs/davis_mini/baseline.json
    python benchmarks/plot_davis.py runs/davis_mini/results.json runs/davis_mini/baseline.json \\
        --names default --rename default=hfan-default --out docs/default_model_davis.png

Each input is a results.json of davis_mini.py (or motion_baseline.py --json): a list of methods, each with its
J and F per sequence. --names keeps only those methods of the first file, in that order (default: all; davis_mini.py
calls its plain settings `default`); --rename changes legend labels.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--names", nargs="*", default=None,
                        help="methods of the FIRST file to keep (the others' are all kept)")
    parser.add_argument("--rename", nargs="*", default=[], metavar="OLD=NEW", help="labels in the legend")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    methods = []
    for index, path in enumerate(args.results):
        rows = json.loads(path.read_text())
        if index == 0 and args.names is not None:
            by_name = {row["name"]: row for row in rows}
            missing = [name for name in args.names if name not in by_name]
            if missing:
                parser.error(f"{path}: no method {', '.join(missing)} (it has {', '.join(by_name)})")
            rows = [by_name[name] for name in args.names]
        methods += rows
    bad = [text for text in args.rename if "=" not in text]
    if bad:
        parser.error(f"--rename {' '.join(bad)}: give OLD=NEW, e.g. --rename default=hfan-default")
    labels = dict(text.split("=", 1) for text in args.rename)
    sequences = list(methods[0]["sequences"])
    groups = sequences + ["mean"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    width = 0.8 / len(methods)
    positions = np.arange(len(groups))
    for axis, measure in zip(axes, ("J", "F")):
        for index, method in enumerate(methods):
            values = [method["sequences"][s][measure] for s in sequences] + [method[measure]]
            bars = axis.bar(positions + (index - (len(methods) - 1) / 2) * width, values, width,
                            label=labels.get(method["name"], method["name"]))
            axis.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        axis.set_xticks(positions, groups)
        axis.set_ylim(0, 1)
        axis.set_title(f"{measure}-Mean (DAVIS-2016 protocol)", fontsize=10)
    axes[0].legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
