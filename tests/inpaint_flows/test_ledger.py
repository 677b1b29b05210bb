"""The job ledger: durable per-job records and one run at a time per state directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inpaint_flows.errors import ConfigError
from inpaint_flows.ledger import Ledger, LedgerEntry, exclusive_use

KEY = "ab" + "0" * 62


def test_entries_round_trip_and_unknown_keys_are_none(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    assert ledger.get(KEY) is None
    entry = LedgerEntry(job_key=KEY, name="a.png", state="submitted", task_id="t-1", submits=1)
    ledger.put(entry)
    assert Ledger(tmp_path).get(KEY) == entry


def test_outputs_intact_needs_every_file_with_its_recorded_size(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state")
    (tmp_path / "a.png").write_bytes(b"12345")
    done = LedgerEntry(
        job_key=KEY, name="a.png", state="succeeded", outputs=("a.png",), output_sizes=(5,)
    )
    assert ledger.outputs_intact(done, tmp_path)
    (tmp_path / "a.png").write_bytes(b"123")  # damaged since
    assert not ledger.outputs_intact(done, tmp_path)
    (tmp_path / "a.png").unlink()
    assert not ledger.outputs_intact(done, tmp_path)
    assert not ledger.outputs_intact(done.model_copy(update={"state": "submitted"}), tmp_path)


HOLD = """
import sys, time
from inpaint_flows.ledger import exclusive_use
with exclusive_use(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_run_on_the_same_state_is_refused_until_the_first_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError) as info, exclusive_use(tmp_path):
            pass
        assert info.value.reason == "STATE_IN_USE"
        assert f"pid {holder.pid}" in str(info.value)
        assert "--out" in str(info.value)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # the kernel releases the lock of a killed process
        try:
            with exclusive_use(tmp_path):
                break
        except ConfigError:
            assert time.monotonic() < deadline, "lock not released after SIGKILL"
            time.sleep(0.05)
