"""Benchmark: a batch from a bucket to a bucket, memory and local disk as the batch grows.

    python -m tests.benchmarks.bench_bucket [--jobs 100 400] [--size 384]

For each N: N distinct photo-like JPEGs and masks uploaded to a real S3-compatible server
(moto's standalone server, in this process), then `inpaint-flows run s3://.../in --out
s3://.../out --base-url local`, cold, as a user starts it. Prints the wall time, the CLI
process's peak RSS, and the peak size of its local working folder (sampled every 50 ms), which
should not grow with N (only thumbnails and the report stay there until the report is written;
results are uploaded as each job finishes). Figures are for comparing within one run of this
script: the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path

from tests.benchmarks.bench_support import photo_batch, run_cli
from tests.object_storage import Bucket, started_server


def _folder_bytes(root: Path) -> int:
    total = 0
    for folder in root.glob("inpaint-out-*"):
        for dirpath, _, files in os.walk(folder):
            for name in files:
                with contextlib.suppress(OSError):  # removed while we looked
                    total += os.stat(os.path.join(dirpath, name)).st_size
    return total


def _sample(work: Path, peak: list[int], done: threading.Event) -> None:
    while not done.is_set():
        peak[0] = max(peak[0], _folder_bytes(work))
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--size", default="384", help="photo size, as bench_pipeline's e2e")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bucket-") as tmp, started_server() as s3:
        root = Path(tmp)
        print("jobs  wall_s  peak_rss_mb  peak_work_folder_mb  results_in_bucket", flush=True)
        for jobs in args.jobs:
            bucket = Bucket(s3, f"bench-{jobs}")
            s3.client().create_bucket(Bucket=bucket.name)
            manifest = photo_batch(root / f"m{jobs}", root / "cache", jobs, args.size)
            client = s3.client()
            for line in manifest.read_text(encoding="utf-8").splitlines()[1:]:
                image, mask = line.split(",")
                client.upload_file(image, bucket.name, f"in/{Path(image).name}")
                client.upload_file(mask, bucket.name, f"in/{Path(mask).name}")
            work = root / f"tmp{jobs}"
            work.mkdir()
            env = {**os.environ, **s3.env(), "TMPDIR": str(work)}
            env.pop("NOVITA_API_KEY", None)
            peak = [0]
            done = threading.Event()
            sampler = threading.Thread(target=_sample, args=(work, peak, done), daemon=True)
            sampler.start()
            result = run_cli(
                [
                    *("run", bucket.url("in"), "--out", bucket.url("out")),
                    *("--base-url", "local", "--max-in-flight", "16"),
                    "--no-check-names",
                ],
                env=env,
                log=root / f"cli{jobs}.log",
                cwd=root,
            )
            done.set()
            sampler.join()
            if result.returncode != 0:
                raise SystemExit(f"the run failed; see {root / f'cli{jobs}.log'}")
            outputs = sum(
                1
                for key in bucket.keys("out/")
                if key.count("/") == 1 and key.endswith((".png", ".jpg", ".webp"))
            )
            print(
                f"{jobs:4d}  {result.wall_s:6.1f}  {result.peak_rss_mb:11.1f}"
                f"  {peak[0] / 2**20:19.1f}  {outputs:17d}",
                flush=True,
            )


if __name__ == "__main__":
    main()
