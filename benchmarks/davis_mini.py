"""J and F of `hfan segment` on the DAVIS-2016 sequences of ../shared/data/davis16_mini, with the commands a user
runs: `hfan segment <frames> --out ...` per sequence, then `hfan eval davis` (official protocol).

    python benchmarks/davis_mini.py                                   # the default model, its own settings
    python benchmarks/davis_mini.py --checkpoint runs/default/best.pth --variant "flow 0.5=flow.scale=0.5"
    python benchmarks/davis_mini.py --davis-root /data/DAVIS --sequences bmx-trees,cows   # other DAVIS-16 videos

Each --variant is `NAME=OPTION [OPTION ...]` (dotted model overrides given to `hfan segment --options`); the
plain settings always run first as `default`. Prints a markdown table: J-Mean and F-Mean per sequence and their
means, one row per variant, and writes it with the per-sequence numbers to --out (default: a temporary folder).
davis16_mini measures: never pick training checkpoints with it (docs/default_model.md).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

SHARED = Path(os.environ.get("HFAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{shlex.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def score_variant(name: str, options: list[str], args, sequences: list[str], work: Path) -> dict:
    predictions = work / name.replace(" ", "_")
    for sequence in sequences:
        frames = Path(args.davis_root) / "JPEGImages" / "480p" / sequence
        out = work / "segment" / name.replace(" ", "_") / sequence
        command = ["hfan", "segment", str(frames), "--out", str(out), "--no-overlay"]
        if args.checkpoint:
            command += ["--checkpoint", args.checkpoint]
        if options:
            command += ["--options", *options]
        print(run(command).strip().splitlines()[-1], file=sys.stderr)
        target = predictions / sequence
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            import shutil
            shutil.rmtree(target)
        (out / "masks").rename(target)
    evaluation = work / f"{predictions.name}-eval"
    run(["hfan", "eval", "davis", "--pred", str(predictions), "--gt", str(args.davis_root), "--sequences",
         *sequences, "--out", str(evaluation), "--no-plot"])
    summary = json.loads((evaluation / "davis_summary.json").read_text())
    [method] = summary["methods"].values()
    per_sequence = {seq: {"J": scores["J-Mean"], "F": scores["F-Mean"]} for seq, scores in method["sequences"].items()}
    return {"name": name, "options": options, "sequences": per_sequence,
            "J": sum(v["J"] for v in per_sequence.values()) / len(per_sequence),
            "F": sum(v["F"] for v in per_sequence.values()) / len(per_sequence)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis-root", default=str(SHARED / "data" / "davis16_mini"))
    parser.add_argument("--sequences", default=None, help="comma-separated (default: every sequence of the root)")
    parser.add_argument("--checkpoint", default=None, help="default: the packaged default model")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OPTIONS")
    parser.add_argument("--out", default=None, help="folder for masks, evaluations and results.json")
    args = parser.parse_args()
    root = Path(args.davis_root)
    if not (root / "JPEGImages" / "480p").is_dir():
        sys.exit(f"--davis-root {root}: no JPEGImages/480p inside (a DAVIS root is needed)")
    sequences = (args.sequences.split(",") if args.sequences
                 else sorted(p.name for p in (root / "JPEGImages" / "480p").iterdir() if p.is_dir()))
    variants = [("default", [])]
    for text in args.variant:
        name, _, options = text.partition("=")
        variants.append((name.strip(), options.split()))
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="hfan_davis_mini_"))
    work.mkdir(parents=True, exist_ok=True)
    results = [score_variant(name, options, args, sequences, work) for name, options in variants]
    (work / "results.json").write_text(json.dumps(results, indent=2))
    header = "| variant | " + " | ".join(f"{s} J / F" for s in sequences) + " | mean J | mean F |"
    print(header)
    print("|" + "---|" * (len(sequences) + 3))
    for result in results:
        cells = [f"{result['sequences'][s]['J']:.3f} / {result['sequences'][s]['F']:.3f}" for s in sequences]
        print(f"| {result['name']} | " + " | ".join(cells) + f" | {result['J']:.3f} | {result['F']:.3f} |")
    print(f"(masks and evaluations in {work})")


if __name__ == "__main__":
    main()
