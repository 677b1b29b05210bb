"""Inputs and outputs in a bucket: a real S3-compatible server (moto), a real Prefect API, the
local Novita server over HTTP.

A batch from s3://.../in to s3://.../out writes every file into the bucket; a rerun pays nothing;
rerun-failed works from a report in the bucket; a bucket that is missing or refuses us stops the
run with one clear error before anything is paid for.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from PIL import Image

from flows.inpaint_batch import rerun_failed
from inpaint_flows.models import InpaintParams
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.flows.helpers import call_batch_flow, job_counts
from tests.object_storage import KEY, Bucket, started_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig()) as srv:
        yield srv


@pytest.fixture
def inputs(s3: Bucket, tmp_path: Path) -> Bucket:
    folder = tmp_path / "in"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("*.md"))
    s3.upload_folder(folder, "in")
    return s3


async def run(bucket: Bucket, server: LocalServer, **kw: object):
    settings: dict[str, object] = {
        "source": bucket.url("in"),
        "out": bucket.url("out"),
        "defaults": InpaintParams(steps=1),
        "base_url": server.base_url,
        "images_per_minute": None,
        "max_in_flight": 4,
        "return_state": True,
    }
    return await call_batch_flow(**{**settings, **kw})


def report_of(bucket: Bucket) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(bucket.get("out/report.csv")))


async def test_batch_from_bucket_to_bucket_writes_everything_there_and_a_rerun_pays_nothing(
    inputs: Bucket, server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # nothing may land in the working directory
    state = await run(inputs, server)
    assert state.is_completed(), state.message

    report = report_of(inputs)
    assert sorted(report["name"]) == NAMES
    assert set(report["status"]) == {"succeeded"}
    assert all(str(p).startswith(inputs.url("in/")) for p in report["image_path"])
    keys = inputs.keys("out/")
    outputs = [rel for cell in report["outputs"] for rel in json.loads(cell)]
    for rel in outputs:
        assert f"out/{rel}" in keys
        with Image.open(io.BytesIO(inputs.get(f"out/{rel}"))) as img:
            img.load()
    for name in ("report.parquet", "index.html", "index.shared.html", "batch.json"):
        assert f"out/{name}" in keys
    assert "out/.inpaint-state/jobs.sqlite3" in keys  # what was paid for, for the next container
    assert not any(k.endswith(".tmp") or "inpaint-write-check" in k for k in keys)
    assert list(workdir.iterdir()) == []
    settings = json.loads(inputs.get("out/batch.json"))
    assert settings["out"] == inputs.url("out")

    # The gallery: relative links in index.html (works when the folder is served or copied);
    # in index.shared.html every link is presigned, so a person can open it from the dashboard.
    page = inputs.get("out/index.html").decode()
    assert 'src="_thumbs/' in page
    thumb_keys = [k for k in keys if k.startswith("out/_thumbs/")]
    assert len(thumb_keys) >= 2 * len(NAMES)  # original, mask and result per row
    link = (await state.result()).link
    assert link.startswith(inputs.server.endpoint) and "Signature=" in link
    shared = httpx.get(link, timeout=30)
    assert shared.status_code == 200 and "astronaut.jpg" in shared.text
    signed = [u for u in _srcs(shared.text) if "Signature=" in u]
    assert len(signed) >= len(thumb_keys) - 1
    assert httpx.get(signed[0].replace("&amp;", "&"), timeout=30).status_code == 200

    # A second run over the same bucket, as a new container would start it: nothing is paid.
    before = job_counts(server).total_submits
    state = await run(inputs, server)
    assert state.is_completed(), state.message
    assert job_counts(server).total_submits == before == len(NAMES)
    assert set(report_of(inputs)["status"]) == {"skipped-already-done"}


def _srcs(page: str) -> list[str]:
    return [part.split('"', 1)[0] for part in page.split('src="')[1:]]


async def test_rerun_failed_from_a_report_in_the_bucket(
    inputs: Bucket, server: LocalServer
) -> None:
    good = inputs.get("in/images/coffee.jpg")
    inputs.put("in/images/coffee.jpg", b"not a picture")
    state = await run(inputs, server)
    assert state.is_failed()
    first = report_of(inputs).set_index("name")
    assert first.loc["coffee.jpg", "status"] == "invalid"
    assert "in/images/coffee.jpg" in first.loc["coffee.jpg", "message"]
    paid = job_counts(server).total_submits

    inputs.put("in/images/coffee.jpg", good)  # the user fixes the input in the bucket
    state = await rerun_failed(report=inputs.url("out/report.csv"), return_state=True)
    assert state.is_completed(), state.message
    merged = report_of(inputs).set_index("name")
    assert sorted(merged.index) == NAMES
    assert merged.loc["coffee.jpg", "status"] == "succeeded"
    assert job_counts(server).total_submits == paid + 1  # only the fixed row


async def test_masks_drawn_on_pictures_in_a_bucket(inputs: Bucket, server: LocalServer) -> None:
    """A region and grow: the masks are drawn on the pictures read from the bucket."""
    from inpaint_flows.masks import MaskSettings

    masks = MaskSettings(region="bottom-right:20%x10%", grow=3)
    state = await run(inputs, server, masks=masks)
    assert state.is_completed(), state.message
    report = report_of(inputs)
    assert set(report["status"]) == {"succeeded"}
    assert report["mask_ops"].notna().all()


async def test_a_missing_bucket_stops_the_run_before_anything_is_paid(
    inputs: Bucket, server: LocalServer
) -> None:
    state = await run(inputs, server, out="s3://no-such-bucket-inpaint/out")
    assert state.is_failed()
    message = str(state.message)
    assert "s3://no-such-bucket-inpaint does not exist" in message
    assert job_counts(server).total_submits == 0


async def test_a_bucket_that_denies_access_stops_the_run_before_anything_is_paid(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fsspec.config

    monkeypatch.setattr(fsspec.config, "conf", {})
    # A server of its own: its access control is switched on, for credentials with no rights.
    with started_server() as locked:
        admin = locked.client()
        admin.create_bucket(Bucket="inpaint-locked")
        bucket = Bucket(locked, "inpaint-locked")
        folder = tmp_path / "in"
        shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("*.md"))
        bucket.upload_folder(folder, "in")
        iam = __import__("boto3").client(
            "iam",
            endpoint_url=locked.endpoint,
            aws_access_key_id=KEY,
            aws_secret_access_key=KEY,
            region_name="us-east-1",
        )
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        # moto's access control is a setting of this process: switched off again below, for
        # the session's other server.
        httpx.post(f"{locked.endpoint}/moto-api/reset-auth", content="0", timeout=10)
        env = {
            **locked.env(),
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        try:
            state = await run(bucket, server)
        finally:
            httpx.post(f"{locked.endpoint}/moto-api/reset-auth", content="inf", timeout=10)
    assert state.is_failed()
    message = str(state.message)
    assert "Access to s3://inpaint-locked/out" in message and "denied" in message
    assert key["SecretAccessKey"] not in message
    assert job_counts(server).total_submits == 0


async def test_credentials_from_an_aws_credentials_block(
    inputs: Bucket, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_aws import AwsCredentials

    await AwsCredentials(
        aws_access_key_id=KEY,
        aws_secret_access_key=KEY,
        region_name="us-east-1",
        aws_client_parameters={"endpoint_url": inputs.server.endpoint},
    ).save("inpaint-test-bucket", overwrite=True)
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)  # only the block can reach the server now
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")

    state = await run(inputs, server, storage_block="aws-credentials/inpaint-test-bucket")
    assert state.is_completed(), state.message
    assert set(report_of(inputs)["status"]) == {"succeeded"}
    assert KEY not in json.loads(inputs.get("out/batch.json")).values()
