"""The `hfan` command: argument parsing only; every subcommand calls one library function."""
from __future__ import annotations

import argparse
import sys


def _add_info(subparsers) -> None:
    parser = subparsers.add_parser("info", help="version, torch/CUDA and the model presets")
    parser.set_defaults(func=_run_info)


def _run_info(args) -> int:
    from hfan.info import describe

    print(describe())
    return 0


def _add_eval(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate predicted masks: DAVIS-2016 J/F or VSOD measures")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    descriptions = {
        "davis": "J (IoU) and F (boundary) per frame; Mean, Recall, Decay per sequence; averages over sequences "
                 "(the official DAVIS-2016 protocol; first and last frame of each sequence not scored)",
        "vsod": "S-measure, E-measure and F-measure (max, mean, adaptive) and MAE through pysodmetrics, "
                "grouped per sequence as the VSOD MATLAB toolbox (first and last frame skipped)",
    }
    for kind, description in descriptions.items():
        sub = kinds.add_parser(kind, help=description.split(";")[0].split(" through")[0], description=description)
        sub.add_argument("--pred", nargs="+", required=True, metavar="DIR",
                         help="prediction folder(s) <pred>/<sequence>/<frame>.png; several are shown side by side")
        sub.add_argument("--gt", required=True, metavar="DIR",
                         help="ground truth <gt>/<sequence>/<frame>.png (DAVIS, Long-Videos, ...) or a DAVIS "
                              "root holding Annotations/480p")
        sub.add_argument("--sequences", nargs="+", metavar="NAME",
                         help="sequences to evaluate, or a .txt list (e.g. DAVIS ImageSets/2016/val.txt); "
                              "default: every ground-truth sequence")
        sub.add_argument("--only-present", action="store_true",
                         help="evaluate only the sequences the prediction folder holds")
        sub.add_argument("--names", nargs="+", metavar="NAME", help="method names for --pred (default: folder names)")
        sub.add_argument("--out", metavar="DIR", help="folder for the CSV/JSON/PNG files (default: <first pred>-eval)")
        sub.add_argument("--workers", type=int, default=None,
                         help="processes scoring sequences in parallel (default: one per CPU)")
        if kind == "davis":
            sub.add_argument("--no-plot", action="store_true", help="do not draw the per-sequence J&F chart")
        sub.set_defaults(func=_run_eval)


def _run_eval(args) -> int:
    from hfan.evaluation.report import report

    print(report(args.kind, args.pred, args.gt, out_dir=args.out, names=args.names, sequences=args.sequences,
                 only_present=args.only_present, workers=args.workers, plot=not getattr(args, "no_plot", False)))
    return 0


# Each entry adds one subcommand. Later features append their `_add_*` function here.
SUBCOMMANDS = [_add_info, _add_eval]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hfan", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as error:
        # Bad input ends in one clear message, not a traceback.
        print(f"hfan {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
