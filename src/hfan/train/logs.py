"""Training logs: CSV files (always) and TensorBoard (when the `train` extra is installed). Rank 0 only.

A resumed run first drops the rows after the iteration it resumes from, so the logs read as one run.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from tqdm import tqdm

from hfan.files import write_text


class CsvLog:
    """Rows keyed by `iteration`, appended and flushed one by one."""

    def __init__(self, path: Path, columns: list[str], resume_from: int):
        self.path = path
        self.columns = ["iteration", *columns]
        kept = []
        if path.exists() and resume_from > 0:
            with open(path, newline="") as stream:
                kept = [row for row in csv.DictReader(stream) if int(row["iteration"]) <= resume_from]
        self._rewrite(kept)
        self._stream = open(path, "a", newline="")
        self._writer = csv.DictWriter(self._stream, self.columns, extrasaction="ignore")

    def _rewrite(self, rows: list[dict]) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, text.getvalue())

    def write(self, iteration: int, values: dict[str, float]) -> None:
        self._writer.writerow({"iteration": iteration, **{k: f"{v:.6g}" for k, v in values.items()}})
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


def open_tensorboard(log_dir: Path, resume_from: int):
    """A SummaryWriter, or None (with a notice) when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        tqdm.write("tensorboard is not installed (pip install 'hfan[train]'): logging to CSV only")
        return None
    return SummaryWriter(str(log_dir), purge_step=resume_from if resume_from > 0 else None)


class TrainLog:
    """`train_log.csv` (loss, learning rate per parameter group, speed), `val_log.csv` (J and F) and TensorBoard."""

    TRAIN_FILE = "train_log.csv"
    VAL_FILE = "val_log.csv"

    def __init__(self, work_dir: Path, group_names: list[str], val_columns: list[str], resume_from: int,
                 tensorboard: bool):
        work_dir.mkdir(parents=True, exist_ok=True)
        self.train = CsvLog(work_dir / self.TRAIN_FILE,
                            ["loss", *(f"lr_{name}" for name in group_names), "seconds_per_iter", "images_per_s"],
                            resume_from)
        self.val = CsvLog(work_dir / self.VAL_FILE, val_columns, resume_from)
        self.board = open_tensorboard(work_dir / "tensorboard", resume_from) if tensorboard else None

    def _board(self, prefix: str, iteration: int, values: dict[str, float]) -> None:
        if self.board is not None:
            for key, value in values.items():
                self.board.add_scalar(f"{prefix}/{key}", value, iteration)
            self.board.flush()

    def log_train(self, iteration: int, values: dict[str, float]) -> None:
        self.train.write(iteration, values)
        self._board("train", iteration, values)

    def log_val(self, iteration: int, values: dict[str, float]) -> None:
        self.val.write(iteration, values)
        self._board("val", iteration, values)

    def close(self) -> None:
        self.train.close()
        self.val.close()
        if self.board is not None:
            self.board.close()
