"""Which job store a batch uses, and that its password never shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from inpaint_flows.errors import ConfigError
from inpaint_flows.settings import BatchSettings
from inpaint_flows.store_location import STATE_URL_ENV, StoreLocation

PG = "postgresql://inpaint@db.example:5433/jobs"


def test_the_default_is_an_sqlite_file_in_the_state_folder(tmp_path: Path) -> None:
    location = StoreLocation.for_batch(None, tmp_path / "state", {})
    assert location.dialect == "sqlite"
    assert location.url.database == str(tmp_path / "state" / "jobs.sqlite3")
    assert location.json_dir == tmp_path / "state"


def test_the_environment_names_a_database_and_the_setting_wins(tmp_path: Path) -> None:
    env = {STATE_URL_ENV: "postgres://other@elsewhere/db"}
    from_env = StoreLocation.for_batch(None, tmp_path, env)
    assert from_env.dialect == "postgresql" and from_env.url.host == "elsewhere"
    assert from_env.url.drivername == "postgresql+asyncpg"
    from_setting = StoreLocation.for_batch(PG, tmp_path, env)
    assert from_setting.url.host == "db.example" and from_setting.url.port == 5433
    assert from_setting.json_dir == tmp_path  # a JSON ledger there is imported into it


def test_a_password_in_the_environment_is_used_but_never_shown(tmp_path: Path) -> None:
    env = {STATE_URL_ENV: "postgresql://inpaint:s3cr3t-pw@db.example/jobs"}
    location = StoreLocation.for_batch(None, tmp_path, env)
    assert location.url.password == "s3cr3t-pw"
    assert "s3cr3t-pw" not in location.label and "***" in location.label
    assert "s3cr3t-pw" not in repr(location)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        pytest.param("mysql://u:s3cr3t-pw@h/d", "'mysql' database", id="other-database"),
        pytest.param("postgresql://u:s3cr3t-pw@h", "name the database", id="no-database"),
        pytest.param("s3cr3t-pw", "not a database URL", id="not-a-url"),
    ],
)
def test_a_wrong_url_in_the_environment_says_where_it_came_from(
    tmp_path: Path, value: str, says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        StoreLocation.for_batch(None, tmp_path, {STATE_URL_ENV: value})
    assert says in str(info.value) and STATE_URL_ENV in str(info.value)
    assert "s3cr3t-pw" not in str(info.value)


def test_the_setting_takes_a_url_without_a_password() -> None:
    settings = BatchSettings(source="in", state_url=PG)
    assert settings.state_url == PG
    assert BatchSettings.model_validate_json(settings.model_dump_json()) == settings
    with pytest.raises(ValueError) as info:
        BatchSettings(source="in", state_url="postgresql://inpaint:s3cr3t-pw@db/jobs")
    assert "s3cr3t-pw" not in str(info.value) and "PGPASSWORD" in str(info.value)
