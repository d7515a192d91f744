"""The `hfan` command: argument parsing only; every subcommand calls one library function."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_info(subparsers) -> None:
    parser = subparsers.add_parser("info", help="version, torch/CUDA and the model presets")
    parser.set_defaults(func=_run_info)


def _run_info(args) -> int:
    from hfan.info import describe

    print(describe())
    return 0


def _add_flow_arguments(parser, workers: bool) -> None:
    from hfan.flow.estimators import DIS_PRESETS, ESTIMATORS, RAFT_DEFAULT_UPDATES, RAFT_DEFAULT_WEIGHTS

    group = parser.add_argument_group("optical flow")
    group.add_argument("--flow", choices=ESTIMATORS, default="dis", help="flow method (default: dis)")
    group.add_argument("--dis-preset", choices=list(DIS_PRESETS), default="medium")
    group.add_argument("--raft-weights", default=RAFT_DEFAULT_WEIGHTS,
                       help="a torchvision weight name (C_T_V1 = the original raft-things, C_T_V2, ...) or a "
                            f"local .pth file (default: {RAFT_DEFAULT_WEIGHTS})")
    group.add_argument("--raft-iters", type=int, default=RAFT_DEFAULT_UPDATES, help="RAFT refinement iterations")
    group.add_argument("--batch-size", type=int, default=4, help="RAFT frame pairs per batch")
    group.add_argument("--device", default=None, help="RAFT device (default: cuda when available, else cpu)")
    group.add_argument("--save-raw-flow", action="store_true",
                       help="also keep the raw flow as float16 .npy under flow_raw/")
    if workers:
        group.add_argument("--workers", type=int, default=1,
                           help="parallel processes over videos (dis, farneback)")


def _flow_settings(args):
    from hfan.data.prepare import FlowSettings

    if args.flow == "dis":
        return FlowSettings.of("dis", args.save_raw_flow, preset=args.dis_preset)
    if args.flow == "farneback":
        return FlowSettings.of("farneback", args.save_raw_flow)
    return FlowSettings.of(args.flow, args.save_raw_flow, weights=args.raft_weights,
                           num_flow_updates=args.raft_iters, batch_size=args.batch_size, device=args.device)


def _add_prepare(subparsers) -> None:
    parser = subparsers.add_parser("prepare", help="frames, flow images and masks in the original's flat layout")
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    davis = sources.add_parser("davis", help="DAVIS (JPEGImages/480p, Annotations/480p, ImageSets) -> DAVIS2SEG")
    davis.add_argument("--davis-root", required=True, type=Path)
    davis.add_argument("--out", required=True, type=Path)
    davis.add_argument("--splits", default="train,val", help="comma-separated (default: train,val)")
    _add_flow_arguments(davis, workers=True)
    davis.set_defaults(func=_run_prepare_davis)
    youtube = sources.add_parser("youtube-vos", help="YouTube-VOS train -> YouTube2SEG")
    youtube.add_argument("--root", required=True, type=Path)
    youtube.add_argument("--out", required=True, type=Path)
    _add_flow_arguments(youtube, workers=True)
    youtube.set_defaults(func=_run_prepare_youtube_vos)
    video = sources.add_parser("video", help="frames and flow of a video file or frame folder, for inference")
    video.add_argument("input", type=Path)
    video.add_argument("--out", required=True, type=Path)
    video.add_argument("--name", default=None, help="video name in the output (default: the input's name)")
    video.add_argument("--split", default="val", help="output split (default: val, what inference reads)")
    video.add_argument("--fps", type=float, default=None, help="frame rate of a frame folder (kept for outputs)")
    _add_flow_arguments(video, workers=False)
    video.set_defaults(func=_run_prepare_video)


def _run_prepare_davis(args) -> int:
    from hfan.data.prepare import prepare_davis

    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    print(prepare_davis(args.davis_root, args.out, splits, _flow_settings(args), args.workers))
    return 0


def _run_prepare_youtube_vos(args) -> int:
    from hfan.data.prepare import prepare_youtube_vos

    print(prepare_youtube_vos(args.root, args.out, _flow_settings(args), args.workers))
    return 0


def _run_prepare_video(args) -> int:
    from hfan.data.prepare import prepare_video

    print(prepare_video(args.input, args.out, _flow_settings(args), args.split, args.name, args.fps))
    return 0


# Each entry adds one subcommand. Later features append their `_add_*` function here.
SUBCOMMANDS = [_add_info, _add_prepare]


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
