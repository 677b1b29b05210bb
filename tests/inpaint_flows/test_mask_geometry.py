"""Mask geometry, pixel by pixel: shapes, the region grammar, grow/shrink/feather."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from inpaint_flows.errors import MaskError
from inpaint_flows.mask_geometry import (
    Box,
    Circle,
    MaskOps,
    Polygon,
    RleMask,
    apply_ops,
    decode_rle_string,
    parse_region,
    rasterise,
)

Bool2D = npt.NDArray[np.bool_]


def pixels(mask: Image.Image) -> Bool2D:
    return np.asarray(mask) == 255


def rect(size: tuple[int, int], cols: tuple[int, int], rows: tuple[int, int]) -> Bool2D:
    """The expected pixel set: columns cols[0]..cols[1]-1, rows rows[0]..rows[1]-1."""
    out = np.zeros((size[1], size[0]), dtype=bool)
    out[rows[0] : rows[1], cols[0] : cols[1]] = True
    return out


def drawn(*shapes: object, size: tuple[int, int] = (20, 10)) -> tuple[Bool2D, list[str]]:
    mask, warnings = rasterise(list(shapes), size)  # type: ignore[arg-type]
    assert mask.size == size and mask.mode == "L"
    assert set(np.unique(np.asarray(mask))) <= {0, 255}
    return pixels(mask), warnings


# ---------------------------------------------------------------------------------------------
# Boxes: exact pixel sets


def test_box_covers_exactly_the_pixels_between_its_edges() -> None:
    got, warnings = drawn(Box(x0=2, y0=3, x1=12, y1=8))
    assert np.array_equal(got, rect((20, 10), (2, 12), (3, 8)))
    assert warnings == []


def test_box_in_fractions_is_resolved_against_width_and_height() -> None:
    got, _ = drawn(Box(x0=0.25, y0=0.5, x1=0.75, y1=1.0, units="fraction"), size=(40, 20))
    assert np.array_equal(got, rect((40, 20), (10, 30), (10, 20)))


def test_box_edges_between_pixel_centres_take_the_pixels_whose_centre_is_inside() -> None:
    # Centres 2.5 .. 10.5 lie in [2.3, 11.2); 11.5 does not, 1.5 does not.
    got, _ = drawn(Box(x0=2.3, y0=0, x1=11.2, y1=1))
    assert np.array_equal(got, rect((20, 10), (2, 11), (0, 1)))


def test_box_touching_every_edge_is_the_whole_image_without_a_warning() -> None:
    got, warnings = drawn(Box(x0=0, y0=0, x1=20, y1=10))
    assert got.all() and warnings == []


@pytest.mark.parametrize(
    ("box", "cols", "rows"),
    [
        pytest.param(Box(x0=15, y0=5, x1=30, y1=25), (15, 20), (5, 10), id="bottom-right"),
        pytest.param(Box(x0=-5, y0=-2, x1=3, y1=4), (0, 3), (0, 4), id="top-left"),
        pytest.param(Box(x0=-1, y0=0.5, x1=1.2, y1=1.6, units="fraction"), (0, 20), (5, 10),
                     id="fractions"),
    ],
)  # fmt: skip
def test_box_beyond_the_edges_is_clipped_with_a_warning(
    box: Box, cols: tuple[int, int], rows: tuple[int, int]
) -> None:
    got, warnings = drawn(box)
    assert np.array_equal(got, rect((20, 10), cols, rows))
    assert len(warnings) == 1 and "beyond the 20x10 image" in warnings[0]
    assert "clipped" in warnings[0]


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(Box(x0=20, y0=0, x1=30, y1=5), id="right-of-image"),
        pytest.param(Box(x0=-10, y0=-10, x1=0, y1=0), id="above-left, touching the corner"),
        pytest.param(Box(x0=1.1, y0=0, x1=1.5, y1=1, units="fraction"), id="fractions"),
        pytest.param(Polygon(points=((30, 30), (40, 30), (35, 40))), id="polygon"),
        pytest.param(Circle(cx=-10, cy=5, r=3), id="circle"),
    ],
)
def test_shape_with_nothing_left_inside_is_refused(shape: object) -> None:
    with pytest.raises(MaskError) as info:
        drawn(shape)
    assert info.value.reason == "SHAPE_OUTSIDE_IMAGE"
    assert "entirely outside the 20x10 image" in str(info.value)


@pytest.mark.parametrize(
    ("shape", "why"),
    [
        pytest.param(Box(x0=5, y0=2, x1=5, y1=8), "no area", id="zero-width box"),
        pytest.param(Box(x0=8, y0=2, x1=5, y1=8), "no area", id="swapped box"),
        pytest.param(Box(x0=2.6, y0=2, x1=3.4, y1=8), "too thin", id="sub-pixel box"),
        pytest.param(Polygon(points=((1, 1), (5, 5))), "at least 3 points", id="two points"),
        pytest.param(Polygon(points=((1, 1), (5, 5), (9, 9))), "enclose an area", id="collinear"),
        pytest.param(Polygon(points=((1, 1), (1, 1), (4, 2))), "at least 3", id="repeated point"),
        pytest.param(Circle(cx=5, cy=5, r=0), "radius", id="zero radius"),
    ],
)
def test_degenerate_shape_is_refused_naming_it(shape: object, why: str) -> None:
    with pytest.raises(MaskError) as info:
        drawn(shape)
    assert info.value.reason == "DEGENERATE_SHAPE"
    assert why in str(info.value)


def test_error_names_the_label_and_coordinates() -> None:
    with pytest.raises(MaskError, match=r"'person \(annotation id 7\)' box \[30, 1, 40, 5\]"):
        drawn(Box(x0=30, y0=1, x1=40, y1=5, label="person (annotation id 7)"))


# ---------------------------------------------------------------------------------------------
# Polygons, circles, RLE


def test_polygon_tracing_a_box_covers_exactly_the_box() -> None:
    square = Polygon(points=((2, 3), (12, 3), (12, 8), (2, 8)))
    assert np.array_equal(drawn(square)[0], drawn(Box(x0=2, y0=3, x1=12, y1=8))[0])


def test_triangle_known_inside_and_outside_points() -> None:
    got, _ = drawn(Polygon(points=((0, 0), (40, 0), (0, 40))), size=(40, 40))
    # (col, row) pixels: centre (c + .5, r + .5) is inside when c + r + 1 < 40
    for col, row in [(0, 0), (10, 10), (38, 0), (0, 38), (19, 19)]:
        assert got[row, col], (col, row)
    for col, row in [(39, 39), (20, 20), (39, 1), (1, 39), (25, 15)]:
        assert not got[row, col], (col, row)


def test_concave_polygon_leaves_its_notch_empty() -> None:
    ell = Polygon(points=((0, 0), (10, 0), (10, 4), (4, 4), (4, 10), (0, 10)))
    got, _ = drawn(ell, size=(12, 12))
    assert got[1, 8] and got[8, 1] and got[2, 2]
    assert not got[6, 6] and not got[8, 8] and not got[11, 11]
    assert got.sum() == 10 * 4 + 4 * 6


def test_polygon_in_fractions_scales_each_axis() -> None:
    got, _ = drawn(
        Polygon(points=((0.5, 0), (1, 0), (1, 1), (0.5, 1)), units="fraction"), size=(40, 10)
    )
    assert np.array_equal(got, rect((40, 10), (20, 40), (0, 10)))


def test_circle_takes_pixel_centres_within_the_radius() -> None:
    got, _ = drawn(Circle(cx=10, cy=10, r=5), size=(20, 20))
    assert got[9, 9] and got[10, 5] and got[5, 9]
    assert not got[5, 5] and not got[14, 14] and not got[10, 15]
    assert abs(int(got.sum()) - np.pi * 25) < 10


def test_uncompressed_rle_is_read_column_by_column() -> None:
    # 3 wide, 2 high; column-major order: (0,0) (0,1) (1,0) (1,1) (2,0) (2,1)
    got, _ = drawn(RleMask(width=3, height=2, counts=(1, 2, 3)), size=(3, 2))
    assert got.tolist() == [[False, True, False], [True, False, False]]


def test_rle_of_another_size_is_refused() -> None:
    with pytest.raises(MaskError, match="does not fit the 4x2 image"):
        drawn(RleMask(width=3, height=2, counts=(1, 2, 3)), size=(4, 2))


def test_rle_whose_runs_do_not_add_up_is_refused() -> None:
    with pytest.raises(MaskError, match="add up to 5 pixels, not 6"):
        drawn(RleMask(width=3, height=2, counts=(1, 2, 2)), size=(3, 2))


@pytest.mark.parametrize(
    ("text", "counts"),
    [
        pytest.param("324", [3, 2, 4], id="small counts"),
        pytest.param("X1", [40], id="two 5-bit groups"),
        pytest.param("3243", [3, 2, 4, 5], id="4th count stored as difference"),
        pytest.param("1:1H", [1, 10, 1, 2], id="negative difference"),
    ],
)
def test_compressed_rle_strings_decode_like_pycocotools(text: str, counts: list[int]) -> None:
    # Vectors worked out by hand from pycocotools' rleToString (maskApi.c).
    assert decode_rle_string(text) == counts


def test_compressed_rle_with_a_foreign_character_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot appear"):
        decode_rle_string("32 4")


# ---------------------------------------------------------------------------------------------
# Regions


@pytest.mark.parametrize(
    ("spec", "cols", "rows"),
    [
        pytest.param("bottom-right:20%x10%", (80, 100), (45, 50), id="corner"),
        pytest.param("right-bottom:20%x10%", (80, 100), (45, 50), id="corner, words swapped"),
        pytest.param("top-left:30x5", (0, 30), (0, 5), id="corner in pixels"),
        pytest.param("top-right:10pxx20%", (90, 100), (0, 10), id="px suffix"),
        pytest.param("bottom:12%", (0, 100), (44, 50), id="band: 6 px of 50"),
        pytest.param("left:7", (0, 7), (0, 50), id="band in pixels"),
        pytest.param("center:50%x20%", (25, 75), (20, 30), id="centre"),
        pytest.param("10,20,30,5", (10, 40), (20, 25), id="x,y,w,h"),
        pytest.param(" 5% , 90% , 30% , 10% ", (5, 35), (45, 50), id="x,y,w,h in percent"),
    ],
)
def test_region_spec_covers_exactly_its_area(
    spec: str, cols: tuple[int, int], rows: tuple[int, int]
) -> None:
    region = parse_region(spec)
    got, warnings = drawn(*region.boxes(100, 50), size=(100, 50))
    assert np.array_equal(got, rect((100, 50), cols, rows))
    assert warnings == []


def test_region_areas_joined_with_plus_are_unioned() -> None:
    got, _ = drawn(*parse_region("top:2+bottom:2").boxes(10, 10), size=(10, 10))
    assert got[:2].all() and got[8:].all() and not got[2:8].any()


def test_region_percent_rounds_to_pixel_centres_on_odd_sizes() -> None:
    # 12% of 25 = 3 px band; 50% of 25 = 12.5: centre 12.5 is the start, taken half-open
    got, _ = drawn(*parse_region("right:50%").boxes(25, 4), size=(25, 4))
    assert got[0].tolist() == [False] * 12 + [True] * 13


def test_region_larger_than_a_small_image_is_clipped_with_a_warning() -> None:
    got, warnings = drawn(*parse_region("0,0,300,20").boxes(100, 50), size=(100, 50))
    assert np.array_equal(got, rect((100, 50), (0, 100), (0, 20)))
    assert "clipped" in warnings[0]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param("", "empty mask region", id="empty"),
        pytest.param("bottom-middle:10%x5%", "names no corner or side", id="unknown corner"),
        pytest.param("top-bottom:10x10", "names no corner or side", id="two sides"),
        pytest.param("bottom-right:20%", "WIDTHxHEIGHT", id="corner without height"),
        pytest.param("bottom:120%", "more than 100%", id="over 100 percent"),
        pytest.param("bottom:0", "the area would be empty", id="zero band"),
        pytest.param("bottom:-5", "not a number of pixels", id="negative"),
        pytest.param("1,2,3", "neither a corner", id="three numbers"),
        pytest.param("bottom:12%+", "empty", id="trailing plus"),
    ],
)
def test_bad_region_spec_says_what_is_wrong_and_the_grammar(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_region(spec)
    assert message in str(info.value)
    if spec:
        assert "bottom-right:20%x10%" in str(info.value)  # the grammar, by example


# ---------------------------------------------------------------------------------------------
# Grow, shrink, feather


def _shape_mask() -> Image.Image:
    """A box and a triangle, away from the edges, on a 48x40 image."""
    mask, _ = rasterise(
        [Box(x0=8, y0=8, x1=20, y1=18), Polygon(points=((26, 10), (40, 12), (30, 30)))], (48, 40)
    )
    return mask


def _within(on: Bool2D, radius: float) -> Bool2D:
    """Brute force: pixels whose centre is within `radius` of the centre of a True pixel."""
    ys, xs = np.nonzero(on)
    gy, gx = np.mgrid[0 : on.shape[0], 0 : on.shape[1]]
    d2 = (gy[..., None] - ys) ** 2 + (gx[..., None] - xs) ** 2
    return (d2 <= radius * radius).any(axis=-1)


@pytest.mark.parametrize("radius", [1, 2, 3, 5])
def test_grow_is_exactly_a_disc_dilation(radius: int) -> None:
    mask = _shape_mask()
    grown = pixels(apply_ops(mask, MaskOps(grow=radius)))
    assert np.array_equal(grown, _within(pixels(mask), radius))


def test_grow_by_three_widens_a_box_by_three_pixels_each_side_with_round_corners() -> None:
    box, _ = rasterise([Box(x0=20, y0=20, x1=30, y1=30)], (50, 50))
    grown = pixels(apply_ops(box, MaskOps(grow=3)))
    assert np.flatnonzero(grown[25]).tolist() == list(range(17, 33))
    assert np.flatnonzero(grown[:, 25]).tolist() == list(range(17, 33))
    assert grown[18, 18] and not grown[17, 17]  # corner: distance sqrt(8) in, sqrt(18) out


@pytest.mark.parametrize("radius", [1, 2, 4])
def test_shrink_is_exactly_a_disc_erosion(radius: int) -> None:
    mask = _shape_mask()
    on = pixels(mask)
    shrunk = pixels(apply_ops(mask, MaskOps(shrink=radius)))
    assert np.array_equal(shrunk, ~_within(~on, radius))


def test_shrink_narrows_a_box_by_its_radius_but_not_along_the_image_border() -> None:
    band, _ = rasterise([Box(x0=0, y0=30, x1=50, y1=40)], (50, 40))  # along bottom and sides
    shrunk = pixels(apply_ops(band, MaskOps(shrink=2)))
    assert np.array_equal(shrunk, rect((50, 40), (0, 50), (32, 40)))


def test_grow_then_shrink_closes_a_gap_narrower_than_twice_the_radius() -> None:
    two, _ = rasterise([Box(x0=5, y0=5, x1=15, y1=15), Box(x0=17, y0=5, x1=27, y1=15)], (32, 20))
    closed = pixels(apply_ops(two, MaskOps(grow=2, shrink=2)))
    assert closed[10, 15] and closed[10, 16]  # the 2-pixel gap is filled
    assert np.array_equal(closed[3:18, 3:30] & ~rect((32, 20), (5, 27), (5, 15))[3:18, 3:30],
                          np.zeros((15, 27), dtype=bool))  # fmt: skip


def test_grow_keeps_soft_values() -> None:
    values = np.zeros((9, 9), dtype=np.uint8)
    values[4, 4] = 128
    grown = np.asarray(apply_ops(Image.fromarray(values, "L"), MaskOps(grow=1)))
    assert grown[3:6, 4].tolist() == [128, 128, 128] and grown[3, 3] == 0


def test_shrink_can_remove_a_small_shape_entirely() -> None:
    small, _ = rasterise([Box(x0=10, y0=10, x1=14, y1=14)], (30, 30))
    assert not np.asarray(apply_ops(small, MaskOps(shrink=2))).any()


@pytest.mark.parametrize("feather", [3, 6, 9])
def test_feather_makes_intermediate_values_only_near_the_edges(feather: int) -> None:
    box, _ = rasterise([Box(x0=12, y0=12, x1=38, y1=30)], (50, 42))
    hard = pixels(box)
    soft = np.asarray(apply_ops(box, MaskOps(feather=feather)))
    partial = (soft > 0) & (soft < 255)
    near_edge = _within(hard, feather + 1) & _within(~hard, feather + 1)
    assert partial.any()
    assert not (partial & ~near_edge).any(), "soft values far from the edge"
    assert (soft[~_within(hard, feather + 1)] == 0).all()
    assert (soft[~_within(~hard, feather + 1)] == 255).all()
    # a symmetric ramp: the two pixels either side of an edge average half-way
    assert abs(int(soft[21, 11]) + int(soft[21, 12]) - 255) <= 8


def test_no_ops_return_the_mask_unchanged() -> None:
    mask = _shape_mask()
    assert apply_ops(mask, MaskOps()) is mask
    assert MaskOps().describe() == "" and MaskOps(grow=4, feather=2).describe() == (
        "grow 4, feather 2"
    )
