"""Keep a long batch's memory flat: hand big buffers back to the OS as soon as they are freed.

A batch handles a few megabytes per image again and again: the file read for the submit, its
base64 text, the downloaded result, the decoded pixels. glibc's malloc serves requests above its
mmap threshold with their own mappings, returned to the OS on free; but after the first such
buffer is freed it *raises* the threshold to that buffer's size (up to 32 MiB), so every later
image buffer comes from the heap, where freed holes stay resident and spread over one arena per
thread. Measured on 1 MP PNG jobs (`tests/benchmarks/bench_pipeline.py --only memory`): the flow
process peaked ~90 MB higher that way, and kept growing with the batch.

`release_large_buffers()` pins the threshold (which also turns the raising off). It only
affects glibc (Linux); elsewhere it does nothing. Setting the environment variable
`MALLOC_MMAP_THRESHOLD_` before the process starts has the same effect and wins, since a value
set there is respected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
LARGE_BUFFER_BYTES = 256 * 1024

_done = False


def release_large_buffers(threshold: int = LARGE_BUFFER_BYTES) -> bool:
    """Serve allocations above `threshold` bytes with their own mappings; True if applied.

    Safe to call more than once; a no-op off glibc or when the environment already sets
    `MALLOC_MMAP_THRESHOLD_`.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    return _done
