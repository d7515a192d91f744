"""Suite-wide setup: one intra-op thread, a seeded torch, and the `shared_path` / `project_root` fixtures.

Helpers live in tests/helpers (a package: `from helpers.shared import shared_path`); no test imports conftest.
"""
from __future__ import annotations

import os

# The suite runs as 2 xdist workers on 2 cores: one intra-op thread each. Two OpenMP threads per process on
# an oversubscribed machine make small forwards ~40x slower (threads spin at barriers). Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from helpers import shared  # noqa: E402


@pytest.fixture
def shared_path():
    """`shared_path("data/...")`: a path under ../shared, skipped (failed under CI=true) when it is missing."""
    return shared.shared_path


@pytest.fixture(scope="session")
def project_root():
    return shared.PROJECT_ROOT


@pytest.fixture(autouse=True)
def _seeded_single_thread():
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    torch.manual_seed(0)
    yield
