"""The training loop of both stages (docs/design.md#training-stages), in the style of torchvision's references/:
no trainer framework.

One process per GPU under torchrun (or one process alone). Each optimiser step runs `grad_accum_steps`
micro-batches of `data.batch_per_gpu` samples per rank; `hfan.train.sampler.TrainStream` decides the samples
from the step number, so the data position, like every other piece of state, is in the checkpoints.
"""
from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from hfan.datasets.composites import CompositeTrainDataset, write_validation_videos
from hfan.datasets.train_dataset import FlatTrainDataset
from hfan.datasets.transforms import TrainTransform
from hfan.preprocess import autocast_context
from hfan.models.checkpoints import (extract_state_dict, load_imagenet_backbone, load_state_dict_strict, official_to_ours, read_checkpoint_file, save_checkpoint)
from hfan.models.segmentor import HFANSegmentor, build_model
from hfan.train import distributed
from hfan.train.checkpointing import (capture_rng_state, checkpoint_name, read_training_checkpoint,
                                      resolve_resume_path, restore_rng_state, save_training_checkpoint,
                                      saved_train_config)
from hfan.config import DAVIS_COLUMNS, TrainConfig, apply_overrides
from hfan.presets import get_train_preset
from hfan.train.distributed import Context
from hfan.train.logs import TrainLog
from hfan.train.optim import IterationLR, build_optimizer, build_scheduler
from hfan.train.sampler import TrainStream
from hfan.train.validate import evaluate_split, scored_samples

DATA_REPORT = "data_problems.txt"
BEST_CHECKPOINT = "best.pth"
BEST_EMA_CHECKPOINT = "best_ema.pth"
EMA_PREFIX = "ema "  # validation columns of the weight average: "ema J-Mean", ...
COMPOSITE_VALIDATION = "composite_val"  # held-out composite videos, rendered once into the work dir


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                      jaccard_weight: float = 0.0) -> torch.Tensor:
    """mmseg CrossEntropyLoss as configured (docs/design.md#loss): logits upsampled to the label size, softmax
    cross-entropy, summed and divided by the number of ALL pixels (ignored ones included).

    With `jaccard_weight` > 0 (ours, off in every preset of the original) a soft Jaccard loss of the foreground
    (class 1) is added with that weight: per image 1 - (I + 1) / (U + 1), with I = sum(p y) and
    U = sum(p) + sum(y) - I over the labelled pixels, p the softmax probability of class 1; averaged over the
    images. J-Mean is this overlap, thresholded; the cross-entropy alone rewards every pixel alike."""
    logits = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
    loss = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum") / target.numel()
    if jaccard_weight:
        labelled = (target != ignore_index).float()
        foreground = logits.softmax(dim=1)[:, 1] * labelled
        truth = (target == 1).float() * labelled
        intersection = (foreground * truth).flatten(1).sum(1)
        union = foreground.flatten(1).sum(1) + truth.flatten(1).sum(1) - intersection
        loss = loss + jaccard_weight * (1 - (intersection + 1) / (union + 1)).mean()
    return loss


@dataclass
class TrainResult:
    model: HFANSegmentor  # the trained network (not wrapped), in eval mode
    checkpoint: Path  # the last checkpoint written
    iteration: int
    validation: dict[str, float] | None  # the last validation summary, if any (rank 0)


