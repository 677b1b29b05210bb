"""Benchmark: batches at once on two process workers, sharing one account's limit.

    python -m tests.benchmarks.bench_account [--jobs 30] [--ipm 60] [--window 60] [--runs 1 2 3]

For each number of runs: a started `prefect server`, two `prefect worker start` processes, the
account's limit recorded with `inpaint-flows limits set`, and that many on-demand deployment
runs over different folders against the local server enforcing the limit as Novita does (a
sliding window, no Retry-After). Prints the submits per minute of all runs together as a share
of the account's limit, the 429s the server answered, and whether any job failed or was paid
twice. Figures are for comparing within one run of this script: the machine is shared.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.deployments.account_story import run_sharing
from tests.deployments.prefect_server import running_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=30, help="jobs per run")
    parser.add_argument("--ipm", type=int, default=60, help="the account's images per minute")
    parser.add_argument("--window", type=float, default=60.0, help="the server's window, s")
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-account-") as tmp:
        root = Path(tmp)
        with running_server(root / "prefect-home") as server:
            for runs in args.runs:
                result = run_sharing(
                    server,
                    root / f"runs{runs}",
                    runs=runs,
                    jobs=args.jobs,
                    ipm=args.ipm,
                    window_s=args.window,
                )
                failed = sum(status != "succeeded" for status in result.statuses)
                twice = sum(paid > 1 for paid in result.paid_per_content)
                print(f"{result.summary()}; failed jobs {failed}; paid twice {twice}", flush=True)


if __name__ == "__main__":
    main()
