"""Training checkpoints: our model format plus what `--resume` needs to continue exactly.

Everything is stored as tensors, numbers, strings, lists and dicts so that the file loads with
`torch.load(weights_only=True)` (`hfan.models.checkpoints.read_checkpoint_file`); `load_model(path)` reads only
the model part. Random-number states are kept per rank: dropout and stochastic depth draw from them.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from hfan.models.checkpoints import read_checkpoint_file, save_checkpoint
from hfan.config import TrainConfig

LATEST = "latest.pth"
RESUME_KEYS = ("train_config", "iteration", "optimizer", "scheduler", "scaler", "rng_states", "samples_per_step")


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration}.pth"  # the original's (mmcv) naming


def capture_rng_state(device: torch.device) -> dict:
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": int(numpy_state[2]),
                  "has_gauss": int(numpy_state[3]), "cached_gaussian": float(numpy_state[4])},
        "python": {"version": python_state[0], "internal": torch.tensor(python_state[1], dtype=torch.int64),
                   "gauss_next": python_state[2]},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"].tolist()), python_state["gauss_next"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_training_checkpoint(work_dir: Path, model: torch.nn.Module, config: TrainConfig, iteration: int,
                             optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler,
                             rng_states: list[dict], samples_per_step: int, **extra) -> Path:
    """`iter_<N>.pth` (N = iterations done), written atomically, then `latest.pth` pointed at it. `extra`: more
    state to resume (the weight average's `ema`)."""
    path = save_checkpoint(work_dir / checkpoint_name(iteration), model, config.model,
                           train_config=config.to_dict(), iteration=iteration,
                           optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                           scaler=scaler.state_dict(), rng_states=rng_states, samples_per_step=samples_per_step,
                           **extra)
    _point_latest_at(path)
    return path


def _point_latest_at(path: Path) -> None:
    temporary = path.parent / f".{LATEST}.{os.getpid()}.link"
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    temporary.symlink_to(path.name)
    os.replace(temporary, path.parent / LATEST)


def resolve_resume_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a work directory (its `latest.pth`)."""
    path = Path(path)
    if path.is_dir():
        latest = path / LATEST
        if not latest.exists():
            raise FileNotFoundError(f"{path} holds no {LATEST}: no checkpoint has been written there yet")
        return latest
    return path


def read_training_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint written by `hfan train`, with everything needed to resume; other files are refused."""
    path = resolve_resume_path(path)
    data = read_checkpoint_file(path)
    missing = [key for key in RESUME_KEYS if key not in data]
    if missing:
        raise ValueError(f"{path} cannot be resumed: it lacks {', '.join(missing)} (a weights-only file?). "
                         "To start a new run from its weights, use --load-from instead of --resume")
    return data


def saved_train_config(path: str | os.PathLike) -> TrainConfig:
    """The configuration a run was started with, from one of its checkpoints."""
    return TrainConfig.from_dict(read_training_checkpoint(path)["train_config"])
