"""Where the API key comes from. The real Secret block path runs under the lead's Prefect harness;
here `Secret.aload` is replaced, so no Prefect server is needed."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.blocks.system import Secret
from pydantic import BaseModel, ValidationError

from inpaint_flows.errors import ConfigError
from inpaint_flows.secrets import resolve_api_key

FAKE_KEY = "sk-FAKEKEY-do-not-leak-0123456789"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOVITA_API_KEY", raising=False)


def fake_load(monkeypatch: pytest.MonkeyPatch, outcome: Any) -> list[str]:
    calls: list[str] = []

    async def aload(name: str, **kwargs: Any) -> Any:
        calls.append(name)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(Secret, "aload", aload)
    return calls


async def test_no_block_and_no_env_means_no_key() -> None:
    assert await resolve_api_key() is None
    assert await resolve_api_key(None) is None


async def test_env_var_is_read_at_call_time_and_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", f"  {FAKE_KEY}\n")
    assert await resolve_api_key() == FAKE_KEY


async def test_blank_env_var_means_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", "  ")
    assert await resolve_api_key() is None


async def test_empty_block_name_falls_back_to_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", FAKE_KEY)
    assert await resolve_api_key("") == FAKE_KEY


async def test_block_wins_over_env_and_is_loaded_without_blocking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", "from-env")
    calls = fake_load(monkeypatch, Secret(value=f"{FAKE_KEY}\n"))
    assert await resolve_api_key("novita-key") == FAKE_KEY
    assert calls == ["novita-key"]  # the async API: the event loop is never blocked


async def test_missing_block_says_which_and_how_to_create_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_load(
        monkeypatch,
        ValueError("Unable to find block document named novita-key for block type secret"),
    )
    with pytest.raises(ConfigError) as caught:
        await resolve_api_key("novita-key")
    message = str(caught.value)
    assert "'novita-key'" in message
    assert "Secret(value=" in message and ".save('novita-key')" in message
    assert "NOVITA_API_KEY" in message
    assert caught.value.__cause__ is None


async def test_invalid_block_content_is_not_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    class Strict(BaseModel):
        value: int

    with pytest.raises(ValidationError) as validation:
        Strict.model_validate({"value": FAKE_KEY})
    assert FAKE_KEY in str(validation.value)  # this is what must not reach the message
    fake_load(monkeypatch, validation.value)
    with pytest.raises(ConfigError) as caught:
        await resolve_api_key("novita-key")
    assert FAKE_KEY not in str(caught.value)
    assert caught.value.__context__ is None or caught.value.__suppress_context__


async def test_block_holding_a_non_string_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_load(monkeypatch, Secret(value={"key": FAKE_KEY}))
    with pytest.raises(ConfigError, match="non-empty string") as caught:
        await resolve_api_key("novita-key")
    assert FAKE_KEY not in str(caught.value)


async def test_other_load_failures_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_load(monkeypatch, ValueError("something else"))
    with pytest.raises(ValueError, match="something else"):
        await resolve_api_key("novita-key")