def set_determinism(seed: int, deterministic: bool) -> None:
    """Seeds of every generator; with `deterministic`, cuDNN's deterministic kernels and no autotuning (the
    original's --deterministic) and torch's deterministic algorithms. Bilinear up-sampling has no deterministic
    CUDA backward: torch warns about it (warn_only) rather than refusing to train."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """All weights of a checkpoint (ours or the original's), strictly: `load_from` of stage 2."""
    state = official_to_ours(extract_state_dict(read_checkpoint_file(path), path))
    load_state_dict_strict(model, state, str(path))


def build_dataset(config: TrainConfig, context: Context, work_dir: Path,
                  progress: bool) -> FlatTrainDataset | CompositeTrainDataset:
    """The training set. A flat dataset has its files checked at start-up: missing files on every rank, sizes on
    rank 0 (headers of every file), whose verdict all ranks share so that they stop together. Composites load
    their photos and shapes (cached after the first run)."""
    data = config.data
    if data.source == "composites":
        flow = config.model.flow
        return CompositeTrainDataset(data.composites, config.seed, flow.camera_motion, flow.dis_preset,
                                     progress=progress)
    dataset = FlatTrainDataset(data.root, data.split, TrainTransform(data.augment), data.repeat, config.seed)
    problem = None
    if context.is_main:
        report = work_dir / DATA_REPORT
        try:
            dataset.validate_sizes(progress=progress, report_path=report)
            report.unlink(missing_ok=True)  # a list left by an earlier, failed start
        except ValueError as error:
            problem = str(error)
    problem = distributed.from_main(context, problem)
    if problem:
        raise ValueError(problem)
    return dataset


def accumulate_gradients(model: torch.nn.Module, micro_batches: Iterable[dict[str, torch.Tensor]], count: int,
                         scaler: torch.amp.GradScaler, device: torch.device, precision: str,
                         ignore_index: int = 255, jaccard_weight: float = 0.0) -> torch.Tensor:
    """Forward and backward `count` micro-batches; the gradients add up to those of their mean loss. Under DDP
    the gradients are all-reduced once, with the last micro-batch. Returns the mean loss (detached)."""
    total = torch.zeros((), device=device)
    for micro, batch in zip(range(count), micro_batches):
        last = micro == count - 1
        no_sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last else contextlib.nullcontext()
        frames = batch["frame"].to(device, non_blocking=True)
        flows = batch["flow"].to(device, non_blocking=True)
        masks = batch["mask"].to(device, non_blocking=True)
        with no_sync:
            with autocast_context(device, precision):
                logits = model(frames, flows)
            loss = segmentation_loss(logits, masks, ignore_index, jaccard_weight) / count
            scaler.scale(loss).backward()
        total += loss.detach()
    return total


def _due(done: int, interval: int, last: int) -> bool:
    return done % interval == 0 or done == last


class _Trainer:
    """The state of one run and its steps; `train()` drives it."""

    def __init__(self, config: TrainConfig, work_dir: Path, context: Context, progress: bool):
        self.config, self.work_dir, self.context = config, work_dir, context
        self.device = context.device
        self.progress = progress and context.is_main
        set_determinism(config.seed, config.deterministic)
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.dataset = build_dataset(config, context, work_dir, self.progress)
        self.val_root = config.data.val_root
        if self.val_root is None and config.data.source == "composites":
            self.val_root = str(work_dir / COMPOSITE_VALIDATION)
            if context.is_main:
                flow = config.model.flow
                write_validation_videos(self.val_root, config.data.composites, config.seed, flow.camera_motion,
                                        flow.dis_preset, self.dataset.assets, config.data.val_split, self.progress)
            distributed.barrier(context)
        if self.val_root:
            scored_samples(self.val_root, config.data.val_split)  # a broken validation split fails now

        resume = read_training_checkpoint(config.resume) if config.resume else None
        self.model = build_model(config.model)  # after seeding: the random head is the seed's
        if resume is not None:
            load_weights(self.model, config.resume)
        elif config.load_from:
            load_weights(self.model, config.load_from)
        elif config.pretrained:
            load_imagenet_backbone(self.model, config.pretrained)
        self.model.to(self.device).train()
        if distributed.wants_sync_bn(context):
            distributed.sync_linear_fuse_bn(self.model)
        self.network: torch.nn.Module = self.model
        if context.distributed:
            # Every parameter receives a gradient for all select_methods (tests/train/test_loop.py).
            self.network = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=False)

        self.optimizer = build_optimizer(self.model, config.optimizer)
        self.scheduler: IterationLR = build_scheduler(self.optimizer, config.schedule, config.iterations)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        self.stream = TrainStream(len(self.dataset), config.data.batch_per_gpu, config.grad_accum_steps,
                                  context.rank, context.world_size, config.seed)
        self.iteration = 0
        self.step_rates: dict[str, float] = {}  # learning rate of each group in the last step
        self.best: tuple[float, int] | None = None  # (score, iteration) of best.pth
        self.best_ema: tuple[float, int] | None = None  # the same for best_ema.pth
        # Buffers (batch-norm statistics) are averaged too: the average is a model of its own, used as it is.
        self.ema = None if config.ema_decay is None else AveragedModel(
            self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        if resume is not None:
            self._restore(resume)
        self.stream.start_step = self.iteration

    def _restore(self, state: dict) -> None:
        context, config = self.context, self.config
        if state["samples_per_step"] != self.stream.samples_per_step:
            raise ValueError(
                f"{config.resume} was trained with {state['samples_per_step']} samples per step but this run has "
                f"{self.stream.samples_per_step} (GPUs x data.batch_per_gpu x grad_accum_steps): keep the product, "
                "e.g. grad_accum_steps=2 on one GPU for a run made on two")
        if state["iteration"] >= config.iterations:
            raise ValueError(f"{config.resume} is at iteration {state['iteration']}, the run has "
                             f"iterations={config.iterations}: nothing left to do (raise iterations=...)")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # A changed `iterations` re-shapes the schedule from here on; unchanged, this recomputes the same rates.
        self.scheduler.max_iters = config.iterations
        for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_lr()):
            group["lr"] = lr
        self.scaler.load_state_dict(state["scaler"])
        rng_states = state["rng_states"]
        if len(rng_states) != context.world_size and context.is_main:
            tqdm.write(f"resuming {len(rng_states)} rank(s) on {context.world_size}: the data continue exactly, "
                       "the dropout / drop-path draws do not")
        restore_rng_state(rng_states[context.rank % len(rng_states)], self.device)
        self.iteration = state["iteration"]
        if self.ema is not None:
            if "ema" not in state:
                raise ValueError(f"{config.resume} holds no weight average: resume it with --options "
                                 "ema_decay=none, or start a new run with ema_decay")
            self.ema.load_state_dict(state["ema"])
        self.best = self._kept_score(BEST_CHECKPOINT, config.keep_best)  # the score to beat is the one kept
        if self.ema is not None:
            self.best_ema = self._kept_score(BEST_EMA_CHECKPOINT, self._ema_keep_best)

    @property
    def _ema_keep_best(self) -> str | None:
        """The validation column that picks best_ema.pth: keep_best's, of the weight average."""
        return self.config.keep_best and EMA_PREFIX + self.config.keep_best

    def _kept_score(self, name: str, column: str | None) -> tuple[float, int] | None:
        path = self.work_dir / name
        if not column or not path.is_file():
            return None
        kept = read_checkpoint_file(path)
        return float(kept["validation"][column]), int(kept["iteration"])

    def loader(self) -> Iterator[dict[str, torch.Tensor]]:
        data = self.config.data
        # Its own generator: creating the iterator must not draw from the global RNG that dropout uses.
        # Composite workers are spawned, not forked: a fork after OpenCV's thread pool has run (the validation
        # videos are rendered in this process) can leave the child waiting on a lock forever.
        context = "spawn" if data.source == "composites" and data.workers_per_gpu > 0 else None
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=data.batch_per_gpu, sampler=self.stream, num_workers=data.workers_per_gpu,
            pin_memory=data.pin_memory and self.device.type == "cuda", multiprocessing_context=context,
            generator=torch.Generator().manual_seed(self.config.seed))
        return iter(loader)

    def step(self, batches: Iterator[dict[str, torch.Tensor]]) -> torch.Tensor:
        loss = accumulate_gradients(self.network, batches, self.config.grad_accum_steps, self.scaler, self.device,
                                    self.config.precision, self.config.data.augment.ignore_index,
                                    self.config.jaccard_loss_weight)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_rates = {f"lr_{g['name']}": g["lr"] for g in self.optimizer.param_groups}
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.iteration += 1
        return loss

    def save(self) -> Path:
        rng_states = distributed.all_gather(self.context, capture_rng_state(self.device))
        path = self.work_dir / checkpoint_name(self.iteration)
        if self.context.is_main:
            extra = {} if self.ema is None else {"ema": self.ema.state_dict()}
            path = save_training_checkpoint(self.work_dir, self.model, self.config, self.iteration, self.optimizer,
                                            self.scheduler, self.scaler, rng_states, self.stream.samples_per_step,
                                            **extra)
        distributed.barrier(self.context)
        return path

    def _keep_if_best(self, model: torch.nn.Module, summary: dict[str, float], column: str | None,
                      best: tuple[float, int] | None, name: str) -> tuple[float, int] | None:
        """`name` (best.pth, best_ema.pth): `model` (our checkpoint format) at the validation with the highest
        `column` so far. Returns the (score, iteration) kept."""
        if column is None:
            return best
        score = float(summary[column])
        if best is not None and score <= best[0]:
            return best
        save_checkpoint(self.work_dir / name, model, self.model.config, iteration=self.iteration,
                        validation={k: float(v) for k, v in summary.items()}, selected_by=column,
                        train_config=self.config.to_dict())
        return score, self.iteration

    def _evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        return evaluate_split(model, self.val_root, self.config.data.val_split, self.model.config.test,
                              progress=self.progress)

    def validate(self) -> dict[str, float] | None:
        """The DAVIS summary of the trained weights and, with ema_decay, of their average (columns "ema ...")."""
        summary = None
        if self.context.is_main:
            summary = self._evaluate(self.model)
            self.model.train()
            self.best = self._keep_if_best(self.model, summary, self.config.keep_best, self.best, BEST_CHECKPOINT)
            if self.ema is not None:
                averaged = {EMA_PREFIX + k: v for k, v in self._evaluate(self.ema.module).items()}
                summary.update(averaged)
                self.best_ema = self._keep_if_best(self.ema.module, summary, self._ema_keep_best, self.best_ema,
                                                   BEST_EMA_CHECKPOINT)
        distributed.barrier(self.context)
        return summary


