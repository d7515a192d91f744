"""Files written so that a file with its final name is always complete: the project's one atomic writer.

Every writer writes a temporary name in the destination folder (same extension, so that an encoder chosen by
extension is chosen right; a leading dot hides it from dataset listings) and renames it over the destination.
An interrupted run leaves only such temporary names, which `remove_temp_files` recognises and deletes.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

_TEMP_MARK = ".tmp-"


# ----------------------------------------------------------------------------------------------- writing
def temp_path(path: Path) -> Path:
    """A unique hidden name next to `path`, with its extension."""
    return path.with_name(f".{path.stem}{_TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def is_temp_path(path: Path) -> bool:
    return path.name.startswith(".") and _TEMP_MARK in path.name


def remove_temp_files(folder: Path) -> int:
    """Delete what interrupted writers left in `folder` (not recursive); returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir() if p.is_file() and is_temp_path(p)]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(path)
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_json(path: str | Path, data: dict, indent: int = 1, sort_keys: bool = True) -> None:
    write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")


def copy_file(source: str | Path, destination: str | Path) -> None:
    with atomic_path(destination) as temp:
        shutil.copyfile(source, temp)


def save_array(path: str | Path, array: np.ndarray) -> None:
    """`.npy` file written atomically."""
    with atomic_path(path) as temp:
        np.save(temp, array)
