"""Where the project and ../shared live, and the skip-or-fail rule for files that come from ../shared."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("HFAN_SHARED", PROJECT_ROOT.parent / "shared"))


def skip_or_fail(message: str) -> None:
    """Skip the test with `message`, or fail it under CI=true, where everything a test needs is installed."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def shared_path(relative: str) -> Path:
    """Path of a file under ../shared (HFAN_SHARED overrides). Missing: skip, or fail under CI=true."""
    path = SHARED / relative
    if not path.exists():
        skip_or_fail(f"needs {path} (set HFAN_SHARED to the shared folder)")
    return path