def train(config: TrainConfig, work_dir: str | os.PathLike, device: str | None = None,
          progress: bool = True) -> TrainResult:
    """Run (or, with `config.resume`, continue) a training; checkpoints and logs go to `work_dir`."""
    work_dir = Path(work_dir)
    context = distributed.init_distributed(device)
    determinism = _determinism_settings()
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        return _run(_Trainer(config, work_dir, context, progress), progress and context.is_main)
    finally:
        _restore_determinism(determinism)  # process-wide switches: leave them as found (tests, notebooks)
        distributed.close_distributed(context)


def _determinism_settings() -> tuple[bool, bool, bool, bool]:
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)


def _restore_determinism(settings: tuple[bool, bool, bool, bool]) -> None:
    enabled, warn_only, torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = settings
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _run(trainer: _Trainer, progress: bool) -> TrainResult:
    config, context = trainer.config, trainer.context
    log = None
    if context.is_main:
        val_columns = list(DAVIS_COLUMNS)
        if trainer.ema is not None:
            val_columns += [EMA_PREFIX + column for column in DAVIS_COLUMNS]
        log = TrainLog(trainer.work_dir, [g["name"] for g in trainer.optimizer.param_groups], val_columns,
                       trainer.iteration, config.tensorboard)
    bar = tqdm(total=config.iterations, initial=trainer.iteration, desc="training", unit="it",
               disable=not progress, dynamic_ncols=True)
    batches = trainer.loader()
    checkpoint, validation = None, None
    # Losses stay on the device between log lines: no synchronisation per step.
    interval_loss, interval_steps = torch.zeros((), device=context.device), 0
    interval_start, paused = time.perf_counter(), 0.0  # paused: checkpoints and validation, not training speed
    try:
        while trainer.iteration < config.iterations:
            interval_loss += trainer.step(batches)
            interval_steps += 1
            bar.update(1)
            done = trainer.iteration
            if _due(done, config.log_interval, config.iterations):
                loss = distributed.mean_over_ranks(context, interval_loss.item() / interval_steps)
                seconds = (time.perf_counter() - interval_start - paused) / interval_steps
                if log is not None:
                    log.log_train(done, {"loss": loss, **trainer.step_rates, "seconds_per_iter": seconds,
                                         "images_per_s": trainer.stream.samples_per_step / seconds})
                bar.set_postfix(loss=f"{loss:.4f}")
                interval_loss.zero_()
                interval_steps, interval_start, paused = 0, time.perf_counter(), 0.0
            pause_start = time.perf_counter()
            if _due(done, config.checkpoint_interval, config.iterations):
                checkpoint = trainer.save()
            if trainer.val_root and _due(done, config.eval_interval, config.iterations):
                validation = trainer.validate()
                if log is not None:
                    log.log_val(done, validation)
                    bar.write(f"iteration {done}: " + ", ".join(f"{k} {v:.4f}" for k, v in validation.items()))
            paused += time.perf_counter() - pause_start
    finally:
        bar.close()
        if log is not None:
            log.close()
    trainer.model.eval()
    return TrainResult(trainer.model, checkpoint, trainer.iteration, validation)


