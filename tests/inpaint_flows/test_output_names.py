"""Output names: safe on every file system, unique in a batch, stable across runs."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inpaint_flows.output_names import assign_output_stems, output_stem_for


@pytest.mark.parametrize(
    ("rel", "stem"),
    [
        pytest.param("a.png", "a", id="plain"),
        pytest.param("sub/dir/a.b.png", "sub/dir/a.b", id="subfolders-and-dots"),
        pytest.param("../x.png", "__/x", id="parent-escape"),
        pytest.param("../../etc/passwd", "__/__/etc/passwd", id="deep-escape"),
        pytest.param("/abs/x.png", "abs/x", id="absolute"),
        pytest.param("sub\\win\\a.png", "sub/win/a", id="backslashes"),
        pytest.param("CON.png", "_CON", id="windows-device"),
        pytest.param("lpt1.final.png", "_lpt1.final", id="windows-device-with-dots"),
        pytest.param(".hidden.png", "_hidden", id="hidden"),
        pytest.param('a<b>:c"|?*.png', "a_b__c____", id="windows-forbidden"),
        pytest.param("tab\there.png", "tab_here", id="control-char"),
        pytest.param("dots./x.png", "dots_/x", id="trailing-dot-folder"),
        pytest.param("ça va/画像 1.png", "ça va/画像 1", id="unicode-spaces"),
        pytest.param("./a.png", "a", id="dot-prefix"),
        pytest.param("", "_", id="empty"),
    ],
)
def test_output_stem_for(rel: str, stem: str) -> None:
    assert output_stem_for(rel) == stem


def test_output_stem_normalises_unicode_to_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", "café.png")
    assert output_stem_for(decomposed) == "café" == unicodedata.normalize("NFC", "café")


def test_output_stem_caps_long_names_and_keeps_them_distinct() -> None:
    one, two = output_stem_for("é" * 200 + "1.png"), output_stem_for("é" * 200 + "2.png")
    assert len(one.encode()) <= 120 and len(two.encode()) <= 120
    assert one != two


@pytest.mark.parametrize(
    ("rels", "stems"),
    [
        pytest.param(["a.png", "a.jpg"], ["a_png", "a_jpg"], id="same-stem-two-formats"),
        pytest.param(["a.png", "b.png"], ["a", "b"], id="no-collision-no-suffix"),
        pytest.param(["x/a.png", "y/a.png"], ["x/a", "y/a"], id="subfolders-keep-apart"),
    ],
)
def test_assign_output_stems(rels: list[str], stems: list[str]) -> None:
    assert assign_output_stems(rels) == stems


def test_assign_output_stems_cases_that_need_a_hash() -> None:
    case = assign_output_stems(["a.png", "A.png"])
    assert case[0].casefold() != case[1].casefold(), "case-insensitive file systems collide"
    assert all(s.startswith(("a_png-", "A_png-")) for s in case)
    rows = assign_output_stems(["a.png", "a.png"], ["steps=20", "steps=30"])
    assert rows[0] != rows[1] and all(s.startswith("a_png-") for s in rows)
    same = assign_output_stems(["a.png", "a.png"], ["x", "x"])
    assert same[1] == same[0] + "-2"
    tricky = assign_output_stems(["a.png", "a.jpg", "a_png.gif"])
    assert len({s.casefold() for s in tricky}) == 3
    assert assign_output_stems(["a.png", "a.jpg", "a_png.gif"]) == tricky, "stable"
    with pytest.raises(ValueError):
        assign_output_stems(["a.png"], ["x", "y"])


_component = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
    st.sampled_from([".", "..", "", "CON.png", ".hidden", "a.PNG", "a.png", "A.png"]),
)
_path_text = st.lists(_component, min_size=1, max_size=4).map("/".join)


@given(st.lists(_path_text, max_size=12))
def test_assigned_stems_are_always_safe_and_unique(rels: list[str]) -> None:
    stems = assign_output_stems(rels)
    assert len(stems) == len(rels)
    assert len({unicodedata.normalize("NFC", s).casefold() for s in stems}) == len(stems)
    for stem in stems:
        parts = stem.split("/")
        assert not stem.startswith("/")
        assert all(p and p not in (".", "..") and not p.startswith(".") for p in parts), stem
        assert not any(c in stem for c in '<>:"\\|?*\x00')
        assert all(not p.endswith((" ", ".")) for p in parts), stem
