"""Annotation files, per format, written by the tests: what they read, how they match images,
and the masks they become (through discovery and `final_mask`, as a run makes them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from inpaint_flows.annotations import match_images, read_annotations
from inpaint_flows.errors import AnnotationError, MaskError
from inpaint_flows.input_checks import prepare_job
from inpaint_flows.jobs import discover_jobs
from inpaint_flows.mask_geometry import Box, Circle, Polygon, RleMask
from inpaint_flows.masks import MaskSettings
from inpaint_flows.models import InpaintParams, Job
from inpaint_flows.pictures import final_mask

DEFAULTS = InpaintParams()
Bool2D = npt.NDArray[np.bool_]


def photo(path: Path, size: tuple[int, int] = (40, 30), orientation: int | None = None) -> Path:
    """A small picture; with `orientation`, stored as `size` and tagged to turn when shown."""
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.add.outer(np.arange(size[1]), np.arange(size[0])).astype(np.uint8)
    img = Image.fromarray(np.stack([values] * 3, axis=-1))
    if orientation is None:
        img.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(path, exif=exif)
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def coco(images: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    categories = [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def jobs_for(source: Path, **settings: Any) -> dict[str, Job]:
    jobs = discover_jobs(source, DEFAULTS, masks=MaskSettings(**settings))
    return {job.name: job for job in jobs}


def mask_of(job: Job) -> Bool2D:
    mask, _ = final_mask(job)
    return np.asarray(mask) > 127


def rect(size: tuple[int, int], cols: tuple[int, int], rows: tuple[int, int]) -> Bool2D:
    out = np.zeros((size[1], size[0]), dtype=bool)
    out[rows[0] : rows[1], cols[0] : cols[1]] = True
    return out


# ---------------------------------------------------------------------------------------------
# COCO


def test_coco_boxes_polygons_and_rle_are_read_with_their_labels(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "ann.json",
        coco(
            [{"id": 7, "file_name": "a.png", "width": 40, "height": 30}],
            [
                {"id": 1, "image_id": 7, "category_id": 1, "bbox": [2, 3, 10, 5]},
                {"id": 2, "image_id": 7, "category_id": 2, "bbox": [0, 0, 1, 1],
                 "segmentation": [[20, 2, 30, 2, 25, 12], [1, 20, 5, 20, 5, 25]]},
                {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 1,
                 "segmentation": {"size": [30, 40], "counts": [5, 3, 1192]}},
                {"id": 4, "image_id": 7, "category_id": 2,
                 "segmentation": {"size": [30, 40], "counts": "X13UT1"}},
            ],
        ),
    )  # fmt: skip
    found = read_annotations(path)
    assert found.format == "coco" and found.labels == {"person", "car"}
    (image,) = found.images
    assert image.ref == "a.png" and image.frame == (40, 30) and image.problems == ()
    kinds = [type(s) for s in image.shapes]
    assert kinds == [Box, Polygon, Polygon, RleMask, RleMask]
    box = image.shapes[0]
    assert isinstance(box, Box) and (box.x0, box.y0, box.x1, box.y1) == (2, 3, 12, 8)
    assert box.label == "person (annotation id 1)"
    assert isinstance(image.shapes[3], RleMask) and image.shapes[3].counts == (5, 3, 1192)
    # compressed by hand: "X1" = 40, "3" = 3, "UT1" = 1157; 40 + 3 + 1157 = 1200 pixels
    assert isinstance(image.shapes[4], RleMask) and image.shapes[4].counts == (40, 3, 1157)


def test_coco_mask_in_pixels_box_polygon_and_rle(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "a.png")
    ann = write_json(
        tmp_path / "ann.json",
        coco(
            [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
            [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 5]},
                {"id": 2, "image_id": 1, "category_id": 2,
                 "segmentation": {"size": [30, 40], "counts": [30 * 39 + 4, 3, 23]}},
            ],
        ),
    )  # fmt: skip
    job = jobs_for(tmp_path / "in", annotations=str(ann))["a.png"]
    expected = rect((40, 30), (2, 12), (3, 8))
    expected[4:7, 39] = True  # column 39, rows 4..6: the RLE runs down the last column
    assert np.array_equal(mask_of(job), expected)
    assert job.mask_source == "coco"


def test_coco_boxes_at_and_beyond_the_edges(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "edge.png")
    photo(tmp_path / "in" / "beyond.png")
    photo(tmp_path / "in" / "gone.png")
    ann = write_json(
        tmp_path / "ann.json",
        coco(
            [
                {"id": 1, "file_name": "edge.png"},
                {"id": 2, "file_name": "beyond.png"},
                {"id": 3, "file_name": "gone.png"},
            ],
            [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [30, 20, 10, 10]},
                {"id": 2, "image_id": 2, "category_id": 1, "bbox": [-5, 25, 15, 20]},
                {"id": 3, "image_id": 3, "category_id": 1, "bbox": [40, 0, 5, 5]},
            ],
        ),
    )
    jobs = jobs_for(tmp_path / "in", annotations=str(ann))

    edge = prepare_job(jobs["edge.png"])
    assert edge.mask_warnings == ()
    assert np.array_equal(mask_of(jobs["edge.png"]), rect((40, 30), (30, 40), (20, 30)))

    beyond = prepare_job(jobs["beyond.png"])
    assert np.array_equal(mask_of(jobs["beyond.png"]), rect((40, 30), (0, 10), (25, 30)))
    (warning,) = beyond.mask_warnings
    assert "annotation id 2" in warning and "clipped to [0, 25, 10, 30]" in warning

    with pytest.raises(MaskError) as info:
        prepare_job(jobs["gone.png"])
    assert info.value.reason == "SHAPE_OUTSIDE_IMAGE"
    assert "gone.png" in str(info.value) and "annotation id 3" in str(info.value)


def test_coco_degenerate_polygon_is_refused_for_its_image(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "a.png")
    ann = write_json(
        tmp_path / "ann.json",
        coco(
            [{"id": 1, "file_name": "a.png"}],
            [{"id": 9, "image_id": 1, "category_id": 2, "segmentation": [[1, 1, 5, 5, 9, 9]]}],
        ),
    )
    job = jobs_for(tmp_path / "in", annotations=str(ann))["a.png"]
    with pytest.raises(MaskError) as info:
        prepare_job(job)
    assert info.value.reason == "DEGENERATE_SHAPE"
    assert "a.png" in str(info.value) and "car (annotation id 9)" in str(info.value)


def test_coco_malformed_items_are_recorded_on_their_image(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "a.png")
    photo(tmp_path / "in" / "b.png")
    ann = write_json(
        tmp_path / "ann.json",
        coco(
            [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
            [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, "x", 4]},
                {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4]},
            ],
        ),
    )
    jobs = jobs_for(tmp_path / "in", annotations=str(ann))
    assert jobs["a.png"].problem_reason == "INVALID_ANNOTATION"
    assert "annotation id 1" in (jobs["a.png"].problem or "")
    assert "neither pixels nor a fraction" in (jobs["a.png"].problem or "")
    assert jobs["b.png"].problem is None


def test_coco_annotation_for_a_missing_image_is_its_own_invalid_item(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "a.png")
    ann = write_json(
        tmp_path / "ann.json",
        coco(
            [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "elsewhere.jpg"}],
            [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
                {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4]},
                {"id": 3, "image_id": 99, "category_id": 1, "bbox": [1, 2, 3, 4]},
            ],
        ),
    )
    jobs = jobs_for(tmp_path / "in", annotations=str(ann))
    assert jobs["a.png"].problem is None
    assert jobs["elsewhere.jpg"].problem_reason == "ANNOTATED_IMAGE_NOT_FOUND"
    assert "'elsewhere.jpg', which is not in the source" in (jobs["elsewhere.jpg"].problem or "")
    assert jobs["image id 99"].problem_reason == "ANNOTATION_WITHOUT_IMAGE"
    assert "names image id 99" in (jobs["image id 99"].problem or "")


def test_coco_file_name_with_folders_matches_by_path_suffix(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "images" / "train" / "a.png")
    photo(tmp_path / "in" / "images" / "val" / "a.png")
    ann = write_json(
        tmp_path / "ann.json",
        coco(
            [{"id": 1, "file_name": "data/train/a.png"}, {"id": 2, "file_name": "a.png"}],
            [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}],
        ),
    )
    jobs = jobs_for(tmp_path / "in", annotations=str(ann))
    assert jobs["train/a.png"].mask_recipe is not None
    assert jobs["train/a.png"].problem is None
    assert jobs["val/a.png"].problem_reason == "NO_MASK"
    assert jobs["a.png"].problem_reason == "AMBIGUOUS_ANNOTATION"
    assert "train/a.png" in (jobs["a.png"].problem or "")


def test_labels_keep_only_those_classes(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "a.png")
    photo(tmp_path / "in" / "b.png")
    ann = write_json(
        tmp_path / "ann.json",
        coco(
            [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
            [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4]},
                {"id": 2, "image_id": 1, "category_id": 2, "bbox": [10, 10, 4, 4]},
                {"id": 3, "image_id": 2, "category_id": 2, "bbox": [10, 10, 4, 4]},
            ],
        ),
    )
    jobs = jobs_for(tmp_path / "in", annotations=str(ann), labels="person")
    assert np.array_equal(mask_of(jobs["a.png"]), rect((40, 30), (0, 4), (0, 4)))
    assert jobs["b.png"].problem_reason == "NO_MASK"
    assert "no shape labelled person" in (jobs["b.png"].problem or "")
    assert "--mask-region" in (jobs["b.png"].problem or "")  # the ways to give a mask


def test_unknown_label_is_refused_for_the_whole_batch_with_a_suggestion(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "a.png")
    ann = write_json(tmp_path / "ann.json", coco([{"id": 1, "file_name": "a.png"}], []))
    with pytest.raises(AnnotationError) as info:
        jobs_for(tmp_path / "in", annotations=str(ann), labels="persn,car")
    assert info.value.reason == "UNKNOWN_LABEL"
    assert "'persn' (did you mean 'person'?)" in str(info.value)
    assert "car, person" in str(info.value)


def test_coco_recorded_for_the_stored_pixels_of_an_exif_rotated_photo(tmp_path: Path) -> None:
    # Stored 40x20, orientation 6: shown turned 90 degrees clockwise, 20 wide and 40 high.
    photo(tmp_path / "in" / "stored.jpg", (40, 20), orientation=6)
    photo(tmp_path / "in" / "shown.jpg", (40, 20), orientation=6)
    photo(tmp_path / "in" / "other.jpg", (40, 20), orientation=6)
    ann = write_json(
        tmp_path / "ann.json",
        coco(
            [
                {"id": 1, "file_name": "stored.jpg", "width": 40, "height": 20},
                {"id": 2, "file_name": "shown.jpg", "width": 20, "height": 40},
                {"id": 3, "file_name": "other.jpg", "width": 64, "height": 48},
            ],
            [{"id": i, "image_id": i, "category_id": 1, "bbox": [0, 0, 10, 5]} for i in (1, 2, 3)],
        ),
    )
    jobs = jobs_for(tmp_path / "in", annotations=str(ann))
    # Shown frame: the box is where it says, on the 20x40 picture.
    assert np.array_equal(mask_of(jobs["shown.jpg"]), rect((20, 40), (0, 10), (0, 5)))
    # Stored frame: stored (x, y) is shown at (19 - y, x): columns 15..19, rows 0..9.
    assert np.array_equal(mask_of(jobs["stored.jpg"]), rect((20, 40), (15, 20), (0, 10)))
    assert prepare_job(jobs["stored.jpg"]).width == 20
    with pytest.raises(MaskError) as info:
        prepare_job(jobs["other.jpg"])
    assert info.value.reason == "ANNOTATION_SIZE_MISMATCH"
    assert "64x48" in str(info.value) and "20x40" in str(info.value)


# ---------------------------------------------------------------------------------------------
# YOLO


def write_yolo(root: Path, files: dict[str, str], names: str | None = None) -> Path:
    labels = root / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (labels / name).parent.mkdir(parents=True, exist_ok=True)
        (labels / name).write_text(text, encoding="utf-8")
    if names is not None:
        (root / "data.yaml").write_text(names, encoding="utf-8")
    return root


def test_yolo_boxes_and_segments_in_fractions_with_names_from_data_yaml(tmp_path: Path) -> None:
    root = write_yolo(
        tmp_path / "ds",
        {"a.txt": "0 0.25 0.5 0.5 0.2\n\n1 0.5 0 1 0 1 1 0.5 1\n", "sub/b.txt": ""},
        names="names: [person, car]\n",
    )
    found = read_annotations(root)
    assert found.format == "yolo" and found.labels == {"person", "car"}
    by_ref = {image.ref: image for image in found.images}
    assert set(by_ref) == {"a", "sub/b"} and by_ref["sub/b"].shapes == ()
    box, polygon = by_ref["a"].shapes
    assert isinstance(box, Box) and box.units == "fraction" and box.label == "person (line 1)"
    assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx((0.0, 0.4, 0.5, 0.6))
    assert isinstance(polygon, Polygon) and polygon.label == "car (line 3)"


def test_yolo_mask_matches_images_by_stem_on_the_picture_as_shown(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "images" / "a.jpg", (40, 20), orientation=8)  # shown 20x40
    photo(tmp_path / "in" / "images" / "sub" / "b.png")
    root = write_yolo(
        tmp_path / "ds",
        {"a.txt": "0 0.25 0.5 0.5 0.2\n", "sub/b.txt": "3 0.5 0.5 0.25 0.2 0.9\n"},
    )
    jobs = jobs_for(tmp_path / "in", annotations=str(root))
    # 20x40 shown: x 0..10, y 16..24
    assert np.array_equal(mask_of(jobs["a.jpg"]), rect((20, 40), (0, 10), (16, 24)))
    # trailing confidence ignored; class ids are labels without a names file
    assert np.array_equal(mask_of(jobs["sub/b.png"]), rect((40, 30), (15, 25), (12, 18)))
    assert jobs["sub/b.png"].mask_recipe is not None
    (group,) = jobs["sub/b.png"].mask_recipe.groups
    assert group.shapes[0].label == "3 (line 1)"


def test_yolo_box_past_the_edge_is_clipped(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "a.png")
    root = write_yolo(tmp_path / "ds", {"a.txt": "0 1.0 1.0 0.5 0.5\n"})
    job = jobs_for(tmp_path / "in", annotations=str(root))["a.png"]
    # y from 0.75 * 30 = 22.5: the centre of row 22 is on the edge, and edges are half-open
    assert np.array_equal(mask_of(job), rect((40, 30), (30, 40), (22, 30)))
    assert "clipped" in prepare_job(job).mask_warnings[0]


@pytest.mark.parametrize(
    ("line", "reason", "message"),
    [
        pytest.param("0 120 80 40 30", "INVALID_COORDINATES", "look like pixels", id="pixels"),
        pytest.param("0 0.5 0.5 nan 0.1", "INVALID_COORDINATES", "neither pixels nor a fraction",
                     id="nan"),
        pytest.param("0 0.5 0.5 0.1", "INVALID_ANNOTATION", "a box needs 4", id="three numbers"),
        pytest.param("x 0.5 0.5 0.1 0.1", "INVALID_ANNOTATION", "not a whole number", id="class"),
        pytest.param("0 0.5 0.5 0 0.1", "INVALID_ANNOTATION", "must be > 0", id="zero width"),
        pytest.param("5 0.5 0.5 0.1 0.1", "INVALID_ANNOTATION", "not in the names file",
                     id="class beyond the names"),
    ],
)  # fmt: skip
def test_yolo_bad_line_is_refused_for_its_image_naming_file_and_line(
    tmp_path: Path, line: str, reason: str, message: str
) -> None:
    photo(tmp_path / "in" / "a.png")
    root = write_yolo(tmp_path / "ds", {"a.txt": f"0 0.5 0.5 0.1 0.1\n{line}\n"})
    (root / "labels" / "classes.txt").write_text("person\ncar\n", encoding="utf-8")
    job = jobs_for(tmp_path / "in", annotations=str(root))["a.png"]
    assert job.problem_reason == reason
    assert "labels/a.txt line 2" in (job.problem or "") and message in (job.problem or "")


def test_yolo_names_file_map_and_labels_by_name(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "a.png")
    root = write_yolo(
        tmp_path / "ds",
        {"a.txt": "0 0.1 0.1 0.1 0.1\n2 0.5 0.5 0.2 0.2\n"},
        names="names:\n  0: person\n  2: dog\n",
    )
    job = jobs_for(tmp_path / "in", annotations=str(root), labels="dog")["a.png"]
    assert np.array_equal(mask_of(job), rect((40, 30), (16, 24), (12, 18)))


# ---------------------------------------------------------------------------------------------
# LabelMe


def labelme(image_path: str, shapes: list[dict[str, Any]], size: tuple[int, int] = (40, 30)):
    return {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": None,
        "imageWidth": size[0],
        "imageHeight": size[1],
    }


def test_labelme_rectangle_polygon_circle_and_skipped_point(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "images" / "a.png")
    write_json(
        tmp_path / "in" / "json" / "a.json",
        labelme(
            "..\\images\\a.png",  # a Windows export
            [
                {"label": "box", "points": [[12, 8], [2, 3]], "shape_type": "rectangle"},
                {"label": "tri", "points": [[20, 2], [30, 2], [25, 12]], "shape_type": "polygon"},
                {"label": "dot", "points": [[35, 25], [35, 28]], "shape_type": "circle"},
                {"label": "eye", "points": [[5, 5]], "shape_type": "point"},
            ],
        ),
    )
    found = read_annotations(tmp_path / "in" / "json")
    assert found.format == "labelme" and found.labels == {"box", "tri", "dot"}
    job = jobs_for(tmp_path / "in", annotations=str(tmp_path / "in" / "json"))["a.png"]
    got = mask_of(job)
    assert np.array_equal(got[:, :15], rect((40, 30), (2, 12), (3, 8))[:, :15])
    assert got[5, 25] and not got[11, 21]  # inside / outside the triangle
    assert got[25, 35] and got[27, 35] and not got[21, 35] and not got[25, 31]  # circle r=3
    assert prepare_job(job).mask_warnings == ("a.json shape 4 (eye): a point has no area; skipped",)


def test_labelme_bad_shape_is_recorded_and_a_non_labelme_json_refused(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "a.png")
    ann = write_json(
        tmp_path / "a.json",
        labelme("in/a.png", [{"label": "r", "points": [[1, 2]], "shape_type": "rectangle"}]),
    )
    job = jobs_for(tmp_path / "in", annotations=str(ann))["a.png"]
    assert job.problem_reason == "INVALID_ANNOTATION"
    assert "a.json shape 1: a rectangle needs 2 corner points" in (job.problem or "")
    other = write_json(tmp_path / "other.json", {"hello": "world"})
    with pytest.raises(AnnotationError, match=r"neither COCO .* nor LabelMe"):
        read_annotations(other)


# ---------------------------------------------------------------------------------------------
# Pascal VOC


def voc(filename: str, objects: str, size: tuple[int, int] = (40, 30)) -> str:
    return (
        f"<annotation><folder>x</folder><filename>{filename}</filename>"
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
        f"{objects}</annotation>"
    )


def obj(name: str, xmin: float, ymin: float, xmax: float, ymax: float) -> str:
    return (
        f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{xmin}</xmin>"
        f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def test_voc_bndbox_is_one_based_and_inclusive(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "a.png")
    xml = tmp_path / "voc" / "a.xml"
    xml.parent.mkdir()
    xml.write_text(voc("a.png", obj("cat", 1, 1, 10, 5) + obj("dog", 31, 21, 45, 30)))
    job = jobs_for(tmp_path / "in", annotations=str(tmp_path / "voc"))["a.png"]
    expected = rect((40, 30), (0, 10), (0, 5)) | rect((40, 30), (30, 40), (20, 30))
    assert np.array_equal(mask_of(job), expected)
    (warning,) = prepare_job(job).mask_warnings
    assert "'dog (object 2)'" in warning and "clipped" in warning


def test_voc_refuses_dtd_and_entities(tmp_path: Path) -> None:
    xml = tmp_path / "evil.xml"
    xml.write_text(
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx">]>'
        + voc("a.png", obj("&x;", 1, 1, 5, 5))
    )
    with pytest.raises(AnnotationError, match="declares a DTD or entities"):
        read_annotations(xml)


def test_voc_object_without_a_box_is_recorded_on_its_image(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "a.png")
    xml = tmp_path / "a.xml"
    xml.write_text(voc("a.png", "<object><name>cat</name></object>" + obj("dog", 2, 2, 6, 6)))
    job = jobs_for(tmp_path / "in", annotations=str(xml))["a.png"]
    assert job.problem_reason == "INVALID_ANNOTATION"
    assert "a.xml object 1 (cat): has no <bndbox>" in (job.problem or "")


# ---------------------------------------------------------------------------------------------
# Detection and matching


def _missing(p: Path) -> Path:
    return p / "nothing.json"


def _json_list(p: Path) -> Path:
    return write_json(p / "x.json", [1, 2])


def _csv(p: Path) -> Path:
    return write_json(p / "x.csv", {})


def _mixed(p: Path) -> Path:
    write_json(p / "d" / "a.json", {})
    (p / "d" / "b.xml").write_text("<annotation/>")
    return p / "d"


def _empty(p: Path) -> Path:
    (p / "e").mkdir()
    return p / "e"


def _broken(p: Path) -> Path:
    (p / "bad.json").write_text("{", encoding="utf-8")
    return p / "bad.json"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(_missing, "do not exist", id="missing"),
        pytest.param(_json_list, "neither COCO", id="json list"),
        pytest.param(_csv, "cannot tell the format", id="csv"),
        pytest.param(_mixed, "holds 1 labelme, 1 voc", id="mixed folder"),
        pytest.param(_empty, "no .txt, .json or .xml", id="empty folder"),
        pytest.param(_broken, "not valid JSON", id="broken json"),
    ],
)
def test_unusable_annotation_sources_are_refused_as_a_whole(
    tmp_path: Path, make: Any, message: str
) -> None:
    with pytest.raises(AnnotationError, match=message):
        read_annotations(make(tmp_path))


def test_match_images_prefers_exact_path_then_suffix_then_name() -> None:
    found = read_annotations_from_refs(["sub/a.png", "x/b.png", "c.png", "zz.png"])
    images = [("sub/a.png", "/s/sub/a.png"), ("b.png", "/s/b.png"), ("k/c.png", "/s/k/c.png")]
    match = match_images(found, images)
    assert {i: [e.ref for e in es] for i, es in match.per_image.items()} == {
        0: ["sub/a.png"],
        1: ["x/b.png"],
        2: ["c.png"],
    }
    assert [(e.ref, p[0]) for e, p in match.unmatched] == [("zz.png", "ANNOTATED_IMAGE_NOT_FOUND")]


def read_annotations_from_refs(refs: list[str]):  # type: ignore[no-untyped-def]
    from inpaint_flows.annotations import AnnotatedImage, Annotations

    images = tuple(AnnotatedImage(ref=r, where=f"entry {r}") for r in refs)
    return Annotations("coco", "ann.json", images, frozenset())


def test_circle_in_pixels_is_what_labelme_draws() -> None:
    # A LabelMe circle is its centre and a point on it: the radius is their distance.
    from inpaint_flows.annotations import _labelme_shape

    shape = _labelme_shape(
        {"label": "c", "points": [[10, 10], [13, 14]], "shape_type": "circle"}, "c"
    )
    assert isinstance(shape, Circle) and shape.r == 5
