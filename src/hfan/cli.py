"""The `hfan` command: argument parsing only; every subcommand calls one library function."""
from __future__ import annotations

import argparse
import os
import sys


def _add_info(subparsers) -> None:
    parser = subparsers.add_parser("info", help="version, torch/CUDA and the model presets")
    parser.add_argument("--checkpoint", help="also describe this checkpoint (official or ours): detected model")
    parser.set_defaults(func=_run_info)


def _run_info(args) -> int:
    from hfan.info import describe, describe_checkpoint

    print(describe())
    if args.checkpoint:
        print(describe_checkpoint(args.checkpoint))
    return 0


def _add_train(subparsers) -> None:
    from hfan.train.config import TRAIN_PRESETS

    parser = subparsers.add_parser(
        "train", help="train a model (stage 1 or 2); under torchrun, on several GPUs",
        description="Train HFAN with the paper's recipe. Several GPUs: torchrun --nproc_per_node N -m hfan.train ...")
    parser.add_argument("preset", nargs="?", help=f"training preset: {', '.join(TRAIN_PRESETS)} (not with --resume)")
    parser.add_argument("--work-dir", required=True, help="checkpoints (iter_<N>.pth, latest.pth) and logs go here")
    parser.add_argument("--pretrained", help="stage 1: MiT ImageNet weights (SegFormer's mit_bX.pth) for the backbone")
    parser.add_argument("--load-from", help="stage 2: weights of a stage-1 checkpoint; iterations restart at 0")
    parser.add_argument("--resume", help="continue a run exactly from a checkpoint, or from a work dir's latest.pth")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: this rank's GPU when there is one")
    parser.add_argument("--options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="dotted overrides, e.g. data.root=/data/YouTube2SEG data.batch_per_gpu=8 "
                             "grad_accum_steps=2 precision=bf16 model.decode_head.select_method=fam")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from hfan.train.loop import launch

    result = launch(args.preset, args.work_dir, args.options, args.pretrained, args.load_from, args.resume,
                    args.device, progress=not args.no_progress)
    if result.validation is not None or os.environ.get("RANK", "0") == "0":  # once under torchrun
        print(f"iteration {result.iteration}: {result.checkpoint}")
    return 0


# Each entry adds one subcommand. Later features append their `_add_*` function here.
SUBCOMMANDS = [_add_info, _add_train]


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
