"""Keep freed memory in the process: the system-time fix for full-resolution CPU inference.

A forward pass at 480x640 allocates and frees feature maps of tens of MB each (SIBA: 48 channels x
307,200 pixels x 4 bytes = 59 MB, hundreds of them). glibc's ``malloc`` serves every block above its
mmap threshold (at most 32 MB) with a fresh ``mmap`` and returns it with ``munmap`` on free, so each
such tensor is zero-filled page by page by the kernel again: the bundled MSRS test set through
``fuse --method siba`` spent 151 s of system time beside 138 s of user time (78 million minor page
faults; ``benchmarks/bench_fuse.py`` measures it). Serving them from the heap and keeping it
(``mallopt(M_MMAP_MAX, 0)``, a high ``M_TRIM_THRESHOLD``) lets later tensors reuse pages already
mapped: the same forward then faults ~10-50x less and runs ~2x faster on 2 cores, at the price of the
resident memory staying near the peak of the run (SIBA at 480x640: 1.5-2.0 GB instead of 1.35 GB).

It changes where memory comes from, never a value. It acts on Linux with glibc only and is a no-op
elsewhere (macOS, musl, Windows). Call it once at the start of a long inference or training process;
the commands (``fuse``, ``metrics``) and :func:`fusionlib.nb.setup` do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done: bool | None = None


def keep_freed_memory(trim_threshold: int = 1 << 30) -> bool:
    """Make glibc keep freed blocks for reuse instead of unmapping them; True when it took effect.

    ``FUSIONLIB_KEEP_FREED_MEMORY=0`` in the environment turns it off (to measure the difference).
    Idempotent: later calls return the first call's result.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or os.environ.get("FUSIONLIB_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    return _done
