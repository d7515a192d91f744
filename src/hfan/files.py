"""Files written so that a file with its final name is always complete: the project's one atomic writer.

Every writer writes a temporary name in the destination folder (same extension, so that an encoder chosen by
extension is chosen right; a leading dot hides it from dataset listings) and renames it over the destination.
An interrupted run leaves only such temporary names, which `remove_temp_files` recognises and deletes. A write
that fails for want of disk space removes its temporary file and is one error naming the folder.
"""
from __future__ import annotations

import errno
import hashlib
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


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def no_space_error(path: Path, error: OSError) -> ValueError:
    """The one message for a write that ran out of disk space (or quota)."""
    quota = " (disk quota exceeded)" if error.errno == errno.EDQUOT else ""
    return ValueError(f"cannot write {path}: no space left on {path.parent}{quota}: free space and rerun")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any error it is removed.

    A full disk (an OSError with errno ENOSPC or EDQUOT, from the writing inside `with` or from the rename) is a
    ValueError naming the folder: "no space left on <folder>: free space and rerun".
    """
    path = Path(path)
    temp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield temp
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        if error.errno in _NO_SPACE:
            raise no_space_error(path, error) from error
        raise
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


def check_output_folder(path: str | Path, what: str = "--out") -> Path:
    """A folder that outputs can be written into (it may not exist yet): an existing file, or a place without
    write permission, is a ValueError naming `what` and the path, raised before any work starts."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file: give a folder for the outputs")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: cannot write into {existing} (permission denied); choose another folder")
    return path


def check_output_file(path: str | Path, what: str = "--out") -> Path:
    """A file that can be written (it may exist: it is replaced): a folder, or a place without write permission,
    is a ValueError naming `what` and the path."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder: give a file name")
    check_output_folder(path.parent, what)
    return path


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in blocks (what output records name weights by)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def changed_fields(previous: dict, record: dict) -> list[str]:
    """The keys whose values differ between two output records (what made an output, as JSON)."""
    return sorted(key for key in {*previous, *record} if previous.get(key) != record.get(key))
