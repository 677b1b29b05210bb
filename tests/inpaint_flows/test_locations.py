"""Local paths and object-storage URLs: naming, errors, a folder listed from a real S3 server."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inpaint_flows import locations
from inpaint_flows.errors import AnnotationError, ConfigError, InputError
from inpaint_flows.jobs import discover_jobs
from inpaint_flows.masks import MaskSettings
from inpaint_flows.models import InpaintParams
from inpaint_flows.pictures import final_mask
from tests.object_storage import Bucket


@pytest.mark.parametrize(
    ("text", "scheme"),
    [
        ("s3://bucket/in", "s3"),
        ("GS://bucket", "gs"),
        ("az://container/x", "az"),
        ("file:///tmp/x", "file"),
        ("out", ""),
        ("/abs/out", ""),
        ("C://odd", ""),  # a drive letter, not a scheme
        ("weird name://x", ""),
    ],
)
def test_scheme_of(text: str, scheme: str) -> None:
    assert locations.scheme_of(text) == scheme


def test_remote_naming() -> None:
    assert locations.is_remote("s3://b/x") and not locations.is_remote("x/y")
    assert not locations.is_remote("file:///tmp/x") and not locations.is_remote(None)
    assert locations.join("s3://b/out/", "/a/b.png") == "s3://b/out/a/b.png"
    assert locations.join("out", "a/b.png") == str(Path("out") / "a" / "b.png")
    assert locations.parent_of("s3://b/out/report.csv") == "s3://b/out"
    assert locations.name_of("s3://b/out/report.csv") == "report.csv"
    assert locations.bucket_of("s3://b/out/x") == "s3://b"


def test_a_scheme_without_its_library_says_which_extra_to_install() -> None:
    pytest.importorskip("s3fs")  # the dev install has s3fs, and not gcsfs or adlfs
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"pip install 'inpaint-flows\[gcs\]'"):
            locations.filesystem("gs://bucket/in")
    with pytest.raises(ConfigError, match="supported: s3://"):
        locations.filesystem("nosuchscheme://bucket/in")


def test_public_url_follows_the_endpoint(s3: Bucket) -> None:
    assert locations.public_url(s3.url("out/index.html")) == (
        f"{s3.server.endpoint}/{s3.name}/out/index.html"
    )
    assert locations.public_url("gs://b/o/index.html") == (
        "https://storage.googleapis.com/b/o/index.html"
    )


def test_missing_objects_and_buckets(s3: Bucket) -> None:
    s3.put("a/one.txt", b"1")
    assert locations.read_bytes(s3.url("a/one.txt")) == b"1"
    assert locations.info(s3.url("a/none.txt")) is None
    assert locations.files_under(s3.url("a")) == [("one.txt", s3.url("a/one.txt"))]
    with pytest.raises(ConfigError, match="s3://no-such-bucket-inpaint does not exist") as err:
        locations.check_writable("s3://no-such-bucket-inpaint/out")
    assert err.value.reason == "BUCKET_NOT_FOUND"
    locations.check_writable(s3.url("out"))
    assert s3.keys() == ["a/one.txt"]  # the probe is gone


def _png(colour: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (colour, colour, colour)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_folder_in_a_bucket_is_paired_like_a_local_one(s3: Bucket) -> None:
    s3.put("pairs/a.png", _png(10))
    s3.put("pairs/a_mask.png", _png(255))
    s3.put("pairs/sub/b.jpg", _png(20))  # no mask
    s3.put("pairs/notes.txt", b"not an image")
    s3.put("pairs/.hidden/c.png", _png(30))
    jobs = {job.name: job for job in discover_jobs(s3.url("pairs"), InpaintParams())}
    assert sorted(jobs) == ["a.png", "sub/b.jpg"]
    assert jobs["a.png"].image_path == s3.url("pairs/a.png")
    assert jobs["a.png"].mask_path == s3.url("pairs/a_mask.png")
    assert jobs["sub/b.jpg"].problem is not None
    assert jobs["sub/b.jpg"].problem_reason == "MISSING_MASK"
    assert "sub/b.jpg" in jobs["sub/b.jpg"].problem

    s3.put("one-mask.png", _png(255))
    jobs = {
        job.name: job
        for job in discover_jobs(s3.url("pairs"), InpaintParams(), mask=s3.url("one-mask.png"))
    }
    assert jobs["sub/b.jpg"].mask_path == s3.url("one-mask.png")
    assert jobs["sub/b.jpg"].problem is None


def test_an_empty_prefix_is_a_clear_error(s3: Bucket) -> None:
    with pytest.raises(InputError, match="holds no files") as err:
        discover_jobs(s3.url("nothing-here"), InpaintParams())
    assert err.value.reason == "SOURCE_NOT_FOUND"


def test_a_manifest_in_a_bucket_names_objects_beside_it_or_anywhere(s3: Bucket) -> None:
    s3.put("set/pics/a.png", _png(10))
    s3.put("set/masks/a.png", _png(255))
    s3.put("other/b.png", _png(20))
    rows = [
        "image,mask,prompt",
        "pics/a.png,masks/a.png,sky",
        f"{s3.url('other/b.png')},masks/a.png,",
        "pics/../pics/missing.png,masks/a.png,",
    ]
    s3.put("set/list.csv", "\n".join(rows).encode())
    jobs = discover_jobs(s3.url("set/list.csv"), InpaintParams())
    assert [job.image_path for job in jobs] == [
        s3.url("set/pics/a.png"),
        s3.url("other/b.png"),
        s3.url("set/pics/missing.png"),
    ]
    assert jobs[0].mask_path == s3.url("set/masks/a.png") and jobs[0].params.prompt == "sky"
    assert jobs[0].name == "pics/a.png" and jobs[0].problem is None
    assert jobs[1].problem is None
    assert jobs[2].problem_reason == "IMAGE_NOT_FOUND"
    assert "list.csv row 4" in (jobs[2].problem or "")


def _coco(file_name: str, box: list[int]) -> bytes:
    return json.dumps(
        {
            "images": [{"id": 1, "file_name": file_name, "width": 8, "height": 8}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box}],
            "categories": [{"id": 1, "name": "stain"}],
        }
    ).encode()


def test_annotations_in_a_bucket_draw_masks_for_images_in_a_bucket(s3: Bucket) -> None:
    s3.put("ann/images/a.png", _png(10))
    s3.put("ann/images/b.png", _png(20))
    s3.put("ann/coco.json", _coco("a.png", [2, 2, 4, 4]))
    jobs = {
        job.name: job
        for job in discover_jobs(
            s3.url("ann"), InpaintParams(), masks=MaskSettings(annotations=s3.url("ann/coco.json"))
        )
    }
    assert jobs["a.png"].problem is None and jobs["a.png"].mask_recipe is not None
    assert jobs["a.png"].image_path == s3.url("ann/images/a.png")
    mask, _ = final_mask(jobs["a.png"])
    assert np.asarray(mask)[3, 3] == 255 and np.asarray(mask)[0, 0] == 0
    assert jobs["b.png"].problem_reason == "NO_MASK"
    assert "coco coco.json" in (jobs["b.png"].problem or "")

    # A YOLO labels folder in the bucket, and an annotation naming an image that is not there.
    s3.put("yolo/labels/a.txt", b"0 0.5 0.5 0.5 0.5\n")
    s3.put("yolo/labels/gone.txt", b"0 0.5 0.5 0.5 0.5\n")
    s3.put("yolo/data.yaml", b"names: [stain]\n")
    jobs = {
        job.name: job
        for job in discover_jobs(
            s3.url("ann"), InpaintParams(), masks=MaskSettings(annotations=s3.url("yolo"))
        )
    }
    assert jobs["a.png"].problem is None
    gone = next(job for name, job in jobs.items() if "gone" in name)
    assert gone.problem_reason == "ANNOTATED_IMAGE_NOT_FOUND"
    assert gone.image_path.startswith(s3.url("ann/images/"))


def test_annotations_in_a_bucket_that_are_not_there(s3: Bucket, tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="do not exist") as err:
        discover_jobs(
            tmp_path, InpaintParams(), masks=MaskSettings(annotations=s3.url("no/labels"))
        )
    assert err.value.reason == "ANNOTATIONS_NOT_FOUND"
