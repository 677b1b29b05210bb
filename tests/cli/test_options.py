"""The batch options are generated from `BatchSettings`; errors name the option as typed."""

from __future__ import annotations

import pytest
import typer

from cli.options import settings_from_options


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"masks__grow": -5}, "--mask-grow: "),  # a nested field with its own option name
        ({"defaults__steps": 0}, "--steps: "),
        ({"defaults__model_name": ""}, "--model: "),
        ({"images_per_minute": 0.0}, "--ipm: "),  # a top-level field with its own name
        ({"max_in_flight": 0}, "--max-in-flight: "),
        ({"defaults__loras": '[{"model_name": "x", "strength": 9}]'}, "--loras[0][strength]: "),
    ],
)
def test_a_bad_value_is_named_by_the_option_the_user_typed(
    values: dict[str, object], named: str
) -> None:
    with pytest.raises(typer.BadParameter) as caught:
        settings_from_options("photos", values)
    assert str(caught.value).startswith(named), caught.value


def test_given_values_land_in_the_settings_and_the_rest_keep_their_defaults() -> None:
    settings = settings_from_options(
        "photos", {"masks__grow": 4, "defaults__steps": 12, "images_per_minute": 30.0}
    )
    assert (settings.masks.grow, settings.defaults.steps) == (4, 12)
    assert settings.images_per_minute == 30.0
    assert settings.max_in_flight == type(settings).model_fields["max_in_flight"].default
