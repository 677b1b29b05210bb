"""The allocator settings that keep a batch process's memory flat (`inpaint_flows.memory`).

Each check runs in a fresh interpreter: the settings are process-wide and only affect what is
allocated after them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from inpaint_flows import memory

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's allocator: Linux only"
)

# Eight threads allocate at once, then glibc lists its arenas (`malloc_info`, one <heap> each).
_COUNT_ARENAS = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from inpaint_flows.memory import keep_memory_flat
    if sys.argv[1] == "flat":
        keep_memory_flat()
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
    start = threading.Barrier(8)
    def allocate():
        start.wait()
        for _ in range(200):
            libc.malloc(4096)
    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, (ctypes.c_char_p, ctypes.c_char_p)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    with tempfile.NamedTemporaryFile("r") as out:
        handle = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, handle)
        libc.fclose(handle)
        print(out.read().count("<heap nr="))
    """
)


def _arenas(mode: str) -> int:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* variables from the caller
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_ARENAS, mode],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    return int(done.stdout.strip())


def test_threads_share_two_arenas_once_memory_is_kept_flat() -> None:
    assert _arenas("plain") > memory.ARENAS  # glibc's default: an arena per busy thread
    assert _arenas("flat") <= memory.ARENAS


def test_keep_memory_flat_is_idempotent() -> None:
    memory.keep_memory_flat()
    memory.keep_memory_flat()
    assert memory.share_arenas() == memory.share_arenas()
    first = memory.release_large_buffers()
    assert memory.release_large_buffers() == first
