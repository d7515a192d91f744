"""Shared test helpers: where ../shared lives, and the skip-or-fail rule for files that come from it."""
from __future__ import annotations

import os
from pathlib import Path

# The suite runs as 2 xdist workers on 2 cores: one intra-op thread each. Two OpenMP threads per process on
# an oversubscribed machine make small forwards ~40x slower (threads spin at barriers). Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HFAN_SHARED", PROJECT_ROOT.parent / "shared"))


def shared_path(relative: str) -> Path:
    """Path of a file under ../shared (HFAN_SHARED overrides). Missing: skip, or fail under CI=true."""
    path = SHARED / relative
    if not path.exists():
        message = f"needs {path} (set HFAN_SHARED to the shared folder)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True)
def _seeded_single_thread():
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    torch.manual_seed(0)
    yield
