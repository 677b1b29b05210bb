"""Who holds a claim on a job, and whether that holder is a process known to be dead.

A claim names its holder three ways: a unique id (what the database compares), a label for
people ("host build-3 pid 4242") and, on Linux, the process itself: the boot, the pid namespace,
the pid and the process's start time. A run that meets a claim whose process lives in its own
pid namespace on the same boot, and is gone (or the pid now belongs to a newer process), knows
the holder is dead and takes the job over at once instead of waiting for the lease to lapse.
Anywhere else (another machine, another container, no /proc) only the lease decides: a claim is
never taken from a holder that might be alive.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Holder:
    """One open ledger's identity as a claim holder."""

    id: str
    label: str
    process: str | None  # "<boot id>:<pid namespace>:<pid>:<start ticks>", Linux only

    @classmethod
    def this_process(cls) -> Holder:
        pid = os.getpid()
        here = _namespace()
        start = _start_ticks(pid)
        process = f"{here}:{pid}:{start}" if here and start else None
        return cls(
            id=uuid.uuid4().hex, label=f"host {socket.gethostname()} pid {pid}", process=process
        )


def dead_here(process: str | None) -> bool:
    """Whether `process` (a `Holder.process`) is a process of this pid namespace that is gone.

    False whenever it cannot be known: another machine or namespace, or no /proc.
    """
    if not process:
        return False
    parts = process.split(":")
    if len(parts) != 4:
        return False
    boot, namespace, pid, start = parts
    if f"{boot}:{namespace}" != _namespace() or not pid.isdigit():
        return False
    return _start_ticks(int(pid)) != start


def _namespace() -> str | None:
    """This boot and pid namespace: where a pid means the same process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}:{namespace}"


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None
