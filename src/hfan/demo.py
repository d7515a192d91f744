"""`hfan demo`: a local web app (Gradio, the `demo` extra) around `hfan segment`.

A job is one `hfan.segment.segment_file` call into a folder of its own, so the app and the command share one code
path and two users never see each other's outputs; Gradio's queue runs the jobs one after another (the model and
the flow use every core). The upload is checked (it must open as a video, or be a zip of frames, and hold at most
`max_frames` frames) before the model loads; a bad one is a message in the page. Videos stream from disk to disk:
no whole video is held in memory.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from hfan.files import atomic_path
from hfan.presets import DEFAULT_MODEL, checkpoint_cache

# Only what the CLI's parser needs is imported at the top: `hfan --help` does not load OpenCV or torch.

SAMPLE_CLIP = Path(__file__).resolve().parents[2] / "examples" / "blackswan.mp4"  # in a source checkout
DEFAULT_MAX_FRAMES = 300
DEFAULT_MAX_UPLOAD_MB = 200
DEFAULT_MODEL_LABEL = "default model (packaged)"


@dataclass
class DemoSettings:
    checkpoints: list[Path] = field(default_factory=list)  # offered besides the default model
    max_frames: int = DEFAULT_MAX_FRAMES
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB
    workdir: Path | None = None  # where the jobs' folders go (default: a temporary folder)
    sample_clip: Path | None = SAMPLE_CLIP

    def __post_init__(self):
        if self.max_frames < 1:
            raise ValueError(f"--max-frames {self.max_frames}: give at least 1")
        for checkpoint in self.checkpoints:
            if not Path(checkpoint).is_file():
                raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
        if self.sample_clip is not None and not Path(self.sample_clip).is_file():
            self.sample_clip = None


def model_choices(settings: DemoSettings) -> dict[str, str]:
    """Label -> what `segment_file` loads: the default model, the --checkpoint files, then every .pth in
    `$HFAN_HOME/checkpoints`."""
    choices = {DEFAULT_MODEL_LABEL: DEFAULT_MODEL}
    cache = checkpoint_cache()
    found = [Path(p) for p in settings.checkpoints] + (sorted(cache.glob("*.pth")) if cache.is_dir() else [])
    for path in found:
        choices.setdefault(path.name if path.name not in choices else str(path), str(path))
    return choices


def flow_choices() -> dict[str, tuple[str | None, dict | None]]:
    """Label -> (flow method, flow options) for `segment_file`; RAFT only where its weights need no download."""
    from hfan.flow.estimators import DIS_PRESETS, raft_weights_cached

    choices: dict[str, tuple[str | None, dict | None]] = {"the model's own (DIS)": (None, None)}
    for preset in DIS_PRESETS:
        choices[f"DIS {preset}"] = ("dis", {"preset": preset})
    for variant in ("raft_small", "raft_large"):
        try:
            cached = raft_weights_cached(variant)
        except ImportError:  # torchvision missing
            cached = False
        if cached:
            choices[variant.replace("_", "-").upper().replace("RAFT-", "RAFT ")] = (variant, None)
    return choices


def unpack_upload(upload: str | os.PathLike, job: Path) -> Path:
    """The video file itself, or the folder of frames a zip holds (extracted into `job`)."""
    from hfan.io.images import IMAGE_SUFFIXES

    upload = Path(upload)
    if not upload.is_file() or upload.stat().st_size == 0:
        raise ValueError(f"{upload.name}: the upload is empty")
    if not zipfile.is_zipfile(upload):
        return upload
    frames = job / "frames"
    frames.mkdir()
    with zipfile.ZipFile(upload) as archive:
        members = [m for m in archive.infolist() if not m.is_dir() and Path(m.filename).suffix.lower()
                   in IMAGE_SUFFIXES and not Path(m.filename).name.startswith(".")]
        if not members:
            raise ValueError(f"{upload.name}: the zip holds no frames ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for member in members:  # flattened: a zip of a folder of frames works as well as a zip of frames
            with archive.open(member) as source, open(frames / Path(member.filename).name, "wb") as target:
                shutil.copyfileobj(source, target)
    return frames


@dataclass
class JobResult:
    out: Path  # the job's SegmentOutput folder
    frames: int
    overlay: Path
    cutout: Path
    masks_zip: Path
    probabilities: list[Path]
    summary: str


def run_job(upload: str | os.PathLike, settings: DemoSettings, model: str = DEFAULT_MODEL_LABEL,
            flow: str = "the model's own (DIS)", aug_test: bool = False, progress: bool = True) -> JobResult:
    """One demo job: the upload checked, then `segment_file` into a new folder with the overlay, the cut-out,
    the probabilities and a zip of the masks; a failed job removes its folder. Raises ValueError for a bad upload,
    naming it as uploaded. Like `hfan segment`, it tunes glibc's allocator (process-wide,
    hfan.inference.malloc)."""
    models, flows = model_choices(settings), flow_choices()
    if model not in models:
        raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(models)}")
    if flow not in flows:
        raise ValueError(f"unknown flow {flow!r}; choose one of: {', '.join(flows)}")
    root = Path(settings.workdir) if settings.workdir is not None else Path(tempfile.gettempdir()) / "hfan-demo"
    root.mkdir(parents=True, exist_ok=True)
    job = Path(tempfile.mkdtemp(prefix="job-", dir=root))
    try:
        return _segment_upload(upload, job, settings, models[model], model, flows[flow], flow, aug_test, progress)
    except BaseException:
        shutil.rmtree(job, ignore_errors=True)  # a failed job leaves nothing behind
        raise


def _segment_upload(upload, job: Path, settings: DemoSettings, checkpoint: str, model: str,
                    flow_setting: tuple[str | None, dict | None], flow: str, aug_test: bool, progress: bool) -> JobResult:
    from hfan.datasets.layouts import SegmentOutput
    from hfan.io.video import open_frames
    from hfan.segment import segment_file

    source = unpack_upload(upload, job)
    try:
        video = open_frames(source)  # the probe: not a video, broken, ... raise here, before the model loads
        if video.frame_count is not None and video.frame_count > settings.max_frames:
            raise ValueError(f"{source} has {video.frame_count} frames; this demo takes at most "
                             f"{settings.max_frames} (start it with --max-frames N, or segment it with hfan segment)")
        method, flow_options = flow_setting
        out, timings = segment_file(video.path, job / "result", checkpoint, flow=method, flow_options=flow_options,
                                    aug_test=aug_test, save_probabilities=True, cutout=True, progress=progress)
    except (ValueError, FileNotFoundError) as error:  # named as the user knows it, not by the server's copy
        raise ValueError(str(error).replace(str(source), Path(upload).name)) from None
    layout = SegmentOutput(out)
    masks = sorted((out / "masks").glob("*.png"))
    masks_zip = out / "masks.zip"
    with atomic_path(masks_zip) as temp, zipfile.ZipFile(temp, "w", zipfile.ZIP_STORED) as archive:
        for mask in masks:  # stored: PNGs are compressed already
            archive.write(mask, f"masks/{mask.name}")
    summary = (f"{timings.frames} frames segmented in {timings.wall_seconds:.1f} s "
               f"({timings.frames_per_second:.2f} frames/s) with the {model} and {flow} flow"
               f"{', test-time augmentation' if aug_test else ''}")
    return JobResult(out, timings.frames, layout.overlay_path, layout.cutout_video_path, masks_zip,
                     sorted((out / "probabilities").glob("*.png")), summary)


def build_app(settings: DemoSettings):
    """The Gradio Blocks app (not launched)."""
    import gradio as gr

    models, flows = model_choices(settings), flow_choices()

    def segment(upload, use_sample, model, flow, aug_test, progress=gr.Progress(track_tqdm=True)):
        if use_sample and settings.sample_clip is not None:
            upload = settings.sample_clip
        if upload is None:
            raise gr.Error("Upload a video or a zip of frames first, or tick the sample clip.")
        try:
            result = run_job(upload, settings, model, flow, aug_test)
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(str(error)) from None
        probabilities = [str(p) for p in result.probabilities]
        last = max(len(probabilities) - 1, 0)
        return (str(result.overlay), probabilities[0] if probabilities else None, probabilities,
                gr.Slider(minimum=0, maximum=max(last, 1), value=0, step=1, interactive=last > 0),
                [str(result.masks_zip), str(result.overlay), str(result.cutout)], result.summary)

    def show_probability(probabilities, index):
        if not probabilities:
            return None
        return probabilities[min(int(index), len(probabilities) - 1)]

    with gr.Blocks(title="HFAN: the primary moving object in every frame") as app:
        gr.Markdown("# HFAN video object segmentation\nThe primary moving object in every frame, from the frames "
                    "and their optical flow (Pei et al., ECCV 2022). Runs on this machine.")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label=f"Video or zip of frames (at most {settings.max_frames} frames)",
                                 file_count="single", type="filepath", elem_id="upload")
                use_sample = gr.Checkbox(label="Use the sample clip (DAVIS blackswan, 50 frames)",
                                         value=False, visible=settings.sample_clip is not None, elem_id="sample")
                model = gr.Dropdown(list(models), value=DEFAULT_MODEL_LABEL, label="Model", elem_id="model")
                flow = gr.Dropdown(list(flows), value=next(iter(flows)), label="Optical flow", elem_id="flow")
                aug_test = gr.Checkbox(label="Test-time augmentation (flip; about 2x slower)", value=False)
                run = gr.Button("Segment", variant="primary", elem_id="run")
                summary = gr.Markdown(elem_id="summary")
            with gr.Column():
                overlay = gr.Video(label="Overlay", autoplay=True, loop=True, elem_id="overlay")
                probability = gr.Image(label="Foreground probability (white = 1)", type="filepath",
                                       elem_id="probability")
                frame = gr.Slider(minimum=0, maximum=1, value=0, step=1, label="Frame", interactive=False,
                                  elem_id="frame")
                downloads = gr.File(label="Downloads: masks (zip of PNGs), overlay, cut-out on green",
                                    file_count="multiple", elem_id="downloads")
        probabilities = gr.State([])
        run.click(segment, [upload, use_sample, model, flow, aug_test],
                  [overlay, probability, probabilities, frame, downloads, summary], concurrency_limit=1)
        frame.change(show_probability, [probabilities, frame], probability)
    return app


def launch_demo(host: str = "127.0.0.1", port: int = 7860, checkpoint: str | os.PathLike | None = None,
                share: bool = False, max_frames: int = DEFAULT_MAX_FRAMES, max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB,
                workdir: str | os.PathLike | None = None) -> None:
    """`hfan demo`: build the app and serve it until interrupted."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError("the demo needs Gradio: pip install 'hfan[demo]'") from None
    settings = DemoSettings([Path(checkpoint)] if checkpoint else [], max_frames, max_upload_mb,
                            Path(workdir) if workdir else None)
    app = build_app(settings)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, share=share, max_file_size=f"{max_upload_mb}mb",
               allowed_paths=[str(settings.workdir)] if settings.workdir else None)
