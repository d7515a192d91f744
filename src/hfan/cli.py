"""The `hfan` command: argument parsing only; every subcommand calls one library function."""
from __future__ import annotations

import argparse
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


def _add_export(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export the segmentor (one window) to ONNX")
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    onnx = formats.add_parser("onnx", help="ONNX graph: frame + flow window in, 1/4-size logits out")
    onnx.add_argument("--model", default=None, help="preset name (default: from the checkpoint)")
    onnx.add_argument("--checkpoint", default=None, help="weights; without it, random weights of --model")
    onnx.add_argument("--options", nargs="*", default=[], help="dotted overrides, e.g. decode_head.select_method=im")
    onnx.add_argument("--out", required=True, help="output .onnx file")
    onnx.add_argument("--size", default="512x512", help="window HxW, multiples of 32 (default 512x512)")
    onnx.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    onnx.set_defaults(func=_run_export_onnx)


def _run_export_onnx(args) -> int:
    from hfan.export import export_onnx
    from hfan.models.checkpoints import load_model

    if args.model is None and args.checkpoint is None:
        raise ValueError("give --model PRESET, --checkpoint FILE, or both")
    try:
        height, width = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {args.size!r}: expected HxW, e.g. 512x512") from None
    model = load_model(args.model, checkpoint=args.checkpoint, options=args.options)
    path = export_onnx(model, args.out, height, width, check=not args.no_check)
    print(f"wrote {path}" + ("" if args.no_check else " (onnxruntime matches PyTorch within 1e-4)"))
    return 0


# Each entry adds one subcommand. Later features append their `_add_*` function here.
SUBCOMMANDS = [_add_info, _add_export]


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
