"""Fixtures shared by the input tests (`test_pictures`, `test_payload`, `test_input_checks`)."""

from __future__ import annotations

import pytest

from tests.inpaint_flows.badinputs import FileCase, write_file_cases


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FileCase]:
    """One file case per kind of the bad-input corpus, by kind (read only: tests never write)."""
    cases = write_file_cases(tmp_path_factory.mktemp("cases"))
    return {c.kind: c for c in cases}
