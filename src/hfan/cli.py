"""The `hfan` command: argument parsing only. Each subcommand maps its flags to library calls (a Predictor from
`hfan.inference.predictor.load_predictor`, then the one function that does the job); every default and every
choice of device, batch or weights lives in the library, so the Python API and the commands run the same way."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


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
    from hfan.presets import TRAIN_PRESETS

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
                             "grad_accum_steps=2 precision=bf16 model.decode_head.select_method=fam (default: none)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from hfan.train.loop import launch

    result = launch(args.preset, args.work_dir, args.options, args.pretrained, args.load_from, args.resume,
                    args.device, progress=not args.no_progress)
    if result.validation is not None or os.environ.get("RANK", "0") == "0":  # once under torchrun
        print(f"iteration {result.iteration}: {result.checkpoint}")


def _add_export(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export the segmentor (one window) to ONNX")
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    onnx = formats.add_parser("onnx", help="ONNX graph: frame + flow window in, 1/4-size logits out")
    onnx.add_argument("--model", default=None, help="preset name (default: from the checkpoint)")
    onnx.add_argument("--checkpoint", default=None, help="weights (default: the packaged default model)")
    onnx.add_argument("--random-weights", action="store_true",
                      help="export random weights of --model instead of a checkpoint (for tests and timing)")
    onnx.add_argument("--options", nargs="*", default=[], metavar="KEY=VALUE",
                      help="dotted overrides, e.g. decode_head.select_method=im (default: none)")
    onnx.add_argument("--out", required=True, help="output .onnx file")
    onnx.add_argument("--size", default="512x512", help="window HxW, multiples of 32 (default 512x512)")
    onnx.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    onnx.set_defaults(func=_run_export_onnx)
    weights = formats.add_parser("weights", help="a training checkpoint -> inference weights (fp16, model card)")
    weights.add_argument("checkpoint", help="a checkpoint of hfan train, e.g. WORK_DIR/best.pth")
    weights.add_argument("--out", required=True, help="output .pth file")
    weights.add_argument("--fp32", action="store_true", help="keep fp32 weights (default: fp16, half the size)")
    weights.add_argument("--card", default=None, help="JSON file of model-card fields to record (name, data, ...)")
    weights.add_argument("--options", nargs="*", default=[], metavar="KEY=VALUE",
                         help="test/flow settings to record with the weights, e.g. test.temporal_mean=3 "
                              "(default: none)")
    weights.set_defaults(func=_run_export_weights)


def _run_export_weights(args) -> int:
    import json

    from hfan.models.checkpoints import export_weights

    card = None
    if args.card:
        try:
            card = json.loads(Path(args.card).read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"--card {args.card}: cannot read a JSON object ({error})") from None
    path = export_weights(args.checkpoint, args.out, half=not args.fp32, card=card, options=args.options)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _run_export_onnx(args) -> int:
    from hfan.inference.export import export_onnx, parse_window_size
    from hfan.models.checkpoints import load_model
    from hfan.models.segmentor import build_model

    if args.random_weights and (args.model is None or args.checkpoint is not None):
        raise ValueError("--random-weights needs --model PRESET and no --checkpoint")
    if args.checkpoint is None and args.model is not None and not args.random_weights:
        raise ValueError(f"--model {args.model} without --checkpoint: give the weights with --checkpoint FILE, or "
                         "--random-weights to export random weights (never done unless asked)")
    height, width = parse_window_size(args.size)
    model = (build_model(args.model, args.options) if args.random_weights
             else load_model(args.checkpoint or "default", preset=args.model, options=args.options))
    path = export_onnx(model, args.out, height, width, check=not args.no_check)
    print(f"wrote {path}" + ("" if args.no_check else " (onnxruntime matches PyTorch within 1e-4)"))
    return 0


def _add_model_arguments(parser, default_model: str | None) -> None:
    from hfan.config import PRECISIONS

    parser.add_argument("--model", default=default_model,
                        help="default (the packaged model), or a preset: hfan-b0, hfan-small, hfan-medium, hfan-large "
                             "(default: what the checkpoint holds)")
    parser.add_argument("--checkpoint", help="weights: an official *-converted.pth or a file of ours"
                        + (" (default: the packaged default model)" if default_model else ""))
    parser.add_argument("--options", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted overrides, e.g. decode_head.select_method=im test.mode=whole (default: none)")
    parser.add_argument("--aug-test", action="store_true", help="the official multi-scale (0.75, 1, 1.75) + flip test")
    parser.add_argument("--fast", action="store_true", help="one whole-image forward instead of sliding windows")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    parser.add_argument("--precision", default=None, choices=PRECISIONS,
                        help="default: fp16 autocast on CUDA (as the official test), fp32 on CPU")
    parser.add_argument("--batch-size", type=_count(1), default=4, help="frames per forward (default 4)")
    speed = parser.add_argument_group("speed (same outputs as the plain path)")
    speed.add_argument("--compile", action="store_true",
                       help="torch.compile the model (CPU: inductor with freezing, minutes of compile; CUDA: CUDA "
                            "graphs); pays off over a whole dataset, not a few frames")
    speed.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                       help="torch (default), or onnx: windows through onnxruntime (CPU, fp32)")
    speed.add_argument("--no-malloc-tuning", action="store_true",
                       help="leave glibc's allocator at its defaults (tuned by default: fewer page faults, the "
                            "process keeps its peak memory)")


def _predictor_options(args) -> dict:
    return dict(device=args.device, precision=args.precision, backend=args.backend, compiled=args.compile,
                aug_test=args.aug_test, whole_image=args.fast, tune_allocator=not args.no_malloc_tuning)


def _count(minimum: int):
    """An argparse type: an integer of at least `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _add_segment(subparsers) -> None:
    from hfan.config import FLOW_METHODS

    parser = subparsers.add_parser("segment", help="a video file or frame folder -> masks and an overlay video")
    parser.add_argument("input", help="video file (any container FFmpeg reads: mp4, avi, mov, mkv, webm, ...) or "
                                      "folder of frames")
    parser.add_argument("--out", default=None, help="output folder (default: <input name>_hfan next to it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the outputs of another run in --out (a rerun of the same job replaces its own)")
    _add_model_arguments(parser, None)
    parser.add_argument("--flow", default=None, choices=FLOW_METHODS,
                        help="the flow estimator (default: the model's own, dis for the default model and the "
                             "official checkpoints)")
    parser.add_argument("--raft-weights", default=None, help="local RAFT weights file (torchvision state dict)")
    frames = parser.add_argument_group("frames")
    frames.add_argument("--start", type=_count(0), default=0, help="first frame to segment (default: 0)")
    frames.add_argument("--end", type=_count(1), default=None, help="stop before this frame (default: the last)")
    frames.add_argument("--stride", type=_count(1), default=1, help="every n-th frame (default: 1)")
    frames.add_argument("--fps", type=float, default=None,
                        help="frame rate of the overlay for a frame folder (default: 25), or to override a video's")
    frames.add_argument("--allow-partial", action="store_true",
                        help="segment the frames before the break of a truncated or damaged video (default: refuse)")
    parser.add_argument("--save-probabilities", action="store_true", help="also 8-bit foreground probability PNGs")
    parser.add_argument("--save-flow", action="store_true", help="also the colour-coded flow images")
    parser.add_argument("--cutout", action="store_true",
                        help="also the object cut out: RGBA PNGs in OUT/cutouts and OUT/cutout.mp4 on green")
    parser.add_argument("--no-overlay", action="store_true", help="no overlay video")
    parser.set_defaults(func=_run_segment)


def _run_segment(args) -> int:
    from hfan.models.checkpoints import default_model_summary
    from hfan.presets import DEFAULT_MODEL, segment_weights
    from hfan.segment import FrameRange, segment_file

    checkpoint, preset = segment_weights(args.model, args.checkpoint)
    if checkpoint == DEFAULT_MODEL:
        print(default_model_summary())
    out, timings = segment_file(
        args.input, args.out, checkpoint, preset, args.options, args.flow,
        flow_options={"weights": args.raft_weights} if args.raft_weights else None, batch_size=args.batch_size,
        frames=FrameRange(args.start, args.end, args.stride), fps=args.fps, allow_partial=args.allow_partial,
        overwrite=args.overwrite, overlay=not args.no_overlay, save_probabilities=args.save_probabilities,
        save_flow=args.save_flow, cutout=args.cutout, **_predictor_options(args))
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in timings.seconds.items())
    print(f"{timings.frames} frames -> {out} in {timings.wall_seconds:.1f} s "
          f"({timings.frames_per_second:.2f} frames/s; "
          f"time per stage: {stages})")
    return 0


def _add_infer(subparsers) -> None:
    parser = subparsers.add_parser("infer", help="the paper's test on a prepared dataset (DAVIS2SEG layout)")
    _add_model_arguments(parser, None)
    parser.add_argument("--data", required=True, help="prepared dataset root (frame/, flow/ [, mask/])")
    parser.add_argument("--split", default="val", help="split of --data to predict (default: val)")
    parser.add_argument("--out", required=True, help="masks go to OUT/<video>/<frame>.png (0/255)")
    parser.add_argument("--save-probabilities", action="store_true", help="also OUT-prob/<video>/<frame>.png (8-bit)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace masks in --out made with other weights or options (default: refuse; masks of "
                             "the same job are kept and the run resumes)")
    parser.add_argument("--eval", action="store_true", help="evaluate the masks (DAVIS J/F) against --gt")
    parser.add_argument("--gt", default=None, help="ground truth <seq>/<frame>.png or a DAVIS root (for --eval)")
    parser.set_defaults(func=_run_infer)


def _run_infer(args) -> int:
    from hfan.evaluation.predict import distributed_rank, infer_checkpoint, wait_for_shards
    from hfan.evaluation.report import report

    if args.checkpoint is None:
        raise ValueError("give --checkpoint FILE (and optionally --model PRESET): hfan infer never runs random "
                         "weights")
    if args.eval and args.gt is None:
        raise ValueError("--eval needs --gt: ground-truth <seq>/<frame>.png folders or a DAVIS root")
    result = infer_checkpoint(args.checkpoint, args.data, args.split, args.out, args.model, args.options,
                              args.batch_size, args.save_probabilities, args.overwrite, **_predictor_options(args))
    speed = (f"; model {result.model_fps:.2f} frames/s, wall clock {result.wall_fps:.2f} frames/s"
             if result.frames_done else ": nothing left to do")
    print(f"{result.frames_done} frames written, {result.frames_skipped} already complete{speed}")
    rank, world_size = distributed_rank()
    if args.eval:
        wait_for_shards(world_size)  # every shard's masks are written before rank 0 scores them
        if rank == 0:
            print(report("davis", [args.out], args.gt, only_present=True))
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
        sub.add_argument("--workers", type=_count(1), default=None,
                         help="processes scoring sequences in parallel (default: one per CPU)")
        if kind == "davis":
            sub.add_argument("--no-plot", action="store_true", help="do not draw the per-sequence J&F chart")
        sub.set_defaults(func=_run_eval)


def _run_eval(args) -> int:
    from hfan.evaluation.report import report

    print(report(args.kind, args.pred, args.gt, out_dir=args.out, names=args.names, sequences=args.sequences,
                 only_present=args.only_present, workers=args.workers, plot=not getattr(args, "no_plot", False)))
    return 0


def _add_flow_arguments(parser, workers: bool) -> None:
    from hfan.config import CAMERA_MOTION_MODELS
    from hfan.flow.estimators import DIS_PRESETS, ESTIMATORS, RAFT_DEFAULT_UPDATES, RAFT_DEFAULT_WEIGHTS

    group = parser.add_argument_group("optical flow")
    group.add_argument("--flow", choices=ESTIMATORS, default="dis", help="flow method (default: dis)")
    group.add_argument("--dis-preset", choices=list(DIS_PRESETS), default="medium",
                       help="OpenCV DIS preset (default: medium)")
    group.add_argument("--raft-weights", default=RAFT_DEFAULT_WEIGHTS,
                       help="a torchvision weight name (C_T_V1 = the original raft-things, C_T_V2, ...) or a "
                            f"local .pth file (default: {RAFT_DEFAULT_WEIGHTS})")
    group.add_argument("--raft-iters", type=_count(1), default=RAFT_DEFAULT_UPDATES,
                       help=f"RAFT refinement iterations (default {RAFT_DEFAULT_UPDATES})")
    group.add_argument("--flow-batch-size", type=_count(1), default=4, help="RAFT frame pairs per batch (default 4)")
    group.add_argument("--device", default=None, help="RAFT device (default: cuda when available, else cpu)")
    group.add_argument("--save-raw-flow", action="store_true",
                       help="also keep the raw flow as float16 .npy under flow_raw/")
    group.add_argument("--camera-motion", choices=CAMERA_MOTION_MODELS, default="none",
                       help="remove the fitted camera motion before drawing the flow image: affine for our default "
                            "model (its training flow), none (default) for the official checkpoints (raw RAFT flow)")
    group.add_argument("--no-malloc-tuning", action="store_true",
                       help="leave glibc's allocator at its defaults (tuned by default: RAFT on the CPU runs faster, "
                            "the process keeps its peak memory)")
    if workers:
        group.add_argument("--workers", type=_count(1), default=1,
                           help="parallel processes over videos (dis, farneback; default 1)")


def _flow_settings(args):
    from hfan.datasets.prepare import FlowSettings
    from hfan.inference.malloc import tune_malloc

    if not args.no_malloc_tuning:
        tune_malloc()  # mainly for RAFT, which runs in this process (DIS / Farneback workers are spawned fresh)
    return FlowSettings.from_options(args.flow, args.save_raw_flow, args.camera_motion, dis_preset=args.dis_preset,
                                     raft_weights=args.raft_weights, raft_iters=args.raft_iters,
                                     batch_size=args.flow_batch_size, device=args.device)


def _add_prepare(subparsers) -> None:
    parser = subparsers.add_parser("prepare", help="frames, flow images and masks in the original's flat layout")
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    davis = sources.add_parser("davis", help="DAVIS (JPEGImages/480p, Annotations/480p, ImageSets) -> DAVIS2SEG")
    davis.add_argument("--davis-root", required=True, type=Path,
                       help="DAVIS root holding JPEGImages/480p, Annotations/480p, ImageSets")
    davis.add_argument("--out", required=True, type=Path, help="output root (the flat layout)")
    davis.add_argument("--splits", default="train,val", help="comma-separated (default: train,val)")
    _add_flow_arguments(davis, workers=True)
    davis.set_defaults(func=_run_prepare_davis)
    youtube = sources.add_parser("youtube-vos", help="YouTube-VOS train -> YouTube2SEG")
    youtube.add_argument("--root", required=True, type=Path, help="YouTube-VOS train folder (JPEGImages/, "
                                                                  "Annotations/)")
    youtube.add_argument("--out", required=True, type=Path, help="output root (the flat layout)")
    _add_flow_arguments(youtube, workers=True)
    youtube.set_defaults(func=_run_prepare_youtube_vos)
    video = sources.add_parser("video", help="frames and flow of a video file or frame folder, for inference")
    video.add_argument("input", type=Path)
    video.add_argument("--out", required=True, type=Path, help="output root (the flat layout)")
    video.add_argument("--name", default=None, help="video name in the output (default: the input's name)")
    video.add_argument("--split", default="val", help="output split (default: val, what inference reads)")
    video.add_argument("--fps", type=float, default=None, help="frame rate of a frame folder, kept for outputs (default: 25), or to "
                                                             "override a video's")
    _add_flow_arguments(video, workers=False)
    video.set_defaults(func=_run_prepare_video)


def _run_prepare_davis(args) -> int:
    from hfan.datasets.prepare import prepare_davis

    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    print(prepare_davis(args.davis_root, args.out, splits, _flow_settings(args), args.workers))
    return 0


def _run_prepare_youtube_vos(args) -> int:
    from hfan.datasets.prepare import prepare_youtube_vos

    print(prepare_youtube_vos(args.root, args.out, _flow_settings(args), args.workers))
    return 0


def _run_prepare_video(args) -> int:
    from hfan.datasets.prepare import prepare_video

    print(prepare_video(args.input, args.out, _flow_settings(args), args.split, args.name, args.fps))
    return 0


def _add_demo(subparsers) -> None:
    from hfan.demo import DEFAULT_MAX_FRAMES, DEFAULT_MAX_UPLOAD_MB

    parser = subparsers.add_parser("demo", help="a local web app: upload a video, watch and download its masks "
                                                "(needs the demo extra: pip install 'hfan[demo]')")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default: 127.0.0.1, this machine only; 0.0.0.0 for the network)")
    parser.add_argument("--port", type=_count(1), default=7860, help="port (default: 7860)")
    parser.add_argument("--checkpoint", default=None,
                        help="a checkpoint to offer besides the default model and $HFAN_HOME/checkpoints/*.pth "
                             "(default: none)")
    parser.add_argument("--share", action="store_true", help="also a public gradio.live link (default: off)")
    parser.add_argument("--max-frames", type=_count(1), default=DEFAULT_MAX_FRAMES,
                        help=f"longest upload accepted, in frames (default: {DEFAULT_MAX_FRAMES})")
    parser.add_argument("--max-upload-mb", type=_count(1), default=DEFAULT_MAX_UPLOAD_MB,
                        help=f"largest upload accepted, in MB (default: {DEFAULT_MAX_UPLOAD_MB})")
    parser.add_argument("--workdir", default=None,
                        help="folder for the jobs' outputs (default: <temporary folder>/hfan-demo)")
    parser.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from hfan.demo import launch_demo

    launch_demo(args.host, args.port, args.checkpoint, args.share, args.max_frames, args.max_upload_mb, args.workdir)
    return 0


# Each entry adds one subcommand. Later features append their `_add_*` function here.
SUBCOMMANDS = [_add_info, _add_segment, _add_prepare, _add_infer, _add_eval, _add_export, _add_train, _add_demo]


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(prog="hfan", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hfan {version('hfan')}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> str:
    return f"hfan: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    warnings.formatwarning = _one_line_warnings
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        # Every file under its final name is complete (hfan.files); prepare and infer skip them on a rerun.
        print(f"\nhfan {args.command}: interrupted; the files written so far are complete: rerun the same "
              "command to resume (prepare, infer, train --resume) or to redo it (segment)", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as error:
        # Bad input ends in one clear message, not a traceback.
        print(f"hfan {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # permissions, a full disk, a vanished folder: the path and the reason
        where = f"{error.filename}: " if error.filename else ""
        print(f"hfan {args.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
