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

`share_arenas()` caps glibc's arenas (one per thread that allocates at once, up to 8 per core):
a batch decodes and checks images in several worker threads, and each thread's arena keeps its
own freed holes. Measured the same way (1 MP jobs, N = 300): peak RSS 330 → 287 MB with two
arenas. `MALLOC_ARENA_MAX` set before the process starts wins here too.

`keep_memory_flat()` does both; the CLI calls it first thing, and the batch flows at their start,
since a flow run by a worker or a served deployment never passes through the CLI.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers
M_ARENA_MAX = -8
LARGE_BUFFER_BYTES = 256 * 1024
ARENAS = 2

_applied: dict[int, bool] = {}  # by mallopt parameter


def keep_memory_flat() -> None:
    """`release_large_buffers()` and `share_arenas()`: what a batch process needs, once."""
    release_large_buffers()
    share_arenas()


def release_large_buffers(threshold: int = LARGE_BUFFER_BYTES) -> bool:
    """Serve allocations above `threshold` bytes with their own mappings; True if applied.

    Safe to call more than once; a no-op off glibc or when the environment already sets
    `MALLOC_MMAP_THRESHOLD_`.
    """
    return _set_once(M_MMAP_THRESHOLD, threshold, "MALLOC_MMAP_THRESHOLD_")


def share_arenas(arenas: int = ARENAS) -> bool:
    """At most `arenas` malloc arenas for the threads created from now on; True if applied.

    Safe to call more than once; a no-op off glibc or when the environment already sets
    `MALLOC_ARENA_MAX`.
    """
    return _set_once(M_ARENA_MAX, arenas, "MALLOC_ARENA_MAX")


def _set_once(parameter: int, value: int, environment_name: str) -> bool:
    if not _applied.get(parameter):
        _applied[parameter] = _mallopt(parameter, value, environment_name)
    return _applied[parameter]


def _mallopt(parameter: int, value: int, environment_name: str) -> bool:
    if not sys.platform.startswith("linux") or environment_name in os.environ:
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
    return bool(mallopt(parameter, value))
