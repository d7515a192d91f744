"""glibc's allocator tuned for inference: freed memory stays in the process, so each forward reuses pages.

It does not change what is computed: the allocator only decides where tensors live.
"""
from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameter numbers from glibc's malloc.h.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -2, -3, -4
# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2, 32 MiB on 64-bit, so blocks larger than that would
# still be mmap'ed and faulted in anew on every forward; M_MMAP_MAX = 0 keeps those on the heap too.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30  # mallopt takes a C int
TOP_PAD = 256 << 20


def _glibc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD, top_pad: int = TOP_PAD,
                keep_large_blocks: bool = True) -> bool:
    """Make glibc keep freed memory in the process, so each forward reuses pages instead of faulting in new ones.

    By default glibc serves large blocks with mmap and gives them back on free, and trims the heap top: every
    forward then faults its activations in afresh (docs/speed.md). This is what the MALLOC_MMAP_THRESHOLD_ /
    MALLOC_TRIM_THRESHOLD_ / MALLOC_TOP_PAD_ variables do, applied at runtime so the command needs no wrapper. The price: the process keeps its peak memory until it exits.
    Returns False (and does nothing) where the C library is not glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    settings = [(M_MMAP_THRESHOLD, mmap_threshold), (M_TRIM_THRESHOLD, trim_threshold), (M_TOP_PAD, top_pad)]
    if keep_large_blocks:
        settings.append((M_MMAP_MAX, 0))
    for parameter, value in settings:
        if libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) != 1:
            raise ValueError(f"glibc refused mallopt({parameter}, {value}); mmap_threshold is at most 32 MiB")
    return True