def run_config(preset: str | None, options: list[str] | tuple[str, ...] = (), pretrained: str | None = None,
               load_from: str | None = None, resume: str | None = None) -> TrainConfig:
    """The configuration of `hfan train`: a preset with overrides, or, with `resume`, the run's own saved
    configuration (overrides still apply, e.g. `data.workers_per_gpu=4`)."""
    if resume is not None:
        if preset is not None or pretrained or load_from:
            raise ValueError("--resume continues a run with its saved configuration and weights: "
                             "give no preset, --pretrained or --load-from with it")
        config = saved_train_config(resume)
        config.resume = str(resolve_resume_path(resume))
    elif preset is None:
        raise ValueError("give a training preset (e.g. hfan-small-160k) or --resume")
    else:
        config = get_train_preset(preset)
        config.pretrained = pretrained or config.pretrained
        config.load_from = load_from or config.load_from
    return apply_overrides(config, list(options))


def launch(preset: str | None, work_dir: str | os.PathLike, options: list[str] | tuple[str, ...] = (),
           pretrained: str | None = None, load_from: str | None = None, resume: str | None = None,
           device: str | None = None, progress: bool = True) -> TrainResult:
    """`hfan train`: configure, then train."""
    return train(run_config(preset, options, pretrained, load_from, resume), work_dir, device, progress)
